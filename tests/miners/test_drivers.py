"""Drivers over real sockets against the simulator's firmware APIs (LuxOS-style TCP 4028,
plain cgminer reads, ESP-Miner HTTP), including sessions, deadlines and dead miners."""

import asyncio
import time

import pytest

from miners.drivers import cgminer_api
from miners.drivers.base import MinerDriver, ReportedState, curve_for
from miners.drivers.bitaxe import BitaxeDriver
from miners.drivers.cgminer import CgminerDriver
from miners.drivers.luxos import SESSION_TTL_S, LuxosDriver
from miners.errors import (
    DriverUnavailableError,
    MinerCommandError,
    MinerProtocolError,
    MinerTimeoutError,
    MinerUnreachableError,
    UnsupportedCommandError,
)
from miners.inventory import KNOWN_MODELS

TIMEOUT_S = 0.5


def luxos(miner, **kw) -> LuxosDriver:
    return LuxosDriver(miner.miner_id, *miner.api_address, timeout_s=TIMEOUT_S, **kw)


async def test_luxos_reads_profiles_and_telemetry(sim):
    miner = await sim("s21")
    driver = luxos(miner)
    assert isinstance(driver, MinerDriver)
    caps = await driver.probe()
    assert caps.can_sleep and caps.can_tune and caps.reports_power
    watts = [w for w, _ in caps.operating_points]
    assert watts == sorted(watts) and 3500 in watts and len(watts) > 5
    t = await driver.read()
    assert t.state is ReportedState.MINING and not t.sleep_requested
    assert t.power_w == pytest.approx(3500, rel=0.05)
    assert t.hashrate_hs == pytest.approx(200e12, rel=0.05)
    assert len(t.temps_c) == 3 and all(20 < c < 100 for c in t.temps_c)
    assert t.power_target_w == 3500  # the "default" profile
    curve = curve_for(KNOWN_MODELS["s21"], caps)
    assert curve.max_w == 3500 and curve.min_w >= 1400


async def test_luxos_power_target_sleep_and_wake_share_one_session(sim):
    miner = await sim("s19jpro")
    driver = luxos(miner)
    await driver.probe()
    applied = await driver.set_power_target(2000)
    assert applied <= 2000 and miner.power.target_w == applied
    assert (await driver.read()).power_target_w == applied
    await driver.sleep()
    t = await driver.read()
    assert t.state is ReportedState.SLEEPING and t.sleep_requested
    await asyncio.sleep(0.35)  # the shortened shutdown
    assert (await driver.read()).power_w == pytest.approx(45, rel=0.1)
    await driver.wake()
    assert (await driver.read()).state is ReportedState.RAMPING
    await asyncio.sleep(0.7)
    t = await driver.read()
    assert t.state is ReportedState.MINING and t.power_w == pytest.approx(applied, rel=0.05)
    assert driver.logons == 1
    await driver.close()
    assert miner._api_server.api.session_id == ""  # logged off for the operator's tools


async def test_luxos_recovers_a_lost_session_and_adopts_an_active_one(sim, raw):
    miner = await sim("m50s")
    driver = luxos(miner)
    await driver.sleep()
    sid = (await raw(miner.api_address, "session"))["SESSION"][0]["SessionID"]
    await raw(miner.api_address, "logoff", sid)  # an operator kills our session...
    tool = await raw(miner.api_address, "logon")  # ...and opens their own
    assert tool["STATUS"][0]["Code"] == 316
    await driver.wake()  # 45 access denied -> logon -> 402 -> session -> adopt -> retry
    assert driver.logons == 2 and not miner.sleep_requested


async def test_luxos_session_expiry_is_tracked_on_our_clock(sim):
    miner = await sim("s21")
    now = [1000.0]
    driver = luxos(miner, clock=lambda: now[0])
    await driver.sleep()
    now[0] += SESSION_TTL_S  # we believe it expired; the miner's clock says it is still open
    await driver.wake()
    assert driver.logons == 2  # logged on again (402) and adopted the open session


async def test_luxos_deadlines_and_dead_miners(sim):
    slow = await sim("s21", faults={"api_delay_s": 2.0})
    hung = await sim("s21", faults={"api_unresponsive": True})
    for miner in (slow, hung):
        started = time.monotonic()
        with pytest.raises(MinerTimeoutError):
            await luxos(miner).read()
        assert time.monotonic() - started < TIMEOUT_S + 0.3
    dead = await sim("s21")
    address = dead.api_address
    await dead.stop()
    with pytest.raises(MinerUnreachableError):
        await LuxosDriver("dead", *address, timeout_s=TIMEOUT_S).sleep()


