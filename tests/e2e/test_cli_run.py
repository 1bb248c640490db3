"""`gridpool run` as a real process: it prints where to point a miner, a miner mines a
block through it, and SIGTERM drains (client.reconnect) and exits cleanly; with no config
it is the demo: a simulated fleet in three sites whose shares and blocks the pool shows."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from miners.sim.fleet import Fleet, FleetSpec
from miners.sim.stratum_client import StratumClient
from pool.cli_run import (
    DEMO_FLEET_HASHRATE_HS,
    DEMO_SIMULATED_DIFFICULTY,
    DEMO_STRATUM,
    demo_config,
)
from pool.ledger.store import open_ledger

CONFIG = """
data_dir = "{data_dir}"
[network]
chain = "regtest"
[stratum]
listen = ["127.0.0.1:0"]
min_difficulty = 1e-9
start_difficulty = 1e-4
[http]
listen = "127.0.0.1:0"
[log]
level = "warning"
"""


async def read_banner(stream: asyncio.StreamReader, timeout_s: float = 30) -> str:
    lines = []
    async with asyncio.timeout(timeout_s):
        while not lines or not lines[-1].startswith("Ctrl-C"):
            line = await stream.readline()
            assert line, "gridpool run exited before printing its banner"
            lines.append(line.decode().rstrip())
    return "\n".join(lines)


async def test_run_mines_and_drains_on_sigterm(tmp_path: Path):
    config = tmp_path / "gridpool.toml"
    config.write_text(CONFIG.format(data_dir=tmp_path / "data"))
    gridpool = Path(sys.executable).parent / "gridpool"
    process = await asyncio.create_subprocess_exec(
        str(gridpool),
        "run",
        "--config",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        banner = await read_banner(process.stdout)
        assert "embedded devnet" in banner and "Username" in banner
        host, port = re.search(r"stratum\+tcp://([\d.]+):(\d+)", banner).groups()
        client = StratumClient(host, int(port), "acct.rig1", suggest_difficulty=1e-4)
        await client.connect()
        await client.handshake()
        await client.wait_for(lambda: client.job is not None and client.difficulty)
        assert await client.submit(client.find_solution())
        process.send_signal(signal.SIGTERM)
        await client.wait_for(lambda: "client.reconnect" in client.methods_received())
        async with asyncio.timeout(20):
            assert await process.wait() == 0
        await client.close()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_run_reports_config_errors_with_the_key(tmp_path: Path):
    config = tmp_path / "bad.toml"
    config.write_text("[stratum]\nextranonce2_size = 12\n")
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "gridpool"),
        "run",
        "--config",
        str(config),
        stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
    )
    _, stderr = await process.communicate()
    assert process.returncode == 2
    assert b"stratum.extranonce2_size" in stderr


def test_zero_config_is_a_regtest_demo_with_simulated_blocks():
    config = demo_config()
    assert config.network.chain == "regtest" and not config.nodes  # the embedded devnet
    assert config.stratum.listen == ("127.0.0.1:3333",) and config.http.listen.endswith(":8080")
    assert config.network.simulated_difficulty == DEMO_SIMULATED_DIFFICULTY
    # About one block a minute for a 2 MH/s demo fleet.
    assert 50 < DEMO_SIMULATED_DIFFICULTY * 2**32 / 2e6 < 70
    assert config.stratum.min_difficulty < config.stratum.start_difficulty < 0.01


def test_demo_min_difficulty_lets_the_smallest_miner_share_every_10_s():
    fleet = Fleet(FleetSpec(pool_url="stratum+tcp://127.0.0.1:1",
                            fleet_rate_hs=DEMO_FLEET_HASHRATE_HS))
    slowest_hs = min(m.real_hashrate_hs() for m in fleet.miners.values())
    assert DEMO_STRATUM["min_difficulty"] * 2**32 / slowest_hs < 10.0  # seconds per share


BLOCK_INTERVAL_S = 4.0  # the test's demo: a simulated block every ~4 s instead of ~60 s
WAIT_S = 40.0  # for shares from every site, a block, and a hash-rate window
RATE_WINDOW_S = 15.0  # at least this long between the hash-rate readings
HASHRATE_TOLERANCE = 0.35  # ~5 sigma: 150 miners x 1 share/10 s over 15 s (docs/simulator.md)


async def scrape(http: aiohttp.ClientSession, base: str) -> dict[tuple, float]:
    async with http.get(f"{base}/metrics") as response:
        text = await response.text()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.mark.slow
async def test_zero_config_run_mines_with_a_simulated_fleet_in_three_sites(tmp_path: Path):
    data = tmp_path / "data"
    stderr = (tmp_path / "gridpool.log").open("wb")  # a file: 150 miners log a lot
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "gridpool"), "run", "--data-dir", str(data),
        "--stratum-port", "0", "--http-port", "0", "--block-interval", str(BLOCK_INTERVAL_S),
        stdout=asyncio.subprocess.PIPE, stderr=stderr,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    ledger = open_ledger(f"sqlite:///{data / 'ledger.db'}")
    try:
        banner = await read_banner(process.stdout, timeout_s=60)
        base = re.search(r"(http://[\d.]+:\d+)/ \(dashboard\)", banner).group(1)
        inventory = Path(re.search(r"inventory \(every miner's API address\) (\S+)",
                                   banner).group(1))
        admin = re.search(r"admin API \(faults on demand\) (\S+)", banner).group(1)
        assert inventory == data / "sim-inventory.json"
        sites = json.loads(await asyncio.to_thread(inventory.read_text))["sites"]
        assert [s["id"] for s in sites] == ["site1", "site2", "site3"]
        assert all(len(s["miners"]) == 50 for s in sites)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            async with http.get(admin) as response:
                assert len(await response.json()) == 150
            await check_pool_sees_the_fleet(http, base, ledger)
        status = await process.stdout.readline()  # the demo's status line, every 10 s
        assert b"shares accepted" in status and b"blocks found" in status, status
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            assert await process.wait() == 0
    finally:
        await ledger.close()
        if process.returncode is None:
            process.kill()
            await process.wait()
        stderr.close()


async def check_pool_sees_the_fleet(http, base: str, ledger) -> None:
    """Shares from all three sites in the pool's ledger, a simulated block accepted by the
    devnet, and the pool's hash rate (accepted difficulty x 2^32 / s) near the fleet's."""
    first = None
    deadline = time.monotonic() + WAIT_S
    while True:
        metrics = await scrape(http, base)
        work = metrics.get(("gridpool_share_difficulty_total", ()), 0.0)
        if first is None and work > 0:
            first = (time.monotonic(), work)
        async with http.get(f"{base}/api/pool") as response:
            blocks = (await response.json())["blocks"]
        per_site = {row.site: row.shares for row in
                    await ledger.share_stats(since=0, group_by=("site",))}
        window = time.monotonic() - first[0] if first else 0.0
        if blocks and all(per_site.get(s) for s in ("site1", "site2", "site3")) \
                and window >= RATE_WINDOW_S:
            break
        assert time.monotonic() < deadline, (blocks, per_site, window)
        await asyncio.sleep(1.0)
    rate_hs = (work - first[1]) * 2**32 / window
    print(f"sites={per_site} blocks={len(blocks)} pool_rate={rate_hs:.0f} H/s")
    assert rate_hs == pytest.approx(DEMO_FLEET_HASHRATE_HS, rel=HASHRATE_TOLERANCE)
    assert blocks[0]["simulated"] and blocks[0]["results"] == {"devnet": "accepted"}
    assert metrics[("gridpool_blocks_submitted_total",
                    (("node", "devnet"), ("result", "accepted")))] >= 1
    # Scraped after the ledger was read: the fleet keeps mining, so an earlier scrape could trail
    # the ledger's count; every share in the ledger was accepted and counted by then.
    metrics = await scrape(http, base)
    assert metrics[("gridpool_shares_total", (("result", "accepted"),))] >= sum(
        per_site.values())
