"""The site meter client (miners.meter) against real pymodbus servers on loopback."""

import asyncio
import contextlib
import math
import socket

import pytest
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from miners.errors import MeterError
from miners.meter import (
    DEFAULT_ENERGY,
    DEFAULT_POWER,
    MeterSpec,
    ModbusMeter,
    RegisterSpec,
    parse_meter_spec,
)
from pool.errors import ConfigError

DT = AsyncModbusTcpClient.DATATYPE  # pymodbus's own encoder: independent of ours
WH_COUNTER = RegisterSpec(address=40, table="holding", type="uint32", scale=0.001)  # Wh -> kWh
WH_VALUE = 123_456_789  # Wh


def regs(value, kind: str, word_order: str = "big") -> list[int]:
    return AsyncModbusTcpClient.convert_to_registers(value, DT[kind.upper()], word_order=word_order)


@contextlib.asynccontextmanager
async def register_server(holding: dict[int, list[int]], inputs: dict[int, list[int]], port=0):
    """A pymodbus server (unit 1) whose holding and input tables hold exactly these registers."""

    def block(table: dict[int, list[int]]) -> list[SimData]:
        return [SimData(a, values=v, datatype=DataType.REGISTERS) for a, v in table.items()]

    bits = [SimData(0, values=False, datatype=DataType.BITS)]
    device = SimDevice(id=1, simdata=(bits, list(bits), block(holding), block(inputs)))
    server = ModbusTcpServer(device, address=("127.0.0.1", port))
    await server.serve_forever(background=True)
    try:
        yield server.transport.sockets[0].getsockname()[1]
    finally:
        await server.shutdown()


def spec_for(port: int, **kwargs) -> MeterSpec:
    return MeterSpec(site="siteA", host="127.0.0.1", port=port, **kwargs)


async def read_once(spec: MeterSpec):
    meter = ModbusMeter(spec, clock=lambda: 1234.0)
    try:
        async with asyncio.timeout(20):  # a deadline for the test, not a speed assertion
            return await meter.read()
    finally:
        await meter.close()


VALUES = {
    "uint16": 65_000,
    "int16": -1_234,
    "uint32": 4_000_000_000,
    "int32": -2_000_000_000,
    "float32": 1_234.5,
    "uint64": 2**63 + 4_096,
    "int64": -(2**40) - 3,
    "float64": math.pi * 1e6,
}


@pytest.mark.parametrize("word_order", ["big", "little"])
@pytest.mark.parametrize("table", ["holding", "input"])
@pytest.mark.parametrize("kind", sorted(VALUES))
async def test_every_type_and_word_order_round_trips(kind, table, word_order):
    value = VALUES[kind]
    power = RegisterSpec(address=7, table=table, type=kind, scale=0.5, word_order=word_order)
    holding = {WH_COUNTER.address: regs(WH_VALUE, "uint32")}
    inputs = {0: [0]}
    (holding if table == "holding" else inputs)[7] = regs(value, kind, word_order)
    async with register_server(holding, inputs) as port:
        reading = await read_once(spec_for(port, power=power, energy=WH_COUNTER))
    assert reading.power_w == value * 0.5
    assert reading.energy_kwh == pytest.approx(WH_VALUE / 1000, rel=1e-12)
    assert reading.time == 1234.0


async def test_default_map_reads_float32_power_and_float64_energy():
    holding = {0: regs(2_345_678.0, "float32") + regs(98_765_432.123456, "float64")}
    async with register_server(holding, {0: [0]}) as port:
        reading = await read_once(spec_for(port))
    assert reading.power_w == pytest.approx(2_345_678.0, rel=1e-7)  # float32: 7 digits
    assert reading.energy_kwh == 98_765_432.123456  # float64: exact


async def test_connection_refused_is_a_meter_error():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(MeterError, match="cannot connect") as info:
        await read_once(spec_for(port))
    assert info.value.site == "siteA"


async def test_silent_server_times_out_with_a_meter_error():
    async def silent(reader, writer):
        with contextlib.suppress(Exception):
            await reader.read()  # accept, read, never answer
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(MeterError, match=r"no answer within 0\.5 s|Modbus I/O"):
            await read_once(spec_for(port, timeout_s=0.5))
    finally:
        server.close()


async def test_illegal_address_is_a_meter_error_naming_the_registers():
    energy = RegisterSpec(address=300, type="float64")  # not in the server's map
    async with register_server({0: regs(1.0, "float32")}, {0: [0]}) as port:
        with pytest.raises(MeterError, match=r"exception 2 \(ILLEGAL_ADDRESS\).*300\.\.303"):
            await read_once(spec_for(port, energy=energy))


