"""The reusable Stratum client's own behaviour against the pool's real Stratum server:
pacing by elapsed time when shares are frequent, and the public hooks the simulator uses
(on_solution, on_connect / connects, retired_job_ids)."""

import asyncio
import time

import pytest

from miners.sim.stratum_client import PACE_SLICE_S, StratumClient

RATE_HS = 200_000.0  # real sha256d: about 1 % of a core with the native scanner
SHARES_PER_S = 40.0  # four per pacing slice (the old loop under-hashed); < the pool's 50 msg/s
WINDOW_S = 10.0  # 400 expected shares: Poisson sd 5 %, so ±20 % is 4 sigma


def difficulty_for(shares_per_s: float) -> float:
    return RATE_HS / shares_per_s / 2**32


@pytest.fixture
async def started():
    """started(pool, username, **kwargs) -> a StratumClient mining on its own (stopped at
    teardown)."""
    clients = []

    async def start(pool, username: str, **kwargs) -> StratumClient:
        host, port = pool.url.removeprefix("stratum+tcp://").rsplit(":", 1)
        client = StratumClient(host, int(port), username, reconnect_delay_s=0.1, **kwargs)
        clients.append(client)
        client.start()
        return client

    yield start
    for client in clients:
        await client.stop()


async def test_paced_client_grinds_its_rate_however_often_shares_come(
    pool_at, started, wait_until
):
    assert SHARES_PER_S * PACE_SLICE_S >= 4
    pool = await pool_at(difficulty_for(SHARES_PER_S))
    client = await started(pool, "acct.paced", hashrate_hs=lambda: RATE_HS)
    await wait_until(lambda: pool.worker_shares("acct.paced"), 10.0)
    start_s = pool.worker_shares("acct.paced")[0].received_s
    hashes_before, t0 = client.stats.hashes, time.monotonic()
    await asyncio.sleep(WINDOW_S + 0.5)
    ground = (client.stats.hashes - hashes_before) / (time.monotonic() - t0)
    window = [s for s in pool.worker_shares("acct.paced", since=start_s)
              if start_s < s.received_s < start_s + WINDOW_S]
    # The pool's own accounting: credited difficulty of the accepted shares.
    measured_hs = sum(s.difficulty for s in window) * 2**32 / WINDOW_S
    print(f"shares={len(window)} pool={measured_hs:.0f} H/s client={ground:.0f} H/s")
    assert ground == pytest.approx(RATE_HS, rel=0.05)  # the pacing itself: no noise
    assert measured_hs == pytest.approx(RATE_HS, rel=0.20)


async def test_on_solution_decides_what_is_submitted(pool_at, started, wait_until):
    pool = await pool_at(difficulty_for(20.0))
    seen = []

    def twice(solution):
        seen.append(solution)
        return [solution, solution]  # the second is a duplicate

    client = await started(pool, "acct.dup", hashrate_hs=lambda: RATE_HS, on_solution=twice)
    await wait_until(lambda: client.stats.rejected >= 5, 10.0)
    assert set(client.stats.errors) == {22}  # duplicate share
    accepted = pool.worker_shares("acct.dup")
    assert len(accepted) <= len(seen) and {s.hash_le for s in accepted} <= {
        s.hash_le for s in seen
    }

    dropped = await started(pool, "acct.none", hashrate_hs=lambda: RATE_HS,
                            on_solution=lambda solution: [])
    await asyncio.sleep(1.0)  # ~20 finds
    assert dropped.stats.hashes > RATE_HS * 0.5 and not pool.worker_shares("acct.none")


async def test_on_connect_counts_every_connection(pool_at, started, wait_until):
    pool = await pool_at(difficulty_for(20.0))
    calls = []
    client = await started(pool, "acct.re", hashrate_hs=lambda: RATE_HS,
                           on_connect=lambda: calls.append(time.monotonic()))
    await wait_until(lambda: client.connects == 1 and client.job is not None, 10.0)
    await client.close()  # the run loop reconnects on its own
    await wait_until(lambda: client.connects == 2 and client.connected, 10.0)
    assert len(calls) == 2


async def test_retired_job_ids_follow_new_tips(devnet, pool_factory, client_factory):
    app = await pool_factory([devnet])
    client = await client_factory(app, "acct.tips")
    await client.wait_for(lambda: client.job is not None)
    first = client.job.job_id
    assert client.retired_job_ids == ()
    await devnet.generate(1)
    await client.wait_for(lambda: client.job.job_id != first)
    assert client.retired_job_ids[0] == first
    assert client.job.job_id not in client.retired_job_ids
