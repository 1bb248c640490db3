"""The devnet's mempool: real, signed transactions it makes from its own coins.

Every transaction spends coins the wallet owns (matured coinbases and outputs of earlier
transactions, confirmed or still in the mempool) and pays the wallet again, in varied
shapes: legacy (P2PKH), P2WPKH and P2WSH-OP_TRUE inputs and outputs, one to three
inputs, one, two or many (fan-out) outputs, fee rates spread over 1..200 sat/vB, and
chains of unconfirmed spends so that templates carry `depends`. Consensus-valid by
construction; the kernel checks them again when a block carries them.

Only this module mutates coins and entries, always on the event-loop thread.
"""

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import structlog

from pool.bitcoin.block import HEADER_SIZE, Block
from pool.bitcoin.hashes import sha256d
from pool.bitcoin.serialize import ByteReader
from pool.bitcoin.tx import Transaction, TxIn, TxOut
from pool.devnet.wallet import INPUT_SIZES, OUTPUT_SIZES, TX_OVERHEAD, Coin, CoinKind, Wallet

log = structlog.get_logger(__name__)

COINBASE_MATURITY = 100  # blocks; consensus
MAX_MEMPOOL_TARGET = 3000  # transactions; what one template can carry comfortably
MIN_OUTPUT_SATS = 10_000  # smallest output the devnet creates (well above dust)
MERGE_BELOW_SATS = 2_000_000  # coins smaller than this are merged two at a time
FANOUT_OUTPUTS = 50  # outputs of a coin-splitting transaction
MAX_FEERATE = 200  # sat/vB; fee rates are log-uniform in [1, MAX_FEERATE]
MAX_COINS = 50_000  # above this many spendable coins, stop splitting
SEQUENCE_RBF = 0xFFFFFFFD  # BIP125-signalling sequence on some inputs, as wallets do
OUTPUT_KIND_WEIGHTS = {CoinKind.P2WPKH: 4, CoinKind.P2WSH_OP_TRUE: 4, CoinKind.P2PKH: 2}
CONFIRMED_PREFERENCE = 0.8  # chance to spend a confirmed coin when both kinds exist
_PICK_TRIES = 8  # random coin picks before a tick gives up


