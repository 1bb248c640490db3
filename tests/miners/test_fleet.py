"""miners.fleet: sweeps over real sockets, the per-miner state machine, and concurrency."""

import asyncio
import time

import pytest

from miners.fleet import MinerState, PollSettings, SiteFleet
from miners.inventory import SiteSpec
from pool.errors import ConfigError

POLL = PollSettings(interval_s=0.2, request_timeout_s=0.4, unreachable_after=2)


def test_concurrency_is_sized_to_finish_a_sweep_within_the_interval():
    settings = PollSettings(interval_s=10, request_timeout_s=3, max_concurrency=4096)
    assert settings.concurrency(10_000) == 3000  # 10,000 x 3 s / 10 s
    assert settings.concurrency(10) == settings.min_concurrency
    assert PollSettings(max_concurrency=500).concurrency(10_000) == 500
    with pytest.raises(ConfigError):
        PollSettings(interval_s=0)


async def test_sweep_reads_every_miner_and_records_each_transition(sim_site):
    spec, sims = await sim_site("F", ["s21", "s19jpro", "m50s", "bitaxe-gamma"])
    fleet = SiteFleet(spec, POLL)
    await fleet.start()
    try:
        stats = await fleet.sweep()
        assert (stats.ok, stats.failed) == (4, 0)
        assert stats.power_w == pytest.approx(3500 + 3068 + 3276 + 18, rel=0.03)
        assert stats.hashrate_hs == pytest.approx((200 + 104 + 126 + 1.2) * 1e12, rel=0.03)
        record = fleet.records["F.m001"]
        assert record.state is MinerState.MINING and record.probed
        first = record.transitions[-1]
        assert (first.old, first.new) == (MinerState.UNKNOWN, MinerState.MINING)
        sims["F.m001"].sleep()
        await fleet.sweep()
        assert record.state is MinerState.SLEEPING
        assert record.since >= first.at and record.transitions[-1].new is MinerState.SLEEPING
        await sims["F.m002"].stop()
        await fleet.sweep()
        assert fleet.records["F.m002"].state is MinerState.MINING  # one failure is not enough
        await fleet.sweep()
        dead = fleet.records["F.m002"]
        assert dead.state is MinerState.UNREACHABLE and dead.failures == 2
        assert "F.m002" in dead.last_error and dead.transitions[-1].reason
        assert fleet.counts()[MinerState.UNREACHABLE] == 1
    finally:
        await fleet.close()


async def test_hung_and_slow_miners_cost_one_deadline_not_the_sweep(sim_site, sim):
    spec, sims = await sim_site("G", ["s21"] * 30 + ["bitaxe-gamma"] * 10)
    for miner_id in ("G.m001", "G.m002", "G.m031"):
        sims[miner_id].update_faults({"api_unresponsive": True})
    sims["G.m003"].update_faults({"api_delay_s": 5.0})
    fleet = SiteFleet(spec, PollSettings(interval_s=0.2, request_timeout_s=0.4,
                                         min_concurrency=8))
    await fleet.start()
    try:
        started = time.monotonic()
        stats = await fleet.sweep()
        elapsed = time.monotonic() - started
        assert stats.failed == 4 and stats.ok == 36
        assert elapsed < 2 * 0.4 + 0.5, elapsed  # probe + read deadlines, not 4 x 2 of them
    finally:
        await fleet.close()


async def test_read_only_firmware_power_is_estimated_from_the_model(sim, to_spec):
    miner = await sim("s19jpro")
    spec = to_spec(miner, "H")
    cgminer_spec = type(spec)(spec.miner_id, "H", spec.model, "cgminer", spec.host, spec.port,
                              spec.worker)
    fleet = SiteFleet(SiteSpec("H", (cgminer_spec,)), POLL)
    await fleet.start()
    try:
        await fleet.sweep()
        record = fleet.records[spec.miner_id]
        assert record.telemetry.power_w is None
        assert record.power_w == pytest.approx(3068, rel=0.1)
        assert record.curve.points == ((3068.0, 104e12),)  # cannot be tuned
    finally:
        await fleet.close()


async def test_a_crashed_miner_comes_back(sim_site):
    spec, sims = await sim_site("K", ["s21"])
    fleet = SiteFleet(spec, PollSettings(interval_s=0.2, request_timeout_s=0.3,
                                         unreachable_after=1))
    await fleet.start()
    try:
        sims["K.m001"].crash(restart_after_s=0.3)
        await asyncio.sleep(0.05)
        await fleet.sweep()
        record = fleet.records["K.m001"]
        assert record.state is MinerState.UNREACHABLE
        await asyncio.sleep(0.4)
        await fleet.sweep()
        assert record.state is MinerState.RAMPING
        assert [t.new for t in record.transitions][-2:] == [MinerState.UNREACHABLE,
                                                            MinerState.RAMPING]
    finally:
        await fleet.close()
