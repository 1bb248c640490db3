"""The load generator against the whole pool (PoolApp on the devnet, bench settings: every
hash is a share): it reaches its set rate, reports latency, and merges several processes."""

import asyncio
import json
import sys
from pathlib import Path

import pytest

from miners.sim.loadgen import (
    BENCH_DIFFICULTY,
    LatencyHistogram,
    LoadGenerator,
    LoadSettings,
    bench_stratum_settings,
    merge_reports,
)

NO_BLOCKS = {"simulated_difficulty": 1e12}  # with every hash a share, every share meets regtest


@pytest.fixture
async def bench_pool(devnet, pool_factory):
    """A pool in bench mode: (host, port, app)."""
    app = await pool_factory([devnet], network=NO_BLOCKS, stratum=bench_stratum_settings(400))
    host, port = app.stratum.addresses[0]
    return host, port, app


async def test_reaches_its_set_rate_against_the_pool(bench_pool):
    host, port, app = bench_pool
    settings = LoadSettings(host, port, connections=200, rate=5.0, seconds=5.0, warmup_s=1.0)
    report = await LoadGenerator(settings).run()
    print(json.dumps({k: v for k, v in report.items() if k != "latency_histogram"}))
    assert report["target_shares_per_s"] == 1000.0
    assert report["shares_per_s"] == pytest.approx(1000.0, rel=0.10)
    assert report["rejected"] == 0 and report["skipped"] == 0
    assert report["accepted"] == pytest.approx(5000, rel=0.10)
    latency = report["latency_ms"]
    assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"] < 5000
    assert report["connections_lost"] == 0
    assert app.shares_accepted >= report["accepted"]  # the pool's own count (with warm-up)


async def test_closed_loop_keeps_its_window_in_flight(bench_pool):
    host, port, _app = bench_pool
    settings = LoadSettings(host, port, connections=20, rate=0, window=2, seconds=1.0,
                            warmup_s=0.3)
    gen = LoadGenerator(settings)
    report = await gen.run()
    assert report["accepted"] > 100 and report["rejected"] == 0
    assert report["window"] == 2 and report["target_shares_per_s"] is None
    assert max(len(s.in_flight) for s in gen.sessions) <= 2


async def test_low_difficulty_pool_rejects_every_share(devnet, pool_factory):
    # A pool whose minimum difficulty is above the bench difficulty: every share is too low.
    assert BENCH_DIFFICULTY < 1e-3
    stratum = bench_stratum_settings(20) | {"min_difficulty": 1e-3, "start_difficulty": 1e-3}
    app = await pool_factory([devnet], network=NO_BLOCKS, stratum=stratum)
    host, port = app.stratum.addresses[0]
    settings = LoadSettings(host, port, connections=10, rate=10.0, seconds=1.0, warmup_s=0.2)
    report = await LoadGenerator(settings).run()
    assert report["accepted"] == 0 and report["rejected"] > 50
    assert set(report["errors"]) == {"23"}  # low difficulty


async def test_gridpool_sim_loadgen_with_two_processes(bench_pool):
    host, port, _app = bench_pool
    gridpool = Path(sys.executable).parent / "gridpool"
    process = await asyncio.create_subprocess_exec(
        str(gridpool), "sim", "loadgen", "--pool", f"stratum+tcp://{host}:{port}",
        "--connections", "40", "--rate", "10", "--seconds", "2", "--warmup", "0.5",
        "--processes", "2", "--json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode == 0, err.decode()[-2000:]
    report = json.loads(out.splitlines()[-1])
    assert report["processes"] == 2 and report["connections"] == 40
    assert report["target_shares_per_s"] == 400.0
    assert report["shares_per_s"] == pytest.approx(400.0, rel=0.15)
    assert sum(report["latency_histogram"]["counts"]) == report["accepted"]


def test_latency_histogram_percentiles_and_merge():
    a, b = LatencyHistogram(), LatencyHistogram()
    for ms in range(1, 101):
        (a if ms % 2 else b).record(ms / 1000)
    a.merge(b)
    assert a.total == 100 and a.max_s == pytest.approx(0.1)
    assert a.percentile(0.5) == pytest.approx(0.050, rel=0.05)
    assert a.percentile(0.99) == pytest.approx(0.099, rel=0.05)
    assert a.percentile(1.0) == pytest.approx(0.1)
    assert LatencyHistogram().percentile(0.5) == 0.0


def test_merge_reports_adds_counts():
    one = {"connections": 2, "submitted": 10, "accepted": 9, "rejected": 1, "skipped": 0,
           "shares_per_s": 4.5, "connections_lost": 0, "target_shares_per_s": 5.0,
           "seconds": 2.0, "connect_s": 0.1, "errors": {"23": 1},
           "latency_histogram": {"counts": [1] + [0] * (LatencyHistogram.SIZE - 1),
                                 "max_s": 1e-6}}
    merged = merge_reports([one, one | {"errors": {"22": 2}}])
    assert merged["accepted"] == 18 and merged["shares_per_s"] == 9.0
    assert merged["target_shares_per_s"] == 10.0 and merged["processes"] == 2
    assert merged["errors"] == {"23": 1, "22": 2}
