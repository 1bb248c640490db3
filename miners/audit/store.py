"""The audit chain in the ledger's database: one hash chain per site.

Same URL as the ledger (``sqlite:///path`` or ``postgresql://…[?schema=NAME]``), its own
tables (``audit_rows``, ``audit_heads``) and migration bookkeeping
(``audit_schema_migrations``). An append reads the site's head, links the new row to it
and moves the head, in one transaction, and is durable when it returns. Appends to one site
are serialized across processes too: SQLite by its write lock (``BEGIN IMMEDIATE``, the
whole append runs as one call in the store's thread), PostgreSQL by ``SELECT … FOR UPDATE``
on the site's head row; the primary key (site, seq) refuses a fork regardless. The body is
kept as its canonical JSON text, so what was hashed is what is stored. Every operation has
a deadline.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol, TypeVar

import asyncpg
import structlog

from miners.audit.chain import (
    GENESIS_HASH,
    AuditRecord,
    ChainCheck,
    ChainVerifier,
    canonical_body,
    check_kind,
    check_site,
    check_time,
    row_hash_hex,
)
from miners.audit.errors import AuditStoreError
from miners.sidestore import (
    PostgresSideStore,
    SQLiteSideStore,
    split_url,
)
from miners.sidestore import (
    pg_placeholders as _pg,
)

log = structlog.get_logger(__name__)

T = TypeVar("T")
MAX_ROWS = 10_000  # rows per rows() call; page with after_seq
VERIFY_PAGE_ROWS = 2_000  # rows per read while verifying (memory stays bounded)

_COLUMNS = "site, seq, kind, time, body, prev_hash, row_hash"


class AuditStore(Protocol):
    async def migrate(self) -> None: ...

    async def close(self) -> None: ...

    async def append(self, site: str, kind: str, time: float,
                     body: Mapping[str, Any]) -> AuditRecord:
        """Link a row to the site's head and store it; durable when it returns."""
        ...

    async def append_many(
        self, rows: Sequence[tuple[str, str, float, Mapping[str, Any]]]
    ) -> list[AuditRecord]:
        """(site, kind, time, body) rows in order, in one transaction."""
        ...

    async def rows(self, *, site: str | None = None, since: float | None = None,
                   until: float | None = None, kind: str | None = None, after_seq: int = 0,
                   limit: int = MAX_ROWS) -> list[AuditRecord]:
        """Rows ordered by (site, seq); `since` <= time < `until`; seq > `after_seq`."""
        ...

    async def heads(self) -> dict[str, tuple[int, str]]: ...

    async def sites(self) -> list[str]: ...

    async def verify(self, site: str | None = None, *,
                     checkpoints: Mapping[str, tuple[int, str]] | None = None
                     ) -> list[ChainCheck]:
        """Check every site's chain (or one) against the recorded heads, page by page;
        `checkpoints` are heads recorded elsewhere earlier (site -> (seq, hash))."""
        ...


def open_audit_store(url: str, **options: Any) -> AuditStore:
    """A store for the ledger URL; call `migrate()` next."""
    kind, where, schema = split_url(url, AuditStoreError)
    if kind == "sqlite":
        return SQLiteAuditStore(where, **options)
    return PostgresAuditStore(where, schema=schema, **options)


# -- rows in and out ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Pending:
    """A validated row waiting for its place in the chain."""

    site: str
    kind: str
    time: float
    text: str  # canonical body JSON, as stored
    body: Any  # the same, parsed (what the hash covers)


def _prepare(site: str, kind: str, when: float, body: Mapping[str, Any]) -> _Pending:
    text = canonical_body(body)
    return _Pending(check_site(site), check_kind(kind), check_time(when), text, json.loads(text))


def _link(pending: Sequence[_Pending], heads: dict[str, tuple[int, str]]
          ) -> tuple[list[AuditRecord], list[tuple[Any, ...]]]:
    """Records and their database rows, each linked to its site's head (moved in place)."""
    records, db_rows = [], []
    for p in pending:
        seq, prev = heads[p.site]
        seq += 1
        digest = row_hash_hex(p.site, seq, p.kind, p.time, p.body, prev)
        records.append(AuditRecord(p.site, seq, p.kind, p.time, p.body, prev, digest))
        db_rows.append((p.site, seq, p.kind, p.time, p.text, prev, digest))
        heads[p.site] = (seq, digest)
    return records, db_rows


