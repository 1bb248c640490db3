"""Each fault mode does what it says, against the pool's real Stratum server."""

import asyncio
import dataclasses

import pytest

from miners.sim.faults import Faults
from miners.sim.miner import PoolConfig, SimulatedMiner
from miners.sim.models import S21
from miners.sim.power import PowerState

SCALE = 1000.0
FAST = dataclasses.replace(S21, key="s21-fast-ramp", wake_ramp_s=2.0, shutdown_s=0.5)


def difficulty_for(shares_per_s: float) -> float:
    return FAST.nominal_ths * SCALE / shares_per_s / 2**32


@pytest.fixture
async def run_miner(pool_at):
    """run_miner(shares_per_s, **faults) -> (miner, pool), stopped at teardown."""
    miners = []

    async def run(shares_per_s: float, **faults):
        pool = await pool_at(difficulty_for(shares_per_s))
        name = f"site1.f{len(miners):03d}"
        miner = SimulatedMiner(
            name,
            FAST,
            pool=PoolConfig(pool.url, name),
            hash_scale=SCALE,
            faults=Faults.from_mapping(faults),
        )
        miners.append(miner)
        await miner.start()
        return miner, pool

    yield run
    for miner in miners:
        await miner.stop()


async def test_invalid_shares_are_rejected_as_low_difficulty(run_miner, wait_until):
    miner, pool = await run_miner(5.0, invalid_share_rate=1.0)
    await wait_until(lambda: miner.stats.rejected >= 3, 10.0)
    assert miner.stats.accepted == 0 and not pool.shares
    assert any("difficulty" in reason.lower() for reason in miner.stats.rejected_reasons)


async def test_duplicate_shares_are_rejected_as_duplicates(run_miner, wait_until):
    miner, _pool = await run_miner(5.0, duplicate_share_rate=1.0)
    await wait_until(lambda: miner.stats.rejected >= 3, 10.0)
    assert miner.stats.accepted >= 3
    assert any("duplicate" in reason.lower() for reason in miner.stats.rejected_reasons)
    assert miner.stratum_client.stats.errors.get(22, 0) == miner.stats.rejected


async def test_stale_shares_are_rejected_as_job_not_found(run_miner, wait_until):
    miner, _pool = await run_miner(5.0, stale_share_rate=1.0)
    await wait_until(lambda: miner.stats.rejected >= 3, 10.0)
    assert miner.stats.accepted == 0 and miner.stats.stale == miner.stats.rejected
    assert set(miner.stratum_client.stats.errors) == {21}


async def test_reconnect_loop_drops_and_reopens_the_connection(run_miner, wait_until):
    miner, pool = await run_miner(10.0, reconnect_every_s=0.7)
    await wait_until(lambda: miner.stratum_connects >= 3, 10.0)
    count = len(pool.shares)
    await wait_until(lambda: len(pool.shares) > count, 5.0)  # still mining between drops


async def test_ignore_sleep_keeps_submitting(run_miner, wait_until):
    miner, pool = await run_miner(10.0, ignore_sleep=True)
    await wait_until(lambda: len(pool.shares) >= 3, 10.0)
    assert miner.sleep()
    await asyncio.sleep(FAST.shutdown_s + 0.3)
    count = len(pool.shares)
    await wait_until(lambda: len(pool.shares) > count + 3, 5.0)
    assert miner.power.state is PowerState.MINING and miner.sleep_requested


async def test_slow_ramp_takes_longer_to_reach_full_power(run_miner):
    miner, _pool = await run_miner(10.0, slow_ramp_factor=3.0)
    miner.sleep()
    await asyncio.sleep(FAST.shutdown_s + 0.1)
    miner.wake()
    await asyncio.sleep(FAST.wake_ramp_s + 0.2)
    assert miner.power.state is PowerState.RAMPING
    assert miner.power.hash_fraction() == pytest.approx((FAST.wake_ramp_s + 0.2) / 6.0, abs=0.1)


async def test_crash_takes_everything_down_then_reboots(run_miner, wait_until):
    miner, pool = await run_miner(10.0)
    await wait_until(lambda: len(pool.shares) >= 3, 10.0)
    address = miner.api_address
    miner.crash(restart_after_s=1.0)
    await wait_until(lambda: not miner.stratum_connected, 2.0)
    with pytest.raises(OSError):
        _, writer = await asyncio.open_connection(*address)
        writer.close()
    assert miner.telemetry().power_w == 0.0
    count = len(pool.shares)
    await wait_until(lambda: miner.stratum_connected and not miner.crashed, 5.0)
    assert miner.api_address == address  # the API comes back on the same port
    await wait_until(lambda: len(pool.shares) > count, 10.0)


async def test_crash_after_config_fault(run_miner, wait_until):
    miner, _pool = await run_miner(10.0, crash_after_s=0.3)
    await wait_until(lambda: miner.crashed, 3.0)
    await asyncio.sleep(0.3)
    assert miner.power.state is PowerState.OFF and not miner.stratum_connected
