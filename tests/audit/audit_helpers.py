"""Helpers of the audit store tests: rows to fill a chain with, and raw SQL on the database
(to tamper with it as an attacker with database access would)."""

from __future__ import annotations

import sqlite3
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import asyncpg

from miners.audit.chain import AuditRecord
from miners.audit.store import AuditStore

T0 = 1_735_689_600.0  # 2025-01-01T00:00:00Z
INTERVAL_S = 900


def kind(i: int) -> str:
    """Row i (1-based): every fourth a compliance row, the others interval and event rows."""
    if i % 4 == 0:
        return "compliance"
    return "interval" if i % 2 else "event"


def body(i: int) -> dict[str, Any]:
    return {"n": i, "kwh": round(1.25 * i, 3), "flags": [] if i % 3 else ["meter_vs_telemetry"]}


async def fill(store: AuditStore, site: str, n: int) -> list[AuditRecord]:
    """Append rows 1..n to `site`, row i at T0 + 900 x (i - 1)."""
    return [await store.append(site, kind(i), T0 + INTERVAL_S * (i - 1), body(i))
            for i in range(1, n + 1)]


def _pg(sql: str) -> str:
    parts = sql.split("?")
    return "".join(p + (f"${i + 1}" if i < len(parts) - 1 else "") for i, p in enumerate(parts))


async def raw_sql(url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Run one statement straight on the database of `url`; the rows it returns."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        conn = sqlite3.connect(parts.path)
        try:
            rows = [tuple(r) for r in conn.execute(sql, args).fetchall()]
            conn.commit()
            return rows
        finally:
            conn.close()
    query = dict(parse_qsl(parts.query))
    schema = query.pop("schema", None)
    dsn = parts._replace(query=urlencode(query)).geturl()
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema} if schema else {})
    try:
        return [tuple(r) for r in await conn.fetch(_pg(sql), *args)]
    finally:
        await conn.close()
