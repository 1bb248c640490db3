"""Node faults with real devnets: a node stopped and restarted, and two nodes on one chain
with one down (templates from the other, blocks submitted to both)."""

from __future__ import annotations

import asyncio
import shutil
from urllib.parse import urlsplit

from pool import metrics

DETECT_S = 15.0  # NodeSet polls every 5 s with ZMQ, re-probes with back-off up to 10 s


async def eventually(predicate, timeout_s: float = DETECT_S) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110 - state owned by the pool, no event to wait on
            await asyncio.sleep(0.05)


def ports(devnet) -> dict[str, int]:
    return {
        "rpc_port": urlsplit(devnet.rpc_url).port,
        "zmq_port": int(devnet.zmq_endpoint.rsplit(":", 1)[1]),
    }


async def test_node_stopped_and_restarted(make_devnet, pool_factory, client_factory):
    devnet = await make_devnet()
    app = await pool_factory([devnet])
    client = await client_factory(app)
    datadir, bound = devnet.datadir, ports(devnet)
    await devnet.stop()
    await eventually(lambda: not app.health()["healthy"])
    assert app.health()["nodes"]["devnet0"]["up"] is False
    assert app.health()["nodes"]["devnet0"]["last_error"]
    # Sessions stay; a share is still a share. Its block cannot reach the node: the
    # answer is logged and counted, the miner's share is accepted.
    assert client.connected and len(app.stratum.sessions) == 1
    assert await client.submit(client.find_solution())
    assert app.blocks[0]["results"]["devnet0"].startswith("error")

    restarted = await make_devnet(datadir=datadir, **bound)
    await eventually(lambda: app.health()["healthy"])
    mark = len(client.messages)
    await restarted.generate(1)
    await client.wait_for(
        lambda: any(
            m["method"] == "mining.notify" and m["params"][8] for m in list(client.messages)[mark:]
        ),
        timeout_s=10,
    )
    height = restarted.chain.height
    await client.wait_for(lambda: app.jobs.current.template.height == height + 1)
    assert await client.submit(client.find_solution(job=client.job))
    assert restarted.chain.height == height + 1  # mining resumed on the restarted node
    assert client.connected


async def test_two_nodes_one_down(make_devnet, pool_factory, client_factory, tmp_path):
    # Two devnets on one chain: B starts from a copy of A's data directory.
    first = await make_devnet(datadir=tmp_path / "a")
    await first.stop()
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    node_a = await make_devnet(datadir=tmp_path / "a")
    node_b = await make_devnet(datadir=tmp_path / "b")
    assert node_a.chain.tip.hash_hex == node_b.chain.tip.hash_hex
    app = await pool_factory([node_a, node_b])
    client = await client_factory(app)

    height = node_a.chain.height
    assert await client.submit(client.find_solution())
    await eventually(lambda: node_b.chain.height == height + 1)
    assert node_a.chain.tip.hash_hex == node_b.chain.tip.hash_hex  # submitted to both
    assert set(app.blocks[0]["results"].values()) == {"accepted"}

    await node_a.stop()
    await eventually(lambda: app.nodes.template_node == "devnet1")
    await client.wait_for(lambda: app.jobs.current.template.height == height + 2)
    await client.wait_for(lambda: client.job.job_id == app.jobs.current.job_id)
    assert await client.submit(client.find_solution(job=client.job))
    assert node_b.chain.height == height + 2  # the template came from B, B took the block
    results = app.blocks[0]["results"]
    assert results["devnet1"] == "accepted" and results["devnet0"].startswith("error")
    assert metrics.BLOCKS_SUBMITTED.labels(node="devnet0", result="error")._value.get() >= 1
