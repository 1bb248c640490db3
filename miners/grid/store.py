"""Persistence of the grid interface in the ledger's database: events, last contact per
site, and the grid audit trail (every message received, command applied, acknowledgement
sent, budget set).

Same URL as the ledger (``sqlite:///path`` or ``postgresql://…[?schema=NAME]``), its own
tables (``grid_*``) and its own migration bookkeeping (``grid_schema_migrations``), so the
ledger's and the grid's schema versions never collide. An event and the audit rows of the
command that made it commit in one transaction, before the command is acknowledged: an
acknowledged curtailment survives a crash. SQLite runs in one worker thread with
``synchronous=FULL`` (a commit is on disk when it returns); PostgreSQL through a small
asyncpg pool. Every operation has a deadline.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import asyncpg
import structlog

from miners.grid.errors import GridStoreError
from miners.grid.timeline import GridEvent
from miners.sidestore import (
    PostgresSideStore,
    SQLiteSideStore,
    split_url,
)
from miners.sidestore import (
    pg_placeholders as _pg,
)

log = structlog.get_logger(__name__)

MAX_AUDIT_ROWS = 10_000  # rows per audit query

_EVENT_COLUMNS = ("event_id", "site", "limit_w", "start_time", "end_time", "ramp_down_w_per_s",
                  "ramp_up_w_per_s", "source", "issued_by", "created_time", "cancelled_time",
                  "promised_time")
_AUDIT_COLUMNS = ("time", "site", "kind", "channel", "actor", "event_id", "detail")


@dataclass(frozen=True, slots=True)
class AuditRow:
    """One line of the grid audit trail; `seq` is assigned by the database."""

    time: float  # unix s
    site: str  # "" for messages not tied to one site
    kind: str  # received, rejected, applied, ack, budget, fallback, restored, opt, ...
    channel: str  # http, openadr, timer
    actor: str = ""  # key id, VEN/VTN id
    event_id: str = ""
    detail: Mapping[str, Any] = field(default_factory=dict)
    seq: int = 0


class GridStore(Protocol):
    async def migrate(self) -> None: ...

    async def close(self) -> None: ...

    async def save_event(self, event: GridEvent, audit: Sequence[AuditRow] = ()) -> None:
        """Insert or replace the event and append the audit rows, in one transaction."""
        ...

    async def load_events(self, since: float) -> list[GridEvent]:
        """Events not over before `since` (all sites)."""
        ...

    async def save_contacts(self, contacts: Mapping[str, float]) -> None: ...

    async def load_contacts(self) -> dict[str, float]: ...

    async def append_audit(self, rows: Sequence[AuditRow]) -> None: ...

    async def audit(self, *, since: float = 0.0, site: str | None = None,
                    limit: int = 1000, after_seq: int = 0) -> list[AuditRow]:
        """Rows with time >= `since` and seq > `after_seq` (to tail the trail), by seq."""
        ...


def open_grid_store(url: str, **options: Any) -> GridStore:
    """A store for the ledger URL; call `migrate()` next."""
    kind, where, schema = split_url(url, GridStoreError)
    if kind == "sqlite":
        return SQLiteGridStore(where, **options)
    return PostgresGridStore(where, schema=schema, **options)


def _event_row(e: GridEvent) -> tuple[Any, ...]:
    return (e.event_id, e.site, e.limit_w, e.start, e.end, e.ramp_down_w_per_s,
            e.ramp_up_w_per_s, e.source, e.issued_by, e.created, e.cancelled, e.promised)


def _event(row: Sequence[Any]) -> GridEvent:
    return GridEvent(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8],
                     row[9], row[10], row[11])


def _audit_row(r: AuditRow) -> tuple[Any, ...]:
    return (r.time, r.site, r.kind, r.channel, r.actor, r.event_id,
            json.dumps(dict(r.detail), sort_keys=True, default=str))


def _audit(row: Sequence[Any]) -> AuditRow:
    return AuditRow(row[1], row[2], row[3], row[4], row[5], row[6], json.loads(row[7]),
                    seq=row[0])


# -- migrations ---------------------------------------------------------------------------

_V1_SQLITE = (
    """CREATE TABLE grid_events (
        event_id TEXT PRIMARY KEY, site TEXT NOT NULL, limit_w REAL NOT NULL,
        start_time REAL NOT NULL, end_time REAL, ramp_down_w_per_s REAL, ramp_up_w_per_s REAL,
        source TEXT NOT NULL, issued_by TEXT NOT NULL, created_time REAL NOT NULL,
        cancelled_time REAL, promised_time REAL)""",
    "CREATE INDEX grid_events_site ON grid_events (site, start_time)",
    "CREATE TABLE grid_contacts (site TEXT PRIMARY KEY, last_time REAL NOT NULL)",
    """CREATE TABLE grid_audit (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL, site TEXT NOT NULL,
        kind TEXT NOT NULL, channel TEXT NOT NULL, actor TEXT NOT NULL,
        event_id TEXT NOT NULL, detail TEXT NOT NULL)""",
    "CREATE INDEX grid_audit_time ON grid_audit (time)",
)
_V1_POSTGRES = (
    """CREATE TABLE grid_events (
        event_id text PRIMARY KEY, site text NOT NULL, limit_w double precision NOT NULL,
        start_time double precision NOT NULL, end_time double precision,
        ramp_down_w_per_s double precision, ramp_up_w_per_s double precision,
        source text NOT NULL, issued_by text NOT NULL, created_time double precision NOT NULL,
        cancelled_time double precision, promised_time double precision)""",
    "CREATE INDEX grid_events_site ON grid_events (site, start_time)",
    "CREATE TABLE grid_contacts (site text PRIMARY KEY, last_time double precision NOT NULL)",
    """CREATE TABLE grid_audit (
        seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, time double precision NOT NULL,
        site text NOT NULL, kind text NOT NULL, channel text NOT NULL, actor text NOT NULL,
        event_id text NOT NULL, detail jsonb NOT NULL)""",
    "CREATE INDEX grid_audit_time ON grid_audit (time)",
)
MIGRATIONS: tuple[tuple[int, str, tuple[str, ...], tuple[str, ...]], ...] = (
    (1, "grid events, contacts, audit trail", _V1_SQLITE, _V1_POSTGRES),
)
_BOOKKEEPING = """CREATE TABLE IF NOT EXISTS grid_schema_migrations (
    version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_time DOUBLE PRECISION NOT NULL)"""


def _pending(applied: set[int]) -> list[tuple[int, str, tuple[str, ...], tuple[str, ...]]]:
    newest = MIGRATIONS[-1][0]
    if applied and max(applied) > newest:
        raise GridStoreError(f"grid schema is at version {max(applied)}, newer than this "
                             f"gridpool knows ({newest}); upgrade gridpool")
    return [m for m in MIGRATIONS if m[0] not in applied]


_SQL_UPSERT = (f"INSERT INTO grid_events ({', '.join(_EVENT_COLUMNS)}) VALUES "
               f"({', '.join('?' * len(_EVENT_COLUMNS))}) ON CONFLICT (event_id) DO UPDATE SET "
               + ", ".join(f"{c} = excluded.{c}" for c in _EVENT_COLUMNS[1:]))
_SQL_AUDIT = (f"INSERT INTO grid_audit ({', '.join(_AUDIT_COLUMNS)}) VALUES "
              f"({', '.join('?' * len(_AUDIT_COLUMNS))})")
_SQL_LOAD = (f"SELECT {', '.join(_EVENT_COLUMNS)} FROM grid_events WHERE "
             "(end_time IS NULL OR end_time >= ?) AND (cancelled_time IS NULL OR "
             "cancelled_time >= ?) ORDER BY start_time, created_time, event_id")
_SQL_CONTACT = ("INSERT INTO grid_contacts (site, last_time) VALUES (?, ?) ON CONFLICT (site) "
                "DO UPDATE SET last_time = excluded.last_time")


# -- SQLite -------------------------------------------------------------------------------


class SQLiteGridStore(SQLiteSideStore):
    error = GridStoreError
    name = "grid"

    async def migrate(self) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute(_BOOKKEEPING)
            applied = {v for (v,) in conn.execute("SELECT version FROM grid_schema_migrations")}
            for version, name, statements, _ in _pending(applied):
                for sql in statements:
                    conn.execute(sql)
                conn.execute("INSERT INTO grid_schema_migrations VALUES (?, ?, ?)",
                             (version, name, time.time()))
                log.info("grid_store_migrated", version=version, name=name)

        await self._run(run)

    async def save_event(self, event: GridEvent, audit: Sequence[AuditRow] = ()) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute(_SQL_UPSERT, _event_row(event))
            conn.executemany(_SQL_AUDIT, [_audit_row(r) for r in audit])

        await self._run(run)

    async def load_events(self, since: float) -> list[GridEvent]:
        rows = await self._run(lambda c: c.execute(_SQL_LOAD, (since, since)).fetchall())
        return [_event(r) for r in rows]

    async def save_contacts(self, contacts: Mapping[str, float]) -> None:
        await self._run(lambda c: c.executemany(_SQL_CONTACT, list(contacts.items())))

    async def load_contacts(self) -> dict[str, float]:
        rows = await self._run(lambda c: c.execute("SELECT site, last_time FROM grid_contacts")
                               .fetchall())
        return dict(rows)

    async def append_audit(self, rows: Sequence[AuditRow]) -> None:
        if rows:
            await self._run(lambda c: c.executemany(_SQL_AUDIT, [_audit_row(r) for r in rows]))

    async def audit(self, *, since: float = 0.0, site: str | None = None,
                    limit: int = 1000, after_seq: int = 0) -> list[AuditRow]:
        sql = (f"SELECT seq, {', '.join(_AUDIT_COLUMNS)} FROM grid_audit "
               "WHERE time >= ? AND seq > ?")
        args: list[Any] = [since, after_seq]
        if site is not None:
            sql += " AND site = ?"
            args.append(site)
        sql += " ORDER BY seq LIMIT ?"
        args.append(min(limit, MAX_AUDIT_ROWS))
        rows = await self._run(lambda c: c.execute(sql, args).fetchall())
        return [_audit(r) for r in rows]


# -- PostgreSQL ---------------------------------------------------------------------------



class PostgresGridStore(PostgresSideStore):
    error = GridStoreError
    name = "grid"

    async def migrate(self) -> None:
        async def run(conn: asyncpg.Connection) -> None:
            if self.schema:
                await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('grid_migrations'))")
            await conn.execute(_BOOKKEEPING)
            rows = await conn.fetch("SELECT version FROM grid_schema_migrations")
            for version, name, _, statements in _pending({r[0] for r in rows}):
                for sql in statements:
                    await conn.execute(sql)
                await conn.execute("INSERT INTO grid_schema_migrations VALUES ($1, $2, $3)",
                                   version, name, time.time())
                log.info("grid_store_migrated", version=version, name=name)

        await self._run(run, "migrate")

    async def save_event(self, event: GridEvent, audit: Sequence[AuditRow] = ()) -> None:
        async def run(conn: asyncpg.Connection) -> None:
            await conn.execute(_pg(_SQL_UPSERT), *_event_row(event))
            if audit:
                await conn.executemany(_PG_AUDIT, [_audit_row(r) for r in audit])

        await self._run(run, "save_event")

    async def load_events(self, since: float) -> list[GridEvent]:
        rows = await self._run(lambda c: c.fetch(_pg(_SQL_LOAD), since, since), "load_events")
        return [_event(tuple(r)) for r in rows]

    async def save_contacts(self, contacts: Mapping[str, float]) -> None:
        await self._run(lambda c: c.executemany(_pg(_SQL_CONTACT), list(contacts.items())),
                        "save_contacts")

    async def load_contacts(self) -> dict[str, float]:
        rows = await self._run(lambda c: c.fetch("SELECT site, last_time FROM grid_contacts"),
                               "load_contacts")
        return {r[0]: r[1] for r in rows}

    async def append_audit(self, rows: Sequence[AuditRow]) -> None:
        if rows:
            await self._run(lambda c: c.executemany(_PG_AUDIT, [_audit_row(r) for r in rows]),
                            "append_audit")

    async def audit(self, *, since: float = 0.0, site: str | None = None,
                    limit: int = 1000, after_seq: int = 0) -> list[AuditRow]:
        sql = (f"SELECT seq, {', '.join(_AUDIT_COLUMNS[:-1])}, detail::text FROM grid_audit "
               "WHERE time >= $1 AND ($2::text IS NULL OR site = $2) AND seq > $4 "
               "ORDER BY seq LIMIT $3")
        rows = await self._run(lambda c: c.fetch(sql, since, site, min(limit, MAX_AUDIT_ROWS),
                                                 after_seq), "audit")
        return [_audit(tuple(r)) for r in rows]


_PG_AUDIT = _pg(_SQL_AUDIT).replace("$7)", "$7::jsonb)")
