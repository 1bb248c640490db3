"""The LuxOS-style cgminer API over real TCP, checked against replies from the LuxOS docs
(tests/sim/fixtures/luxos_*.json) and cgminer's error envelope."""

import asyncio
import json

import pytest

from miners.sim import luxos_api
from miners.sim.luxos_api import LuxosApi
from miners.sim.miner import PoolConfig, SimulatedMiner
from miners.sim.models import S19J_PRO, S21
from miners.sim.power import PowerState


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def miner(dead_pool_url):
    m = SimulatedMiner(
        "site1.m001",
        S21,
        pool=PoolConfig(dead_pool_url, "site1.m001"),
        seed=1,
    )
    await m.start()
    yield m
    await m.stop()


async def test_version_matches_the_docs(miner, luxos, load_fixture, same_shape):
    reply = await luxos(miner.api_address, {"command": "version"})
    expected = load_fixture("luxos_version.json")
    same_shape(reply, expected)
    assert reply["STATUS"][0]["Code"] == 22 and reply["STATUS"][0]["Msg"] == "LUXminer versions"
    assert reply["VERSION"][0]["Type"] == "Antminer S21"
    assert reply["STATUS"][0]["Description"].startswith("LUXminer ")


async def test_logon_session_curtail_round_trip(miner, luxos, load_fixture, same_shape):
    logon = await luxos(miner.api_address, {"command": "logon"})
    same_shape(logon, load_fixture("luxos_logon.json"))
    assert logon["STATUS"][0]["Code"] == 316
    sid = logon["SESSION"][0]["SessionID"]
    assert len(sid) == 8

    session = await luxos(miner.api_address, {"command": "session"})
    same_shape(session, load_fixture("luxos_session.json"))
    assert session["SESSION"][0]["SessionID"] == sid

    again = await luxos(miner.api_address, {"command": "logon"})
    same_shape(again, load_fixture("luxos_logon_conflict.json"))
    assert again["STATUS"][0]["STATUS"] == "E" and again["STATUS"][0]["Code"] == 402

    sleep = await luxos(miner.api_address, {"command": "curtail", "parameter": f"{sid},sleep"})
    assert sleep == _same_except_when(sleep, load_fixture("luxos_curtail_sleep.json"))
    assert miner.power.state is PowerState.STOPPING

    wake = await luxos(miner.api_address, {"command": "curtail", "parameter": f"{sid},wakeup"})
    assert wake == _same_except_when(wake, load_fixture("luxos_curtail_wakeup.json"))
    assert miner.power.state is PowerState.RAMPING

    bye = await luxos(miner.api_address, {"command": "logoff", "parameter": sid})
    assert bye["STATUS"][0]["STATUS"] == "S"
    denied = await luxos(miner.api_address, {"command": "curtail", "parameter": f"{sid},sleep"})
    assert denied["STATUS"][0]["Code"] == 45


def _same_except_when(actual, expected):
    """The documented reply with our own Description and When (those vary per miner/time)."""
    merged = json.loads(json.dumps(expected))
    for key in ("Description", "When"):
        merged["STATUS"][0][key] = actual["STATUS"][0][key]
    return merged


async def test_privileged_commands_need_a_valid_session(miner, luxos, load_fixture, same_shape):
    expected = load_fixture("cgminer_errors.json")["access_denied"]
    for parameter in (None, "wrongsid,sleep", "sleep"):
        request = {"command": "curtail"} | ({"parameter": parameter} if parameter else {})
        reply = await luxos(miner.api_address, request)
        same_shape(reply, expected)
        assert reply["STATUS"][0] | {"When": 0, "Description": ""} == expected["STATUS"][0] | {
            "When": 0,
            "Description": "",
        }
    assert miner.power.state is PowerState.MINING


@pytest.mark.parametrize(
    ("payload", "case"),
    [
        ({"command": "selfdestruct"}, "invalid_command"),
        (b"{not json", "invalid_json"),
        ({"parameter": "x"}, "missing_command"),
    ],
)
async def test_error_envelopes(miner, luxos, load_fixture, payload, case):
    reply = await luxos(miner.api_address, payload)
    expected = load_fixture("cgminer_errors.json")[case]
    status, want = reply["STATUS"][0], expected["STATUS"][0]
    assert (status["STATUS"], status["Code"], status["Msg"]) == ("E", want["Code"], want["Msg"])
    assert set(reply) == {"STATUS", "id"}


