"""Pure contextual block checks with bitcoind's BIP22 reject strings.

Used for getblocktemplate "proposal" mode (which must not add the block, and the
kernel has no TestBlockValidity) and as the fallback reason when the kernel rejects a
block without logging one. The kernel remains the authority for submitblock.

Checks run in Core's order (TestBlockValidity): previous block, contextual header
(bits, median-time-past, future time, version), block structure (merkle root,
coinbase), contextual block (finality, BIP34 height, witness commitment, weight), then
inputs and the coinbase amount, which the devnet can judge only for transactions from
its own mempool: a block carrying any other transaction is "inconclusive".
"""

from collections.abc import Mapping
from dataclasses import dataclass

from pool.bitcoin.block import Block
from pool.bitcoin.merkle import merkle_root
from pool.bitcoin.script import bip34_height_push, find_witness_commitment, witness_commitment
from pool.bitcoin.target import bits_to_target, hash_le_to_int
from pool.devnet.template import MAX_BLOCK_WEIGHT, block_subsidy

MAX_FUTURE_BLOCK_TIME = 2 * 60 * 60  # s; consensus limit on a header's time vs. now
MIN_BLOCK_VERSION = 4  # BIP65 (all buried deployments active on regtest)
LOCKTIME_THRESHOLD = 500_000_000  # nLockTime below this is a height


@dataclass(slots=True, frozen=True)
class Context:
    """The chain as the checked block would extend it."""

    tip_hash_le: bytes
    height: int  # of the block being checked
    median_time_past: int  # of the tip
    bits: int  # the only valid nBits on regtest
    now: int  # s


@dataclass(slots=True, frozen=True)
class KnownTx:
    """What the devnet knows about one of its mempool transactions."""

    fee_sats: int
    parents: frozenset[bytes]


def check_block(
    block: Block,
    ctx: Context,
    known: Mapping[bytes, KnownTx],
    *,
    check_pow: bool,
) -> str | None:
    """None if the block would be valid on top of the tip; else a BIP22 reason."""
    for check in (_check_prev, _check_header, _check_structure, _check_contextual):
        reason = check(block, ctx, check_pow)
        if reason is not None:
            return reason
    return _check_inputs(block, ctx, known)


def _check_prev(block: Block, ctx: Context, check_pow: bool) -> str | None:
    if block.header.prev_hash_le != ctx.tip_hash_le:
        return "inconclusive-not-best-prevblk"
    return None


def _check_header(block: Block, ctx: Context, check_pow: bool) -> str | None:
    header = block.header
    if check_pow and hash_le_to_int(header.hash_le()) > bits_to_target(header.bits):
        return "high-hash"
    if header.bits != ctx.bits:
        return "bad-diffbits"
    if header.time <= ctx.median_time_past:
        return "time-too-old"
    if header.time > ctx.now + MAX_FUTURE_BLOCK_TIME:
        return "time-too-new"
    if header.version < MIN_BLOCK_VERSION:
        return f"bad-version(0x{header.version & 0xFFFFFFFF:08x})"
    return None


def _check_structure(block: Block, ctx: Context, check_pow: bool) -> str | None:
    txids = [tx.txid_le() for tx in block.txs]
    if not txids:
        return "bad-blk-length"
    if merkle_root(txids) != block.header.merkle_root_le:
        return "bad-txnmrklroot"
    if len(set(txids)) != len(txids):
        return "bad-txns-duplicate"
    if not block.txs[0].is_coinbase():
        return "bad-cb-missing"
    if any(tx.is_coinbase() for tx in block.txs[1:]):
        return "bad-cb-multiple"
    if not 2 <= len(block.txs[0].inputs[0].script_sig) <= 100:
        return "bad-cb-length"
    return None


def _check_contextual(block: Block, ctx: Context, check_pow: bool) -> str | None:
    for tx in block.txs:
        final = tx.locktime == 0 or all(i.sequence == 0xFFFFFFFF for i in tx.inputs)
        limit = ctx.height if tx.locktime < LOCKTIME_THRESHOLD else ctx.median_time_past
        if not final and tx.locktime >= limit:
            return "bad-txns-nonfinal"
    if not block.txs[0].inputs[0].script_sig.startswith(bip34_height_push(ctx.height)):
        return "bad-cb-height"
    reason = _check_witness(block)
    if reason is not None:
        return reason
    if sum(tx.weight() for tx in block.txs) + _header_and_count_weight(block) > MAX_BLOCK_WEIGHT:
        return "bad-blk-weight"
    return None


def _header_and_count_weight(block: Block) -> int:
    count_size = 1 if len(block.txs) < 0xFD else 3 if len(block.txs) <= 0xFFFF else 5
    return (80 + count_size) * 4


def _check_witness(block: Block) -> str | None:
    """Core's CheckWitnessMalleation (segwit is active from genesis on regtest)."""
    coinbase = block.txs[0]
    commitment = find_witness_commitment(coinbase)
    if commitment is not None:
        stack = coinbase.inputs[0].witness
        if len(stack) != 1 or len(stack[0]) != 32:
            return "bad-witness-nonce-size"
        wtxids = [bytes(32), *(tx.wtxid_le() for tx in block.txs[1:])]
        if witness_commitment(wtxids, stack[0]) != commitment:
            return "bad-witness-merkle-match"
        return None
    if any(tx.has_witness() for tx in block.txs):
        return "unexpected-witness"
    return None


def _check_inputs(block: Block, ctx: Context, known: Mapping[bytes, KnownTx]) -> str | None:
    fees = 0
    seen: set[bytes] = set()
    for tx in block.txs[1:]:
        txid = tx.txid_le()
        info = known.get(txid)
        if info is None:
            return "inconclusive"  # not ours: inputs cannot be judged here
        if not info.parents <= seen:
            return "bad-txns-inputs-missingorspent"
        seen.add(txid)
        fees += info.fee_sats
    if sum(o.value_sats for o in block.txs[0].outputs) > block_subsidy(ctx.height) + fees:
        return "bad-cb-amount"
    return None
