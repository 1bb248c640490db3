"""Helpers shared by the simulator tests: fixtures from the real firmware docs and a
one-request cgminer API client."""

import asyncio
import dataclasses
import json
from pathlib import Path

import pytest
from stratum.harness import client_factory, pool_factory  # the full pool (PoolApp), devnet

__all__ = ["client_factory", "pool_factory"]

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str):
    return json.loads((FIXTURES / name).read_text())


async def luxos_call(address, payload, *, deadline_s: float = 5.0) -> dict:
    """Send one request as real tools do (write, keep the socket open) and read to NUL/EOF."""
    host, port = address
    async with asyncio.timeout(deadline_s):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            writer.write(data)
            await writer.drain()
            raw = await reader.read()
        finally:
            writer.close()
    assert raw.endswith(b"\x00"), "cgminer replies end with a NUL byte"
    return json.loads(raw[:-1])


def assert_same_shape(actual, expected, path="$"):
    """Same keys at every level and the same JSON types (numbers are interchangeable)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: {actual!r} is not an object"
        assert set(actual) >= set(expected), f"{path}: missing {set(expected) - set(actual)}"
        for key, value in expected.items():
            assert_same_shape(actual[key], value, f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and actual, f"{path}: expected a non-empty list"
        assert_same_shape(actual[0], expected[0], f"{path}[0]")
    elif isinstance(expected, bool):
        assert isinstance(actual, bool), f"{path}: {actual!r} is not a boolean"
    elif isinstance(expected, int | float):
        assert isinstance(actual, int | float) and not isinstance(actual, bool), (
            f"{path}: {actual!r} is not a number"
        )
    else:
        assert isinstance(actual, type(expected)), f"{path}: {actual!r} is not {type(expected)}"


async def wait_until_true(predicate, timeout_s: float, step_s: float = 0.05) -> None:
    """Poll `predicate` until it holds (TimeoutError after timeout_s)."""
    async with asyncio.timeout(timeout_s):
        while True:
            if predicate():
                return
            await asyncio.sleep(step_s)


@pytest.fixture
def wait_until():
    return wait_until_true


@pytest.fixture
def load_fixture():
    return fixture


@pytest.fixture
def luxos():
    return luxos_call


@pytest.fixture
def same_shape():
    return assert_same_shape


class StaticTemplates:
    """A TemplateSource with one fixed regtest template (no bitcoind needed): the shares are
    validated by the pool's real Stratum server and share validator."""

    def __init__(self) -> None:
        import time

        self.gbt = {
            "version": 0x20000000,
            "previousblockhash": "11" * 32,
            "transactions": [],
            "coinbasevalue": 50 * 100_000_000,
            "bits": "207fffff",
            "curtime": int(time.time()),
            "mintime": int(time.time()) - 600,
            "height": 101,
        }

    async def get_block_template(self) -> dict:
        return dict(self.gbt)

    def on_new_tip(self, callback) -> None:
        pass


@dataclasses.dataclass
class PoolHarness:
    url: str
    server: object
    shares: list  # accepted pool.shares.Share objects, in arrival order

    def worker_shares(self, worker: str, since: float = 0.0) -> list:
        return [s for s in self.shares if s.worker == worker and s.received_s >= since]


@pytest.fixture
async def pool_at():
    """Start a real Stratum server (pinned difficulty) on an ephemeral port: pool_at(diff)."""
    from pool.jobs import JobManager, JobSettings
    from pool.stratum.server import StratumServer
    from pool.stratum.settings import StratumSettings
    from pool.stratum.usernames import PayoutPolicy

    started = []

    async def start(difficulty: float) -> PoolHarness:
        settings = StratumSettings(
            listen=("127.0.0.1:0",),
            start_difficulty=difficulty,
            min_difficulty=difficulty,
            max_difficulty=difficulty,
        )
        jobs = JobManager(
            StaticTemplates(),
            JobSettings(),
            chain="regtest",
            extranonce2_size=settings.extranonce2_size,
            simulated_difficulty=1e12,  # no share is a block
        )
        shares: list = []

        async def submit(block_hex: str) -> dict:
            return {"static": "inconclusive"}

        server = StratumServer(
            settings,
            jobs,
            payout=PayoutPolicy("regtest", pool_script=b"\x00\x14" + bytes(20)),
            submit=submit,
            simulated=True,
            on_share=shares.append,
        )
        await jobs.start()
        await server.start()
        started.append((server, jobs))
        host, port = server.addresses[0]
        return PoolHarness(f"stratum+tcp://{host}:{port}", server, shares)

    yield start
    for server, jobs in started:
        await server.stop()
        await jobs.stop()


@pytest.fixture
async def dead_pool_url():
    """A pool URL that accepts TCP and hangs up at once (the miner keeps retrying)."""

    async def hang_up(_reader, writer):
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    host, port = server.sockets[0].getsockname()[:2]
    yield f"stratum+tcp://{host}:{port}"
    server.close()
