"""Ground-truth energy in the simulator and the simulated site meter (a real Modbus server)."""

import asyncio
import json
import random
import socket
import struct
import sys

import pytest

from miners.meter import MeterSpec, ModbusMeter
from miners.sim.fleet import Fleet, FleetSpec
from miners.sim.meter import SimulatedMeter, start_site_meters
from miners.sim.miner import SimulatedMiner
from miners.sim.models import BITAXE_GAMMA, S19J_PRO, S21
from miners.sim.power import PowerModel, PowerState


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


STEP_S = 0.01  # numerical integration step


def integrate(clock: FakeClock, power, seconds: float) -> float:
    """Trapezoid sum of power() over `seconds` in STEP_S steps, moving the fake clock."""
    total = 0.0
    for _ in range(round(seconds / STEP_S)):
        left = power()
        clock.now += STEP_S
        total += (left + power()) / 2 * STEP_S
    return total


# A command schedule: (seconds to run before the command, command on the model).
SCHEDULE = [
    (10.0, lambda pm: pm.sleep()),
    (2.5, lambda pm: pm.set_power_target(2000)),  # mid shutdown
    (1.0, lambda pm: pm.wake()),  # before the shutdown finished
    (7.3, lambda pm: pm.set_power_target(3900)),  # mid ramp
    (3.0, lambda pm: setattr(pm, "ramp_factor", 2.0)),  # slow-ramp fault mid ramp
    (90.0, lambda pm: pm.sleep()),  # long after the ramp ended (an automatic transition)
    (20.0, lambda pm: pm.power_off()),
    (4.0, lambda pm: pm.power_on()),
    (60.0, lambda pm: pm.set_power_target(1400)),
    (5.0, None),
]


def test_energy_is_the_exact_integral_of_power():
    clock = FakeClock()
    pm = PowerModel(S21, clock=clock, rng=random.Random(1), state=PowerState.SLEEPING)
    pm.wake()
    numeric = 0.0
    for seconds, command in SCHEDULE:
        numeric += integrate(clock, pm.power_w, seconds)
        if command:
            command(pm)
    # Only steps holding an automatic transition (a kink) differ: far below 1e-6.
    assert pm.energy_j() == pytest.approx(numeric, rel=1e-6)
    assert pm.energy_j() > 0


def test_energy_does_not_depend_on_how_often_it_is_asked():
    clocks = FakeClock(), FakeClock()
    models = [PowerModel(S19J_PRO, clock=c, rng=random.Random(1)) for c in clocks]
    asked = 0
    for seconds, command in SCHEDULE:
        for _ in range(7):  # model 0 is asked seven times per interval, model 1 never
            clocks[0].now += seconds / 7
            asked += models[0].energy_j() >= 0
        clocks[1].now += seconds
        if command:
            command(models[0])
            command(models[1])
    assert asked == 7 * len(SCHEDULE)
    assert models[0].energy_j() == pytest.approx(models[1].energy_j(), rel=1e-12)


def test_energy_in_steady_states_is_power_times_time():
    clock = FakeClock()
    pm = PowerModel(BITAXE_GAMMA, clock=clock, rng=random.Random(1))
    clock.now += 100.0
    assert pm.energy_j() == pytest.approx(BITAXE_GAMMA.nominal_w * 100.0, rel=1e-12)
    pm.power_off()
    clock.now += 50.0
    assert pm.energy_j() == pytest.approx(BITAXE_GAMMA.nominal_w * 100.0, rel=1e-12)
    pm.sleep()  # ignored while off
    clock.now += 10.0
    assert pm.power_w() == 0.0


def make_miners(clock, n=4):
    models = [S21, S19J_PRO, BITAXE_GAMMA, S21]
    return [SimulatedMiner(f"site1.m{i:03d}", models[i % 4], clock=clock, seed=i) for i in range(n)]


async def test_meter_reads_exact_power_and_energy_over_a_sleep_wake_sequence():
    clock = FakeClock()
    miners = make_miners(clock)
    meter = SimulatedMeter("site1", miners, overhead_w=1234.5, initial_kwh=1000.0, clock=clock)
    await meter.start()
    client = ModbusMeter(meter.spec(), clock=clock)

    def site_power():
        return sum(m.power.power_w() for m in miners) + 1234.5

    try:
        first = await client.read()
        assert first.energy_kwh == pytest.approx(1000.0, abs=1e-9)
        assert first.power_w == pytest.approx(site_power(), rel=1e-7)  # float32 rounding
        steps = [
            (5.0, lambda: miners[0].sleep()),
            (2.0, lambda: miners[1].sleep()),
            (3.0, lambda: miners[0].wake()),
            (10.0, lambda: miners[2].set_power_target(12)),
            (20.0, lambda: miners[3].crash()),  # power cut (its reboot task is cancelled)
            (30.0, lambda: miners[1].wake()),
            (50.0, None),
        ]
        numeric_j = 0.0
        for seconds, command in steps:
            numeric_j += integrate(clock, site_power, seconds)
            reading = await client.read()
            assert reading.power_w == pytest.approx(site_power(), rel=1e-7)
            assert reading.power_w == pytest.approx(meter.power_w(), rel=1e-7)
            assert reading.energy_kwh == meter.energy_kwh()  # float64: no rounding
            if command:
                command()
        delta_kwh = (await client.read()).energy_kwh - first.energy_kwh
        assert delta_kwh == pytest.approx(numeric_j / 3.6e6, rel=1e-6)
        assert delta_kwh > 0.1  # ~8 kW for two minutes
    finally:
        await client.close()
        await meter.stop()
        for miner in miners:
            await miner.stop()


