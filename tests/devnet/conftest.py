"""A minimal bitcoind JSON-RPC client over real HTTP for the devnet tests (the pool's
own client lives in pool/node and is tested elsewhere)."""

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from pool.devnet import Devnet
from pool.devnet.auth import basic_auth_header

CALL_TIMEOUT = 30.0  # s; generous for 2 shared cores


class RpcClient:
    """Speaks JSON-RPC 1.0 like bitcoin-cli; `post` exposes the raw HTTP exchange."""

    def __init__(self, session: aiohttp.ClientSession, url: str, auth: str) -> None:
        self.session = session
        self.url = url
        self.auth = auth
        self._id = 0

    async def post(self, body: Any, *, auth: str | None = None) -> tuple[int, Any, dict]:
        headers = {"Authorization": auth if auth is not None else self.auth}
        async with asyncio.timeout(CALL_TIMEOUT):
            async with self.session.post(self.url, json=body, headers=headers) as resp:
                text = await resp.text()
                payload = json.loads(text) if text else None
                return resp.status, payload, dict(resp.headers)

    def _request(self, method: str, params: Any, version: str = "1.0") -> dict:
        self._id += 1
        return {"jsonrpc": version, "id": self._id, "method": method, "params": params}

    async def call(self, method: str, *params: Any) -> Any:
        """The result; fails the test on an error reply."""
        status, reply, _ = await self.post(self._request(method, list(params)))
        assert reply["error"] is None, reply["error"]
        assert status == 200
        return reply["result"]

    async def error(self, method: str, params: Any = (), version: str = "1.0") -> tuple[int, dict]:
        """(HTTP status, error object) of a call that must fail."""
        body = self._request(method, list(params) if isinstance(params, tuple) else params, version)
        status, reply, _ = await self.post(body)
        assert reply.get("error") is not None, reply
        return status, reply["error"]


@pytest.fixture
async def rpc(devnet: Devnet) -> AsyncIterator[RpcClient]:
    async with aiohttp.ClientSession() as session:
        yield RpcClient(session, devnet.rpc_url, basic_auth_header(devnet.cookie_path.read_text()))
