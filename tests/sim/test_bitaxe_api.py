"""The ESP-Miner (Bitaxe) HTTP API over real HTTP, checked against ESP-Miner's source
(tests/sim/fixtures/bitaxe_*.json)."""

import asyncio

import aiohttp
import pytest

from miners.sim.miner import PoolConfig, SimulatedMiner
from miners.sim.models import BITAXE_GAMMA
from miners.sim.power import PowerState


@pytest.fixture
async def bitaxe(dead_pool_url):
    m = SimulatedMiner(
        "site2.bx01",
        BITAXE_GAMMA,
        pool=PoolConfig(dead_pool_url, "site2.bx01"),
        seed=5,
    )
    await m.start()
    host, port = m.api_address
    async with aiohttp.ClientSession(
        f"http://{host}:{port}", timeout=aiohttp.ClientTimeout(total=5)
    ) as http:
        yield m, http
    await m.stop()


async def test_system_info_has_the_firmware_fields(bitaxe, load_fixture, same_shape):
    miner, http = bitaxe
    miner.stats.record(accepted=False, difficulty=1.0, reason="Job not found", now=miner.clock())
    async with http.get("/api/system/info") as resp:
        assert resp.status == 200
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        info = await resp.json()
    same_shape(info, load_fixture("bitaxe_system_info.json"))
    assert info["ASICModel"] == "BM1370"
    assert info["hashRate"] == pytest.approx(1200, rel=0.1)  # GH/s
    assert info["power"] == pytest.approx(18, rel=0.1)  # W
    assert (info["stratumURL"], info["stratumPort"]) == miner.pool.host_port
    assert info["stratumUser"] == "site2.bx01" and info["macAddr"] == miner.mac
    assert info["sharesRejectedReasons"] == [{"message": "Job not found", "count": 1}]


async def test_pause_and_resume(bitaxe, load_fixture):
    miner, http = bitaxe
    replies = load_fixture("bitaxe_replies.json")
    async with http.post("/api/system/pause") as resp:
        assert (resp.status, await resp.json()) == (200, replies["pause"]["json"])
    assert miner.power.state is PowerState.STOPPING
    async with http.post("/api/system/resume") as resp:
        assert (resp.status, await resp.json()) == (200, replies["resume"]["json"])
    assert miner.power.state is PowerState.RAMPING

    async with http.post("/api/system/mining", json={"pause": True}) as resp:
        assert (resp.status, await resp.json()) == (200, replies["mining"]["json"])
    async with http.get("/api/system/info") as resp:
        assert (await resp.json())["miningPaused"] is True
    async with http.post("/api/system/mining", json={"pause": "yes"}) as resp:
        assert resp.status == 400 and await resp.text() == replies["mining_bad_field"]["text"]


async def test_patch_settings(bitaxe, load_fixture):
    miner, http = bitaxe
    replies = load_fixture("bitaxe_replies.json")
    async with http.patch("/api/system", json={"frequency": 400, "coreVoltage": 1100}) as resp:
        assert resp.status == 200 and await resp.text() == ""
    assert miner.model.frequency_at(miner.power.target_w) == pytest.approx(400)
    assert miner.power.target_w < BITAXE_GAMMA.nominal_w
    async with http.get("/api/system/info") as resp:
        info = await resp.json()
    assert info["frequency"] == pytest.approx(400) and info["coreVoltage"] == 1100

    async with http.patch("/api/system", data=b"{oops") as resp:
        assert (resp.status, await resp.text()) == (400, replies["patch_invalid_json"]["text"])
    async with http.patch("/api/system", json={"frequency": "fast"}) as resp:
        assert (resp.status, await resp.text()) == (400, replies["patch_wrong_input"]["text"])
    async with http.patch("/api/system", json={"frequency": 500, "stratumPort": 70000}) as resp:
        assert resp.status == 400  # one bad value: nothing is applied
    assert miner.model.frequency_at(miner.power.target_w) == pytest.approx(400)

    async with http.patch("/api/system", json={"stratumURL": "10.0.0.9", "stratumPort": 4444}) as r:
        assert r.status == 200
    assert miner.pool.url == "stratum+tcp://10.0.0.9:4444" and miner.pool.user == "site2.bx01"


async def test_restart_and_unknown_routes(bitaxe, load_fixture):
    miner, http = bitaxe
    replies = load_fixture("bitaxe_replies.json")
    async with http.post("/api/system/restart") as resp:
        assert (resp.status, await resp.json()) == (200, replies["restart"]["json"])
    await asyncio.sleep(0.2)
    assert miner.power.state is PowerState.OFF
    async with http.get("/api/system/nope") as resp:
        assert (resp.status, await resp.json()) == (404, replies["unknown_route"]["json"])

    async with http.get("/api/system/asic") as resp:
        asic = await resp.json()
    assert asic["ASICModel"] == "BM1370" and 525 in asic["frequencyOptions"]


async def test_api_faults(bitaxe):
    miner, http = bitaxe
    miner.update_faults({"api_unresponsive": True})
    with pytest.raises(asyncio.TimeoutError):
        async with http.get("/api/system/info", timeout=aiohttp.ClientTimeout(total=0.5)):
            pass
    miner.update_faults({"api_unresponsive": False, "api_delay_s": 0.3})
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with http.get("/api/system/info") as resp:
        assert resp.status == 200
    assert loop.time() - started >= 0.3


async def test_ignore_sleep_fault_acknowledges_but_keeps_hashing(bitaxe):
    miner, http = bitaxe
    miner.update_faults({"ignore_sleep": True})
    async with http.post("/api/system/pause") as resp:
        assert (await resp.json())["message"] == "Mining paused"
    await asyncio.sleep(BITAXE_GAMMA.shutdown_s + 0.1)
    async with http.get("/api/system/info") as resp:
        info = await resp.json()
    assert info["power"] == pytest.approx(18, rel=0.1) and info["hashRate"] > 1000
    assert miner.power.state is PowerState.MINING
