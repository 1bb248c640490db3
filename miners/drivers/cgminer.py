"""Plain cgminer/bmminer driver: reads only (``summary+stats`` on TCP 4028).

Stock cgminer and bmminer firmware report hash rate and temperatures but offer no sleep and
no power target over the API, so this driver's capabilities say so and its commands raise
`UnsupportedCommandError`; the allocator counts such miners at the power they draw. Most
stock firmware does not report power either (``power_w`` is None); some bmminer builds put
it in ``stats`` and it is used when present.
"""

from __future__ import annotations

import re
from typing import Any

from miners.drivers import cgminer_api as api
from miners.drivers.base import Capabilities, ReportedState, Telemetry
from miners.errors import UnsupportedCommandError

READ_COMMANDS = ["summary", "stats"]
_TEMP_KEY = re.compile(r"temp(\d+|2_\d+|_chip\d*|_pcb\d*)$")
_POWER_KEYS = ("Power", "power", "chain_power", "Watts")


class CgminerDriver:
    """One miner whose firmware only reports."""

    def __init__(
        self, miner_id: str, host: str, port: int = api.DEFAULT_PORT, *, timeout_s: float = 3.0
    ) -> None:
        self.miner_id = miner_id
        self.host, self.port = host, port
        self.timeout_s = timeout_s
        self._caps = Capabilities(can_sleep=False, can_tune=False, reports_power=False)

    @property
    def capabilities(self) -> Capabilities:
        return self._caps

    async def probe(self) -> Capabilities:
        reply = await api.request(
            self.miner_id, self.host, self.port, "version", timeout_s=self.timeout_s
        )
        version = api.section(api.check_status(reply, self.miner_id, "version"), "VERSION",
                              self.miner_id, "version")[0]
        firmware = next((k.lower() for k in ("BMMiner", "CGMiner", "LUXminer") if k in version),
                        "cgminer")
        self._caps = Capabilities(False, False, self._caps.reports_power, firmware=firmware)
        return self._caps

    async def read(self) -> Telemetry:
        reply = await api.request(
            self.miner_id, self.host, self.port, "+".join(READ_COMMANDS), timeout_s=self.timeout_s
        )
        parts = api.multi_sections(reply, READ_COMMANDS, self.miner_id)
        summary = api.section(parts["summary"], "SUMMARY", self.miner_id, "read")[0]
        stats = api.section(parts["stats"], "STATS", self.miner_id, "read")
        hashrate = api.hashrate_hs(summary) or 0.0
        temps, power = _temps_and_power(stats)
        return Telemetry(
            state=ReportedState.MINING if hashrate > 0 else ReportedState.FAULTED,
            power_w=power,
            hashrate_hs=hashrate,
            temps_c=temps,
        )

    async def sleep(self) -> None:
        raise UnsupportedCommandError(self.miner_id, "sleep", "read-only cgminer API")

    async def wake(self) -> None:
        raise UnsupportedCommandError(self.miner_id, "wake", "read-only cgminer API")

    async def set_power_target(self, watts: float) -> float:
        raise UnsupportedCommandError(self.miner_id, "set_power_target", "read-only cgminer API")

    async def close(self) -> None:
        return None


def _temps_and_power(stats: list[dict[str, Any]]) -> tuple[tuple[float, ...], float | None]:
    """Board temperatures (non-zero ``temp<i>``/``temp2_<i>``) and power, if reported."""
    temps: list[float] = []
    power = None
    for row in stats:
        for key, value in row.items():
            temp = api.finite(value)
            if _TEMP_KEY.match(key) and temp is not None and temp > 0:
                temps.append(temp)
        power = power if power is not None else api.number(row, *_POWER_KEYS)
    return tuple(temps), power