@pytest.mark.parametrize(
    ("energy", "match"),
    [(math.nan, "energy counter"), (-5.0, "energy counter"), (math.inf, "energy counter")],
)
async def test_impossible_energy_values_are_meter_errors(energy, match):
    holding = {0: regs(1.0, "float32") + regs(energy, "float64")}
    async with register_server(holding, {0: [0]}) as port:
        with pytest.raises(MeterError, match=match):
            await read_once(spec_for(port))


async def test_nan_power_is_a_meter_error():
    holding = {0: regs(math.nan, "float32") + regs(1.0, "float64")}
    async with register_server(holding, {0: [0]}) as port:
        with pytest.raises(MeterError, match="power is not a number"):
            await read_once(spec_for(port))


async def test_reconnects_after_the_meter_comes_back_and_reports_a_counter_reset():
    first = {0: regs(10.0, "float32") + regs(500.0, "float64")}
    meter = None
    try:
        async with register_server(first, {0: [0]}) as port:
            meter = ModbusMeter(spec_for(port, timeout_s=1.0))
            assert (await meter.read()).energy_kwh == 500.0
        with pytest.raises(MeterError):
            await meter.read()
        replaced = {0: regs(20.0, "float32") + regs(3.0, "float64")}  # a new meter: counter 3
        async with register_server(replaced, {0: [0]}, port=port):
            reading = await meter.read()
        assert (reading.power_w, reading.energy_kwh) == (20.0, 3.0)  # reported as read
    finally:
        if meter is not None:
            await meter.close()


# -- configuration ---------------------------------------------------------------------


def test_minimal_config_gives_the_default_map():
    spec = parse_meter_spec({"site": "site1", "host": "10.0.0.5"}, "audit.meter[0]")
    assert spec == MeterSpec(site="site1", host="10.0.0.5")
    assert (spec.port, spec.unit_id, spec.timeout_s) == (502, 1, 2.0)
    assert (spec.power, spec.energy) == (DEFAULT_POWER, DEFAULT_ENERGY)


def test_full_config():
    raw = {
        "site": "site1",
        "host": "meter.local",
        "port": 1502,
        "unit_id": 3,
        "timeout_s": 1.5,
        "power": {"address": 52, "table": "input", "type": "float32", "scale": 1000},
        "energy": {"address": 72, "type": "uint64", "scale": 0.001, "word_order": "little"},
    }
    spec = parse_meter_spec(raw, "audit.meter[0]")
    assert spec.power == RegisterSpec(52, "input", "float32", 1000.0, "big")
    assert spec.energy == RegisterSpec(72, "holding", "uint64", 0.001, "little")
    assert (spec.port, spec.unit_id, spec.timeout_s) == (1502, 3, 1.5)


BASE = {"site": "s", "host": "h"}


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({**BASE, "colour": "red"}, "m.colour"),
        ({"host": "h"}, "m.site"),
        ({**BASE, "host": ""}, "m.host"),
        ({**BASE, "port": 0}, "m.port"),
        ({**BASE, "port": 70000}, "m.port"),
        ({**BASE, "port": "502"}, "m.port"),
        ({**BASE, "port": True}, "m.port"),
        ({**BASE, "unit_id": 256}, "m.unit_id"),
        ({**BASE, "timeout_s": 0}, "m.timeout_s"),
        ({**BASE, "timeout_s": math.nan}, "m.timeout_s"),
        ({**BASE, "power": 5}, "m.power"),
        ({**BASE, "power": {"table": "input"}}, "m.power.address"),
        ({**BASE, "power": {"address": 1, "type": "float16"}}, "m.power.type"),
        ({**BASE, "power": {"address": -1}}, "m.power.address"),
        ({**BASE, "power": {"address": 65536}}, "m.power.address"),
        ({**BASE, "energy": {"address": 65534, "type": "float64"}}, "m.energy.address"),
        ({**BASE, "energy": {"address": 1, "table": "coil"}}, "m.energy.table"),
        ({**BASE, "energy": {"address": 1, "scale": 0}}, "m.energy.scale"),
        ({**BASE, "energy": {"address": 1, "word_order": "middle"}}, "m.energy.word_order"),
        ({**BASE, "energy": {"address": 1, "unit": "kWh"}}, "m.energy.unit"),
    ],
)
def test_config_errors_name_the_key(raw, key):
    with pytest.raises(ConfigError) as info:
        parse_meter_spec(raw, "m")
    assert info.value.key == key


def test_config_must_be_a_table():
    with pytest.raises(ConfigError) as info:
        parse_meter_spec(["site"], "audit.meter[2]")
    assert info.value.key == "audit.meter[2]"
