"""ESP-Miner (Bitaxe, AxeOS) driver over HTTP.

- ``GET /api/system/info``: ``power`` (W), ``hashRate`` (GH/s), ``expectedHashrate`` (GH/s),
  ``temp``/``vrTemp`` (°C), ``frequency`` (MHz), ``miningPaused`` (recent firmware).
- ``GET /api/system/asic``: ``frequencyOptions`` (MHz), the menu AxeOS offers.
- ``POST /api/system/pause`` / ``/resume``; firmware before those routes took
  ``POST /api/system/mining {"pause": bool}``, used when pause answers 404.
- ``PATCH /api/system {"frequency": f}``: ESP-Miner has no power target, so a target in W is
  turned into a clock: hash rate is proportional to the clock, and the model's curve maps
  hash rate to power (miners.drivers.base.ModelSpec).

source: github.com/bitaxeorg/ESP-Miner, main/http_server/http_server.c.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from miners.drivers.base import GH, Capabilities, ModelSpec, ReportedState, Telemetry
from miners.drivers.cgminer_api import finite
from miners.errors import (
    MinerCommandError,
    MinerProtocolError,
    MinerTimeoutError,
    MinerUnreachableError,
)

DEFAULT_PORT = 80
MAX_REPLY_BYTES = 256 * 1024  # system/info is ~3 KiB
RAMPING_FRACTION = 0.8  # below this share of the expected hash rate a miner counts as ramping


class BitaxeDriver:
    """One ESP-Miner device. `http` is a shared aiohttp session (one per site is enough)."""

    def __init__(
        self,
        miner_id: str,
        host: str,
        port: int = DEFAULT_PORT,
        *,
        model: ModelSpec,
        http: aiohttp.ClientSession | None = None,
        timeout_s: float = 3.0,
    ) -> None:
        self.miner_id = miner_id
        self.base_url = f"http://{host}:{port}"
        self.model = model
        self.timeout_s = timeout_s
        self._http = http
        self._own_http = http is None
        self._caps = Capabilities(can_sleep=True, can_tune=model.nominal_mhz > 0,
                                  reports_power=True)

    @property
    def capabilities(self) -> Capabilities:
        return self._caps

    # -- HTTP ---------------------------------------------------------------------------

    async def _request(self, method: str, path: str, command: str, body: Any = None) -> Any:
        if self._http is None:
            self._http = aiohttp.ClientSession()
        url = self.base_url + path
        try:
            async with asyncio.timeout(self.timeout_s):
                async with self._http.request(method, url, json=body) as resp:
                    raw = await resp.content.read(MAX_REPLY_BYTES + 1)
                    status, ctype = resp.status, resp.content_type
        except TimeoutError:
            raise MinerTimeoutError(
                self.miner_id, command, f"no answer within {self.timeout_s:g} s") from None
        except aiohttp.ClientConnectionError as err:
            raise MinerUnreachableError(self.miner_id, command, f"{url}: {err}") from None
        if len(raw) > MAX_REPLY_BYTES:
            raise MinerProtocolError(self.miner_id, command, "reply too large")
        if status != 200:
            text = raw.decode("utf-8", "replace")[:200]
            raise MinerCommandError(self.miner_id, command, f"HTTP {status}: {text}", status)
        if ctype != "application/json" or not raw:
            return None
        try:
            return json.loads(raw.decode())
        except (ValueError, UnicodeDecodeError):
            raise MinerProtocolError(self.miner_id, command, "reply is not JSON") from None

    # -- reads --------------------------------------------------------------------------

    async def probe(self) -> Capabilities:
        info = await self._request("GET", "/api/system/asic", "probe")
        options = info.get("frequencyOptions") if isinstance(info, dict) else None
        points: tuple[tuple[float, float], ...] = ()
        if self.model.nominal_mhz > 0 and isinstance(options, list):
            points = tuple(sorted({self._point(f) for f in map(finite, options)
                                   if f is not None and f > 0}))
        self._caps = Capabilities(True, bool(points) or self._caps.can_tune, True, points,
                                  firmware="esp-miner")
        return self._caps

    def _point(self, mhz: float) -> tuple[float, float]:
        hashrate = self.model.nominal_hs * mhz / self.model.nominal_mhz
        return (round(self.model.power_for_hashrate(hashrate), 3), hashrate)

    async def read(self) -> Telemetry:
        info = await self._request("GET", "/api/system/info", "read")
        if not isinstance(info, dict):
            raise MinerProtocolError(self.miner_id, "read", "system/info is not an object")
        power, ghs = _num(info, "power"), _num(info, "hashRate")
        if power is None or ghs is None:
            raise MinerProtocolError(self.miner_id, "read", "no power or hashRate")
        paused = info.get("miningPaused") is True
        expected = _num(info, "expectedHashrate") or 0.0
        if paused:
            state = ReportedState.SLEEPING
        elif ghs <= 0:
            state = ReportedState.FAULTED
        elif expected and ghs < RAMPING_FRACTION * expected:
            state = ReportedState.RAMPING
        else:
            state = ReportedState.MINING
        mhz = _num(info, "frequency")
        target = self._point(mhz)[0] if mhz and self.model.nominal_mhz > 0 else None
        temps = tuple(t for k in ("temp", "vrTemp") if (t := _num(info, k)) is not None and t > 0)
        return Telemetry(state, power, ghs * GH, temps, target, paused)

    # -- commands -----------------------------------------------------------------------

    async def sleep(self) -> None:
        await self._pause(True)

    async def wake(self) -> None:
        await self._pause(False)

    async def _pause(self, pause: bool) -> None:
        command = "pause" if pause else "resume"
        try:
            await self._request("POST", f"/api/system/{command}", command)
        except MinerCommandError as err:
            if err.code != 404:
                raise
            await self._request("POST", "/api/system/mining", command, {"pause": pause})

    async def set_power_target(self, watts: float) -> float:
        if not self._caps.operating_points:
            await self.probe()
        points = self._caps.operating_points
        if not points:
            raise MinerCommandError(self.miner_id, "set_power_target", "no frequency menu")
        fitting = [p for p in points if p[0] <= watts + 1e-6]
        chosen_w, hashrate = max(fitting) if fitting else points[0]
        mhz = round(self.model.nominal_mhz * hashrate / self.model.nominal_hs, 3)
        await self._request("PATCH", "/api/system", "set_power_target", {"frequency": mhz})
        return chosen_w

    async def close(self) -> None:
        if self._own_http and self._http is not None:
            await self._http.close()
        self._http = None


def _num(info: dict[str, Any], key: str) -> float | None:
    return finite(info.get(key))
