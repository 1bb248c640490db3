"""Async JSON-RPC client for bitcoind (and the devnet, which speaks the same protocol).

One keep-alive aiohttp session per node, a semaphore sized like bitcoind's RPC work queue
(-rpcworkqueue defaults to 16, so 8 leaves room for other clients), and a deadline on
every call. Errors are typed so callers can tell a dead node from a bad password from a
bitcoind error object. Secrets (password, cookie) never appear in messages or logs.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import aiohttp
import structlog

from pool.errors import NodeAuthError, NodeError, NodeTimeoutError, NodeUnreachableError, RPCError

log = structlog.get_logger(__name__)

DEFAULT_TIMEOUT_S = 10.0  # seconds, per call, including the wait for a semaphore slot
DEFAULT_MAX_CONCURRENCY = 8  # calls in flight per node
MAX_RESPONSE_BYTES = 64 * 1024 * 1024  # bytes; a mainnet template is a few MB of JSON
KEEPALIVE_S = 15.0  # seconds an idle connection is kept; bitcoind drops idle ones at 30 s
_READ_CHUNK = 256 * 1024  # bytes


def redact_url(url: str) -> str:
    """The URL without any user:password@ part, safe to log."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def read_cookie(cookie_path: Path) -> tuple[str, str]:
    """Read bitcoind's `.cookie` file (`__cookie__:<hex>`); NodeAuthError if unusable."""
    try:
        text = cookie_path.read_text(encoding="utf-8").strip()
    except OSError as err:
        raise NodeAuthError(f"cannot read rpc cookie file {cookie_path}: {err.strerror}") from None
    user, sep, password = text.partition(":")
    if not sep or not user:
        raise NodeAuthError(f"rpc cookie file {cookie_path} is not in user:password form")
    return user, password


