"""RPCClient transport failures against small loopback servers started here: closed port,
a silent peer, HTTP 401/403/503, oversized answers, cookie re-reading. The bitcoind
behaviour itself (auth, error objects, templates) is tested against the devnet."""

import asyncio
import base64
import json
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import structlog
from aiohttp import web

from pool.errors import NodeAuthError, NodeError, NodeTimeoutError, NodeUnreachableError, RPCError
from pool.node.rpc import RPCClient, redact_url

SECRET = "s3cret-Pa55word-xyz"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def serve(handler: Callable) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_post("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}/"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture
async def auth_server() -> AsyncIterator[tuple[str, dict]]:
    """Answers getbestblockhash when the Authorization header is the expected one."""
    expected = {"header": basic("alice", SECRET)}

    async def handler(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != expected["header"]:
            return web.Response(status=401)
        body = await request.json()
        if body["method"] == "fail":
            return web.json_response(
                {"result": None, "error": {"code": -8, "message": "bad param"}, "id": body["id"]},
                status=500,
            )
        return web.json_response({"result": "00" * 32, "error": None, "id": body["id"]})

    runner, url = await serve(handler)
    yield url, expected
    await runner.cleanup()


async def test_closed_port_is_unreachable_quickly() -> None:
    async with RPCClient(f"http://127.0.0.1:{closed_port()}", auth=("u", "p"), timeout_s=5) as c:
        started = time.monotonic()
        with pytest.raises(NodeUnreachableError, match="unreachable"):
            await c.call("getblockchaininfo")
        assert time.monotonic() - started < 2.0


async def test_silent_peer_hits_the_deadline() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        await asyncio.sleep(30)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with RPCClient(f"http://127.0.0.1:{port}", timeout_s=0.3) as client:
            started = time.monotonic()
            with pytest.raises(NodeTimeoutError, match=r"timeout after 0.3 s calling getinfo"):
                await client.call("getinfo")
            assert 0.25 < time.monotonic() - started < 2.0
    finally:
        server.close()


async def test_bad_password_is_auth_error_and_secret_never_logged(auth_server) -> None:
    url, _ = auth_server
    wrong = "WRONG-" + SECRET
    with structlog.testing.capture_logs() as logs:
        async with RPCClient(url, auth=("alice", wrong), name="n1") as client:
            with pytest.raises(NodeAuthError, match="HTTP 401 bad auth") as info:
                await client.call("getbestblockhash")
            assert wrong not in str(info.value) and wrong not in repr(client)
    assert wrong not in repr(logs)


async def test_right_password_and_rpc_error_object(auth_server) -> None:
    url, _ = auth_server
    async with RPCClient(url, auth=("alice", SECRET)) as client:
        assert await client.call("getbestblockhash") == "00" * 32
        with pytest.raises(RPCError) as info:
            await client.call("fail")
        assert info.value.code == -8 and info.value.message == "bad param"


async def test_credentials_in_url_are_used_and_redacted(auth_server) -> None:
    url, _ = auth_server
    with_creds = url.replace("http://", f"http://alice:{SECRET}@")
    async with RPCClient(with_creds) as client:
        assert await client.call("getbestblockhash") == "00" * 32
        assert SECRET not in repr(client) and SECRET not in client.url
    assert redact_url(with_creds) == url


async def test_cookie_is_reread_after_401(auth_server, tmp_path: Path) -> None:
    url, expected = auth_server
    cookie = tmp_path / ".cookie"
    cookie.write_text("__cookie__:old")
    expected["header"] = basic("__cookie__", "old")
    async with RPCClient(url, cookie_path=cookie) as client:
        assert await client.call("getbestblockhash") == "00" * 32
        # bitcoind restarted: new cookie on disk, the cached header is now refused
        cookie.write_text("__cookie__:new")
        expected["header"] = basic("__cookie__", "new")
        assert await client.call("getbestblockhash") == "00" * 32
        cookie.write_text("__cookie__:stale")  # not the one the server expects
        expected["header"] = basic("__cookie__", "fresh")
        with pytest.raises(NodeAuthError, match="cookie file"):
            await client.call("getbestblockhash")
        cookie.unlink()
        with pytest.raises(NodeAuthError, match="cannot read rpc cookie file"):
            await client.call("getbestblockhash")


@pytest.mark.parametrize(
    ("status", "body", "error", "match"),
    [
        (503, b"Work queue depth exceeded", NodeError, "HTTP 503 with a non-JSON answer"),
        (403, b"", NodeAuthError, "HTTP 403 forbidden"),
        (200, b"[1, 2]", NodeError, "not an object"),
        (200, json.dumps({"result": "x" * 5000, "error": None}).encode(), NodeError, "over 4096"),
    ],
)
async def test_bad_http_answers(status: int, body: bytes, error: type, match: str) -> None:
    async def handler(_request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=status)  # chunked: no Content-Length to trust
        await response.prepare(_request)
        await response.write(body)
        await response.write_eof()
        return response

    runner, url = await serve(handler)
    try:
        async with RPCClient(url, max_response_bytes=4096) as client:
            with pytest.raises(error, match=match):
                await client.call("getblocktemplate")
    finally:
        await runner.cleanup()


async def test_concurrency_is_bounded() -> None:
    in_flight = 0
    peak = 0

    async def handler(request: web.Request) -> web.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.05)
        in_flight -= 1
        body = await request.json()
        return web.json_response({"result": body["id"], "error": None, "id": body["id"]})

    runner, url = await serve(handler)
    try:
        async with RPCClient(url, max_concurrency=3) as client:
            results = await asyncio.gather(*(client.call("x") for _ in range(12)))
        assert sorted(results) == list(range(1, 13))
        assert peak == 3
    finally:
        await runner.cleanup()