async def test_meter_keeps_serving_after_a_client_vanishes():
    clock = FakeClock()
    meter = SimulatedMeter("site1", make_miners(clock, 2), clock=clock)
    await meter.start()
    try:
        for partial in (b"", b"\x00\x01\x00\x00\x00\x06\x01", b"\x00\x01\x00\x00\x00\x06\x01\x03"):
            with socket.create_connection(("127.0.0.1", meter.port), timeout=5) as sock:
                sock.sendall(partial)
                # RST instead of FIN: the abrupt end of a crashed or unplugged client
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client = ModbusMeter(meter.spec(), clock=clock)
        try:
            reading = await client.read()
        finally:
            await client.close()
        assert reading.power_w == pytest.approx(meter.power_w(), rel=1e-7)
    finally:
        await meter.stop()


async def test_meter_serves_both_tables_and_refuses_other_addresses():
    from pymodbus.client import AsyncModbusTcpClient

    clock = FakeClock()
    meter = SimulatedMeter("site1", make_miners(clock, 1), overhead_w=7.0, clock=clock)
    await meter.start()
    client = AsyncModbusTcpClient("127.0.0.1", port=meter.port, timeout=5, retries=0)
    try:
        async with asyncio.timeout(20):
            assert await client.connect()
            holding = await client.read_holding_registers(0, count=6, device_id=1)
            inputs = await client.read_input_registers(0, count=6, device_id=1)
            beyond = await client.read_holding_registers(6, count=1, device_id=1)
            write = await client.write_register(0, 1, device_id=1)
        assert holding.registers == inputs.registers
        power = client.convert_from_registers(holding.registers[:2], client.DATATYPE.FLOAT32)
        assert power == S21.nominal_w + 7.0
        assert beyond.isError() and beyond.exception_code == 2
        assert write.isError()
    finally:
        client.close()
        await meter.stop()


def small_fleet() -> Fleet:
    spec = FleetSpec(pool_url="stratum+tcp://127.0.0.1:1", sites=2, miners_per_site=3, seed=4)
    return Fleet(spec)


async def test_site_meters_for_a_fleet_and_their_inventory_entries():
    fleet = small_fleet()
    await fleet.start()  # management APIs for the inventory; the pool is absent (retries)
    meters = await start_site_meters(fleet, overhead_w={"site1": 500.0})
    try:
        assert sorted(meters) == ["site1", "site2"]
        assert len({m.port for m in meters.values()}) == 2
        for site, meter in meters.items():
            overhead = 500.0 if site == "site1" else 0.0
            before = meter.energy_kwh()
            client = ModbusMeter(meter.spec())
            try:
                reading = await client.read()
            finally:
                await client.close()
            after = meter.energy_kwh()
            assert reading.power_w == pytest.approx(fleet.site_power_w(site) + overhead, rel=1e-7)
            assert before <= reading.energy_kwh <= after  # a monotone counter, read between
        fleet.sites["site2"][0].sleep()
        assert fleet.site_power_w("site2") < sum(m.model.nominal_w for m in fleet.sites["site2"])
        assert fleet.site_energy_j("site1") > 0
        inventory = fleet.inventory({s: m.spec() for s, m in meters.items()})
        entries = {s["id"]: s["meter"] for s in inventory["sites"]}
        assert entries["site1"] == {"host": "127.0.0.1", "port": meters["site1"].port, "unit_id": 1}
        assert all("meter" not in s for s in fleet.inventory()["sites"])
    finally:
        for meter in meters.values():
            await meter.stop()
        await fleet.stop()


@pytest.mark.slow
async def test_gridpool_sim_meters_option_lists_live_meters(tmp_path, wait_until):
    inventory = tmp_path / "inv.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pool.cli",
        "sim",
        "--pool",
        "stratum+tcp://127.0.0.1:1",  # no pool: the miners retry, the meters serve
        "--sites",
        "2",
        "--miners-per-site",
        "2",
        "--models",
        "s21=1",
        "--hash-scale",
        "1",
        "--meters",
        "--meter-overhead-w",
        "800",
        "--duration",
        "30",
        "--inventory",
        str(inventory),
        "--no-live",
        "--log-level",
        "warning",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await wait_until(inventory.exists, timeout_s=30)
        sites = json.loads(inventory.read_text())["sites"]
        for site in sites:
            meter = site["meter"]
            client = ModbusMeter(
                MeterSpec(site["id"], meter["host"], meter["port"], meter["unit_id"])
            )
            try:
                reading = await client.read()
            finally:
                await client.close()
            assert reading.power_w == pytest.approx(2 * S21.nominal_w + 800, rel=1e-6)
    finally:
        proc.terminate()
        async with asyncio.timeout(30):
            _out, err = await proc.communicate()
    assert proc.returncode in (0, -15), err.decode()[-2000:]