async def test_cgminer_driver_only_reads(sim):
    miner = await sim("s19jpro")
    driver = CgminerDriver(miner.miner_id, *miner.api_address, timeout_s=TIMEOUT_S)
    caps = await driver.probe()
    assert not caps.can_sleep and not caps.can_tune and not caps.reports_power
    t = await driver.read()
    assert t.power_w is None and t.state is ReportedState.MINING
    assert t.hashrate_hs == pytest.approx(104e12, rel=0.05)
    assert len(t.temps_c) == 6  # temp<i> and temp2_<i> of three boards
    for command in (driver.sleep(), driver.wake(), driver.set_power_target(1000)):
        with pytest.raises(UnsupportedCommandError):
            await command
    assert KNOWN_MODELS["s19jpro"].estimate_power(t.hashrate_hs) == pytest.approx(3068, rel=0.1)


async def test_bitaxe_reads_tunes_pauses_and_resumes(sim):
    miner = await sim("bitaxe-gamma")
    driver = BitaxeDriver(miner.miner_id, *miner.api_address, model=KNOWN_MODELS["bitaxe-gamma"],
                          timeout_s=TIMEOUT_S)
    try:
        caps = await driver.probe()
        watts = [w for w, _ in caps.operating_points]
        assert 18.0 in [round(w, 3) for w in watts] and min(watts) < 15
        t = await driver.read()
        assert t.state is ReportedState.MINING and t.power_w == pytest.approx(18, rel=0.1)
        assert t.hashrate_hs == pytest.approx(1.2e12, rel=0.1)
        assert t.power_target_w == pytest.approx(18.0, rel=0.01)
        applied = await driver.set_power_target(15.0)
        assert applied <= 15.0 and miner.power.target_w == pytest.approx(applied, rel=0.001)
        assert (await driver.read()).power_target_w == pytest.approx(applied, rel=0.01)
        await driver.sleep()
        t = await driver.read()
        assert t.state is ReportedState.SLEEPING and t.sleep_requested
        await asyncio.sleep(0.35)  # hashboards off
        assert (await driver.read()).power_w == pytest.approx(2.5, rel=0.1)
        await driver.wake()
        assert (await driver.read()).state is ReportedState.RAMPING
    finally:
        await driver.close()


async def test_bitaxe_deadline_and_dead_device(sim):
    hung = await sim("bitaxe-gamma", faults={"api_unresponsive": True})
    model = KNOWN_MODELS["bitaxe-gamma"]
    driver = BitaxeDriver("hung", *hung.api_address, model=model, timeout_s=TIMEOUT_S)
    with pytest.raises(MinerTimeoutError):
        await driver.read()
    await driver.close()
    dead = await sim("bitaxe-gamma")
    address = dead.api_address
    await dead.stop()
    driver = BitaxeDriver("dead", *address, model=model, timeout_s=TIMEOUT_S)
    with pytest.raises(MinerUnreachableError):
        await driver.sleep()
    await driver.close()


async def _static_server(reply: bytes):
    """A TCP 4028 peer that answers every request with fixed bytes (firmware quirks)."""

    async def answer(reader, writer):
        await reader.read(4096)
        writer.write(reply)
        await writer.drain()
        writer.close()

    return await asyncio.start_server(answer, "127.0.0.1", 0)


async def test_cgminer_api_repairs_bmminer_joins_and_refuses_garbage():
    status = '"STATUS":[{"STATUS":"S","Code":11,"Msg":"ok"}],"id":1'
    quirky = ('{"summary":[{' + status + ',"SUMMARY":[{"GHS 5s":13500.0}]}],'
              '"stats":[{' + status + ',"STATS":[{"BMMiner":"2.0"}{"temp1":60,"temp2_1":75}]}],'
              '"id":1}')  # bmminer leaves out the comma between the two STATS objects
    server = await _static_server(quirky.encode() + b"\x00")
    host, port = server.sockets[0].getsockname()[:2]
    t = await CgminerDriver("bm", host, port, timeout_s=TIMEOUT_S).read()
    assert t.hashrate_hs == pytest.approx(13.5e12) and t.temps_c == (60.0, 75.0)
    server.close()
    garbage = await _static_server(b"<html>not a miner</html>\x00")
    host, port = garbage.sockets[0].getsockname()[:2]
    with pytest.raises(MinerProtocolError):
        await cgminer_api.request("x", host, port, "summary", timeout_s=TIMEOUT_S)
    garbage.close()


async def test_firmware_errors_carry_their_code(sim):
    miner = await sim("s21")
    reply = await cgminer_api.request("x", *miner.api_address, "nonsense", timeout_s=TIMEOUT_S)
    with pytest.raises(MinerCommandError) as err:
        cgminer_api.check_status(reply, "x", "nonsense")
    assert err.value.code == 14  # cgminer "Invalid command"


def test_pyasic_adapter_needs_its_extra():
    from miners.drivers import pyasic_adapter  # importable without pyasic

    try:
        import pyasic  # noqa: F401
    except ImportError:
        with pytest.raises(DriverUnavailableError, match="gridpool\\[pyasic\\]"):
            pyasic_adapter.PyasicDriver("x", "127.0.0.1")
    else:
        assert pyasic_adapter.PyasicDriver("x", "127.0.0.1").capabilities.can_sleep