def _record(row: Sequence[Any]) -> AuditRecord:
    """A stored row; a body that is not a JSON object (a tampered row) stays as its text,
    which verification reports."""
    try:
        body = json.loads(row[4])
    except (TypeError, ValueError):
        body = row[4]
    if not isinstance(body, dict):
        body = row[4]
    return AuditRecord(row[0], row[1], row[2], row[3], body, row[5], row[6])


def _rows_query(site: str | None, since: float | None, until: float | None, kind: str | None,
                after_seq: int, limit: int) -> tuple[str, list[Any]]:
    sql = f"SELECT {_COLUMNS} FROM audit_rows WHERE seq > ?"
    args: list[Any] = [after_seq]
    for column, op, value in (("site", "=", site), ("time", ">=", since),
                              ("time", "<", until), ("kind", "=", kind)):
        if value is not None:
            sql += f" AND {column} {op} ?"
            args.append(value)
    if kind is not None:
        check_kind(kind)
    args.append(max(1, min(limit, MAX_ROWS)))
    return sql + " ORDER BY site, seq LIMIT ?", args


_SQL_INSERT = f"INSERT INTO audit_rows ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
_SQL_HEAD = "SELECT seq, row_hash FROM audit_heads WHERE site = ?"
_SQL_SET_HEAD = ("INSERT INTO audit_heads (site, seq, row_hash) VALUES (?, ?, ?) "
                 "ON CONFLICT (site) DO UPDATE SET seq = excluded.seq, "
                 "row_hash = excluded.row_hash")
_SQL_HEADS = "SELECT site, seq, row_hash FROM audit_heads WHERE seq > 0 ORDER BY site"
_SQL_SITES = ("SELECT site FROM audit_rows UNION SELECT site FROM audit_heads WHERE seq > 0 "
              "ORDER BY 1")
# one statement, so one snapshot: an append between the two reads cannot fake a forged tail
_SQL_TAIL = ("SELECT (SELECT seq FROM audit_heads WHERE site = ?), "
             "(SELECT max(seq) FROM audit_rows WHERE site = ?)")


# -- migrations ---------------------------------------------------------------------------

_V1_SQLITE = (
    """CREATE TABLE audit_rows (
        site TEXT NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL, time REAL NOT NULL,
        body TEXT NOT NULL, prev_hash TEXT NOT NULL, row_hash TEXT NOT NULL,
        PRIMARY KEY (site, seq))""",
    "CREATE INDEX audit_rows_time ON audit_rows (site, time)",
    """CREATE TABLE audit_heads (
        site TEXT PRIMARY KEY, seq INTEGER NOT NULL, row_hash TEXT NOT NULL)""",
)
_V1_POSTGRES = (
    """CREATE TABLE audit_rows (
        site text NOT NULL, seq bigint NOT NULL, kind text NOT NULL,
        time double precision NOT NULL, body text NOT NULL, prev_hash text NOT NULL,
        row_hash text NOT NULL, PRIMARY KEY (site, seq))""",
    "CREATE INDEX audit_rows_time ON audit_rows (site, time)",
    """CREATE TABLE audit_heads (
        site text PRIMARY KEY, seq bigint NOT NULL, row_hash text NOT NULL)""",
)
MIGRATIONS: tuple[tuple[int, str, tuple[str, ...], tuple[str, ...]], ...] = (
    (1, "audit rows and per-site heads", _V1_SQLITE, _V1_POSTGRES),
)
_BOOKKEEPING = """CREATE TABLE IF NOT EXISTS audit_schema_migrations (
    version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_time DOUBLE PRECISION NOT NULL)"""


def _pending_migrations(applied: set[int]) -> list[tuple[int, str, tuple[str, ...],
                                                         tuple[str, ...]]]:
    newest = MIGRATIONS[-1][0]
    if applied and max(applied) > newest:
        raise AuditStoreError(f"audit schema is at version {max(applied)}, newer than this "
                              f"gridpool knows ({newest}); upgrade gridpool")
    return [m for m in MIGRATIONS if m[0] not in applied]


# -- verification, shared by both backends ------------------------------------------------


