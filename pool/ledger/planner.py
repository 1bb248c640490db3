"""PPLNS coinbase plans for new jobs, kept off the new-tip path.

A `WindowSnapshot` is what one ledger read gives: the PPLNS window (accounts and their work),
the accounts' payout scripts and carried balances. `PayoutPlanner.plan()` splits a coinbase
value over the current snapshot with `pool.payouts.pplns_split`; plans are cached per
(snapshot, coinbasevalue, scriptSig size, witness commitment), so a broadcast never waits
for the ledger and the empty job of a new tip finds its plan ready (`prepare`).

Balances move when a block is found (the ledger settles them in the same transaction as
the block row). Until that commit is visible in a snapshot, `settle()` applies the block's
moves to the snapshot in memory, so the job that follows a found block does not pay the
same carried balances again. (A job built from a snapshot taken just before another pool
process's block can still pay a balance twice; the ledger records it as a negative
balance, netted against that account's next credits: docs/ledger.md.)
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from pool import metrics
from pool.bitcoin.address import address_to_script_pubkey
from pool.errors import AddressError, LedgerError
from pool.ledger.store import Ledger, PayoutRow
from pool.payouts import CoinbasePlan, pplns_split, pplns_window_difficulty

log = structlog.get_logger(__name__)

THREAD_ACCOUNTS = 256  # splits over more accounts than this run in a worker thread
PLAN_CACHE_SIZE = 16  # plans kept per snapshot (coinbase values x scriptSig sizes)
MAX_BAD_ADDRESSES_LOGGED = 1000  # distinct unusable addresses warned about once each


@dataclass(frozen=True, slots=True)
class WindowSnapshot:
    """The ledger's PPLNS window and account data at one moment (immutable)."""

    version: int  # grows with every new snapshot (ledger read or in-memory settlement)
    window: tuple[tuple[str, int], ...]  # (account, work units), sorted by account
    window_difficulty: float  # N: the window's size
    addresses: Mapping[str, str]  # account -> registered payout address (usable ones)
    scripts: Mapping[str, bytes]  # account -> scriptPubKey of that address
    balances: Mapping[str, int]  # account -> carried balance (sats; negative = owed back)
    read_time: float  # time.time() of the ledger read

    @property
    def window_work(self) -> int:
        return sum(work for _, work in self.window)


@dataclass(frozen=True, slots=True)
class PlannedCoinbase:
    """A job's PPLNS coinbase: the plan and the snapshot it was computed from."""

    plan: CoinbasePlan
    snapshot: WindowSnapshot

    def payout_rows(self) -> list[PayoutRow]:
        """One row per account of the plan, for ledger.record_block_found."""
        addresses = self.snapshot.addresses
        return [PayoutRow(a.account, a.credited_sats, a.paid_sats,
                          addresses.get(a.account, "") if a.paid_sats else "")
                for a in self.plan.accounts]


@dataclass(slots=True)
class _Pending:
    """A found block's balance moves, applied in memory until a snapshot includes them."""

    deltas: dict[str, int]
    committed: bool = False  # record_block_found returned: ledger reads include them


@dataclass(frozen=True, slots=True)
class PlanKey:
    coinbasevalue: int
    script_sig_bytes: int
    witness_commitment: bool


@dataclass(slots=True)
class _Cache:
    version: int = -1
    plans: dict[PlanKey, PlannedCoinbase] = field(default_factory=dict)


