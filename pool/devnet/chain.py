"""The devnet's chain state: Bitcoin Core's consensus through py-bitcoinkernel (`pbk`).

The kernel is synchronous and not meant to be driven from several threads, so every
call into it runs on ONE dedicated worker thread. The event loop reads an in-memory
index of the active chain (height → hash, header, median-time-past, chainwork) that is
only changed on the loop thread, right after a submission returns, so a coroutine never
sees a tip whose block the mempool has not yet been told about.

A block is accepted only if `process_block` accepts it AND the active tip becomes that
block; the reject reason is the kernel's own (see kernel_log), as bitcoind reports it.
"""

import asyncio
import ctypes
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pbk
import pbk.capi.bindings as pbk_capi
import structlog

from pool.bitcoin.block import HEADER_SIZE, BlockHeader
from pool.bitcoin.script import WITNESS_RESERVED_VALUE, find_witness_commitment
from pool.bitcoin.serialize import ByteReader
from pool.bitcoin.target import bits_to_target
from pool.bitcoin.tx import Transaction
from pool.devnet.kernel_log import StateWatch, ensure_connected, reject_reason
from pool.errors import DeserializationError, DevnetError

log = structlog.get_logger(__name__)

MEDIAN_TIME_SPAN = 11  # blocks; consensus median-time-past window
RAW_BLOCK_CACHE_SIZE = 32  # blocks kept in memory for getblock / ZMQ rawblock
_T = TypeVar("_T")


@dataclass(slots=True, frozen=True)
class IndexEntry:
    """One block of the active chain, as the RPC layer needs it."""

    height: int
    hash_le: bytes
    header: BlockHeader
    median_time_past: int  # s; median of this block's time and its 10 predecessors'
    chainwork: int  # cumulative expected hashes up to and including this block
    n_tx: int

    @property
    def hash_hex(self) -> str:
        return self.hash_le[::-1].hex()


@dataclass(slots=True, frozen=True)
class SubmitOutcome:
    """What happened to one submitted block (bitcoind's submitblock semantics).

    `reason` is None when the block became the new tip; otherwise a BIP22 string such as
    "duplicate", "inconclusive", "high-hash" or "bad-cb-amount". `error` is set instead
    when the kernel reports an internal error (bitcoind answers RPC_VERIFY_ERROR).
    """

    hash_le: bytes
    reason: str | None
    error: str | None = None
    txids_le: tuple[bytes, ...] = ()  # block order, coinbase first; only when accepted
    raw: bytes = b""  # the block as stored (after UpdateUncommittedBlockStructures)

    @property
    def accepted(self) -> bool:
        return self.reason is None and self.error is None


def block_work(bits: int) -> int:
    """Expected hashes for one block at `bits` (Core's GetBlockProof: 2**256 / (target+1))."""
    return (1 << 256) // (bits_to_target(bits) + 1)


def kernel_block(raw: bytes) -> "pbk.Block | None":
    """Deserialize with the kernel (bitcoind's own decoder); None when it fails.

    pbk.Block(raw) copies the buffer byte by byte through ctypes varargs (~100 ms per MB);
    from_buffer_copy is one memcpy, so the kernel call is made directly.
    """
    if not raw:
        return None
    buffer = (ctypes.c_ubyte * len(raw)).from_buffer_copy(raw)
    handle = pbk_capi.btck_block_create(buffer, len(raw))
    if not handle:
        return None
    return pbk.Block._from_handle(handle)


def add_coinbase_witness_nonce(raw: bytes) -> bytes:
    """bitcoind's UpdateUncommittedBlockStructures: a coinbase with a witness commitment
    but no witness gets the 32-byte zero reserved value before validation."""
    reader = ByteReader(raw, HEADER_SIZE)
    reader.read_compact_size()
    start = reader.offset
    coinbase = Transaction.read(reader)
    if coinbase.inputs and not coinbase.inputs[0].witness:
        if find_witness_commitment(coinbase) is not None:
            coinbase.inputs[0].witness = [WITNESS_RESERVED_VALUE]
            return raw[:start] + coinbase.serialize() + raw[reader.offset :]
    return raw


