"""PostgreSQL ledger backend (production) over an asyncpg connection pool.

Durability: a batch is one transaction; COMMIT returns after the WAL is flushed
(`synchronous_commit=on`, PostgreSQL's default — the backend checks it at start and refuses
`off`, which would break "acknowledged ⇒ durable"). Several pool processes may share one
database: share writers serialize on the `ledger_state` row (`SELECT … FOR UPDATE`), which
is what keeps sequence numbers and running work totals in one order.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any, TypeVar

import asyncpg
import structlog

from pool.errors import LedgerError, LedgerUnavailableError
from pool.ledger import migrations
from pool.ledger.postgres_queries import (
    INSERT_SHARES,
    UPSERT_ACCOUNT_WORK,
    UPSERT_MINUTES,
    minute_columns,
    share_columns,
    share_filters,
)
from pool.ledger.rows import account_info, block_info, prepare_batch, window_entries
from pool.ledger.store import (
    BALANCE_APPLIED,
    SUBMITTED,
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
    check_schema,
    check_status,
    window_units,
)

log = structlog.get_logger(__name__)

T = TypeVar("T")
OP_TIMEOUT_S = 30.0  # deadline of one ledger operation, connecting and queueing included (s)
CONNECT_TIMEOUT_S = 10.0  # deadline to open one connection (s)
MAX_CONNECTIONS = 8  # pool size; share batches use one at a time
PRUNE_MAX_ROWS = 200_000  # raw shares deleted per prune call, to keep transactions short
_MIGRATION_LOCK = 0x67706C  # advisory lock key ("gpl") serializing concurrent migrations

# Errors after which the same call may work later: the recorder journals and retries.
_UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.TransactionRollbackError,
    asyncpg.exceptions.ReadOnlySQLTransactionError,
)


class PostgresLedger:
    """The Ledger interface on PostgreSQL; `schema` puts every table in that schema."""

    def __init__(
        self,
        dsn: str,
        *,
        schema: str | None = None,
        max_connections: int = MAX_CONNECTIONS,
        op_timeout_s: float = OP_TIMEOUT_S,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
    ) -> None:
        self.dsn = dsn
        self.schema = check_schema(schema) if schema is not None else None
        self.max_connections = max_connections
        self.op_timeout_s = op_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self._pool: asyncpg.Pool | None = None
        self._pool_lock = asyncio.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"PostgresLedger(schema={self.schema!r})"  # the DSN may hold a password

    async def _get_pool(self) -> asyncpg.Pool:
        async with self._pool_lock:
            if self._pool is None:
                settings = {"search_path": self.schema} if self.schema else {}
                self._pool = await asyncpg.create_pool(
                    self.dsn, min_size=1, max_size=self.max_connections,
                    timeout=self.connect_timeout_s, command_timeout=self.op_timeout_s,
                    server_settings=settings,
                )
            return self._pool

    async def _run(self, fn: Callable[[asyncpg.Connection], Awaitable[T]], what: str) -> T:
        """Run `fn(conn)` inside one transaction, with a deadline; errors become the
        pool's LedgerError / LedgerUnavailableError."""
        if self._closed:
            raise LedgerError("ledger is closed")
        try:
            async with asyncio.timeout(self.op_timeout_s):
                return await _in_transaction(await self._get_pool(), fn)
        except TimeoutError:
            raise LedgerUnavailableError(
                f"postgresql: {what} took over {self.op_timeout_s:g} s"
            ) from None
        except _UNAVAILABLE as err:
            raise LedgerUnavailableError(f"postgresql: {what}: {err!r}") from err
        except asyncpg.PostgresError as err:
            raise LedgerError(f"postgresql: {what}: {err}") from err

    async def close(self) -> None:
        self._closed = True
        async with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            try:
                async with asyncio.timeout(self.connect_timeout_s):
                    await pool.close()
            except (TimeoutError, *_UNAVAILABLE):
                pool.terminate()

    # -- schema ---------------------------------------------------------------------------

    async def migrate(self) -> None:
        async def run(conn: asyncpg.Connection) -> None:
            if await conn.fetchval("SHOW synchronous_commit") == "off":
                raise LedgerError("synchronous_commit=off would lose acknowledged shares")
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            if self.schema:
                await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            await conn.execute(migrations.POSTGRES_BOOKKEEPING)
            applied = {r[0] for r in await conn.fetch("SELECT version FROM schema_migrations")}
            for migration in migrations.pending(applied):
                for statement in migration.postgres:
                    await conn.execute(statement)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied_time)"
                    " VALUES ($1, $2, $3)", migration.version, migration.name, time.time(),
                )
                log.info("ledger_migrated", backend="postgresql", version=migration.version)

        await self._run(run, "migrate")

    # -- shares ---------------------------------------------------------------------------

    async def record_shares(self, batch: Sequence[ShareRecord]) -> int:
        for share in batch:
            share.check()
        if not batch:
            return 0

        async def run(conn: asyncpg.Connection) -> int:
            last_seq, cum = await conn.fetchrow(
                "SELECT last_seq, cum_work FROM ledger_state WHERE id = 1 FOR UPDATE"
            )
            existing = {r[0] for r in await conn.fetch(
                "SELECT share_id FROM shares WHERE share_id = ANY($1::text[])",
                [s.share_id for s in batch],
            )}
            accounts = sorted({s.account for s in batch})
            account_cums = {r[0]: int(r[1]) for r in await conn.fetch(
                "SELECT account, cum_work FROM account_work WHERE account = ANY($1::text[])",
                accounts,
            )}
            prepared = prepare_batch(batch, existing, last_seq, int(cum), account_cums)
            if not prepared.rows:
                return 0
            await conn.execute(INSERT_SHARES, *share_columns(prepared.rows))
            await conn.execute(UPSERT_MINUTES, *minute_columns(prepared.minutes))
            await conn.execute(UPSERT_ACCOUNT_WORK, list(prepared.account_cums),
                               list(prepared.account_cums.values()))
            await conn.execute(
                "UPDATE ledger_state SET last_seq = $1, cum_work = $2 WHERE id = 1",
                prepared.last_seq, prepared.cum_work,
            )
            return len(prepared.rows)

        return await self._run(run, "record_shares")

    async def known_share_ids(self, share_ids: Collection[str]) -> set[str]:
        async def run(conn: asyncpg.Connection) -> set[str]:
            rows = await conn.fetch(
                "SELECT share_id FROM shares WHERE share_id = ANY($1::text[])", list(share_ids)
            )
            return {r[0] for r in rows}

        return await self._run(run, "known_share_ids")

    async def pplns_window(self, window_difficulty: float) -> list[WindowEntry]:
        window = window_units(window_difficulty)

        async def run(conn: asyncpg.Connection) -> list[WindowEntry]:
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            start = int(await conn.fetchval("SELECT cum_work FROM ledger_state")) - window
            boundary, first_seq = None, 0
            if start > 0:
                row = await conn.fetchrow(
                    "SELECT seq, account, cum_work, pplns_work FROM shares"
                    " WHERE cum_work > $1::numeric ORDER BY cum_work, seq LIMIT 1", start,
                )
                if row is None:
                    return []
                first_seq = row["seq"]
                boundary = (row["account"], int(row["cum_work"]), int(row["pplns_work"]))
            # Per account: its total now minus its total before its first share in range.
            sums = await conn.fetch(
                "SELECT a.account, a.cum_work - (s.account_cum - s.pplns_work)"
                " FROM account_work a CROSS JOIN LATERAL (SELECT account_cum, pplns_work"
                " FROM shares WHERE shares.account = a.account AND seq >= $1"
                " ORDER BY seq LIMIT 1) s", first_seq,
            )
            return window_entries(((a, int(w)) for a, w in sums), boundary, start)

        return await self._run(run, "pplns_window")

    async def prune_shares(
        self, keep_difficulty: float, *, max_age_s: float | None = None, now: float | None = None
    ) -> int:
        keep = window_units(keep_difficulty)
        cutoff_time = None if max_age_s is None else (now or time.time()) - max_age_s

        async def run(conn: asyncpg.Connection) -> int:
            total = int(await conn.fetchval("SELECT cum_work FROM ledger_state"))
            cutoff_seq = 0
            if total - keep > 0:
                cutoff_seq = await conn.fetchval(
                    "SELECT max(seq) FROM shares WHERE cum_work <= $1::numeric", total - keep
                ) or 0
            if cutoff_time is not None:  # seq follows acceptance order (see sqlite.py)
                recent = await conn.fetchval(
                    "SELECT seq FROM shares WHERE time >= $1 ORDER BY seq LIMIT 1", cutoff_time
                )
                newest = await conn.fetchval("SELECT max(seq) FROM shares") or 0
                cutoff_seq = max(cutoff_seq, recent - 1 if recent is not None else newest)
            first = await conn.fetchval("SELECT min(seq) FROM shares")
            if first is None or cutoff_seq < first:
                return 0
            cutoff_seq = min(cutoff_seq, first + PRUNE_MAX_ROWS - 1)
            status = await conn.execute("DELETE FROM shares WHERE seq <= $1", cutoff_seq)
            return int(status.split()[-1])

        return await self._run(run, "prune_shares")

    async def totals(self) -> LedgerTotals:
        async def run(conn: asyncpg.Connection) -> LedgerTotals:
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            last_seq, cum = await conn.fetchrow("SELECT last_seq, cum_work FROM ledger_state")
            count = await conn.fetchval("SELECT count(*) FROM shares")
            return LedgerTotals(int(count), int(last_seq), int(cum))

        return await self._run(run, "totals")

    # -- accounts -------------------------------------------------------------------------

    async def set_payout_address(self, account: str, address: str | None) -> None:
        async def run(conn: asyncpg.Connection) -> None:
            await conn.execute(
                "INSERT INTO accounts (account, payout_address, balance_sats, updated_time)"
                " VALUES ($1, $2, 0, $3) ON CONFLICT (account) DO UPDATE SET"
                " payout_address = excluded.payout_address,"
                " updated_time = excluded.updated_time",
                account, address, time.time(),
            )

        await self._run(run, "set_payout_address")

    async def get_account(self, account: str) -> Account | None:
        found = await self._accounts([account], with_balances=False)
        return found.get(account)

    async def accounts_for_payout(self, accounts: Collection[str]) -> dict[str, Account]:
        return await self._accounts(list(accounts), with_balances=True)

    async def _accounts(self, names: list[str], *, with_balances: bool) -> dict[str, Account]:
        async def run(conn: asyncpg.Connection) -> dict[str, Account]:
            sql = ("SELECT account, payout_address, balance_sats, updated_time FROM accounts"
                   " WHERE account = ANY($1::text[])")
            if with_balances:
                sql += " OR balance_sats <> 0"
            return {r[0]: account_info(r) for r in await conn.fetch(sql, names)}

        return await self._run(run, "accounts")

    # -- blocks ---------------------------------------------------------------------------

    async def record_block_found(self, block: FoundBlock, payouts: Sequence[PayoutRow]) -> bool:
        now = time.time()

        async def run(conn: asyncpg.Connection) -> bool:
            status = await conn.execute(
                "INSERT INTO blocks (hash_hex, height, status, confirmations, account, worker,"
                " site, reward_sats, fees_sats, pool_fee_sats, found_time, updated_time,"
                " share_id, job_id) VALUES ($1, $2, 'found', 0, $3, $4, $5, $6, $7, $8, $9,"
                " $10, $11, $12) ON CONFLICT DO NOTHING",
                block.hash_hex, block.height, block.account, block.worker, block.site,
                block.reward_sats, block.fees_sats, block.pool_fee_sats, block.found_time, now,
                block.share_id, block.job_id,
            )
            if status.split()[-1] == "0":
                return False
            await conn.executemany(
                "INSERT INTO payouts (hash_hex, account, address, credited_sats, paid_sats)"
                " VALUES ($1, $2, $3, $4, $5)",
                [(block.hash_hex, p.account, p.address, p.credited_sats, p.paid_sats)
                 for p in payouts],
            )
            await _apply_balances(conn, block.hash_hex, +1, now)
            return True

        return await self._run(run, "record_block_found")

    async def set_block_submit_result(self, hash_hex: str, node: str, result: str | None) -> None:
        now = time.time()

        async def run(conn: asyncpg.Connection) -> None:
            if await conn.fetchval("SELECT 1 FROM blocks WHERE hash_hex = $1", hash_hex) is None:
                raise LedgerError(f"unknown block {hash_hex}")
            await conn.execute(
                "INSERT INTO block_submits (hash_hex, node, result, time) VALUES ($1, $2, $3,"
                " $4) ON CONFLICT (hash_hex, node) DO UPDATE SET result = excluded.result,"
                " time = excluded.time", hash_hex, node, result, now,
            )
            await conn.execute(
                "UPDATE blocks SET status = $1, updated_time = $2"
                " WHERE hash_hex = $3 AND status = 'found'", SUBMITTED, now, hash_hex,
            )

        await self._run(run, "set_block_submit_result")

    async def set_block_status(self, hash_hex: str, status: str, confirmations: int) -> None:
        check_status(status)
        now = time.time()

        async def run(conn: asyncpg.Connection) -> None:
            old = await conn.fetchval(
                "SELECT status FROM blocks WHERE hash_hex = $1 FOR UPDATE", hash_hex
            )
            if old is None:
                raise LedgerError(f"unknown block {hash_hex}")
            was_applied, applied = old in BALANCE_APPLIED, status in BALANCE_APPLIED
            if was_applied != applied:
                await _apply_balances(conn, hash_hex, +1 if applied else -1, now)
            await conn.execute(
                "UPDATE blocks SET status = $1, confirmations = $2, updated_time = $3"
                " WHERE hash_hex = $4", status, confirmations, now, hash_hex,
            )

        await self._run(run, "set_block_status")

    async def get_block(self, hash_hex: str) -> BlockInfo | None:
        found = await self._blocks("WHERE hash_hex = $1", [hash_hex], 1)
        return found[0] if found else None

    async def blocks(
        self, limit: int = 50, status: str | Sequence[str] | None = None
    ) -> list[BlockInfo]:
        statuses = [status] if isinstance(status, str) else list(status or ())
        for s in statuses:
            check_status(s)
        if statuses:
            return await self._blocks("WHERE status = ANY($1::text[])", [statuses], limit)
        return await self._blocks("", [], limit)

    async def _blocks(self, where: str, params: list[Any], limit: int) -> list[BlockInfo]:
        async def run(conn: asyncpg.Connection) -> list[BlockInfo]:
            rows = await conn.fetch(
                f"SELECT * FROM blocks {where} ORDER BY found_time DESC, height DESC"
                f" LIMIT ${len(params) + 1}", *params, limit,
            )
            results: dict[str, dict[str, str | None]] = {r["hash_hex"]: {} for r in rows}
            for h, node, result in await conn.fetch(
                "SELECT hash_hex, node, result FROM block_submits"
                " WHERE hash_hex = ANY($1::text[])", list(results),
            ):
                results[h][node] = result
            return [block_info(r, results[r["hash_hex"]]) for r in rows]

        return await self._run(run, "blocks")

    async def block_payouts(self, hash_hex: str) -> list[PayoutRow]:
        async def run(conn: asyncpg.Connection) -> list[PayoutRow]:
            rows = await conn.fetch(
                "SELECT account, credited_sats, paid_sats, address FROM payouts"
                " WHERE hash_hex = $1 ORDER BY account", hash_hex,
            )
            return [PayoutRow(*r) for r in rows]

        return await self._run(run, "block_payouts")

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
        select = ", ".join(cols) + ", " if cols else ""
        group = f" GROUP BY {', '.join(cols)} ORDER BY {', '.join(cols)}" if cols else ""

        async def run(conn: asyncpg.Connection) -> list[ShareStats]:
            rows = await conn.fetch(
                f"SELECT {select}sum(shares), sum(work), max(last_time) FROM share_minutes"
                f"{where}{group}", *params,
            )
            out = []
            for row in rows:
                keys = dict(zip(cols, row, strict=False))
                shares, work, last = row[len(cols) :]
                if shares is not None:
                    out.append(ShareStats(keys.get("account"), keys.get("worker"),
                                          keys.get("site"), int(shares), int(work), last))
            return out

        return await self._run(run, "share_stats")

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

        async def run(conn: asyncpg.Connection) -> list[MinuteStats]:
            rows = await conn.fetch(
                f"SELECT minute, sum(shares), sum(work) FROM share_minutes{where}"
                " GROUP BY minute ORDER BY minute", *params,
            )
            return [MinuteStats(int(m), int(s), int(w)) for m, s, w in rows]

        return await self._run(run, "minute_series")


