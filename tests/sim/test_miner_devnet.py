"""A simulated miner against the whole pool (PoolApp) on the embedded devnet: the shares it
finds on real templates (with transactions and a witness commitment) are accepted."""

from miners.sim.miner import PoolConfig, SimulatedMiner
from miners.sim.models import S21

SCALE = 1000.0


async def test_simulated_s21_shares_are_accepted_by_the_pool(devnet, pool_factory, wait_until):
    difficulty = S21.nominal_ths * SCALE / 10 / 2**32  # ~10 shares/s
    app = await pool_factory(
        [devnet],
        network={"simulated_difficulty": 1e9},  # no share is a block: the chain stays put
        stratum={d: difficulty for d in ("start_difficulty", "min_difficulty", "max_difficulty")},
    )
    host, port = app.stratum.addresses[0]
    miner = SimulatedMiner(
        "site1.m001",
        S21,
        pool=PoolConfig(f"stratum+tcp://{host}:{port}", "site1.m001"),
        hash_scale=SCALE,
    )
    await miner.start()
    try:
        await wait_until(lambda: miner.stats.accepted >= 10, 20.0)
    finally:
        await miner.stop()
    assert miner.stats.rejected == 0
    assert app.shares_accepted >= 10
    assert miner.stats.pool_difficulty == difficulty
