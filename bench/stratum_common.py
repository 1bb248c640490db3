"""Shared set-up for the Stratum benchmarks: the pool in this process (one asyncio loop,
i.e. one core), the devnet as `gridpool devnet` in a second process (as bitcoind would be),
the load generator (`miners/sim/loadgen.py`, the one behind `gridpool sim loadgen`) in a
third."""

from __future__ import annotations

import asyncio
import contextlib
import resource
import signal
import sys
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from miners.sim.loadgen import bench_stratum_settings
from pool.app import PoolApp
from pool.config import parse_config
from pool.node.rpc import RPCClient

PAYOUT_ADDRESS = "bcrt1qdavt4j2sd7dlhqsavtnfxvzppw6k7qy97tmnu9"
REPORT_LIMIT_BYTES = 256 * 1024 * 1024  # the listen report: one JSON line, all receipts


@dataclass(slots=True)
class DevnetProcess:
    rpc: RPCClient
    zmq_endpoint: str

    async def generate(self, blocks: int) -> list[str]:
        return await self.rpc.call("generatetoaddress", blocks, PAYOUT_ADDRESS)


@contextlib.asynccontextmanager
async def run_devnet(datadir: Path) -> AsyncIterator[tuple[DevnetProcess, dict[str, str]]]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pool.cli", "devnet", "--datadir", str(datadir), "--rpc-port",
        "0", "--zmq-port", "0", "--log-level", "warning", stdout=asyncio.subprocess.PIPE)
    try:
        assert process.stdout is not None
        lines: dict[str, str] = {}
        async with asyncio.timeout(120):
            while len(lines) < 3:
                key, _, value = (await process.stdout.readline()).decode().strip().partition(": ")
                lines[key] = value
        rpc = RPCClient(lines["rpc_url"], cookie_path=Path(lines["cookie"]))
        try:
            yield DevnetProcess(rpc, lines["zmq"]), lines
        finally:
            await rpc.close()
    finally:
        process.send_signal(signal.SIGINT)
        try:
            async with asyncio.timeout(10):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()


@contextlib.asynccontextmanager
async def devnet_and_pool(
    sessions: int, *, blocks: bool = False
) -> AsyncIterator[tuple[DevnetProcess, PoolApp]]:
    with tempfile.TemporaryDirectory(prefix="gridpool-bench-") as tmp:
        async with run_devnet(Path(tmp) / "devnet") as (devnet, lines):
            raw = {
                "network": {"chain": "regtest",
                            **({} if blocks else {"simulated_difficulty": 1e12})},
                "node": [{"name": "devnet", "rpc_url": lines["rpc_url"],
                          "rpc_cookie": lines["cookie"], "zmq_hashblock": lines["zmq"]}],
                "stratum": bench_stratum_settings(sessions),
                "payout": {"address": PAYOUT_ADDRESS},
                "log": {"level": "warning"},
                "data_dir": str(Path(tmp) / "pool"),
            }
            app = PoolApp(parse_config(raw), http=False)
            await app.start()
            try:
                async with asyncio.timeout(30):
                    while app.jobs is None or app.jobs.current is None:  # noqa: ASYNC110
                        await asyncio.sleep(0.05)
                yield devnet, app
            finally:
                await app.stop(drain=False)


async def spawn_load(app: PoolApp, *args: str) -> asyncio.subprocess.Process:
    """The load generator against the pool's first listener, in its own process."""
    host, port = app.stratum.addresses[0]
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "miners.sim.loadgen", "--pool", f"stratum+tcp://{host}:{port}",
        *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=REPORT_LIMIT_BYTES,
    )


def rss_bytes() -> int:
    """Resident set size of this process now (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]