class RPCClient:
    """JSON-RPC over HTTP to one node. Create it anywhere; the session opens on first use."""

    def __init__(
        self,
        url: str,
        *,
        auth: tuple[str, str] | None = None,
        cookie_path: Path | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        name: str = "",
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        if auth is not None and cookie_path is not None:
            raise ValueError("give auth or cookie_path, not both")
        parts = urlsplit(url)
        if parts.username is not None:
            # Credentials in the URL become explicit auth; the URL is kept without them.
            if auth is None and cookie_path is None:
                auth = (unquote(parts.username), unquote(parts.password or ""))
            url = redact_url(url)
        self.url = url
        self.name = name or redact_url(url)
        self.timeout_s = timeout_s
        self.max_response_bytes = max_response_bytes
        self._auth = auth
        self._cookie_path = cookie_path
        self._auth_header: str | None = None
        self._cookie_error: str | None = None  # why the cookie file could not be used
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self._max_concurrency = max_concurrency
        self._session: aiohttp.ClientSession | None = None
        self._ids = itertools.count(1)

    def __repr__(self) -> str:
        return f"RPCClient({self.name!r}, {redact_url(self.url)!r})"

    async def __aenter__(self) -> RPCClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def call(self, method: str, *params: Any, timeout_s: float | None = None) -> Any:
        """Call `method` with positional params; the whole call (queueing included) must
        finish within `timeout_s` (default: the client's). Returns the `result` member."""
        deadline_s = self.timeout_s if timeout_s is None else timeout_s
        try:
            async with asyncio.timeout(deadline_s):
                async with self._semaphore:
                    return await self._call_retrying(method, list(params))
        except TimeoutError:
            raise NodeTimeoutError(
                f"{self.name}: timeout after {deadline_s:g} s calling {method}"
            ) from None

    async def _call_retrying(self, method: str, params: list[Any]) -> Any:
        # A keep-alive connection that bitcoind closed meanwhile fails on reuse before the
        # request is processed: retry exactly once on a fresh connection.
        try:
            return await self._call_once(method, params)
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as err:
            if isinstance(err, aiohttp.ClientConnectorError):
                raise self._transport_error(err, method) from None
            log.debug("rpc_connection_reset_retry", node=self.name, method=method)
        except aiohttp.ClientError as err:
            raise self._transport_error(err, method) from None
        try:
            return await self._call_once(method, params)
        except aiohttp.ClientError as err:
            raise self._transport_error(err, method) from None

    def _transport_error(self, err: aiohttp.ClientError, method: str) -> NodeError:
        if isinstance(err, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError):
            return self._unreachable(err)
        return NodeError(f"{self.name}: transport error calling {method}: {type(err).__name__}")

    def _unreachable(self, err: BaseException) -> NodeUnreachableError:
        detail = getattr(err, "strerror", None) or type(err).__name__
        return NodeUnreachableError(f"{self.name}: unreachable at {redact_url(self.url)}: {detail}")

    async def _call_once(self, method: str, params: list[Any]) -> Any:
        body = json.dumps({"jsonrpc": "1.0", "id": next(self._ids), "method": method,
                           "params": params})
        status, data = await self._post(body)
        if status == 401 and self._cookie_path is not None:
            # bitcoind writes a new cookie at every start: re-read it once and retry.
            self._auth_header = None
            status, data = await self._post(body)
        if status == 401:
            raise NodeAuthError(f"{self.name}: HTTP 401 bad auth ({self._auth_hint()})")
        if status == 403:
            raise NodeAuthError(f"{self.name}: HTTP 403 forbidden (check rpcallowip)")
        return self._decode(method, status, data)

    def _auth_hint(self) -> str:
        if self._cookie_error is not None:
            return self._cookie_error
        if self._cookie_path is not None:
            return f"cookie file {self._cookie_path} rejected; wrong datadir or chain?"
        if self._auth is not None:
            return "rpc_user/rpc_password rejected"
        return "no credentials configured"

    async def _post(self, body: str) -> tuple[int, bytes]:
        session = self._ensure_session()
        headers = {"Content-Type": "application/json"}
        auth_header = self._get_auth_header()
        if auth_header is not None:
            headers["Authorization"] = auth_header
        try:
            async with session.post(self.url, data=body, headers=headers) as resp:
                return resp.status, await self._read_limited(resp)
        except aiohttp.ClientConnectorError as err:
            raise self._unreachable(err) from None

    async def _read_limited(self, resp: aiohttp.ClientResponse) -> bytes:
        if resp.content_length is not None and resp.content_length > self.max_response_bytes:
            raise NodeError(f"{self.name}: response of {resp.content_length} bytes is too large")
        chunks: list[bytes] = []
        size = 0
        while chunk := await resp.content.read(_READ_CHUNK):
            size += len(chunk)
            if size > self.max_response_bytes:
                raise NodeError(f"{self.name}: response over {self.max_response_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def _decode(self, method: str, status: int, data: bytes) -> Any:
        # bitcoind sends error objects with HTTP 500/404 (JSON-RPC 1.0) or 200 (2.0).
        try:
            reply = json.loads(data)
        except ValueError:
            snippet = data[:80].decode("utf-8", "replace").strip()
            raise NodeError(
                f"{self.name}: HTTP {status} with a non-JSON answer to {method}: {snippet!r}"
            ) from None
        if not isinstance(reply, dict):
            raise NodeError(f"{self.name}: HTTP {status}: answer to {method} is not an object")
        error = reply.get("error")
        if error is not None:
            if isinstance(error, dict):
                raise RPCError(int(error.get("code", 0)), str(error.get("message", "")))
            raise RPCError(0, str(error))
        if status != 200:
            raise NodeError(f"{self.name}: HTTP {status} without an error object from {method}")
        return reply.get("result")

    def _get_auth_header(self) -> str | None:
        if self._auth_header is None:
            if self._cookie_path is not None:
                # bitcoind deletes its cookie when it stops: without one, still connect, so
                # that a stopped node shows as unreachable rather than as bad auth.
                try:
                    user, password = read_cookie(self._cookie_path)
                except NodeAuthError as err:
                    self._cookie_error = str(err)
                    return None
                self._cookie_error = None
            elif self._auth is not None:
                user, password = self._auth
            else:
                return None
            token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
            self._auth_header = f"Basic {token}"
        return self._auth_header

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._max_concurrency, keepalive_timeout=KEEPALIVE_S
            )
            # Deadlines come from asyncio.timeout in call(); no aiohttp-level total timeout.
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=None)
            )
        return self._session
