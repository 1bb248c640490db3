"""The pool's work gate on the devnet with real Stratum clients: a starved worker gets no
new jobs (its old work goes stale when the tip moves) while others mine on; released, it
gets a clean job at once. The admin HTTP routes driven by the fleet controller's real
`HttpWorkGate`, and refused without the admin token. The fleet controller wired to the
pool's gate: a simulated miner that ignores sleep mines on, but its shares go stale."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest
from stratum.harness import BASE_STRATUM, POOL_ADDRESS, node_table

from miners.allocate import AllocationSettings
from miners.compliance import ControlSettings
from miners.controller import FleetController
from miners.fleet import PollSettings
from miners.inventory import KNOWN_MODELS, MinerSpec, SiteSpec
from miners.sim import models as sim_models
from miners.sim.miner import PoolConfig, SimulatedMiner
from miners.sim.stratum_client import StratumClient, StratumClientError
from miners.workgate import HttpWorkGate
from pool.app import PoolApp
from pool.config import parse_config

NO_BLOCKS = {"simulated_difficulty": 1e9}  # shares stay shares: only generate() moves the tip
ADMIN_TOKEN = "workgate-test-admin-token"
WORKER_A = "sim.siteA.m001"  # full usernames: account sim, site siteA / siteB
WORKER_B = "sim.siteB.m001"
WAIT_S = 5.0


def notifies(client: StratumClient) -> int:
    return client.methods_received().count("mining.notify")


def last(client: StratumClient, method: str) -> list:
    return next(m["params"] for m in reversed(client.messages) if m["method"] == method)


async def until(predicate: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def rejected_code(client: StratumClient, params: list) -> int:
    with pytest.raises(StratumClientError) as info:
        await client.request("mining.submit", params)
    return info.value.code


async def test_a_starved_worker_gets_no_jobs_until_released(devnet, pool_factory, client_factory):
    app = await pool_factory([devnet], network=NO_BLOCKS)
    a = await client_factory(app, WORKER_A)
    b = await client_factory(app, WORKER_B)
    old_a = a.find_solution()  # work on the current tip, found before the starve

    app.workgate.starve(WORKER_A, "ignores sleep")
    await a.wait_for(lambda: "client.show_message" in a.methods_received())
    assert "ignores sleep" in last(a, "client.show_message")[0]
    assert app.workgate.is_starved(WORKER_A) and not app.workgate.is_starved(WORKER_B)
    assert "client.show_message" not in b.methods_received()

    a_before, b_before = notifies(a), notifies(b)
    await devnet.generate(1)
    # B gets the empty job, then the full one; the old tip's jobs are gone after that.
    await b.wait_for(lambda: notifies(b) >= b_before + 2)
    await asyncio.sleep(0.2)  # A would have had the same notifies by now
    assert notifies(a) == a_before
    assert await rejected_code(a, old_a.submit_params(WORKER_A)) == 21
    assert await b.submit(b.find_solution())  # B mines on
    # a reconnecting starved miner gets no job either
    again = await client_factory(app, WORKER_A, handshake=False)
    await again.handshake()
    await asyncio.sleep(0.2)
    assert "mining.notify" not in again.methods_received()

    app.workgate.release(WORKER_A)
    await a.wait_for(lambda: notifies(a) == a_before + 1)
    assert last(a, "mining.notify")[8] is True  # clean: drop whatever it had
    assert a.job.job_id == b.job.job_id
    assert await a.submit(a.find_solution())
    await again.wait_for(lambda: again.job is not None)


def test_gate_refuses_names_that_are_no_username() -> None:
    from pool.errors import WorkGateError
    from pool.workgate import PoolWorkGate

    gate = PoolWorkGate(max_workers=1)
    for bad in ("", "a/b", "x" * 129, "acct.rig 1", "acct!.rig1"):
        with pytest.raises(WorkGateError):
            gate.starve(bad, "r")
    gate.starve("acct.rig1", "r\nsecond line")
    assert gate.get("acct.rig1").reason == "r second line"
    with pytest.raises(WorkGateError, match="at most 1"):
        gate.starve("acct.rig2", "r")
    gate.starve("acct.rig1", "again")  # a starved one may be starved again
    gate.release("acct.rig2")  # not starved: a no-op
    gate.release("acct.rig1")
    assert len(gate) == 0 and not gate.blocks(["acct.rig1"])


@pytest.fixture
async def http_pool(devnet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                    ) -> AsyncIterator[PoolApp]:
    monkeypatch.setenv("GRIDPOOL_ADMIN_TOKEN", ADMIN_TOKEN)
    app = PoolApp(parse_config({
        "network": {"chain": "regtest", **NO_BLOCKS},
        "node": [node_table(devnet)],
        "stratum": BASE_STRATUM,
        "jobs": {"refresh_interval_s": 30.0},
        "payout": {"address": POOL_ADDRESS},
        "http": {"listen": "127.0.0.1:0"},
        "data_dir": str(tmp_path / "pool"),
    }))
    await app.start()
    yield app
    await app.stop(drain=False)


async def post(session: aiohttp.ClientSession, url: str, token: str | None) -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with session.post(url, json={"reason": "x"}, headers=headers) as resp:
        return resp.status, await resp.json()


async def test_http_gate_with_the_controllers_client(http_pool: PoolApp, client_factory):
    app = http_pool
    api = f"http://127.0.0.1:{app.http_port}/api"
    a = await client_factory(app, WORKER_A)
    a_before = notifies(a)
    gate = HttpWorkGate(api, token=ADMIN_TOKEN, timeout_s=2.0)
    wrong = HttpWorkGate(api, token="not-the-admin-token", timeout_s=2.0)
    await gate.start()
    await wrong.start()
    try:
        gate.starve(WORKER_A, "ignores sleep (3 attempts)")
        await until(lambda: app.workgate.is_starved(WORKER_A), "the starve call")
        assert app.workgate.get(WORKER_A).reason == "ignores sleep (3 attempts)"
        await a.wait_for(lambda: "client.show_message" in a.methods_received())
        wrong.release(WORKER_A)  # refused (403): the gate keeps the worker starved
        await asyncio.sleep(0.3)
        assert app.workgate.is_starved(WORKER_A)
        gate.release(WORKER_A)
        await a.wait_for(lambda: notifies(a) == a_before + 1)
        assert last(a, "mining.notify")[8] is True and not app.workgate.is_starved(WORKER_A)
    finally:
        await gate.close()
        await wrong.close()

    async with aiohttp.ClientSession() as session:
        status, body = await post(session, f"{api}/workers/{WORKER_B}/starve", None)
        assert status == 401 and body["field"] == "Authorization"
        status, body = await post(session, f"{api}/workers/{WORKER_B}/starve", "wrong")
        assert status == 403 and body["error"] == "forbidden"
        status, body = await post(session, f"{api}/workers/a%2Fb/starve", ADMIN_TOKEN)
        assert status == 400 and body["field"] == "worker"
        assert not app.workgate.is_starved(WORKER_B) and len(app.workgate) == 0
        status, body = await post(session, f"{api}/workers/{WORKER_B}/starve", ADMIN_TOKEN)
        assert status == 200 and body["starved"] and body["reason"] == "x"
        async with session.get(f"{api}/pool") as resp:
            assert (await resp.json())["workgate"]["starved"] == 1


# ---- the fleet controller wired to the pool's gate ----------------------------------------

POLL = PollSettings(interval_s=0.25, request_timeout_s=0.4, unreachable_after=1)
CONTROL = ControlSettings(command_timeout_s=1.0, comply_grace_s=0.3, retry_backoff_s=0.1,
                          retry_backoff_max_s=0.4, max_attempts=3, readback_margin_s=0.05,
                          plan_interval_s=0.1)
ALLOCATION = AllocationSettings(min_on_s=0.0, min_off_s=0.5, wake_step_miners=8,
                                wake_step_interval_s=0.3)
SHARE_DIFFICULTY = 3e-6  # the pool's max_difficulty: several shares a second per sim miner


async def sim_miner(key: str, miner_id: str, pool_url: str) -> tuple[SimulatedMiner, MinerSpec]:
    """A simulated miner mining at the pool as `sim.{miner_id}` (a full username, also its
    inventory `worker`), with fast sleep/wake and its tuning range cut to 70-100 %."""
    base = sim_models.get_model(key)
    model = dataclasses.replace(base, wake_ramp_s=0.6, shutdown_s=0.3,
                                min_w=round(0.7 * base.nominal_w, 1))
    worker = f"sim.{miner_id}"
    miner = SimulatedMiner(miner_id, model, worker=worker, pool=PoolConfig(pool_url, worker))
    await miner.start()
    known = dataclasses.replace(KNOWN_MODELS[key], min_w=model.min_w,
                                wake_ramp_s=model.wake_ramp_s, shutdown_s=model.shutdown_s)
    host, port = miner.api_address
    return miner, MinerSpec(miner_id, miner_id.split(".")[0], known, model.api, host, port,
                            worker)


async def test_controller_starves_a_miner_that_ignores_sleep(devnet, pool_factory):
    app = await pool_factory([devnet], network=NO_BLOCKS,
                             stratum={"max_difficulty": SHARE_DIFFICULTY,
                                      "start_difficulty": SHARE_DIFFICULTY})
    host, port = app.stratum.addresses[0]
    url = f"stratum+tcp://{host}:{port}"
    liar, liar_spec = await sim_miner("s19jpro", "A.m001", url)  # least efficient: slept first
    honest, honest_spec = await sim_miner("s21", "A.m002", url)
    fleet = FleetController([SiteSpec("A", (liar_spec, honest_spec), worker_prefix="sim.A.")],
                            poll=POLL, control=CONTROL, allocation=ALLOCATION,
                            gate=app.workgate)
    await fleet.start()
    task = asyncio.create_task(fleet.run())
    try:
        await until(lambda: liar.stats.accepted > 0 and honest.stats.accepted > 0,
                    "both miners' first shares")
        liar.update_faults({"ignore_sleep": True})
        site = fleet.site("A")
        fleet.set_budget("A", site.budget_w * 0.6)
        # three sends, each with its compliance window and back-off (~2 s), then the starve
        await until(lambda: app.workgate.is_starved(liar_spec.worker), "the starve", 10.0)
        assert "ignores sleep" in app.workgate.get(liar_spec.worker).reason
        assert site.controls["A.m001"].starved and liar.power.state.value == "mining"
        client = liar.stratum_client
        assert client is not None
        await client.wait_for(lambda: "client.show_message" in client.methods_received())

        await devnet.generate(1)  # the tip moves: the liar's last job goes stale
        stale = liar.stats.stale
        await until(lambda: liar.stats.stale > stale, "the liar's stale shares")
        accepted, stale = liar.stats.accepted, liar.stats.stale
        await until(lambda: liar.stats.stale >= stale + 2, "more stale shares")
        assert liar.stats.accepted == accepted  # nothing it finds is accepted any more
        assert liar.power.state.value == "mining"  # still hashing, for nothing
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await fleet.close()
        await asyncio.gather(liar.stop(), honest.stop(), return_exceptions=True)
