"""pool.api over a real socket: /metrics parses as Prometheus text and names every pool
metric; /readyz follows the health source (200 / 503 with the status body) while /healthz
(liveness) stays 200 and reports readiness in its body."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from pool import metrics
from pool.api import create_app, start_http

METRIC_NAMES = {
    "gridpool_connections",
    "gridpool_shares",
    "gridpool_share_difficulty",
    "gridpool_blocks_found",
    "gridpool_blocks_submitted",
    "gridpool_job_broadcast_seconds",
    "gridpool_template_age_seconds",
    "gridpool_node_up",
    "gridpool_hash_backend_info",
    "gridpool_sessions_disconnected",
    "gridpool_jobs_broadcast",
}


@pytest.fixture
async def served() -> AsyncIterator[tuple[str, dict[str, Any]]]:
    state: dict[str, Any] = {"healthy": True, "nodes": {"n0": {"up": True}}}

    async def hello(_request: web.Request) -> web.Response:
        return web.Response(text="hi")

    def health() -> dict[str, Any]:
        if state.get("explode"):
            raise RuntimeError("boom")
        return dict(state)

    app = create_app(health=health, extra_routes=[web.get("/hello", hello)])
    runner, port = await start_http(app, "127.0.0.1", 0)
    yield f"http://127.0.0.1:{port}", state
    await runner.cleanup()


async def test_metrics_parse_and_name_every_metric(served) -> None:
    base, _ = served
    metrics.SHARES.labels(result="accepted").inc()
    metrics.BLOCKS_SUBMITTED.labels(node="n0", result="high-hash").inc()
    metrics.JOB_BROADCAST_SECONDS.observe(0.003)
    async with aiohttp.ClientSession() as session, session.get(f"{base}/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families.keys() >= METRIC_NAMES
    # Other tests in the same process may have counted shares too: look for our label among all.
    share_labels = [s.labels for s in families["gridpool_shares"].samples
                    if s.name == "gridpool_shares_total"]
    assert {"result": "accepted"} in share_labels
    assert families["gridpool_job_broadcast_seconds"].type == "histogram"
    submitted = [s for s in families["gridpool_blocks_submitted"].samples
                 if s.name == "gridpool_blocks_submitted_total"]
    assert {"node": "n0", "result": "high-hash"} in [s.labels for s in submitted]


async def test_readyz_follows_health_and_healthz_stays_alive(served) -> None:
    base, state = served
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/readyz") as resp:
            assert resp.status == 200
            assert (await resp.json())["nodes"]["n0"]["up"] is True
        state["healthy"] = False
        state["nodes"] = {"n0": {"up": False, "state": "unreachable"}}
        async with session.get(f"{base}/readyz") as resp:
            assert resp.status == 503
            assert (await resp.json())["nodes"]["n0"]["state"] == "unreachable"
        async with session.get(f"{base}/healthz") as resp:
            assert resp.status == 200
            body = await resp.json()
            assert body["ready"] is False and body["nodes"]["n0"]["state"] == "unreachable"
        state["explode"] = True
        async with session.get(f"{base}/readyz") as resp:
            assert resp.status == 503
            assert "RuntimeError" in (await resp.json())["error"]
        async with session.get(f"{base}/healthz") as resp:
            assert resp.status == 200
            assert (await resp.json())["ready"] is False
        async with session.get(f"{base}/hello") as resp:
            assert await resp.text() == "hi"


@pytest.mark.parametrize(
    ("reason", "label"),
    [(None, "accepted"), ("high-hash", "high-hash"), ("duplicate", "duplicate"),
     ("error: n0: timeout after 5 s calling submitblock", "error"),
     ("some-new-reason-" + "x" * 50, "other")],
)
def test_submit_result_labels_are_bounded(reason: str | None, label: str) -> None:
    assert metrics.submit_result_label(reason) == label


async def test_readyz_reports_a_node_going_down(make_devnet) -> None:  # type: ignore[no-untyped-def]
    from pool.config import NodeConfig
    from pool.node.nodeset import NodeSet

    devnet = await make_devnet(zmq_port=None, mempool_target=0)
    config = NodeConfig(rpc_url=devnet.rpc_url, name="api-dev", rpc_cookie=devnet.cookie_path)
    async with NodeSet([config], chain="regtest", poll_interval_s=0.1) as nodes:
        runner, port = await start_http(create_app(health=nodes.status), "127.0.0.1", 0)
        url = f"http://127.0.0.1:{port}"
        try:
            async with aiohttp.ClientSession() as session:
                async with session.get(f"{url}/readyz") as resp:
                    assert resp.status == 200
                    body = await resp.json()
                    assert body["template_node"] == "api-dev"
                    assert body["nodes"]["api-dev"]["height"] == devnet.chain.height
                await devnet.stop()
                async with asyncio.timeout(3):
                    while True:  # the 0.1 s poll notices within a few hundred ms
                        if not nodes.healthy:
                            break
                        await asyncio.sleep(0.02)
                async with session.get(f"{url}/readyz") as resp:
                    assert resp.status == 503
                    assert (await resp.json())["nodes"]["api-dev"]["state"] == "unreachable"
                async with session.get(f"{url}/metrics") as resp:
                    text = await resp.text()
            families = {f.name: f for f in text_string_to_metric_families(text)}
            samples = {s.labels["node"]: s.value for s in families["gridpool_node_up"].samples}
            assert samples["api-dev"] == 0
        finally:
            await runner.cleanup()