class _Verifying:
    """`verify` on top of the few reads each backend provides."""

    async def rows(self, **kwargs: Any) -> list[AuditRecord]:
        raise NotImplementedError

    async def heads(self) -> dict[str, tuple[int, str]]:
        raise NotImplementedError

    async def sites(self) -> list[str]:
        raise NotImplementedError

    async def _tail(self, site: str) -> tuple[int | None, int | None]:
        raise NotImplementedError

    async def verify(self, site: str | None = None, *,
                     checkpoints: Mapping[str, tuple[int, str]] | None = None
                     ) -> list[ChainCheck]:
        heads = await self.heads()
        # a site known only from a checkpoint is checked too: all its rows may be gone
        sites = [site] if site is not None else sorted(
            set(await self.sites()) | set(checkpoints or {}))
        checks = []
        for name in sites:
            pinned = (checkpoints or {}).get(name)
            check = await self._verify_site(name, heads.get(name, (0, GENESIS_HASH)), pinned)
            if not check.ok:
                log.warning("audit_chain_broken", site=name, first_bad_seq=check.first_bad_seq,
                            reason=check.reason)
            checks.append(check)
        return checks

    async def _verify_site(self, site: str, head: tuple[int, str],
                           checkpoint: tuple[int, str] | None) -> ChainCheck:
        # Rows up to the head read at the start; rows appended meanwhile are next time's.
        verifier = ChainVerifier(site, expected_head=head, checkpoint=checkpoint)
        after = 0
        while after < head[0]:
            page = await self.rows(site=site, after_seq=after, limit=VERIFY_PAGE_ROWS)
            fed = [row for row in page if row.seq <= head[0]]
            if not all(verifier.feed(row) for row in fed) or len(page) < VERIFY_PAGE_ROWS:
                break
            after = page[-1].seq
        check = verifier.finish()
        if check.ok:
            head_now, last = await self._tail(site)
            head_seq = head_now or 0
            if last is not None and last > head_seq:
                recorded = f"row {head_seq}" if head_seq else "no head recorded"
                check = replace(check, ok=False, first_bad_seq=head_seq + 1,
                                reason=f"row {head_seq + 1}: past the recorded head "
                                f"({recorded})")
        return check


# -- SQLite -------------------------------------------------------------------------------


class SQLiteAuditStore(SQLiteSideStore, _Verifying):
    """The audit store on the ledger's SQLite file. Each operation (a whole transaction)
    runs as one call in the store's one thread, inside BEGIN IMMEDIATE: appends from this
    store and from other processes on the same file are serialized by SQLite's write lock,
    so no asyncio lock is needed on top."""

    error = AuditStoreError
    name = "audit"

    async def migrate(self) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute(_BOOKKEEPING)
            applied = {v for (v,) in conn.execute("SELECT version FROM audit_schema_migrations")}
            for version, name, statements, _ in _pending_migrations(applied):
                for sql in statements:
                    conn.execute(sql)
                conn.execute("INSERT INTO audit_schema_migrations VALUES (?, ?, ?)",
                             (version, name, time.time()))
                log.info("audit_store_migrated", version=version, name=name)

        await self._run(run, write=True)

    async def append(self, site: str, kind: str, time: float,
                     body: Mapping[str, Any]) -> AuditRecord:
        return (await self.append_many([(site, kind, time, body)]))[0]

    async def append_many(
        self, rows: Sequence[tuple[str, str, float, Mapping[str, Any]]]
    ) -> list[AuditRecord]:
        pending = [_prepare(*row) for row in rows]

        def run(conn: sqlite3.Connection) -> list[AuditRecord]:
            heads: dict[str, tuple[int, str]] = {}
            for site in {p.site for p in pending}:
                head = conn.execute(_SQL_HEAD, (site,)).fetchone()
                heads[site] = (head[0], head[1]) if head else (0, GENESIS_HASH)
            records, db_rows = _link(pending, heads)
            conn.executemany(_SQL_INSERT, db_rows)
            conn.executemany(_SQL_SET_HEAD, [(s, q, h) for s, (q, h) in heads.items()])
            return records

        return await self._run(run, write=True) if pending else []

    async def rows(self, *, site: str | None = None, since: float | None = None,
                   until: float | None = None, kind: str | None = None, after_seq: int = 0,
                   limit: int = MAX_ROWS) -> list[AuditRecord]:
        sql, args = _rows_query(site, since, until, kind, after_seq, limit)
        found = await self._run(lambda c: c.execute(sql, args).fetchall(), write=False)
        return [_record(r) for r in found]

    async def heads(self) -> dict[str, tuple[int, str]]:
        found = await self._run(lambda c: c.execute(_SQL_HEADS).fetchall(), write=False)
        return {site: (seq, digest) for site, seq, digest in found}

    async def sites(self) -> list[str]:
        rows = await self._run(lambda c: c.execute(_SQL_SITES).fetchall(), write=False)
        return [s for (s,) in rows]

    async def _tail(self, site: str) -> tuple[int | None, int | None]:
        return await self._run(lambda c: c.execute(_SQL_TAIL, (site, site)).fetchone(),
                               write=False)


