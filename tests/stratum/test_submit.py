"""mining.submit over real TCP: every rejection path returns its code, and a difficulty
change between notify and submit never rejects a share that met the lower difficulty."""

from __future__ import annotations

import dataclasses

import pytest
from stratum.harness import TEST_DIFFICULTY

from miners.sim.stratum_client import StratumClient, StratumClientError
from pool import metrics

NO_BLOCKS = {"simulated_difficulty": 1e9}  # shares stay shares: the tip does not move


async def rejected(client: StratumClient, params: list, *, method: str = "mining.submit") -> int:
    with pytest.raises(StratumClientError) as info:
        await client.request(method, params)
    return info.value.code


def share_count(result: str) -> float:
    return metrics.SHARES.labels(result=result)._value.get()


async def test_submit_before_subscribe_is_25(devnet, pool_factory, client_factory):
    app = await pool_factory([devnet])
    client = await client_factory(app, handshake=False)
    assert await rejected(client, ["acct.rig1", "1", "00" * 8, "00000000", "00000000"]) == 25


async def test_unauthorized_worker_is_24(devnet, pool_factory, client_factory):
    app = await pool_factory([devnet], network=NO_BLOCKS)
    client = await client_factory(app)
    solution = client.find_solution()
    before = share_count("unauthorized")
    assert await rejected(client, solution.submit_params("acct.other")) == 24
    assert share_count("unauthorized") == before + 1
    assert await client.submit(solution)  # the authorized worker's is fine


async def test_malformed_shares_are_20(devnet, pool_factory, client_factory):
    app = await pool_factory([devnet], network=NO_BLOCKS)
    client = await client_factory(app)
    job = client.job
    good = client.find_solution().submit_params(client.username)
    cases = {
        "extranonce2 too short": [*good[:2], "00" * 7, *good[3:]],
        "extranonce2 too long": [*good[:2], "00" * 9, *good[3:]],
        "ntime before mintime": [*good[:3], f"{job.ntime - 86400:08x}", *good[4:]],
        "ntime too far ahead": [*good[:3], f"{job.ntime + 7201:08x}", *good[4:]],
        "version bits outside the mask": [*good[:5], "00001000"],
        "nonce not hex": [*good[:4], "xyzxyzxy", *good[5:]],
        "too few params": good[:4],
        "too many params": [*good, "00"],
        "params not a list": "nope",
    }
    for name, params in cases.items():
        assert await rejected(client, params) == 20, name
    assert await client.request("mining.submit", good)  # the connection still works


async def test_duplicate_and_low_difficulty(devnet, pool_factory, client_factory):
    app = await pool_factory([devnet], network=NO_BLOCKS)
    client = await client_factory(app)
    solution = client.find_solution()
    assert await client.submit(solution)
    assert await rejected(client, solution.submit_params(client.username)) == 22
    low = dataclasses.replace(solution, nonce=solution.nonce ^ 1)
    assert await rejected(client, low.submit_params(client.username)) == 23


async def test_version_rolled_resubmission_is_not_a_duplicate(devnet, pool_factory, client_factory):
    # At the smallest difficulty every hash is a share, so one (extranonce2, ntime, nonce)
    # can be resubmitted with other version bits: a different header, not a duplicate.
    app = await pool_factory([devnet], network=NO_BLOCKS, stratum={"min_difficulty": 1e-12})
    client = await client_factory(app, suggest_difficulty=1e-12)
    params = client.find_solution().submit_params(client.username)
    others = [bits for bits in ("00000000", "00002000", "1fffe000") if bits != params[5]]
    assert await client.request("mining.submit", params)
    assert await client.request("mining.submit", [*params[:5], others[0]])
    assert await client.request("mining.submit", [*params[:5], others[1]])
    assert await rejected(client, [*params[:5], others[0]]) == 22


async def test_stale_after_a_new_block_is_21(devnet, pool_factory, client_factory):
    app = await pool_factory([devnet], network=NO_BLOCKS)
    client = await client_factory(app)
    old = client.find_solution()
    notifies = client.methods_received().count("mining.notify")
    await devnet.generate(1)
    # Empty job, then the full one: the old tip's jobs are gone after that grace job.
    await client.wait_for(lambda: client.methods_received().count("mining.notify") >= notifies + 2)
    before = share_count("stale")
    assert await rejected(client, old.submit_params(client.username)) == 21
    assert share_count("stale") == before + 1
    assert await client.submit(client.find_solution())  # work on the new tip is fine


async def test_unknown_job_is_21(devnet, pool_factory, client_factory):
    app = await pool_factory([devnet], network=NO_BLOCKS)
    client = await client_factory(app)
    params = client.find_solution().submit_params(client.username)
    assert await rejected(client, [params[0], "deadbeef", *params[2:]]) == 21


async def test_difficulty_change_between_notify_and_submit(devnet, pool_factory, client_factory):
    app = await pool_factory([devnet], network=NO_BLOCKS)
    client = await client_factory(app)
    old_job = client.job
    # Mined at the difficulty the job came with, but weaker than the coming one.
    solutions = []
    while len(solutions) < 2:
        solution = client.find_solution()
        if solution.hash_difficulty < 1e-2:
            solutions.append(solution)
    await client.request("mining.suggest_difficulty", [1e-2])  # raise it 100x
    await client.wait_for(lambda: client.difficulty == 1e-2)
    assert await client.submit(solutions[0])  # judged at the lower: accepted
    # A job sent after the change carries the new difficulty: weak shares on it are low.
    await app.jobs.refresh()
    await client.wait_for(lambda: client.job.job_id != old_job.job_id)
    weak = client.find_solution(difficulty=TEST_DIFFICULTY)
    while weak.hash_difficulty >= 1e-2:
        weak = client.find_solution(difficulty=TEST_DIFFICULTY)
    assert await rejected(client, weak.submit_params(client.username)) == 23
    assert await client.submit(solutions[1])  # the old job still remembers its difficulty
    # Lowering the difficulty never hurts: a share meeting the new, lower one is accepted.
    await client.request("mining.suggest_difficulty", [TEST_DIFFICULTY / 100])
    await client.wait_for(lambda: client.difficulty == TEST_DIFFICULTY / 100)
    assert await client.submit(client.find_solution())