class Chain:
    """Owns the ChainstateManager, its worker thread and the active-chain index."""

    def __init__(self, datadir: Path, *, script_threads: int = 0) -> None:
        self.datadir = datadir
        self.script_threads = script_threads  # kernel script-check threads (0 = inline)
        self._executor: ThreadPoolExecutor | None = None
        self._chainman: pbk.ChainstateManager | None = None
        self._context: pbk.Context | None = None
        self._callbacks: pbk.ValidationInterfaceCallbacks | None = None
        # hash hex -> (mode, result) from the kernel's BlockChecked, on the worker thread
        self._checked: dict[str, tuple[pbk.ValidationMode, pbk.BlockValidationResult]] = {}
        self._checked_lock = threading.Lock()
        self._index: list[IndexEntry] = []
        self._by_hash: dict[bytes, IndexEntry] = {}
        self._raw_cache: OrderedDict[bytes, bytes] = OrderedDict()
        self._consensus_params: pbk.ConsensusParams | None = None

    # -- lifecycle -------------------------------------------------------------------

    async def open(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="devnet-kernel")
        entries = await self._run(self._open_sync)
        self._set_index(entries)
        log.info("devnet_chain_loaded", datadir=str(self.datadir), height=self.height)

    async def close(self) -> None:
        if self._executor is None:
            return
        await self._run(self._close_sync)
        self._executor.shutdown(wait=True)
        self._executor = None

    def _open_sync(self) -> list[IndexEntry]:
        self.datadir.mkdir(parents=True, exist_ok=True)
        ensure_connected()  # before loading, so start-up messages are not buffered
        self._callbacks = pbk.ValidationInterfaceCallbacks(block_checked=self._on_block_checked)
        chain_params = pbk.ChainParameters(pbk.ChainType.REGTEST)
        self._consensus_params = chain_params.consensus_params
        self._chain_params = chain_params  # keeps consensus_params' owner alive
        opts = pbk.ContextOptions()
        opts.set_chainparams(chain_params)
        opts.set_validation_interface(self._callbacks)
        self._context = pbk.Context(opts)
        blocks_dir = self.datadir / "blocks"
        man_opts = pbk.ChainstateManagerOptions(
            self._context, str(self.datadir.absolute()), str(blocks_dir.absolute())
        )
        man_opts.set_worker_threads_num(self.script_threads)
        try:
            self._chainman = pbk.ChainstateManager(man_opts)
        except RuntimeError as err:
            raise DevnetError(f"cannot open chain state in {self.datadir}: {err}") from err
        return self._read_index_sync()

    def _close_sync(self) -> None:
        # Destroy in dependency order; the kernel flushes its databases on destruction.
        if self._chainman is not None:
            self._chainman.__exit__(None, None, None)
            self._chainman = None
        if self._context is not None:
            self._context.__exit__(None, None, None)
            self._context = None

    async def _run(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run fn on the kernel's worker thread."""
        if self._executor is None:
            raise DevnetError("chain is not open")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # -- index -----------------------------------------------------------------------

    def _read_index_sync(self) -> list[IndexEntry]:
        assert self._chainman is not None
        active = self._chainman.get_active_chain()
        entries: list[IndexEntry] = []
        for height in range(active.height + 1):
            tree_entry = active.block_tree_entries[height]
            header = BlockHeader.parse(bytes(tree_entry.block_header))
            n_tx = len(self._chainman.blocks[tree_entry].transactions)
            entries.append(_next_entry(entries, header, bytes(tree_entry.block_hash), n_tx))
        return entries

    def _set_index(self, entries: list[IndexEntry]) -> None:
        self._index = entries
        self._by_hash = {entry.hash_le: entry for entry in entries}

    @property
    def height(self) -> int:
        return len(self._index) - 1

    @property
    def tip(self) -> IndexEntry:
        return self._index[-1]

    def at_height(self, height: int) -> IndexEntry | None:
        return self._index[height] if 0 <= height < len(self._index) else None

    def by_hash(self, hash_le: bytes) -> IndexEntry | None:
        return self._by_hash.get(hash_le)

    def versions(self) -> list[int]:
        """Header versions of the active chain by height (for version-bits state)."""
        return [entry.header.version for entry in self._index]

    @property
    def consensus_params(self) -> "pbk.ConsensusParams":
        assert self._consensus_params is not None
        return self._consensus_params

    # -- blocks ----------------------------------------------------------------------

    async def submit(self, raw: bytes) -> SubmitOutcome:
        """Validate and store one block (bitcoind's submitblock). The index moves to the
        new tip before this returns, on the loop thread."""
        outcome, update = await self._run(self._submit_sync, raw)
        if isinstance(update, IndexEntry):
            self._index.append(update)
            self._by_hash[update.hash_le] = update
        elif update is not None:
            self._set_index(update)
        if outcome.accepted:
            self._remember_raw(outcome.hash_le, outcome.raw)
        return outcome

    def _on_block_checked(
        self, _user_data: object, block: "pbk.Block", state: "pbk.BlockValidationState"
    ) -> None:
        # `state` is only valid during the callback: copy what we need
        checked = (state.validation_mode, state.block_validation_result)
        with self._checked_lock:
            self._checked[str(block.block_hash)] = checked

    def _submit_sync(
        self, raw: bytes
    ) -> tuple[SubmitOutcome, IndexEntry | list[IndexEntry] | None]:
        header = BlockHeader.parse(raw[:HEADER_SIZE])
        hash_le = header.hash_le()
        try:
            raw = add_coinbase_witness_nonce(raw)
        except DeserializationError:
            pass  # left to the kernel's decoder and checks
        block = kernel_block(raw)
        if block is None:
            raise DeserializationError("Block decode failed")
        outcome = self._process_sync(block, hash_le)
        if not outcome.accepted:
            return outcome, None
        if self._tip_hash_sync() != hash_le:  # valid yet not the tip: not "accepted"
            return SubmitOutcome(hash_le, "inconclusive"), None
        txids = tuple(bytes(tx.txid) for tx in block.transactions)
        accepted = SubmitOutcome(hash_le, None, txids_le=txids, raw=raw)
        if self._index and header.prev_hash_le == self._index[-1].hash_le:
            return accepted, _next_entry(self._index, header, hash_le, len(txids))
        log.warning("devnet_reorg_rebuilding_index", new_tip=hash_le[::-1].hex())
        return accepted, self._read_index_sync()

    def _process_sync(self, block: "pbk.Block", hash_le: bytes) -> SubmitOutcome:
        """process_block plus what the kernel said about this block while doing it."""
        assert self._chainman is not None
        hash_hex = hash_le[::-1].hex()
        with self._checked_lock:
            self._checked.pop(hash_hex, None)
        with StateWatch(hash_hex) as watch:
            try:
                is_new = self._chainman.process_block(block)
                accepted = True
            except pbk.ProcessBlockException:
                is_new, accepted = True, False
        with self._checked_lock:
            checked = self._checked.pop(hash_hex, None)
        return classify(hash_le, accepted, is_new, checked, watch.last_state)

    def _tip_hash_sync(self) -> bytes:
        assert self._chainman is not None
        active = self._chainman.get_active_chain()
        return bytes(active.block_tree_entries[active.height].block_hash)

    async def read_block(self, hash_le: bytes) -> bytes | None:
        """Raw block bytes of an active-chain block (memory cache, else the kernel's disk)."""
        cached = self._raw_cache.get(hash_le)
        if cached is not None:
            return cached
        if hash_le not in self._by_hash:
            return None
        raw = await self._run(self._read_block_sync, hash_le)
        self._remember_raw(hash_le, raw)
        return raw

    def _read_block_sync(self, hash_le: bytes) -> bytes:
        assert self._chainman is not None
        tree_entry = self._chainman.block_tree_entries[pbk.BlockHash(hash_le)]
        return bytes(self._chainman.blocks[tree_entry])

    def _remember_raw(self, hash_le: bytes, raw: bytes) -> None:
        self._raw_cache[hash_le] = raw
        self._raw_cache.move_to_end(hash_le)
        while len(self._raw_cache) > RAW_BLOCK_CACHE_SIZE:
            self._raw_cache.popitem(last=False)

    async def check_block(self, raw: bytes, *, check_pow: bool) -> "pbk.ValidationMode":
        """The kernel's context-free CheckBlock (size, coinbase, tx sanity, sigops, merkle)."""
        return await self._run(self._check_block_sync, raw, check_pow)

    def _check_block_sync(self, raw: bytes, check_pow: bool) -> "pbk.ValidationMode":
        block = kernel_block(raw)
        if block is None:
            raise DeserializationError("Block decode failed")
        flags = pbk.BlockCheckFlags.MERKLE | (pbk.BlockCheckFlags.POW if check_pow else 0)
        return block.check(self.consensus_params, pbk.BlockCheckFlags(flags)).validation_mode


def _next_entry(
    index: list[IndexEntry], header: BlockHeader, hash_le: bytes, n_tx: int
) -> IndexEntry:
    times = [entry.header.time for entry in index[-(MEDIAN_TIME_SPAN - 1) :]] + [header.time]
    times.sort()
    prev_work = index[-1].chainwork if index else 0
    return IndexEntry(
        height=len(index),
        hash_le=hash_le,
        header=header,
        median_time_past=times[len(times) // 2],
        chainwork=prev_work + block_work(header.bits),
        n_tx=n_tx,
    )


# Reasons implied by a BlockValidationResult alone (Core sets exactly these strings with
# them); any other result without a logged reason is answered "rejected".
_RESULT_REASONS = {
    pbk.BlockValidationResult.CACHED_INVALID: "duplicate-invalid",
    pbk.BlockValidationResult.MISSING_PREV: "prev-blk-not-found",
    pbk.BlockValidationResult.INVALID_PREV: "bad-prevblk",
    pbk.BlockValidationResult.TIME_FUTURE: "time-too-new",
}


def classify(
    hash_le: bytes,
    accepted: bool,
    is_new: bool,
    checked: "tuple[pbk.ValidationMode, pbk.BlockValidationResult] | None",
    state: str | None,
) -> SubmitOutcome:
    """bitcoind's submitblock decision: "duplicate" (already had it), "inconclusive" (no
    BlockChecked: e.g. stored on a side branch), else BIP22ValidationResult of the state;
    the reason is the kernel's logged one, else what the result code implies."""
    if accepted and not is_new:
        return SubmitOutcome(hash_le, "duplicate")
    if checked is None:
        return SubmitOutcome(hash_le, "inconclusive")
    mode, result = checked
    if mode == pbk.ValidationMode.VALID:
        return SubmitOutcome(hash_le, None)
    if mode == pbk.ValidationMode.INTERNAL_ERROR:
        return SubmitOutcome(hash_le, None, error=state or "internal error")
    reason = reject_reason(state) if state is not None else None
    return SubmitOutcome(hash_le, reason or _RESULT_REASONS.get(result, "rejected"))