# -- PostgreSQL ---------------------------------------------------------------------------

# a head row with seq 0 gives the first append of a site a row to lock
_PG_CLAIM = ("INSERT INTO audit_heads (site, seq, row_hash) VALUES ($1, 0, $2) "
             "ON CONFLICT (site) DO NOTHING")
_PG_LOCK_HEAD = "SELECT seq, row_hash FROM audit_heads WHERE site = $1 FOR UPDATE"


class PostgresAuditStore(PostgresSideStore, _Verifying):
    """The audit store on PostgreSQL through a small asyncpg pool; `schema` as the ledger."""

    error = AuditStoreError
    name = "audit"

    async def migrate(self) -> None:
        async def run(conn: asyncpg.Connection) -> None:
            if self.schema:
                await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('audit_migrations'))")
            await conn.execute(_BOOKKEEPING)
            found = await conn.fetch("SELECT version FROM audit_schema_migrations")
            for version, name, _, statements in _pending_migrations({r[0] for r in found}):
                for sql in statements:
                    await conn.execute(sql)
                await conn.execute("INSERT INTO audit_schema_migrations VALUES ($1, $2, $3)",
                                   version, name, time.time())
                log.info("audit_store_migrated", version=version, name=name)

        await self._run(run, "migrate")

    async def append(self, site: str, kind: str, time: float,
                     body: Mapping[str, Any]) -> AuditRecord:
        return (await self.append_many([(site, kind, time, body)]))[0]

    async def append_many(
        self, rows: Sequence[tuple[str, str, float, Mapping[str, Any]]]
    ) -> list[AuditRecord]:
        pending = [_prepare(*row) for row in rows]

        async def run(conn: asyncpg.Connection) -> list[AuditRecord]:
            heads: dict[str, tuple[int, str]] = {}
            for site in sorted({p.site for p in pending}):  # one lock order: no deadlock
                await conn.execute(_PG_CLAIM, site, GENESIS_HASH)
                head = await conn.fetchrow(_PG_LOCK_HEAD, site)
                heads[site] = (head[0], head[1])
            records, db_rows = _link(pending, heads)
            await conn.executemany(_pg(_SQL_INSERT), db_rows)
            await conn.executemany(_pg(_SQL_SET_HEAD), [(s, q, h) for s, (q, h) in heads.items()])
            return records

        return await self._run(run, "append") if pending else []

    async def rows(self, *, site: str | None = None, since: float | None = None,
                   until: float | None = None, kind: str | None = None, after_seq: int = 0,
                   limit: int = MAX_ROWS) -> list[AuditRecord]:
        sql, args = _rows_query(site, since, until, kind, after_seq, limit)
        found = await self._run(lambda c: c.fetch(_pg(sql), *args), "rows")
        return [_record(tuple(r)) for r in found]

    async def heads(self) -> dict[str, tuple[int, str]]:
        found = await self._run(lambda c: c.fetch(_SQL_HEADS), "heads")
        return {r[0]: (r[1], r[2]) for r in found}

    async def sites(self) -> list[str]:
        return [r[0] for r in await self._run(lambda c: c.fetch(_SQL_SITES), "sites")]

    async def _tail(self, site: str) -> tuple[int | None, int | None]:
        found = await self._run(lambda c: c.fetchrow(_pg(_SQL_TAIL), site, site), "tail")
        return found[0], found[1]