async def test_summary_stats_devs_pools_config_power(miner, luxos, load_fixture, same_shape):
    address = miner.api_address
    summary = await luxos(address, {"command": "summary"})
    assert summary["STATUS"][0]["Code"] == 11
    ghs = summary["SUMMARY"][0]["GHS 5s"]
    assert ghs == pytest.approx(200_000, rel=0.06)
    assert summary["SUMMARY"][0]["MHS av"] == pytest.approx(ghs * 1000, rel=0.01)

    stats = await luxos(address, {"command": "stats"})
    board_stats = stats["STATS"][1]
    assert board_stats["rate_unit"] == "GH"
    assert board_stats["total_rateideal"] == pytest.approx(200_000)
    assert board_stats["chain_acn1"] == S21.chips_per_board and "temp2_3" in board_stats

    devs = await luxos(address, {"command": "devs"})
    assert devs["STATUS"][0]["Msg"] == "3 ASC(s)"
    documented = load_fixture("luxos_asc.json")["ASC"][0]
    shared = {k: v for k, v in documented.items() if k in devs["DEVS"][0]}
    assert len(shared) >= 25  # the documented per-board fields, same names and types
    same_shape(devs["DEVS"][0], shared)

    pools = await luxos(address, {"command": "pools"})
    assert pools["POOLS"][0]["URL"] == miner.pool.url
    assert pools["POOLS"][0]["User"] == "site1.m001"

    config = await luxos(address, {"command": "config"})
    assert (
        config["CONFIG"][0]["MACAddr"] == miner.mac and config["CONFIG"][0]["Profile"] == "default"
    )

    power = await luxos(address, {"command": "power"})
    assert power["POWER"][0]["Watts"] == pytest.approx(3500, rel=0.06)


async def test_multi_command(miner, luxos):
    reply = await luxos(miner.api_address, {"command": "summary+pools"})
    assert set(reply) == {"summary", "pools", "id"}
    assert reply["summary"][0]["STATUS"][0]["Code"] == 11
    assert reply["pools"][0]["POOLS"][0]["POOL"] == 0


async def test_profiles_and_profileset(miner, luxos, load_fixture, same_shape):
    profiles = await luxos(miner.api_address, {"command": "profiles"})
    rows = profiles["PROFILES"]
    assert {"Profile Name", "Watts", "Hashrate", "IsTuned", "Frequency", "Voltage"} <= set(rows[0])
    lowest = rows[0]
    sid = (await luxos(miner.api_address, {"command": "logon"}))["SESSION"][0]["SessionID"]

    reply = await luxos(
        miner.api_address, {"command": "profileset", "parameter": f"{sid},{lowest['Profile Name']}"}
    )
    same_shape(reply, load_fixture("luxos_profileset.json"))
    assert (
        reply["STATUS"][0]["Code"] == 321
        and reply["PROFILE"][0]["Profile"] == lowest["Profile Name"]
    )
    assert miner.power.target_w == lowest["Watts"]

    by_power = await luxos(
        miner.api_address, {"command": "profileset", "parameter": f"{sid},3000W"}
    )
    chosen = by_power["PROFILE"][0]["Profile"]
    watts = {r["Profile Name"]: r["Watts"] for r in rows}
    assert watts[chosen] <= 3000 and all(w > 3000 or w <= watts[chosen] for w in watts.values())
    config = await luxos(miner.api_address, {"command": "config"})
    assert config["CONFIG"][0]["Profile"] == chosen

    bad = await luxos(miner.api_address, {"command": "profileset", "parameter": f"{sid},turbo"})
    assert bad["STATUS"][0]["STATUS"] == "E"


async def test_sleep_drops_reported_power_to_sleep_power(luxos):
    clock = FakeClock()
    miner = SimulatedMiner("site1.m002", S19J_PRO, clock=clock, seed=2)
    api = LuxosApi(miner)
    sid = json.loads(api.handle(b'{"command":"logon"}'))["SESSION"][0]["SessionID"]
    api.handle(json.dumps({"command": "curtail", "parameter": f"{sid},sleep"}).encode())
    clock.now += S19J_PRO.shutdown_s
    power = json.loads(api.handle(b'{"command":"power"}'))["POWER"][0]["Watts"]
    assert power == pytest.approx(S19J_PRO.sleep_w, rel=0.06)
    summary = json.loads(api.handle(b'{"command":"summary"}'))["SUMMARY"][0]
    assert summary["GHS 5s"] == 0


async def test_sessions_expire_after_a_minute_of_disuse():
    clock = FakeClock()
    api = LuxosApi(SimulatedMiner("site1.m003", S21, clock=clock, seed=3))
    sid = json.loads(api.handle(b'{"command":"logon"}'))["SESSION"][0]["SessionID"]
    clock.now += luxos_api.SESSION_TTL_S + 1
    reply = json.loads(
        api.handle(json.dumps({"command": "curtail", "parameter": f"{sid},sleep"}).encode())
    )
    assert reply["STATUS"][0]["Code"] == 45
    assert json.loads(api.handle(b'{"command":"logon"}'))["STATUS"][0]["Code"] == 316


async def test_slow_and_unresponsive_api_faults(miner, luxos):
    miner.update_faults({"api_delay_s": 0.3})
    loop = asyncio.get_running_loop()
    started = loop.time()
    await luxos(miner.api_address, {"command": "version"})
    assert loop.time() - started >= 0.3

    miner.update_faults({"api_delay_s": 0.0, "api_unresponsive": True})
    with pytest.raises(TimeoutError):
        await luxos(miner.api_address, {"command": "version"}, deadline_s=0.5)

    miner.update_faults({"api_unresponsive": False})
    assert (await luxos(miner.api_address, {"command": "version"}))["id"] == 1


async def test_oversized_request_is_dropped(miner):
    reader, writer = await asyncio.open_connection(*miner.api_address)
    writer.write(b'{"command": "' + b"x" * (luxos_api.MAX_REQUEST_BYTES + 10))
    await writer.drain()
    async with asyncio.timeout(5):
        assert await reader.read() == b""
    writer.close()
