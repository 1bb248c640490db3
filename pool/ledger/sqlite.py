"""SQLite ledger backend (the default): one file in the data dir, WAL mode.

Durability: `synchronous=FULL` with WAL, so a commit returns only after the WAL is fsync'd;
a committed batch survives a process kill and a power cut. One writer connection lives in
its own thread (SQLite allows one writer at a time anyway) and runs each operation — a
whole transaction — as one call, so a share batch costs one thread hop and one fsync. A
second connection in another thread serves reads (WAL readers never block the writer).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import structlog

from pool.errors import LedgerError, LedgerUnavailableError
from pool.ledger import migrations
from pool.ledger import sqlite_queries as sq
from pool.ledger.rows import join_hi_lo, prepare_batch, split_hi_lo, window_entries
from pool.ledger.sqlite_queries import (
    Conn,
    insert_rows,
    share_filters,
    upsert_account_work,
    upsert_minutes,
)
from pool.ledger.store import (
    Account,
    BlockInfo,
    FoundBlock,
    LedgerTotals,
    MinuteStats,
    PayoutRow,
    ShareRecord,
    ShareStats,
    WindowEntry,
    check_group_by,
    check_status,
    window_units,
)

log = structlog.get_logger(__name__)

T = TypeVar("T")
BUSY_TIMEOUT_S = 5.0  # how long a statement waits for another writer's lock (s)
OP_TIMEOUT_S = 30.0  # deadline of one ledger operation, queueing included (s)
PRUNE_MAX_ROWS = 200_000  # raw shares deleted per prune call, to keep the write lock short


class SQLiteLedger:
    """The Ledger interface on one SQLite file (`path`, or ":memory:" for tests)."""

    def __init__(
        self,
        path: str | Path,
        *,
        busy_timeout_s: float = BUSY_TIMEOUT_S,
        op_timeout_s: float = OP_TIMEOUT_S,
        synchronous: str = "FULL",
    ) -> None:
        if synchronous not in ("FULL", "EXTRA"):
            raise LedgerError("sqlite synchronous must be FULL or EXTRA (acked ⇒ durable)")
        self.path = str(path)
        self.busy_timeout_s = busy_timeout_s
        self.op_timeout_s = op_timeout_s
        self.synchronous = synchronous
        self._memory = self.path == ":memory:"
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="ledger-sqlite-w")
        self._reader = self._writer if self._memory else ThreadPoolExecutor(
            1, thread_name_prefix="ledger-sqlite-r"
        )
        self._conns: dict[int, Conn] = {}  # id(executor) -> its connection
        self._closed = False

    def __repr__(self) -> str:
        return f"SQLiteLedger({self.path!r})"

    # -- the thread shell ---------------------------------------------------------------

    def _connect(self) -> Conn:
        if not self._memory:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self.path, timeout=self.busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    def _call(self, executor: ThreadPoolExecutor, fn: Callable[..., T], *args: Any) -> T:
        conn = self._conns.get(id(executor))
        if conn is None:
            conn = self._conns[id(executor)] = self._connect()
        return fn(conn, *args)

    async def _run(self, executor: ThreadPoolExecutor, fn: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise LedgerError("ledger is closed")
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.op_timeout_s):
                return await loop.run_in_executor(executor, self._call, executor, fn, *args)
        except TimeoutError:
            raise LedgerUnavailableError(
                f"sqlite {self.path}: {fn.__name__} took over {self.op_timeout_s:g} s"
            ) from None
        except sqlite3.OperationalError as err:  # locked, disk I/O, cannot open, disk full
            raise LedgerUnavailableError(f"sqlite {self.path}: {err}") from err
        except sqlite3.Error as err:
            raise LedgerError(f"sqlite {self.path}: {err}") from err

    async def _write(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._run(self._writer, fn, *args)

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._run(self._reader, fn, *args)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        for executor in {id(e): e for e in (self._writer, self._reader)}.values():
            conn = self._conns.pop(id(executor), None)
            if conn is not None:
                await loop.run_in_executor(executor, conn.close)
            executor.shutdown(wait=True)

    # -- schema ---------------------------------------------------------------------------

    async def migrate(self) -> None:
        await self._write(_migrate)

    # -- shares ---------------------------------------------------------------------------

    async def record_shares(self, batch: Sequence[ShareRecord]) -> int:
        for share in batch:
            share.check()
        return await self._write(_record_shares, batch) if batch else 0

    async def known_share_ids(self, share_ids: Collection[str]) -> set[str]:
        return await self._read(_existing_ids, list(share_ids))

    async def pplns_window(self, window_difficulty: float) -> list[WindowEntry]:
        return await self._read(_pplns_window, window_units(window_difficulty))

    async def prune_shares(
        self, keep_difficulty: float, *, max_age_s: float | None = None, now: float | None = None
    ) -> int:
        keep = window_units(keep_difficulty)
        cutoff_time = None if max_age_s is None else (now or time.time()) - max_age_s
        return await self._write(_prune, keep, cutoff_time)

    async def totals(self) -> LedgerTotals:
        return await self._read(_totals)

    # -- accounts -------------------------------------------------------------------------

    async def set_payout_address(self, account: str, address: str | None) -> None:
        await self._write(sq.set_address, account, address, time.time())

    async def get_account(self, account: str) -> Account | None:
        found = await self._read(sq.read_accounts, [account], False)
        return found.get(account)

    async def accounts_for_payout(self, accounts: Collection[str]) -> dict[str, Account]:
        return await self._read(sq.read_accounts, list(accounts), True)

    # -- blocks ---------------------------------------------------------------------------

    async def record_block_found(self, block: FoundBlock, payouts: Sequence[PayoutRow]) -> bool:
        return await self._write(sq.record_block, block, list(payouts), time.time())

    async def set_block_submit_result(self, hash_hex: str, node: str, result: str | None) -> None:
        await self._write(sq.submit_result, hash_hex, node, result, time.time())

    async def set_block_status(self, hash_hex: str, status: str, confirmations: int) -> None:
        await self._write(sq.set_status, hash_hex, check_status(status), confirmations, time.time())

    async def get_block(self, hash_hex: str) -> BlockInfo | None:
        found = await self._read(sq.read_blocks, 1, None, hash_hex)
        return found[0] if found else None

    async def blocks(
        self, limit: int = 50, status: str | Sequence[str] | None = None
    ) -> list[BlockInfo]:
        statuses = [status] if isinstance(status, str) else status
        for s in statuses or ():
            check_status(s)
        return await self._read(sq.read_blocks, limit, statuses, None)

    async def block_payouts(self, hash_hex: str) -> list[PayoutRow]:
        return await self._read(sq.read_payouts, hash_hex)

    # -- statistics -----------------------------------------------------------------------

    async def share_stats(
        self,
        *,
        since: float,
        until: float | None = None,
        group_by: Sequence[str] = ("account",),
        account: str | None = None,
        worker: str | None = None,
        site: str | None = None,
    ) -> list[ShareStats]:
        cols = check_group_by(group_by)
        where, params = share_filters(since, until, account, worker, site)
        return await self._read(sq.share_stats, cols, where, params)

    async def minute_series(
        self,
        *,
        since: float,
        until: float | None = None,
        account: str | None = None,
        worker: str | None = None,
        site: str | None = None,
    ) -> list[MinuteStats]:
        where, params = share_filters(since, until, account, worker, site)
        return await self._read(sq.minute_series, where, params)


# -- the synchronous operations, each run whole in a connection's thread -------------------


def _migrate(conn: Conn) -> None:
    conn.execute(migrations.SQLITE_BOOKKEEPING)
    with sq.transaction(conn):
        applied = {v for (v,) in conn.execute("SELECT version FROM schema_migrations")}
        for migration in migrations.pending(applied):
            for statement in migration.sqlite:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_time) VALUES (?, ?, ?)",
                (migration.version, migration.name, time.time()),
            )
            log.info("ledger_migrated", backend="sqlite", version=migration.version)


def _existing_ids(conn: Conn, share_ids: list[str]) -> set[str]:
    found: set[str] = set()
    for chunk in sq.chunks(share_ids):
        marks = ",".join("?" * len(chunk))
        found.update(
            r[0] for r in conn.execute(f"SELECT share_id FROM shares WHERE share_id IN ({marks})",
                                       chunk)
        )
    return found


def _record_shares(conn: Conn, batch: Sequence[ShareRecord]) -> int:
    with sq.transaction(conn):
        last_seq, cum_hi, cum_lo = conn.execute(
            "SELECT last_seq, cum_hi, cum_lo FROM ledger_state WHERE id = 1"
        ).fetchone()
        existing = _existing_ids(conn, [s.share_id for s in batch])
        account_cums = _account_cums(conn, sorted({s.account for s in batch}))
        prepared = prepare_batch(batch, existing, last_seq, join_hi_lo(cum_hi, cum_lo),
                                 account_cums)
        if not prepared.rows:
            return 0
        insert_rows(conn, prepared.rows)
        upsert_minutes(conn, prepared.minutes)
        upsert_account_work(conn, prepared.account_cums)
        conn.execute(
            "UPDATE ledger_state SET last_seq = ?, cum_hi = ?, cum_lo = ? WHERE id = 1",
            (prepared.last_seq, *split_hi_lo(prepared.cum_work)),
        )
    return len(prepared.rows)


def _account_cums(conn: Conn, accounts: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for chunk in sq.chunks(accounts):
        marks = ",".join("?" * len(chunk))
        for account, hi, lo in conn.execute(
            f"SELECT account, cum_hi, cum_lo FROM account_work WHERE account IN ({marks})", chunk
        ):
            found[account] = join_hi_lo(hi, lo)
    return found


def _state(conn: Conn) -> tuple[int, int]:
    last_seq, hi, lo = conn.execute(
        "SELECT last_seq, cum_hi, cum_lo FROM ledger_state WHERE id = 1"
    ).fetchone()
    return last_seq, join_hi_lo(hi, lo)


def _pplns_window(conn: Conn, window: int) -> list[WindowEntry]:
    with sq.transaction(conn, "DEFERRED"):  # one consistent snapshot
        _, total = _state(conn)
        start = total - window
        boundary: tuple[str, int, int] | None = None
        first_seq = 0
        if start > 0:
            row = conn.execute(
                "SELECT seq, account, cum_hi, cum_lo, pplns_hi, pplns_lo FROM shares"
                " WHERE (cum_hi, cum_lo) > (?, ?) ORDER BY cum_hi, cum_lo, seq LIMIT 1",
                split_hi_lo(start),
            ).fetchone()
            if row is None:
                return []
            first_seq = row[0]
            boundary = (row[1], join_hi_lo(row[2], row[3]), join_hi_lo(row[4], row[5]))
        # Per account: its total now minus its total just before its first share in range.
        rows = conn.execute(
            "SELECT a.account, a.cum_hi, a.cum_lo, s.acum_hi, s.acum_lo, s.pplns_hi, s.pplns_lo"
            " FROM account_work a JOIN shares s ON s.seq = (SELECT seq FROM shares"
            " WHERE account = a.account AND seq >= ? ORDER BY seq LIMIT 1)",
            (first_seq,),
        ).fetchall()
    sums = ((r[0], join_hi_lo(r[1], r[2]) - join_hi_lo(r[3], r[4]) + join_hi_lo(r[5], r[6]))
            for r in rows)
    return window_entries(sums, boundary, start)


def _prune(conn: Conn, keep: int, cutoff_time: float | None) -> int:
    with sq.transaction(conn):
        _, total = _state(conn)
        cutoff_seq = 0
        if total - keep > 0:
            row = conn.execute(
                "SELECT max(seq) FROM shares WHERE (cum_hi, cum_lo) <= (?, ?)",
                split_hi_lo(total - keep),
            ).fetchone()
            cutoff_seq = row[0] or 0
        if cutoff_time is not None:
            # seq follows acceptance order, so the first recent share bounds the old ones
            row = conn.execute(
                "SELECT seq FROM shares WHERE time >= ? ORDER BY seq LIMIT 1", (cutoff_time,)
            ).fetchone()
            newest = conn.execute("SELECT max(seq) FROM shares").fetchone()[0] or 0
            cutoff_seq = max(cutoff_seq, row[0] - 1 if row else newest)
        first = conn.execute("SELECT min(seq) FROM shares").fetchone()[0]
        if first is None or cutoff_seq < first:
            return 0
        cutoff_seq = min(cutoff_seq, first + PRUNE_MAX_ROWS - 1)
        return conn.execute("DELETE FROM shares WHERE seq <= ?", (cutoff_seq,)).rowcount


def _totals(conn: Conn) -> LedgerTotals:
    with sq.transaction(conn, "DEFERRED"):
        last_seq, total = _state(conn)
        count = conn.execute("SELECT count(*) FROM shares").fetchone()[0]
    return LedgerTotals(count, last_seq, total)
