"""A simulated site meter: a real Modbus TCP server (pymodbus) on the default register map.

It answers with the site's ground truth, computed when each request arrives (pymodbus calls
the device's `action` before it answers, and the action writes fresh values into the
registers it is about to send), so a reading is exact for the instant it was served:

- active power (float32 W at holding/input register 0) = the sum of the miners' exact
  power (`PowerModel.power_w`, no telemetry noise) + a constant site overhead;
- energy (float64 kWh at register 2) = ``initial_kwh`` + the exact integral of that power
  since the meter was created (`PowerModel.energy_j`, integrated analytically, not
  sampled).

Registers 0..5 are shared by both tables, so FC 3 (holding) and FC 4 (input) read the same
values; any other address is answered with Modbus exception 2 (illegal data address) and
writes are refused the same way.  See docs/meter.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import structlog
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from miners.meter import DEFAULT_ENERGY, DEFAULT_POWER, MeterSpec, encode_registers

if TYPE_CHECKING:
    from miners.sim.fleet import Fleet
    from miners.sim.miner import SimulatedMiner

log = structlog.get_logger(__name__)

J_PER_KWH = 3.6e6
MAP_REGISTERS = max(
    DEFAULT_POWER.address + DEFAULT_POWER.count, DEFAULT_ENERGY.address + DEFAULT_ENERGY.count
)  # registers 0..MAP_REGISTERS-1 exist


class SimulatedMeter:
    """One site's meter, serving the default register map of `miners.meter.MeterSpec`."""

    def __init__(
        self,
        site: str,
        miners: Sequence[SimulatedMiner],
        *,
        overhead_w: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
        unit_id: int = 1,
        initial_kwh: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if overhead_w < 0 or initial_kwh < 0:
            raise ValueError("overhead_w and initial_kwh must be >= 0")
        self.site = site
        self.miners = tuple(miners)
        self.overhead_w = overhead_w
        self.host = host
        self.port = port  # the bound port once started
        self.unit_id = unit_id
        self.initial_kwh = initial_kwh
        self._clock = clock
        self._started_at = clock()
        self._base_j = self._miners_energy_j()  # the counter starts at initial_kwh now
        self._server: ModbusTcpServer | None = None

    # -- ground truth --------------------------------------------------------------------

    def power_w(self) -> float:
        """Exact site power now (W): the miners' power plus the overhead."""
        return sum(m.power.power_w() for m in self.miners) + self.overhead_w

    def energy_kwh(self) -> float:
        """Exact energy counter now (kWh)."""
        overhead_j = self.overhead_w * max(0.0, self._clock() - self._started_at)
        return self.initial_kwh + (self._miners_energy_j() - self._base_j + overhead_j) / J_PER_KWH

    def _miners_energy_j(self) -> float:
        return sum(m.power.energy_j() for m in self.miners)

    # -- server --------------------------------------------------------------------------

    def spec(self) -> MeterSpec:
        """What a `ModbusMeter` needs to read this meter (the default register map)."""
        return MeterSpec(site=self.site, host=self.host, port=self.port, unit_id=self.unit_id)

    async def start(self) -> None:
        device = SimDevice(
            id=self.unit_id,
            simdata=[
                SimData(
                    0, count=MAP_REGISTERS, values=0, datatype=DataType.REGISTERS, readonly=True
                )
            ],
            action=self._on_request,
        )
        server = ModbusTcpServer(device, address=(self.host, self.port))
        await server.serve_forever(background=True)
        self._server = server
        self.port = server.transport.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        log.info(
            "sim_meter_started",
            site=self.site,
            address=f"{self.host}:{self.port}",
            unit_id=self.unit_id,
            miners=len(self.miners),
            overhead_w=self.overhead_w,
        )

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            await server.shutdown()

    async def _on_request(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> None:
        """pymodbus calls this before answering: write the values of this instant."""
        self._store(registers, start_address, DEFAULT_POWER, self.power_w())
        self._store(registers, start_address, DEFAULT_ENERGY, self.energy_kwh())

    @staticmethod
    def _store(registers: list[int], start: int, spec, value: float) -> None:
        offset = spec.address - start
        registers[offset : offset + spec.count] = encode_registers(value, spec)


async def start_site_meters(
    fleet: Fleet, *, overhead_w: float | Mapping[str, float] = 0.0, host: str = "127.0.0.1"
) -> dict[str, SimulatedMeter]:
    """Start one meter per site of `fleet` on ephemeral ports of `host`.

    ``overhead_w`` is one constant for every site or a per-site mapping (missing sites: 0).
    """
    meters: dict[str, SimulatedMeter] = {}
    try:
        for site, miners in fleet.sites.items():
            extra = overhead_w.get(site, 0.0) if isinstance(overhead_w, Mapping) else overhead_w
            meter = SimulatedMeter(site, miners, overhead_w=extra, host=host)
            await meter.start()
            meters[site] = meter
    except BaseException:
        for meter in meters.values():
            await meter.stop()
        raise
    return meters