@dataclass(slots=True)
class MempoolEntry:
    """One transaction with what getblocktemplate reports about it."""

    txid_le: bytes
    wtxid_le: bytes
    data_hex: str
    fee_sats: int
    weight: int
    sigops_cost: int
    spends: tuple[tuple[bytes, int], ...]
    parents: set[bytes]  # txids of in-mempool transactions it spends
    depth: int  # 1 + its longest chain of unconfirmed ancestors (at creation)
    seq: int  # creation order
    n_outputs: int
    children: set[bytes] = field(default_factory=set)

    @property
    def vsize(self) -> int:
        return -(-self.weight // 4)


class CoinPool:
    """Spendable coins with O(1) add, remove by outpoint and uniform random pick."""

    def __init__(self) -> None:
        self._coins: list[Coin] = []
        self._pos: dict[tuple[bytes, int], int] = {}

    def __len__(self) -> int:
        return len(self._coins)

    def add(self, coin: Coin) -> None:
        if coin.outpoint in self._pos:
            return
        self._pos[coin.outpoint] = len(self._coins)
        self._coins.append(coin)

    def remove(self, outpoint: tuple[bytes, int]) -> Coin | None:
        pos = self._pos.pop(outpoint, None)
        if pos is None:
            return None
        coin, last = self._coins[pos], self._coins.pop()
        if last is not coin:
            self._coins[pos] = last
            self._pos[last.outpoint] = pos
        return coin

    def pop_random(self, rng: random.Random) -> Coin | None:
        if not self._coins:
            return None
        return self.remove(self._coins[rng.randrange(len(self._coins))].outpoint)


class Mempool:
    """Transactions waiting for a block, and the coins the next ones will spend."""

    def __init__(
        self,
        wallet: Wallet,
        *,
        target: int = 200,
        max_chain_depth: int = 6,
        seed: int | None = None,
    ) -> None:
        if not 0 <= target <= MAX_MEMPOOL_TARGET:
            raise ValueError(f"mempool target must be 0..{MAX_MEMPOOL_TARGET}, got {target}")
        self.wallet = wallet
        self.target = target  # transactions the refill keeps in the mempool
        self.max_chain_depth = max_chain_depth  # unconfirmed ancestors allowed per tx
        self.entries: dict[bytes, MempoolEntry] = {}
        self.confirmed = CoinPool()  # spendable coins in blocks
        self.unconfirmed = CoinPool()  # unspent outputs of mempool txs not too deep
        self.updates = 0  # bitcoind's GetTransactionsUpdated: bumps on every change
        self.tip_height = 0
        self._rng = random.Random(seed)
        self._seq = 0
        self._spent_by: dict[tuple[bytes, int], bytes] = {}
        self._held: dict[bytes, list[Coin]] = {}  # outputs of too-deep txs, until confirmed
        self._immature: list[Coin] = []  # coinbase outputs, oldest first

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def coin_count(self) -> int:
        return len(self.confirmed) + len(self.unconfirmed)

    @property
    def deficit(self) -> int:
        return max(0, self.target - len(self.entries))

    # -- making transactions -----------------------------------------------------------

    def fill(self, max_new: int) -> int:
        """Create up to `max_new` transactions, stopping at the target; returns how many."""
        made = 0
        while made < max_new and self.deficit > 0:
            if self._make_tx() is None:
                break
            made += 1
        if made:
            self.updates += 1
        return made

    def _pick_inputs(self) -> list[Coin] | None:
        for _ in range(_PICK_TRIES):
            coin = self._pop_coin()
            if coin is None:
                return None
            coins = [coin]
            if coin.value_sats < MERGE_BELOW_SATS or self.coin_count > MAX_COINS:
                extra = self._pop_coin()
                if extra is not None:
                    coins.append(extra)
            if sum(c.value_sats for c in coins) >= 2 * MIN_OUTPUT_SATS:
                return coins
            log.debug("devnet_coin_dropped_as_dust", sats=sum(c.value_sats for c in coins))
        return None

    def _pop_coin(self) -> Coin | None:
        """Mostly confirmed coins (most mainnet transactions have no unconfirmed parent),
        sometimes a mempool output, which makes a chain with `depends`."""
        if self.confirmed and (not self.unconfirmed or self._rng.random() < CONFIRMED_PREFERENCE):
            return self.confirmed.pop_random(self._rng)
        return self.unconfirmed.pop_random(self._rng)

    def _output_plan(self, total_sats: int) -> int:
        """How many outputs: fan out while coins are short, else split or keep one."""
        if self.coin_count < self.deficit and total_sats >= FANOUT_OUTPUTS * 4 * MIN_OUTPUT_SATS:
            return FANOUT_OUTPUTS
        if self.coin_count < MAX_COINS and total_sats >= 8 * MIN_OUTPUT_SATS:
            return self._rng.choice((1, 2, 2))
        return 1

    def _make_tx(self) -> MempoolEntry | None:
        coins = self._pick_inputs()
        if coins is None:
            return None
        total = sum(c.value_sats for c in coins)
        kinds = self._rng.choices(
            list(OUTPUT_KIND_WEIGHTS), weights=list(OUTPUT_KIND_WEIGHTS.values()), k=FANOUT_OUTPUTS
        )[: self._output_plan(total)]
        feerate = int(math.exp(self._rng.uniform(0.0, math.log(MAX_FEERATE))))
        fee = feerate * _estimate_vsize([c.kind for c in coins], kinds)
        while len(kinds) > 1 and total - fee < MIN_OUTPUT_SATS * len(kinds):
            kinds.pop()
        if total - fee < MIN_OUTPUT_SATS:
            fee = _estimate_vsize([c.kind for c in coins], kinds)  # 1 sat/vB
        values = self._split(total - fee, len(kinds))
        tx = Transaction(
            version=2,
            inputs=[TxIn(c.txid_le, c.index, sequence=self._sequence()) for c in coins],
            outputs=[TxOut(v, self.wallet.scripts[k]) for v, k in zip(values, kinds, strict=True)],
        )
        self.wallet.sign(tx, coins)
        return self._add(tx, coins, kinds)

    def _sequence(self) -> int:
        return SEQUENCE_RBF if self._rng.random() < 0.3 else 0xFFFFFFFF

    def _split(self, amount: int, parts: int) -> list[int]:
        if parts == 1:
            return [amount]
        if parts == 2:
            first = self._rng.randint(MIN_OUTPUT_SATS, amount - MIN_OUTPUT_SATS)
            return [first, amount - first]
        share = amount // parts
        return [share] * (parts - 1) + [amount - share * (parts - 1)]

    def _add(self, tx: Transaction, coins: list[Coin], kinds: list[CoinKind]) -> MempoolEntry:
        nowit = tx.serialize(with_witness=False)
        full = tx.serialize(with_witness=True)
        txid = sha256d(nowit)
        parents = {c.txid_le for c in coins if c.height is None and c.txid_le in self.entries}
        entry = MempoolEntry(
            txid_le=txid,
            wtxid_le=sha256d(full) if len(full) != len(nowit) else txid,
            data_hex=full.hex(),
            fee_sats=sum(c.value_sats for c in coins) - sum(o.value_sats for o in tx.outputs),
            weight=len(nowit) * 3 + len(full),
            # legacy sigops x4 (OP_CHECKSIG in each P2PKH output) + one per P2WPKH input
            sigops_cost=4 * kinds.count(CoinKind.P2PKH)
            + sum(c.kind is CoinKind.P2WPKH for c in coins),
            spends=tuple(c.outpoint for c in coins),
            parents=parents,
            depth=1 + max((self.entries[p].depth for p in parents), default=0),
            seq=self._seq,
            n_outputs=len(tx.outputs),
        )
        self._seq += 1
        self.entries[txid] = entry
        for parent in parents:
            self.entries[parent].children.add(txid)
        for outpoint in entry.spends:
            self._spent_by[outpoint] = txid
        new_coins = [
            Coin(txid, i, o.value_sats, kind)
            for i, (o, kind) in enumerate(zip(tx.outputs, kinds, strict=True))
        ]
        if entry.depth >= self.max_chain_depth:
            self._held[txid] = new_coins
        else:
            for coin in new_coins:
                self.unconfirmed.add(coin)
        return entry

    # -- blocks ----------------------------------------------------------------------

    def block_connected(self, height: int, raw: bytes, txids_le: Sequence[bytes] | None) -> None:
        """Forget confirmed transactions, confirm their outputs, learn coinbase outputs;
        any transaction we did not make (or txids_le None, at rescan) parses the block."""
        self.tip_height = height
        unknown = txids_le is None
        confirmed: set[bytes] = set()
        for txid in (txids_le or ())[1:]:
            entry = self.entries.pop(txid, None)
            if entry is None:
                unknown = True
            else:
                self._confirm(entry, height)
                confirmed.add(txid)
        if unknown:
            self._scan_foreign(Block.parse(raw), height, confirmed)
        else:
            reader = ByteReader(raw, HEADER_SIZE)
            reader.read_compact_size()
            self._learn_outputs(Transaction.read(reader), None, height, is_coinbase=True)
        self._mature()
        self.updates += 1

    def _confirm(self, entry: MempoolEntry, height: int) -> None:
        for outpoint in entry.spends:
            self._spent_by.pop(outpoint, None)
        for child in entry.children:
            if child in self.entries:
                self.entries[child].parents.discard(entry.txid_le)
        for coin in self._held.pop(entry.txid_le, ()):
            coin.height = height
            self.confirmed.add(coin)
        for index in range(entry.n_outputs):
            coin = self.unconfirmed.remove((entry.txid_le, index))
            if coin is not None:
                coin.height = height
                self.confirmed.add(coin)

    def _scan_foreign(self, block: Block, height: int, confirmed: set[bytes]) -> None:
        """Apply every transaction we did not make ourselves (all of them at rescan)."""
        for position, tx in enumerate(block.txs):
            txid = tx.txid_le()
            if txid in confirmed:
                continue  # ours: inputs already spent, outputs already known
            if position:
                for txin in tx.inputs:
                    self._spend_foreign((txin.prev_txid_le, txin.prev_index))
            self._learn_outputs(tx, txid, height, is_coinbase=position == 0)

    def _spend_foreign(self, outpoint: tuple[bytes, int]) -> None:
        """An input of a transaction we did not make (or a rescan): drop the coin, and
        evict any mempool transaction that spent it (a conflict) with its descendants."""
        self.confirmed.remove(outpoint)
        self.unconfirmed.remove(outpoint)
        conflict = self._spent_by.get(outpoint)
        if conflict is not None:
            self._evict(conflict)

    def _evict(self, txid: bytes) -> None:
        entry = self.entries.pop(txid, None)
        if entry is None:
            return
        log.info("devnet_mempool_conflict_evicted", txid=txid[::-1].hex())
        for outpoint in entry.spends:
            self._spent_by.pop(outpoint, None)
        self._held.pop(txid, None)
        for index in range(entry.n_outputs):
            self.unconfirmed.remove((txid, index))
        for child in entry.children:
            self._evict(child)

    def _learn_outputs(
        self, tx: Transaction, txid: bytes | None, height: int, *, is_coinbase: bool
    ) -> None:
        for index, txout in enumerate(tx.outputs):
            kind = self.wallet.kind_of(txout.script_pubkey)
            if kind is None:
                continue
            txid = txid or tx.txid_le()
            coin = Coin(txid, index, txout.value_sats, kind, height, is_coinbase)
            if is_coinbase:
                self._immature.append(coin)
            else:
                self.confirmed.add(coin)

    def _mature(self) -> None:
        """Coinbase outputs become spendable once a spend would sit 100 blocks deeper."""
        spend_height = self.tip_height + 1
        ready = [c for c in self._immature if spend_height - (c.height or 0) >= COINBASE_MATURITY]
        if ready:
            self._immature = self._immature[len(ready) :]
            for coin in ready:
                self.confirmed.add(coin)


def _estimate_vsize(input_kinds: Sequence[CoinKind], output_kinds: Sequence[CoinKind]) -> int:
    base = TX_OVERHEAD[0] + sum(INPUT_SIZES[k][0] for k in input_kinds)
    base += sum(OUTPUT_SIZES[k] for k in output_kinds)
    witness = 0
    if any(k is not CoinKind.P2PKH for k in input_kinds):
        witness = TX_OVERHEAD[1] + sum(INPUT_SIZES[k][1] for k in input_kinds)
    return math.ceil((base * 4 + witness) / 4)
