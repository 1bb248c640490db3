"""NodeSet against real embedded devnets (bitcoind's RPC and ZMQ on loopback): new-tip
notification by ZMQ and by polling, failover, submission to every node, a node that stops
and comes back on the same port and datadir, wrong chain, bad auth."""

import asyncio
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import structlog
from prometheus_client import REGISTRY

from pool.config import NodeConfig
from pool.devnet import Devnet
from pool.devnet.miner import block_from_template
from pool.errors import NodeError
from pool.node.nodeset import NodeSet

SECRET = "devnet-Secret-pw-42"
PAY_SPK = bytes.fromhex("0014") + bytes(20)  # P2WPKH to an all-zero key hash


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def node_up_metric(name: str) -> float | None:
    return REGISTRY.get_sample_value("gridpool_node_up", {"node": name})


async def wait_for(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while True:
            if predicate():
                return
            await asyncio.sleep(0.02)


def cookie_node(devnet: Devnet, name: str, *, zmq: bool = False) -> NodeConfig:
    return NodeConfig(rpc_url=devnet.rpc_url, name=name, rpc_cookie=devnet.cookie_path,
                      zmq_hashblock=devnet.zmq_endpoint if zmq else None, timeout_s=5.0)


class Tips:
    """A tip callback that records every hash it is called with."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def __call__(self, hash_hex: str) -> None:
        self.seen.append(hash_hex)


DevnetFactory = Callable[..., Awaitable[Devnet]]


async def quiet_devnet(make_devnet: DevnetFactory, **kwargs) -> Devnet:  # type: ignore[no-untyped-def]
    """A devnet from the shared `make_devnet` fixture, without mempool or ZMQ unless asked
    (these tests are about the chain tip, not transactions)."""
    kwargs.setdefault("zmq_port", None)
    kwargs.setdefault("mempool_target", 0)
    return await make_devnet(**kwargs)


async def test_zmq_hashblock_fires_on_new_tip_once(make_devnet: DevnetFactory) -> None:
    devnet = await quiet_devnet(make_devnet, zmq_port=0)
    tips = Tips()
    # A 60 s safety-net poll: anything seen within the test came through ZMQ.
    nodes = NodeSet([cookie_node(devnet, "z", zmq=True)], chain="regtest",
                    zmq_poll_interval_s=60)
    nodes.on_new_tip(tips)
    async with nodes:
        assert nodes.healthy and nodes.template_node == "z"
        await wait_for(lambda: nodes.status()["nodes"]["z"]["zmq_connected"] is True)
        await asyncio.sleep(0.3)  # let the subscription reach the publisher (slow joiner)
        (new_hash,) = await devnet.generate(1)
        await wait_for(lambda: tips.seen == [new_hash], timeout_s=3)
        await asyncio.sleep(0.5)
        assert tips.seen == [new_hash]  # once, although ZMQ and the probe both saw it
        await wait_for(lambda: nodes.status()["nodes"]["z"]["height"] == devnet.chain.height)


async def test_polling_fires_without_zmq(make_devnet: DevnetFactory) -> None:
    devnet = await quiet_devnet(make_devnet)
    tips = Tips()
    nodes = NodeSet([cookie_node(devnet, "p")], chain="regtest", poll_interval_s=0.5)
    nodes.on_new_tip(tips)
    async with nodes:
        assert tips.seen == []  # the tip at start is not announced
        (first,) = await devnet.generate(1)
        await wait_for(lambda: tips.seen == [first], timeout_s=2)
        second, third = await devnet.generate(2)
        await wait_for(lambda: tips.seen[-1] == third, timeout_s=2)
        await asyncio.sleep(0.7)
        assert tips.seen in ([first, third], [first, second, third])
        status = nodes.status()["nodes"]["p"]
        assert status["height"] == devnet.chain.height and status["best_hash"] == third


async def test_templates_from_second_node_when_first_is_down(make_devnet: DevnetFactory) -> None:
    first = await quiet_devnet(make_devnet)
    second = await quiet_devnet(make_devnet)
    configs = [cookie_node(first, "first"), cookie_node(second, "second")]
    await first.stop()
    async with NodeSet(configs, chain="regtest") as nodes:
        assert nodes.healthy and nodes.template_node == "second"
        template = await nodes.get_block_template()
        assert template["previousblockhash"] == second.chain.tip.hash_hex
        assert template["height"] == second.chain.height + 1
        assert "!segwit" in template["rules"]  # BIP 9 "!": the client must understand it
        status = nodes.status()
        assert status["nodes"]["first"]["state"] == "unreachable"
        assert "unreachable" in status["nodes"]["first"]["last_error"]
        assert node_up_metric("first") == 0 and node_up_metric("second") == 1
        header = await nodes.get_block_header(template["previousblockhash"])
        assert header["height"] == second.chain.height


async def test_submit_block_goes_to_every_node(make_devnet: DevnetFactory) -> None:
    a = await quiet_devnet(make_devnet)
    b = await quiet_devnet(make_devnet)

    def submitted(node: str, result: str) -> float:
        labels = {"node": node, "result": result}
        return REGISTRY.get_sample_value("gridpool_blocks_submitted_total", labels) or 0.0

    async with NodeSet([cookie_node(a, "sa"), cookie_node(b, "sb")], chain="regtest") as nodes:
        before = submitted("sa", "accepted")
        assert await nodes.submit_block("00" * 40) == {
            "sa": "Block decode failed", "sb": "Block decode failed"}
        block_hex = block_from_template(await nodes.get_block_template(), PAY_SPK).hex()
        results = await nodes.submit_block(block_hex)
        assert results["sa"] is None  # accepted by the node whose template it was built on
        assert isinstance(results["sb"], str) and results["sb"]  # b lacks the parent block
        again = await nodes.submit_block(block_hex)
        assert again["sa"] == "duplicate"
        assert submitted("sa", "accepted") == before + 1
        assert submitted("sa", "duplicate") >= 1


async def test_node_stops_and_comes_back(make_devnet: DevnetFactory, tmp_path: Path) -> None:
    rpc_port = free_port()
    devnet = await quiet_devnet(make_devnet, datadir=tmp_path / "r", rpc_port=rpc_port)
    config = NodeConfig(rpc_url=devnet.rpc_url, name="restart", rpc_cookie=devnet.cookie_path,
                        timeout_s=2.0)
    tips = Tips()
    nodes = NodeSet([config], chain="regtest", poll_interval_s=0.2, max_backoff_s=0.5)
    nodes.on_new_tip(tips)
    async with nodes:
        assert node_up_metric("restart") == 1
        await devnet.stop()
        await wait_for(lambda: not nodes.healthy, timeout_s=3)
        status = nodes.status()
        assert status["healthy"] is False
        assert status["nodes"]["restart"]["state"] == "unreachable"
        assert node_up_metric("restart") == 0
        with pytest.raises(NodeError, match="no healthy node"):
            await nodes.get_block_template()
        # same datadir and port: a new cookie, which the client must re-read
        revived = await quiet_devnet(make_devnet, datadir=tmp_path / "r", rpc_port=rpc_port)
        await wait_for(lambda: nodes.healthy, timeout_s=3)
        assert node_up_metric("restart") == 1
        (new_hash,) = await revived.generate(1)
        await wait_for(lambda: new_hash in tips.seen, timeout_s=3)
        assert (await nodes.get_block_template())["previousblockhash"] == new_hash


async def test_wrong_chain_is_reported(make_devnet: DevnetFactory) -> None:
    devnet = await quiet_devnet(make_devnet)
    async with NodeSet([cookie_node(devnet, "wc")], chain="signet") as nodes:
        status = nodes.status()
        assert status["healthy"] is False
        node = status["nodes"]["wc"]
        assert node["state"] == "wrong_chain" and node["chain"] == "regtest"
        assert "signet" in node["last_error"]
        assert node_up_metric("wc") == 0
        with pytest.raises(NodeError, match="wrong_chain"):
            await nodes.get_block_template()


async def test_bad_auth_is_reported_without_the_secret(make_devnet: DevnetFactory) -> None:
    devnet = await quiet_devnet(make_devnet, rpc_user="pool", rpc_password=SECRET)
    wrong = SECRET + "-wrong"
    good = NodeConfig(rpc_url=devnet.rpc_url, name="good", rpc_user="pool", rpc_password=SECRET)
    bad = NodeConfig(rpc_url=devnet.rpc_url, name="bad", rpc_user="pool", rpc_password=wrong)
    with structlog.testing.capture_logs() as logs:
        async with NodeSet([bad, good], chain="regtest") as nodes:
            status = nodes.status()
            assert status["nodes"]["bad"]["state"] == "bad_auth"
            assert "401" in status["nodes"]["bad"]["last_error"]
            assert status["nodes"]["good"]["up"] is True
            assert nodes.template_node == "good"
            text = repr(status) + repr(nodes.status())
    down = [e for e in logs if e["event"] == "node_down"]
    assert down and down[0]["node"] == "bad" and "auth" in down[0]["error"]
    assert wrong not in repr(logs) and SECRET not in repr(logs)
    assert wrong not in text and SECRET not in text


async def test_zmq_resubscribes_after_node_restart(
    make_devnet: DevnetFactory, tmp_path: Path
) -> None:
    rpc_port, zmq_port = free_port(), free_port()
    ports = {"datadir": tmp_path / "z", "rpc_port": rpc_port, "zmq_port": zmq_port}
    devnet = await quiet_devnet(make_devnet, **ports)
    tips = Tips()
    # No safety-net poll within the test: the new tip can only arrive over ZMQ.
    nodes = NodeSet([cookie_node(devnet, "zr", zmq=True)], chain="regtest",
                    zmq_poll_interval_s=60)
    nodes.on_new_tip(tips)

    def zmq_connected() -> bool:
        return nodes.status()["nodes"]["zr"]["zmq_connected"] is True

    async with nodes:
        await wait_for(zmq_connected)
        await devnet.stop()
        await wait_for(lambda: not zmq_connected())
        revived = await quiet_devnet(make_devnet, **ports)
        await wait_for(zmq_connected)
        await asyncio.sleep(0.3)  # subscription reaches the new publisher
        (new_hash,) = await revived.generate(1)
        await wait_for(lambda: tips.seen == [new_hash], timeout_s=3)
        # the ZMQ message also triggered an RPC refresh (with the new cookie)
        await wait_for(lambda: nodes.status()["nodes"]["zr"]["height"] == revived.chain.height)
