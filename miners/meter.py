"""The site meter: active power and the cumulative energy counter read over Modbus TCP.

A site meter is the independent measurement the energy audit sets against the miners' own
telemetry (DESIGN §11).  Meters differ in where they keep their values, so the register map
is configuration: for each of power and energy a `RegisterSpec` says which table (holding,
FC 3, or input, FC 4), which address (0-based, as on the wire), which type and word order,
and a scale that turns the raw number into watts / kilowatt-hours.  The default map is the
simulated meter's (`miners.sim.meter`); see docs/meter.md for it and for real-meter
examples.

Decoding is plain `struct` on the registers' bytes: Modbus sends each 16-bit register
big-endian; `word_order` says whether a multi-register value starts with its most
("big") or least ("little") significant register.

`ModbusMeter.read` returns exactly what the meter says: a counter that goes backwards (meter
replaced, rollover) is reported as read, and the audit, which computes deltas, decides.
"""

from __future__ import annotations

import asyncio
import math
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.constants import ExcCodes
from pymodbus.exceptions import ModbusException

from miners.errors import MeterError
from pool.errors import ConfigError

log = structlog.get_logger(__name__)

# type -> (registers, struct format, big-endian); ints are checked against their range.
REGISTER_TYPES: dict[str, tuple[int, str]] = {
    "uint16": (1, "H"),
    "int16": (1, "h"),
    "uint32": (2, "I"),
    "int32": (2, "i"),
    "float32": (2, "f"),
    "uint64": (4, "Q"),
    "int64": (4, "q"),
    "float64": (4, "d"),
}
TABLES = ("holding", "input")  # FC 3, FC 4
WORD_ORDERS = ("big", "little")
MAX_TIMEOUT_S = 60.0
DEFAULT_PORT = 502
DEFAULT_TIMEOUT_S = 2.0


@dataclass(frozen=True, slots=True)
class RegisterSpec:
    """Where one value lives: value = raw * scale (in W for power, kWh for energy)."""

    address: int  # 0-based register address, as sent on the wire
    table: str = "holding"  # "holding" (FC 3) | "input" (FC 4)
    type: str = "float32"  # one of REGISTER_TYPES
    scale: float = 1.0  # e.g. 0.001 turns a Wh counter into kWh, 1000 a kW reading into W
    word_order: str = "big"  # "big": most significant register first; "little": least first

    @property
    def count(self) -> int:
        """Number of 16-bit registers the value occupies."""
        return REGISTER_TYPES[self.type][0]


# The default map (the simulated meter's).  Power as float32 W is what most meters offer
# (7 significant digits: 1 W at 10 MW).  Energy is float64 kWh because a float32 counter
# loses whole kWh once it passes ~16,777 MWh (2**24 kWh), a few months of a 10 MW site.
DEFAULT_POWER = RegisterSpec(address=0, table="holding", type="float32")
DEFAULT_ENERGY = RegisterSpec(address=2, table="holding", type="float64")


@dataclass(frozen=True, slots=True)
class MeterSpec:
    """One site meter: where it is and its register map."""

    site: str
    host: str
    port: int = DEFAULT_PORT
    unit_id: int = 1
    power: RegisterSpec = field(default=DEFAULT_POWER)  # active power, W
    energy: RegisterSpec = field(default=DEFAULT_ENERGY)  # imported energy counter, kWh
    timeout_s: float = DEFAULT_TIMEOUT_S  # deadline of one whole read (connect included)


@dataclass(frozen=True, slots=True)
class MeterReading:
    """One reading of a site meter."""

    time: float  # unix seconds when read
    power_w: float  # active power, W
    energy_kwh: float  # cumulative energy counter, kWh


# -- register encoding (pure) --------------------------------------------------------------


def decode_registers(registers: Sequence[int], spec: RegisterSpec) -> float:
    """The value of `spec` from its registers (exactly `spec.count` of them)."""
    count, fmt = REGISTER_TYPES[spec.type]
    if len(registers) != count:
        raise ValueError(f"{spec.type} needs {count} registers, got {len(registers)}")
    words = registers if spec.word_order == "big" else list(reversed(registers))
    raw = struct.unpack(">" + fmt, b"".join(w.to_bytes(2, "big") for w in words))[0]
    return raw * spec.scale


