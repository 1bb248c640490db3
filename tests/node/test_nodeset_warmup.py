"""A node that is warming up (RPC error -28, as bitcoind answers while loading its block
index). The devnet has no warm-up phase, so a small loopback server plays bitcoind's
answers here; it stands in for the peer only, NodeSet runs unchanged."""

import asyncio
from collections.abc import Callable
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import REGISTRY

from pool.config import NodeConfig
from pool.node.nodeset import NodeSet

TIP = "ab" * 32


async def wait_for(predicate: Callable[[], bool], timeout_s: float = 3.0) -> None:
    async with asyncio.timeout(timeout_s):
        while True:
            if predicate():
                return
            await asyncio.sleep(0.02)


async def test_warming_up_is_reported_once_then_recovers() -> None:
    state: dict[str, Any] = {"warming": True, "calls": 0}

    async def handler(request: web.Request) -> web.Response:
        body = await request.json()
        state["calls"] += 1
        if state["warming"]:
            error = {"code": -28, "message": "Loading block index…"}
            return web.json_response({"result": None, "error": error, "id": body["id"]},
                                     status=500)
        result = {"chain": "regtest", "blocks": 7, "bestblockhash": TIP} if (
            body["method"] == "getblockchaininfo") else TIP
        return web.json_response({"result": result, "error": None, "id": body["id"]})

    app = web.Application()
    app.router.add_post("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    config = NodeConfig(rpc_url=url, name="warm", rpc_user="u", rpc_password="p")
    try:
        with structlog.testing.capture_logs() as logs:
            nodes = NodeSet([config], chain="regtest", min_backoff_s=0.05, max_backoff_s=0.1)
            async with nodes:
                node = nodes.status()["nodes"]["warm"]
                assert node["state"] == "warming_up" and node["warming_up"] is True
                assert "-28" in node["last_error"] and not nodes.healthy
                assert REGISTRY.get_sample_value("gridpool_node_up", {"node": "warm"}) == 0
                await wait_for(lambda: state["calls"] >= 6)  # several failed re-probes ...
                state["warming"] = False
                await wait_for(lambda: nodes.healthy)
                assert nodes.status()["nodes"]["warm"]["height"] == 7
        events = [(e["event"], e.get("state")) for e in logs if e["event"].startswith("node_")]
        # ... but one line per change of state
        assert events == [("node_down", "warming_up"), ("node_up", None)]
    finally:
        await runner.cleanup()