async def _in_transaction(
    pool: asyncpg.Pool, fn: Callable[[asyncpg.Connection], Awaitable[T]]
) -> T:
    """`fn(conn)` in a transaction. A server-side error rolls back politely; anything else
    (cancelled, timed out, connection broken) terminates the connection at once — a stalled
    server would never answer a ROLLBACK, and it aborts the transaction on disconnect."""
    conn = await pool.acquire()
    clean = False
    try:
        tx = conn.transaction()
        await tx.start()
        try:
            result = await fn(conn)
        except (asyncpg.PostgresError, LedgerError) as err:
            if not isinstance(err, _UNAVAILABLE):
                await tx.rollback()
                clean = True
            raise
        await tx.commit()
        clean = True
        return result
    finally:
        if not clean:
            conn.terminate()
        await pool.release(conn)


async def _apply_balances(conn: asyncpg.Connection, hash_hex: str, sign: int, now: float) -> None:
    rows = await conn.fetch(
        "SELECT account, credited_sats - paid_sats FROM payouts WHERE hash_hex = $1"
        " ORDER BY account", hash_hex,  # one lock order for every writer: no deadlocks
    )
    await conn.executemany(
        "INSERT INTO accounts (account, payout_address, balance_sats, updated_time)"
        " VALUES ($1, NULL, $2, $3) ON CONFLICT (account) DO UPDATE SET"
        " balance_sats = accounts.balance_sats + excluded.balance_sats,"
        " updated_time = excluded.updated_time",
        [(account, sign * delta, now) for account, delta in rows if delta],
    )