class PayoutPlanner:
    """Owns the current WindowSnapshot and the plans computed from it."""

    def __init__(
        self,
        ledger: Ledger,
        *,
        chain: str,
        pool_script: bytes,
        fee_bps: int,
        window_multiple: float,
        dust_sats: int,
        max_coinbase_bytes: int,
        op_timeout_s: float = 30.0,
    ) -> None:
        self.ledger = ledger
        self.chain = chain
        self.pool_script = pool_script
        self.fee_bps = fee_bps
        self.window_multiple = window_multiple
        self.dust_sats = dust_sats
        self.max_coinbase_bytes = max_coinbase_bytes
        self.op_timeout_s = op_timeout_s
        self.snapshot = WindowSnapshot(0, (), 0.0, {}, {}, {}, 0.0)
        self._versions = 0
        self._cache = _Cache()
        self._pending: dict[str, _Pending] = {}  # block hash -> moves not yet read back
        # Held by window reads and by block records (recording()): a read never overlaps a
        # settlement's commit, so it knows exactly which settlements it includes.
        self._ledger_lock = asyncio.Lock()
        self._scripts: dict[str, bytes | None] = {}  # address -> script (None: unusable)
        self._refresh: asyncio.Task[WindowSnapshot] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._prepared: PlanKey | None = None

    async def close(self) -> None:
        for task in [*self._tasks, self._refresh]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    # ---- reading the ledger ----------------------------------------------------------------

    def refresh_task(self, network_difficulty: float) -> asyncio.Task[WindowSnapshot]:
        """A ledger read of the window (the one in flight, if any); failures are logged and
        leave the current snapshot in place."""
        if self._refresh is None or self._refresh.done():
            self._refresh = asyncio.create_task(self._refresh_logged(network_difficulty),
                                                name="pplns-window-read")
        return self._refresh

    async def refresh(self, network_difficulty: float) -> WindowSnapshot:
        """Read the window now (after any read in flight); raises LedgerError."""
        if self._refresh is not None and not self._refresh.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(self._refresh)
        return await self._read(network_difficulty)

    async def _refresh_logged(self, network_difficulty: float) -> WindowSnapshot:
        try:
            return await self._read(network_difficulty)
        except (LedgerError, TimeoutError) as err:
            log.warning("pplns_window_read_failed", error=str(err) or "timeout",
                        snapshot_age_s=round(time.time() - self.snapshot.read_time, 1))
            return self.snapshot

    async def _read(self, network_difficulty: float) -> WindowSnapshot:
        started = time.perf_counter()
        n = pplns_window_difficulty(network_difficulty, self.window_multiple)
        async with asyncio.timeout(self.op_timeout_s), self._ledger_lock:
            window = await self.ledger.pplns_window(n)
            accounts = await self.ledger.accounts_for_payout([e.account for e in window])
            # Committed settlements are in what was just read; the others are not.
            self._pending = {h: p for h, p in self._pending.items() if not p.committed}
        metrics.PPLNS_WINDOW_READ_SECONDS.observe(time.perf_counter() - started)
        metrics.PPLNS_WINDOW_ACCOUNTS.set(len(window))
        balances = {name: acct.balance_sats for name, acct in accounts.items()
                    if acct.balance_sats}
        for pending in self._pending.values():
            _apply(balances, pending.deltas)
        addresses = {name: acct.payout_address for name, acct in accounts.items()
                     if acct.payout_address and self._script(acct.payout_address)}
        self._install(tuple((e.account, e.work) for e in window), n, addresses, balances,
                      time.time())
        return self.snapshot

    def _install(self, window: tuple[tuple[str, int], ...], n: float,
                 addresses: Mapping[str, str], balances: Mapping[str, int],
                 read_time: float) -> None:
        self._versions += 1
        scripts = {name: self._scripts[address] for name, address in addresses.items()}
        self.snapshot = WindowSnapshot(self._versions, window, n, dict(addresses),
                                       scripts, dict(balances), read_time)  # type: ignore[arg-type]
        if self._prepared is not None:
            self._spawn(self._prepare(self._prepared))

    def _script(self, address: str) -> bytes | None:
        if address not in self._scripts:
            try:
                self._scripts[address] = address_to_script_pubkey(address, self.chain)
            except AddressError as err:
                if len(self._scripts) < MAX_BAD_ADDRESSES_LOGGED:
                    log.warning("payout_address_unusable", address=address, error=str(err))
                self._scripts[address] = None  # its account's amounts are carried
        return self._scripts[address]

    # ---- plans -------------------------------------------------------------------------------

    def plan(self, coinbasevalue: int, *, script_sig_bytes: int,
             witness_commitment: bool) -> PlannedCoinbase:
        """The plan for this coinbase over the current snapshot (cached; computed inline on
        a miss)."""
        key = PlanKey(coinbasevalue, script_sig_bytes, witness_commitment)
        found = self._cached(key, self.snapshot)
        return found if found is not None else self._store(key, self._split(key, self.snapshot))

    async def plan_async(self, coinbasevalue: int, *, script_sig_bytes: int,
                         witness_commitment: bool) -> PlannedCoinbase:
        """plan(), with large splits in a worker thread so the event loop keeps serving."""
        key = PlanKey(coinbasevalue, script_sig_bytes, witness_commitment)
        snapshot = self.snapshot
        found = self._cached(key, snapshot)
        if found is not None:
            return found
        if len(snapshot.window) + len(snapshot.balances) > THREAD_ACCOUNTS:
            planned = await asyncio.to_thread(self._split, key, snapshot)
        else:
            planned = self._split(key, snapshot)
        return self._store(key, planned)

    def prepare(self, coinbasevalue: int, *, script_sig_bytes: int,
                witness_commitment: bool) -> None:
        """Compute this plan in the background now, and again after every new snapshot (the
        empty job of the next tip then finds it cached)."""
        self._prepared = PlanKey(coinbasevalue, script_sig_bytes, witness_commitment)
        if self._cached(self._prepared, self.snapshot) is None:
            self._spawn(self._prepare(self._prepared))

    async def _prepare(self, key: PlanKey) -> None:
        await self.plan_async(key.coinbasevalue, script_sig_bytes=key.script_sig_bytes,
                              witness_commitment=key.witness_commitment)

    def _cached(self, key: PlanKey, snapshot: WindowSnapshot) -> PlannedCoinbase | None:
        return self._cache.plans.get(key) if self._cache.version == snapshot.version else None

    def _store(self, key: PlanKey, planned: PlannedCoinbase) -> PlannedCoinbase:
        if planned.snapshot.version != self.snapshot.version:
            return planned  # a newer snapshot arrived meanwhile: do not cache the old
        if self._cache.version != planned.snapshot.version:
            self._cache = _Cache(planned.snapshot.version)
        if len(self._cache.plans) >= PLAN_CACHE_SIZE:
            self._cache.plans.pop(next(iter(self._cache.plans)))
        self._cache.plans[key] = planned
        return planned

    def _split(self, key: PlanKey, snapshot: WindowSnapshot) -> PlannedCoinbase:
        started = time.perf_counter()
        plan = pplns_split(
            key.coinbasevalue, fee_bps=self.fee_bps, window=snapshot.window,
            scripts=snapshot.scripts, balances=snapshot.balances, pool_script=self.pool_script,
            dust_sats=self.dust_sats, max_coinbase_bytes=self.max_coinbase_bytes,
            script_sig_bytes=key.script_sig_bytes, witness_commitment=key.witness_commitment,
        )
        metrics.PPLNS_PLAN_SECONDS.observe(time.perf_counter() - started)
        return PlannedCoinbase(plan, snapshot)

    # ---- found blocks ------------------------------------------------------------------------

    def settle(self, block_hash_hex: str, planned: PlannedCoinbase) -> None:
        """A block paying `planned` was found: move the balances in memory now (before the
        next tip's job is built), until a ledger read includes the block's settlement."""
        deltas = {a.account: a.credited_sats - a.paid_sats for a in planned.plan.accounts
                  if a.credited_sats != a.paid_sats}
        if block_hash_hex in self._pending:
            return
        self._pending[block_hash_hex] = _Pending(deltas)
        balances = dict(self.snapshot.balances)
        _apply(balances, deltas)
        snap = self.snapshot
        self._install(snap.window, snap.window_difficulty, snap.addresses, balances,
                      snap.read_time)

    @contextlib.asynccontextmanager
    async def recording(self, block_hash_hex: str) -> AsyncIterator[None]:
        """Wrap the ledger write that settles a found block (record_block_found): no window
        read runs meanwhile, and once the body returns later reads include the settlement
        (the in-memory moves are dropped then). If the body raises, they stay applied."""
        async with self._ledger_lock:
            yield
            pending = self._pending.get(block_hash_hex)
            if pending is not None:
                pending.committed = True

    def status(self) -> dict[str, Any]:
        snap = self.snapshot
        return {
            "window_difficulty": snap.window_difficulty,
            "window_accounts": len(snap.window),
            "window_work_units": snap.window_work,
            "carried_balances": len(snap.balances),
            "read_age_s": round(time.time() - snap.read_time, 1) if snap.read_time else None,
            "pending_settlements": len(self._pending),
        }

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("pplns_plan_failed", error=repr(task.exception()))


def _apply(balances: dict[str, int], deltas: Mapping[str, int]) -> None:
    for account, delta in deltas.items():
        balance = balances.get(account, 0) + delta
        if balance:
            balances[account] = balance
        else:
            balances.pop(account, None)
