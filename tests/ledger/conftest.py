"""Fixtures for the ledger tests: every test taking `ledger` or `ledger_url`
(tests/conftest.py) runs against both backends — SQLite in a temporary file, and
PostgreSQL (GRIDPOOL_TEST_PG, default postgresql://postgres@127.0.0.1:5432/test) in a fresh
schema dropped afterwards. The PostgreSQL runs never skip: when the server is down they
fail, saying how to start it."""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # for `import ledger_helpers` in the tests

from ledger_helpers import Outage, TcpProxy, pg_schema

from pool.ledger import open_ledger
from pool.ledger.store import Ledger


@pytest.fixture
async def ledger(ledger_url: str) -> AsyncIterator[Ledger]:
    store = open_ledger(ledger_url)
    await store.migrate()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def outage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Outage]:
    if request.param == "sqlite":
        path = tmp_path / "ledger.db"
        lock: list[sqlite3.Connection] = []

        async def down() -> None:
            conn = sqlite3.connect(path, timeout=10, isolation_level=None)
            conn.execute("BEGIN EXCLUSIVE")
            lock.append(conn)

        async def up() -> None:
            while lock:
                lock.pop().close()

        ledger = Outage(f"sqlite://{path}", {"busy_timeout_s": 0.05}, down, up)
        await _migrated(ledger)
        yield ledger
        await up()
        return
    async with pg_schema() as url:
        parts = urlsplit(url)
        proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
        await proxy.start()
        netloc = parts.netloc.rsplit("@", 1)
        user = netloc[0] + "@" if len(netloc) == 2 else ""
        proxied = parts._replace(netloc=f"{user}127.0.0.1:{proxy.port}").geturl()
        ledger = Outage(proxied, {"op_timeout_s": 5.0, "connect_timeout_s": 2.0},
                        proxy.stop, proxy.start)
        await _migrated(ledger)
        yield ledger
        await proxy.stop()


async def _migrated(outage: Outage) -> None:
    store = outage.open()
    await store.migrate()
    await store.close()
