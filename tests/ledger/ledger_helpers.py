"""Helpers shared by the ledger tests (tests/ledger/conftest.py puts this dir on sys.path)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest

from pool.ledger import ShareRecord, WindowEntry, open_ledger, work_units
from pool.ledger.store import Ledger


def make_share(
    n: int,
    *,
    account: str = "alice",
    worker: str = "w1",
    site: str = "site-a",
    difficulty: float = 1024.0,
    at: float | None = None,
    solo: bool = False,
    prefix: str = "job",
) -> ShareRecord:
    return ShareRecord(
        share_id=f"{prefix}:{n:064x}",
        account=account,
        worker=worker,
        site=site,
        difficulty=difficulty,
        network_difficulty=1e12,
        time=time.time() if at is None else at,
        job_id=prefix,
        hash_hex=f"{n:064x}",
        is_block=False,
        solo=solo,
    )


def reference_window(shares: Sequence[ShareRecord], window: int) -> list[WindowEntry]:
    """PPLNS by definition: walk the shares newest first, taking work until `window`."""
    taken: dict[str, int] = {}
    remaining = window
    for share in reversed(shares):
        if remaining == 0:
            break
        if share.solo:
            continue
        take = min(work_units(share.difficulty), remaining)
        taken[share.account] = taken.get(share.account, 0) + take
        remaining -= take
    return [WindowEntry(a, w) for a, w in sorted(taken.items()) if w]


class TcpProxy:
    """A loopback TCP forwarder to `target` that can be taken down and brought back on the
    same port: a real database outage for the client behind it."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.flowing = asyncio.Event()  # cleared: connections stay open but carry nothing
        self.flowing.set()

    async def start(self) -> None:
        if self._server is not None:
            return
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and cut every open connection."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        pumps = [asyncio.create_task(_pump(reader, up_writer, self.flowing)),
                 asyncio.create_task(_pump(up_reader, writer, self.flowing))]
        self._tasks.update(pumps)
        for pump in pumps:
            pump.add_done_callback(self._tasks.discard)


async def _pump(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, flowing: asyncio.Event
) -> None:
    try:
        while data := await reader.read(65536):
            await flowing.wait()
            writer.write(data)
            await writer.drain()
    except (OSError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.transport.abort()


class Outage:
    """A ledger whose database can be made unavailable and brought back: SQLite by another
    connection holding the write lock, PostgreSQL by cutting a TCP proxy in front of it."""

    def __init__(
        self,
        url: str,
        options: dict[str, Any],
        down: Callable[[], Awaitable[None]],
        up: Callable[[], Awaitable[None]],
    ) -> None:
        self.url = url  # reaches the database through the outage switch
        self.options = options
        self._down = down
        self._up = up

    def open(self) -> Ledger:
        return open_ledger(self.url, **self.options)

    async def down(self) -> None:
        await self._down()

    async def up(self) -> None:
        await self._up()


PG_DSN = os.environ.get("GRIDPOOL_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
PG_START_HINT = (
    "start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start "
    "(or set GRIDPOOL_TEST_PG to a reachable server's DSN)"
)
PG_CONNECT_TIMEOUT_S = 5.0


def with_schema(dsn: str, schema: str) -> str:
    sep = "&" if urlsplit(dsn).query else "?"
    return f"{dsn}{sep}schema={schema}"


async def pg_connect() -> asyncpg.Connection:
    try:
        return await asyncpg.connect(PG_DSN, timeout=PG_CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError, asyncpg.PostgresError) as err:
        pytest.fail(f"PostgreSQL at {PG_DSN} is not reachable ({err!r}); {PG_START_HINT}")


@contextlib.asynccontextmanager
async def pg_schema() -> AsyncIterator[str]:
    """A PostgreSQL ledger URL in a fresh schema, dropped afterwards."""
    conn = await pg_connect()
    schema = "t_" + secrets.token_hex(6)
    await conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield with_schema(PG_DSN, schema)
    finally:
        await conn.execute(f"DROP SCHEMA {schema} CASCADE")
        await conn.close()
