"""getblocktemplate, pure: choose mempool transactions and shape bitcoind's answer.

Selection follows the idea of Core's BlockAssembler (ancestor-feerate packages, weight
and sigop budgets with the coinbase's reservation), without its incremental score
updates: each transaction is ranked once by the feerate of itself plus its unselected
ancestors, and a package that does not fit is skipped.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from pool.bitcoin.script import witness_commitment, witness_commitment_script
from pool.bitcoin.target import bits_to_target

MAX_BLOCK_WEIGHT = 4_000_000  # weight units; consensus (BIP141)
MAX_BLOCK_SERIALIZED_SIZE = 4_000_000  # bytes; consensus
MAX_BLOCK_SIGOPS_COST = 80_000  # consensus (BIP141)
DEFAULT_BLOCK_RESERVED_WEIGHT = 8_000  # weight units kept for the coinbase (Core's default)
COINBASE_RESERVED_SIGOPS = 400  # sigops cost kept for the coinbase (Core's BlockAssembler)
COIN = 100_000_000  # satoshis per bitcoin
INITIAL_SUBSIDY = 50 * COIN  # satoshis
REGTEST_HALVING_INTERVAL = 150  # blocks; regtest nSubsidyHalvingInterval
NONCE_RANGE = "00000000ffffffff"
BASE_RULES = ("csv", "!segwit", "taproot")  # what bitcoind reports on regtest


class TemplateTx(Protocol):
    txid_le: bytes
    wtxid_le: bytes
    data_hex: str
    fee_sats: int
    weight: int
    sigops_cost: int
    parents: set[bytes]
    seq: int


def block_subsidy(height: int, halving_interval: int = REGTEST_HALVING_INTERVAL) -> int:
    """Core's GetBlockSubsidy: 50 BTC halved every interval, zero after 64 halvings."""
    halvings = height // halving_interval
    return 0 if halvings >= 64 else INITIAL_SUBSIDY >> halvings


def _ancestors(tx: TemplateTx, pool: dict[bytes, TemplateTx]) -> dict[bytes, TemplateTx]:
    found: dict[bytes, TemplateTx] = {}
    stack = [p for p in tx.parents if p in pool]
    while stack:
        txid = stack.pop()
        if txid not in found:
            found[txid] = pool[txid]
            stack.extend(p for p in pool[txid].parents if p in pool)
    return found


def select_transactions(
    candidates: Iterable[TemplateTx],
    *,
    max_weight: int = MAX_BLOCK_WEIGHT - DEFAULT_BLOCK_RESERVED_WEIGHT,
    max_sigops: int = MAX_BLOCK_SIGOPS_COST - COINBASE_RESERVED_SIGOPS,
) -> list[TemplateTx]:
    """A block's worth of transactions, parents always before children."""
    pool = {tx.txid_le: tx for tx in candidates}
    packages = []
    for tx in pool.values():
        package = [*_ancestors(tx, pool).values(), tx]
        fee = sum(t.fee_sats for t in package)
        weight = sum(t.weight for t in package)
        packages.append((-fee / weight, tx.seq, package))
    packages.sort(key=lambda item: (item[0], item[1]))
    chosen: dict[bytes, TemplateTx] = {}
    weight_left, sigops_left = max_weight, max_sigops
    for _, _, package in packages:
        todo = [t for t in package if t.txid_le not in chosen]
        if not todo:
            continue
        weight = sum(t.weight for t in todo)
        sigops = sum(t.sigops_cost for t in todo)
        if weight > weight_left or sigops > sigops_left:
            continue
        weight_left -= weight
        sigops_left -= sigops
        for t in sorted(todo, key=lambda t: t.seq):  # creation order is topological
            chosen[t.txid_le] = t
    return list(chosen.values())


@dataclass(slots=True, frozen=True)
class TipInfo:
    """What a template needs to know about the block it builds on."""

    hash_hex: str
    height: int
    median_time_past: int
    bits: int


def transactions_json(selected: Sequence[TemplateTx]) -> list[dict]:
    """BIP22 `transactions`: depends are 1-based positions in this list."""
    position = {tx.txid_le: i + 1 for i, tx in enumerate(selected)}
    return [
        {
            "data": tx.data_hex,
            "txid": tx.txid_le[::-1].hex(),
            "hash": tx.wtxid_le[::-1].hex(),
            "depends": sorted(position[p] for p in tx.parents if p in position),
            "fee": tx.fee_sats,
            "sigops": tx.sigops_cost,
            "weight": tx.weight,
        }
        for tx in selected
    ]


def transactions_json_text(selected: Sequence[TemplateTx]) -> str:
    """The same `transactions` array as JSON text, for answering RPC without re-encoding
    thousands of objects (hex and numbers only: nothing needs escaping)."""
    position = {tx.txid_le: i + 1 for i, tx in enumerate(selected)}
    parts = [
        f'{{"data": "{tx.data_hex}", "txid": "{tx.txid_le[::-1].hex()}", '
        f'"hash": "{tx.wtxid_le[::-1].hex()}", '
        f'"depends": {sorted(position[p] for p in tx.parents if p in position)}, '
        f'"fee": {tx.fee_sats}, "sigops": {tx.sigops_cost}, "weight": {tx.weight}}}'
        for tx in selected
    ]
    return "[" + ", ".join(parts) + "]"


def default_witness_commitment(selected: Sequence[TemplateTx]) -> str:
    """The commitment output script for the coinbase plus `selected` (hex)."""
    wtxids = [bytes(32), *(tx.wtxid_le for tx in selected)]
    return witness_commitment_script(witness_commitment(wtxids)).hex()


def build_template(
    *,
    tip: TipInfo,
    selected: Sequence[TemplateTx],
    transactions: list[dict],
    commitment_hex: str,
    now: int,
    version: int,
    vbavailable: dict[str, int],
    extra_rules: Sequence[str],
    longpollid: str,
) -> dict:
    """The getblocktemplate result object, keys in bitcoind's order."""
    height = tip.height + 1
    mintime = tip.median_time_past + 1
    return {
        "capabilities": ["proposal"],
        "version": version,
        "rules": [*BASE_RULES, *extra_rules],
        "vbavailable": dict(vbavailable),
        "vbrequired": 0,
        "previousblockhash": tip.hash_hex,
        "transactions": transactions,
        "coinbaseaux": {},
        "coinbasevalue": block_subsidy(height) + sum(tx.fee_sats for tx in selected),
        "longpollid": longpollid,
        "target": f"{bits_to_target(tip.bits):064x}",
        "mintime": mintime,
        "mutable": ["time", "transactions", "prevblock"],
        "noncerange": NONCE_RANGE,
        "sigoplimit": MAX_BLOCK_SIGOPS_COST,
        "sizelimit": MAX_BLOCK_SERIALIZED_SIZE,
        "weightlimit": MAX_BLOCK_WEIGHT,
        "curtime": max(now, mintime),
        "bits": f"{tip.bits:08x}",
        "height": height,
        "default_witness_commitment": commitment_hex,
    }
