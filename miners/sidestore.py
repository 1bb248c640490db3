"""The plumbing of a small store that lives in the ledger's database beside the ledger's own
tables (the grid's timeline and trail, the energy audit's chain): one URL, two backends.

- SQLite: one worker thread owns the connection (WAL, ``synchronous=FULL``: a commit is on
  disk when it returns); each operation is one transaction, ``BEGIN IMMEDIATE`` for writes
  (serialized with other processes by SQLite's write lock) and plain ``BEGIN`` for reads.
- PostgreSQL: a small asyncpg pool, created on first use, every operation in a transaction.

Every operation has a deadline (queueing included) and every failure is the subclass's
``error`` type, so callers handle one exception per store.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit

import asyncpg

from pool.ledger.store import check_schema

T = TypeVar("T")
OP_TIMEOUT_S = 10.0  # deadline of one store operation, queueing included
CONNECT_TIMEOUT_S = 5.0  # PostgreSQL connection deadline
MAX_CONNECTIONS = 4  # PostgreSQL pool size (these stores write little)
BUSY_TIMEOUT_S = 5.0  # SQLite: waiting for another process's write lock

PG_UNAVAILABLE = (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
                  asyncpg.exceptions.OperatorInterventionError)


def pg_placeholders(sql: str) -> str:
    """'?' placeholders to asyncpg's $1, $2, ..."""
    parts = sql.split("?")
    return "".join(p + (f"${i + 1}" if i < len(parts) - 1 else "") for i, p in enumerate(parts))


def split_url(url: str, error: type[Exception]) -> tuple[str, str, str | None]:
    """("sqlite", path, None) or ("postgresql", dsn without `schema=`, schema)."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        if parts.netloc or not parts.path or parts.path == "/":
            raise error(f"sqlite URL must be sqlite:///path, got {url!r}")
        return "sqlite", parts.path[1:] if parts.path == "/:memory:" else parts.path, None
    if parts.scheme in ("postgresql", "postgres"):
        query = dict(parse_qsl(parts.query))
        schema = query.pop("schema", None)
        return "postgresql", parts._replace(query=urlencode(query)).geturl(), schema
    raise error("store URL must start with sqlite:/// or postgresql://")


class SQLiteSideStore:
    error: ClassVar[type[Exception]] = RuntimeError  # subclasses: their store error
    name: ClassVar[str] = "side"  # the thread's and the messages' name

    def __init__(self, path: str | Path, *, op_timeout_s: float = OP_TIMEOUT_S,
                 busy_timeout_s: float = BUSY_TIMEOUT_S) -> None:
        self.path = str(path)
        self.op_timeout_s = op_timeout_s
        self.busy_timeout_s = busy_timeout_s
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"{self.name}-sqlite")
        self._conn: sqlite3.Connection | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r})"

    def _connect(self) -> sqlite3.Connection:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None,
                               check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        return conn

    def _call(self, fn: Callable[[sqlite3.Connection], T], write: bool) -> T:
        if self._conn is None:
            self._conn = self._connect()
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")  # reads never block writers
        try:
            result = fn(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    async def _run(self, fn: Callable[[sqlite3.Connection], T], *, write: bool = True) -> T:
        if self._closed:
            raise self.error(f"{self.name} store is closed")
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.op_timeout_s):
                return await loop.run_in_executor(self._executor, self._call, fn, write)
        except TimeoutError:
            raise self.error(f"sqlite {self.path}: over {self.op_timeout_s:g} s") from None
        except sqlite3.Error as err:
            raise self.error(f"sqlite {self.path}: {err}") from err

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._conn is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._conn.close)
        self._executor.shutdown(wait=True)


class PostgresSideStore:
    error: ClassVar[type[Exception]] = RuntimeError
    name: ClassVar[str] = "side"

    def __init__(self, dsn: str, *, schema: str | None = None,
                 op_timeout_s: float = OP_TIMEOUT_S,
                 connect_timeout_s: float = CONNECT_TIMEOUT_S,
                 max_connections: int = MAX_CONNECTIONS) -> None:
        self.dsn = dsn
        self.schema = check_schema(schema) if schema is not None else None
        self.op_timeout_s = op_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.max_connections = max_connections
        self._pool: asyncpg.Pool | None = None
        self._lock = asyncio.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}(schema={self.schema!r})"  # the DSN may hold a password

    async def _get_pool(self) -> asyncpg.Pool:
        async with self._lock:
            if self._pool is None:
                settings = {"search_path": self.schema} if self.schema else {}
                self._pool = await asyncpg.create_pool(
                    self.dsn, min_size=1, max_size=self.max_connections,
                    timeout=self.connect_timeout_s, command_timeout=self.op_timeout_s,
                    server_settings=settings)
            return self._pool

    async def _run(self, fn: Callable[[asyncpg.Connection], Any], what: str) -> Any:
        if self._closed:
            raise self.error(f"{self.name} store is closed")
        try:
            async with asyncio.timeout(self.op_timeout_s):
                pool = await self._get_pool()
                async with pool.acquire() as conn, conn.transaction():
                    return await fn(conn)
        except TimeoutError:
            raise self.error(f"postgresql: {what} over {self.op_timeout_s:g} s") from None
        except (*PG_UNAVAILABLE, asyncpg.PostgresError) as err:
            raise self.error(f"postgresql: {what}: {err!r}") from err

    async def close(self) -> None:
        self._closed = True
        async with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            try:
                async with asyncio.timeout(self.connect_timeout_s):
                    await pool.close()
            except (TimeoutError, *PG_UNAVAILABLE):
                pool.terminate()