def encode_registers(value: float, spec: RegisterSpec) -> list[int]:
    """The registers a meter would hold for `value` (ValueError when it does not fit)."""
    count, fmt = REGISTER_TYPES[spec.type]
    raw: float | int = value / spec.scale
    if fmt not in ("f", "d"):
        raw = round(raw)
    try:
        data = struct.pack(">" + fmt, raw)
    except (struct.error, OverflowError) as err:
        raise ValueError(f"{value} does not fit a {spec.type} with scale {spec.scale}") from err
    words = [int.from_bytes(data[i : i + 2], "big") for i in range(0, 2 * count, 2)]
    return words if spec.word_order == "big" else list(reversed(words))


# -- configuration -------------------------------------------------------------------------

_METER_KEYS = ("site", "host", "port", "unit_id", "timeout_s", "power", "energy")
_REGISTER_KEYS = ("address", "table", "type", "scale", "word_order")


def parse_meter_spec(raw: Mapping[str, Any], key: str) -> MeterSpec:
    """Parse one ``[[audit.meter]]`` table; errors name the dotted key (``{key}.power.type``).

    A ``power`` or ``energy`` sub-table replaces that entry of the default map: ``address``
    is then required and the other keys default to holding / float32 / 1.0 / big.
    """
    if not isinstance(raw, Mapping):
        raise ConfigError(key, "expected a table")
    _check_keys(raw, _METER_KEYS, key)
    return MeterSpec(
        site=_text(raw, "site", key),
        host=_text(raw, "host", key),
        port=_integer(raw, "port", key, DEFAULT_PORT, 1, 65535),
        unit_id=_integer(raw, "unit_id", key, 1, 0, 255),
        timeout_s=_timeout(raw, key),
        power=_register(raw, "power", key, DEFAULT_POWER),
        energy=_register(raw, "energy", key, DEFAULT_ENERGY),
    )


def _check_keys(raw: Mapping[str, Any], known: Sequence[str], key: str) -> None:
    for name in raw:
        if name not in known:
            raise ConfigError(f"{key}.{name}", f"unknown key (known: {', '.join(known)})")


def _text(raw: Mapping[str, Any], name: str, key: str) -> str:
    value = raw.get(name)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{key}.{name}", "required, a non-empty string")
    return value.strip()


def _integer(raw: Mapping[str, Any], name: str, key: str, default: int, low: int, high: int) -> int:
    value = raw.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{key}.{name}", f"must be an integer in {low}..{high}, got {value!r}")
    return value


def _number(raw: Mapping[str, Any], name: str, key: str, default: float) -> float:
    value = raw.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{key}.{name}", f"must be a finite number, got {value!r}")
    return float(value)


def _timeout(raw: Mapping[str, Any], key: str) -> float:
    value = _number(raw, "timeout_s", key, DEFAULT_TIMEOUT_S)
    if not 0 < value <= MAX_TIMEOUT_S:
        raise ConfigError(f"{key}.timeout_s", f"must be > 0 and <= {MAX_TIMEOUT_S:g} seconds")
    return value


def _choice(raw: Mapping[str, Any], name: str, key: str, default: str, allowed) -> str:
    value = raw.get(name, default)
    if value not in allowed:
        raise ConfigError(f"{key}.{name}", f"must be one of {', '.join(allowed)}, got {value!r}")
    return value


def _register(raw: Mapping[str, Any], name: str, key: str, default: RegisterSpec) -> RegisterSpec:
    sub = raw.get(name)
    key = f"{key}.{name}"
    if sub is None:
        return default
    if not isinstance(sub, Mapping):
        raise ConfigError(key, "expected a table (address, table, type, scale, word_order)")
    _check_keys(sub, _REGISTER_KEYS, key)
    if "address" not in sub:
        raise ConfigError(f"{key}.address", "required (0-based register address)")
    address = _integer(sub, "address", key, 0, 0, 65535)
    kind = _choice(sub, "type", key, "float32", tuple(REGISTER_TYPES))
    if address + REGISTER_TYPES[kind][0] - 1 > 65535:
        raise ConfigError(f"{key}.address", f"a {kind} at {address} runs past register 65535")
    scale = _number(sub, "scale", key, 1.0)
    if scale == 0:
        raise ConfigError(f"{key}.scale", "must not be 0")
    return RegisterSpec(
        address=address,
        table=_choice(sub, "table", key, "holding", TABLES),
        type=kind,
        scale=scale,
        word_order=_choice(sub, "word_order", key, "big", WORD_ORDERS),
    )


# -- the client ----------------------------------------------------------------------------


