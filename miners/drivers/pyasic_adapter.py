"""Optional driver for other brands through pyasic (install the ``gridpool[pyasic]`` extra).

pyasic (github.com/UpstreamData/pyasic) identifies a miner from its IP (``get_miner``) and
offers ``get_data()`` (``wattage`` W, ``hashrate`` TH/s, ``temperature_avg``,
``is_mining``), ``stop_mining()``, ``resume_mining()`` and ``set_power_limit(watts)``. pyasic
is imported when the first adapter is built, never at module import, so the core and CI
do not need it. Every call keeps this package's deadline and error types.
"""

from __future__ import annotations

import asyncio
import importlib
from typing import Any

from miners.drivers.base import TH, Capabilities, ModelSpec, ReportedState, Telemetry
from miners.errors import (
    DriverError,
    DriverUnavailableError,
    MinerTimeoutError,
    MinerUnreachableError,
    UnsupportedCommandError,
)


def _pyasic() -> Any:
    try:
        return importlib.import_module("pyasic")
    except ImportError as err:
        raise DriverUnavailableError(
            "the pyasic driver needs pyasic: pip install 'gridpool[pyasic]'") from err


class PyasicDriver:
    """One miner of any brand pyasic supports."""

    def __init__(
        self,
        miner_id: str,
        host: str,
        *,
        model: ModelSpec | None = None,
        timeout_s: float = 10.0,
        password: str | None = None,
    ) -> None:
        self._module = _pyasic()  # fail at build time, with the install hint
        self.miner_id = miner_id
        self.host = host
        self.model = model
        self.timeout_s = timeout_s
        self._password = password
        self._miner: Any = None
        self._caps = Capabilities(can_sleep=True, can_tune=True, reports_power=True,
                                  firmware="pyasic")

    @property
    def capabilities(self) -> Capabilities:
        return self._caps

    async def _call(self, command: str, fn_name: str, *args: Any) -> Any:
        try:
            async with asyncio.timeout(self.timeout_s):
                if self._miner is None:
                    self._miner = await self._module.get_miner(self.host)
                    if self._miner is None:
                        raise MinerUnreachableError(self.miner_id, command, "not identified")
                    if self._password is not None and hasattr(self._miner, "pwd"):
                        self._miner.pwd = self._password
                fn = getattr(self._miner, fn_name, None)
                if fn is None:
                    raise UnsupportedCommandError(self.miner_id, command, f"no {fn_name}")
                return await fn(*args)
        except TimeoutError:
            raise MinerTimeoutError(self.miner_id, command, "deadline passed") from None
        except DriverError:
            raise
        except Exception as err:  # pyasic raises many types; keep ours at the boundary
            raise MinerUnreachableError(self.miner_id, command, repr(err)) from err

    async def probe(self) -> Capabilities:
        await self._call("probe", "get_data")
        miner = self._miner
        self._caps = Capabilities(
            can_sleep=bool(getattr(miner, "supports_shutdown", True)),
            can_tune=bool(getattr(miner, "supports_power_modes", True)),
            reports_power=True,
            firmware=f"pyasic:{type(miner).__name__}",
        )
        return self._caps

    async def read(self) -> Telemetry:
        data = await self._call("read", "get_data")
        hashrate = float(getattr(data, "hashrate", 0.0) or 0.0) * TH
        mining = getattr(data, "is_mining", hashrate > 0)
        temp = getattr(data, "temperature_avg", None)
        power = getattr(data, "wattage", None)
        return Telemetry(
            state=ReportedState.MINING if mining and hashrate > 0 else (
                ReportedState.SLEEPING if not mining else ReportedState.FAULTED),
            power_w=float(power) if power is not None else None,
            hashrate_hs=hashrate,
            temps_c=(float(temp),) if temp else (),
            power_target_w=getattr(data, "wattage_limit", None),
            sleep_requested=not mining,
        )

    async def sleep(self) -> None:
        await self._call("sleep", "stop_mining")

    async def wake(self) -> None:
        await self._call("wake", "resume_mining")

    async def set_power_target(self, watts: float) -> float:
        await self._call("set_power_target", "set_power_limit", int(watts))
        return float(int(watts))

    async def close(self) -> None:
        self._miner = None
