"""HttpWorkGate against a real aiohttp server standing in for the pool's admin API."""

import asyncio

from aiohttp import web

from miners.workgate import HttpWorkGate
from pool.api import start_http


async def test_starve_and_release_reach_the_pool_and_retry_when_it_is_down():
    seen: list[tuple[str, str, str, str]] = []
    failures = [1]  # the first call gets a 503, then the pool recovers
    arrived = asyncio.Event()

    async def handle(request: web.Request) -> web.Response:
        if failures[0]:
            failures[0] -= 1
            return web.Response(status=503)
        body = await request.json()
        seen.append((request.match_info["worker"], request.match_info["call"], body["reason"],
                     request.headers["Authorization"]))
        arrived.set()
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/api/workers/{worker}/{call}", handle)
    runner, port = await start_http(app, "127.0.0.1", 0)
    gate = HttpWorkGate(f"http://127.0.0.1:{port}/api", token="t0k3n")
    await gate.start()
    try:
        gate.starve("A.rig/7", "ignores sleep")
        await asyncio.wait_for(arrived.wait(), 10)
        arrived.clear()
        gate.release("A.rig/7")
        await asyncio.wait_for(arrived.wait(), 10)
    finally:
        await gate.close()
        await runner.cleanup()
    assert seen == [("A.rig/7", "starve", "ignores sleep", "Bearer t0k3n"),
                    ("A.rig/7", "release", "", "Bearer t0k3n")]