class ModbusMeter:
    """Reads one site meter over Modbus TCP; connects lazily and reconnects after errors.

    One `read` has one deadline (`MeterSpec.timeout_s`) covering connect and requests. Power
    and energy are read in one request when they are adjacent in the same table (so they come
    from the same instant), otherwise in two: many meters refuse a read that spans registers
    they do not define.
    """

    def __init__(self, spec: MeterSpec, *, clock: Callable[[], float] = time.time) -> None:
        self.spec = spec
        self._clock = clock
        self._client: AsyncModbusTcpClient | None = None
        self._failing = False  # the first failure is logged loudly, repeats quietly
        self._log = log.bind(site=spec.site, meter=f"{spec.host}:{spec.port}")

    async def read(self) -> MeterReading:
        """Read power and energy now; MeterError (with the reason) on any failure."""
        spec = self.spec
        try:
            async with asyncio.timeout(spec.timeout_s):
                client = await self._connect()
                power_w, energy_kwh = await self._read_values(client)
        except TimeoutError:
            raise self._failed(f"no answer within {spec.timeout_s:g} s") from None
        except MeterError as err:
            raise self._failed(err.reason) from None
        except (ModbusException, OSError) as err:
            raise self._failed(f"Modbus I/O error: {err}") from err
        if not math.isfinite(power_w):
            raise self._failed(f"power is not a number ({power_w})")
        if not math.isfinite(energy_kwh) or energy_kwh < 0:
            raise self._failed(f"energy counter is not a non-negative number ({energy_kwh})")
        if self._failing:
            self._failing = False
            self._log.info("meter_recovered")
        return MeterReading(time=self._clock(), power_w=power_w, energy_kwh=energy_kwh)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    async def _connect(self) -> AsyncModbusTcpClient:
        if self._client is not None and self._client.connected:
            return self._client
        await self.close()
        spec = self.spec
        client = AsyncModbusTcpClient(
            spec.host,
            port=spec.port,
            name=f"meter-{spec.site}",
            timeout=spec.timeout_s,
            retries=0,  # one attempt per read: the caller's poll interval is the retry
            reconnect_delay=0,  # no background reconnects: the next read reconnects
        )
        if not await client.connect():
            client.close()
            raise MeterError(
                spec.site, f"cannot connect to {spec.host}:{spec.port} (refused or unreachable)"
            )
        self._client = client
        self._log.debug("meter_connected")
        return client

    async def _read_values(self, client: AsyncModbusTcpClient) -> tuple[float, float]:
        power, energy = self.spec.power, self.spec.energy
        first = min(power.address, energy.address)
        end = max(power.address + power.count, energy.address + energy.count)
        if power.table == energy.table and end - first == power.count + energy.count:
            regs = await self._request(client, power.table, first, end - first)
            return (
                decode_registers(_slice(regs, power, first), power),
                decode_registers(_slice(regs, energy, first), energy),
            )
        regs_p = await self._request(client, power.table, power.address, power.count)
        regs_e = await self._request(client, energy.table, energy.address, energy.count)
        return decode_registers(regs_p, power), decode_registers(regs_e, energy)

    async def _request(
        self, client: AsyncModbusTcpClient, table: str, address: int, count: int
    ) -> list[int]:
        spec = self.spec
        call = client.read_holding_registers if table == "holding" else client.read_input_registers
        answer = await call(address, count=count, device_id=spec.unit_id)
        where = f"{table} registers {address}..{address + count - 1} of unit {spec.unit_id}"
        if answer.isError():
            code = getattr(answer, "exception_code", None)
            reason = f"Modbus exception {code} ({_code_name(code)}) reading {where}"
            raise MeterError(spec.site, reason)
        registers = list(getattr(answer, "registers", []))
        if len(registers) != count:
            raise MeterError(spec.site, f"{len(registers)} registers in the answer for {where}")
        return registers

    def _failed(self, reason: str) -> MeterError:
        """Drop the connection (the next read reconnects) and log the first failure loudly."""
        client, self._client = self._client, None
        if client is not None:
            client.close()
        (self._log.debug if self._failing else self._log.warning)("meter_read_failed", error=reason)
        self._failing = True
        return MeterError(self.spec.site, reason)


def _slice(registers: Sequence[int], spec: RegisterSpec, first: int) -> Sequence[int]:
    start = spec.address - first
    return registers[start : start + spec.count]


def _code_name(code: Any) -> str:
    try:
        return ExcCodes(code).name
    except ValueError:
        return "unknown"
