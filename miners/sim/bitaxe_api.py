"""ESP-Miner (Bitaxe, "AxeOS") HTTP API of a simulated miner, served with aiohttp.

Routes, field names and error replies follow ESP-Miner's ``main/http_server/http_server.c``
(github.com/bitaxeorg/ESP-Miner) and its ``axe-os/docs/openapi.yaml``:

- ``GET /api/system/info``: the object built by ``GET_system_info`` (hashRate in GH/s,
  power in W, voltage in mV, current in mA, temp in °C, coreVoltage in mV, frequency in
  MHz, stratumURL is a host name with the port in stratumPort, ...).
- ``GET /api/system/asic``: ``{ASICModel, frequencyOptions, voltageOptions}``.
- ``PATCH /api/system``: settings by their REST names; every known key is type- and
  range-checked first (``check_settings_and_update``), unknown keys are ignored; success is
  an empty 200, bad JSON is ``400 Invalid JSON``, a bad value ``400 Wrong API input``.
- ``POST /api/system/pause`` / ``/resume``: ``{"message": "Mining paused"}`` /
  ``{"message": "Mining resumed"}`` (``POST_mining_pause``/``POST_mining_resume`` in recent
  versions); ``POST /api/system/mining`` with ``{"pause": bool}`` answering
  ``{"paused": bool}`` (the earlier single-endpoint form) is served too.
- ``POST /api/system/restart``: ``{"message": "System will restart shortly."}``.
- any other ``/api/*``: ``404 {"error": "unknown route"}``.

Errors from ``httpd_resp_send_err`` are plain text with the status line's reason.  The real
firmware also answers ``401 Unauthorized`` to clients outside the private IPv4 ranges; the
simulator serves loopback and skips that check.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web

if TYPE_CHECKING:
    from miners.sim.miner import SimulatedMiner

log = structlog.get_logger(__name__)

DEFAULT_PORT = 80  # ESP-Miner serves HTTP on port 80
MAX_BODY_BYTES = 10240  # ESP-Miner's SCRATCH_BUFSIZE: larger bodies are refused
ESP_MINER_VERSION = "v2.9.0-sim"
BOARD_VERSION = "601"
INPUT_MV = 5100.0  # supply voltage the board reports (5 V USB-C/barrel)
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, PUT, PATCH, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type",
}


@dataclass(frozen=True, slots=True)
class Setting:
    """One NVS setting exposed over REST: its type and the accepted range (length for str)."""

    kind: str  # "str", "int", "float" or "bool"
    lo: float
    hi: float


# The REST names ESP-Miner accepts in PATCH /api/system (nvs_config.c), with their ranges.
SETTINGS: dict[str, Setting] = {
    "stratumURL": Setting("str", 0, 128),
    "stratumPort": Setting("int", 0, 65535),
    "stratumUser": Setting("str", 0, 128),
    "stratumPassword": Setting("str", 0, 64),
    "stratumSuggestedDifficulty": Setting("int", 0, 65535),
    "fallbackStratumURL": Setting("str", 0, 128),
    "fallbackStratumPort": Setting("int", 0, 65535),
    "fallbackStratumUser": Setting("str", 0, 128),
    "fallbackStratumPassword": Setting("str", 0, 64),
    "hostname": Setting("str", 1, 32),
    "ssid": Setting("str", 1, 32),
    "wifiPass": Setting("str", 1, 63),
    "coreVoltage": Setting("int", 1, 1400),
    "frequency": Setting("float", 1, 1200),
    "overclockEnabled": Setting("bool", 0, 1),
    "autofanspeed": Setting("bool", 0, 1),
    "manualFanSpeed": Setting("int", 0, 100),
    "minFanSpeed": Setting("int", 0, 99),
    "temptarget": Setting("int", 35, 70),
    "overheat_mode": Setting("int", 0, 0),
    "invertscreen": Setting("bool", 0, 1),
    "rotation": Setting("int", 0, 270),
    "displayTimeout": Setting("int", -1, 71582),
    "statsFrequency": Setting("int", 0, 3600),
}

FREQUENCY_OPTIONS = (400, 490, 525, 550, 575, 600)  # BM1370 menu in AxeOS, MHz
VOLTAGE_OPTIONS = (1000, 1060, 1100, 1150, 1200, 1250)  # mV


def system_info(miner: SimulatedMiner) -> dict[str, Any]:
    """The GET /api/system/info object for the miner's current state."""
    t, s, model = miner.telemetry(), miner.stats, miner.model
    host, port = _pool_host_port(miner)
    ghs = round(t.hashrate_ths * 1e3, 2)
    expected_ghs = round(model.hashrate_at(t.target_w) * 1e3, 2)
    return {
        "power": round(t.power_w, 2),
        "voltage": INPUT_MV,
        "current": round(t.power_w / INPUT_MV * 1e6, 1),
        "temp": t.chip_temp_c,
        "temp2": -1,
        "vrTemp": round(t.board_temp_c + 5.0, 1),
        "maxPower": model.max_w,
        "nominalVoltage": 5,
        "hashRate": ghs,
        "hashRate_1m": ghs,
        "hashRate_10m": ghs,
        "hashRate_1h": ghs,
        "expectedHashrate": expected_ghs,
        "errorPercentage": 0,
        "bestDiff": int(s.best_share),
        "bestSessionDiff": int(s.best_share),
        "poolDifficulty": s.pool_difficulty,
        "isUsingFallbackStratum": 0,
        "poolConnectionInfo": "IPv4 (TCP)" if miner.stratum_connected else "",
        "isPSRAMAvailable": 1,
        "freeHeap": 8_388_608,
        "freeHeapInternal": 131_072,
        "freeHeapSpiram": 8_257_536,
        "coreVoltage": int(miner.core_voltage_mv),
        "coreVoltageActual": int(miner.core_voltage_mv) if t.hash_fraction else 0,
        "frequency": round(model.frequency_at(t.target_w), 1),
        "ssid": str(miner.settings.get("ssid", "gridpool-sim")),
        "macAddr": miner.mac,
        "hostname": str(miner.settings.get("hostname", miner.hostname)),
        "ipv4": miner.api_host,
        "ipv6": "",
        "wifiStatus": "Connected!",
        "wifiRSSI": -55,
        "apEnabled": 0,
        "sharesAccepted": s.accepted,
        "sharesRejected": s.rejected,
        "sharesRejectedReasons": [
            {"message": msg, "count": n} for msg, n in s.rejected_reasons.items()
        ],
        "uptimeSeconds": int(t.uptime_s),
        "smallCoreCount": 2040,
        "ASICModel": model.asic,
        "stratumURL": host,
        "stratumPort": port,
        "stratumUser": miner.pool.user if miner.pool else "",
        "stratumSuggestedDifficulty": int(miner.settings.get("stratumSuggestedDifficulty", 1000)),
        "stratumExtranonceSubscribe": 0,
        "stratumTLS": 0,
        "stratumCert": "",
        "stratumDecodeCoinbase": 0,
        "fallbackStratumURL": str(miner.settings.get("fallbackStratumURL", "")),
        "fallbackStratumPort": int(miner.settings.get("fallbackStratumPort", 3333)),
        "fallbackStratumUser": str(miner.settings.get("fallbackStratumUser", "")),
        "fallbackStratumSuggestedDifficulty": 1000,
        "fallbackStratumExtranonceSubscribe": 0,
        "fallbackStratumTLS": 0,
        "fallbackStratumCert": "",
        "fallbackStratumDecodeCoinbase": 0,
        "responseTime": 12.5,
        "version": ESP_MINER_VERSION,
        "axeOSVersion": ESP_MINER_VERSION,
        "idfVersion": "v5.4.1",
        "boardVersion": BOARD_VERSION,
        "resetReason": "Reset due to power-on event",
        "runningPartition": "factory",
        "overheat_mode": 0,
        "miningPaused": miner.sleep_requested,
        "overclockEnabled": int(bool(miner.settings.get("overclockEnabled", 0))),
        "display": "SSD1306 (128x32)",
        "rotation": int(miner.settings.get("rotation", 0)),
        "invertscreen": int(bool(miner.settings.get("invertscreen", 0))),
        "displayTimeout": int(miner.settings.get("displayTimeout", -1)),
        "autofanspeed": int(bool(miner.settings.get("autofanspeed", 1))),
        "fanspeed": round(100.0 * t.fan_rpm / 6000, 1),
        "manualFanSpeed": int(miner.settings.get("manualFanSpeed", 100)),
        "minFanSpeed": int(miner.settings.get("minFanSpeed", 25)),
        "temptarget": int(miner.settings.get("temptarget", 60)),
        "fanrpm": t.fan_rpm,
        "fan2rpm": 0,
        "statsFrequency": int(miner.settings.get("statsFrequency", 0)),
        "blockFound": 0,
        "showNewBlock": False,
        "hashrateMonitor": {"asics": [{"total": ghs, "domains": [ghs / 4] * 4, "errorCount": 0}]},
    }


def _pool_host_port(miner: SimulatedMiner) -> tuple[str, int]:
    if miner.pool is None:
        return "", 0
    try:
        return miner.pool.host_port
    except ValueError:
        return miner.pool.url, 0


def check_settings(body: Any) -> dict[str, Any] | None:
    """Validate a PATCH body like ``check_settings_and_update``: None if any value is bad."""
    if not isinstance(body, dict):
        return None
    accepted: dict[str, Any] = {}
    for name, setting in SETTINGS.items():
        if name not in body:
            continue
        value = body[name]
        if setting.kind == "str":
            if not isinstance(value, str) or not setting.lo <= len(value) <= setting.hi:
                return None
        elif setting.kind == "bool":
            if not isinstance(value, bool | int | float) or not 0 <= int(value) <= 1:
                return None
        elif isinstance(value, bool) or not isinstance(value, int | float):
            return None
        elif not setting.lo <= value <= setting.hi:
            return None
        if name == "rotation" and value not in (0, 90, 180, 270):
            return None
        accepted[name] = value
    return accepted


class BitaxeApiServer:
    """aiohttp server for one simulated Bitaxe."""

    def __init__(self, miner: SimulatedMiner, *, host: str = "127.0.0.1", port: int = DEFAULT_PORT):
        self.miner = miner
        self._host, self._port = host, port
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()
        self._address: tuple[str, int] | None = None

    @property
    def address(self) -> tuple[str, int]:
        if self._address is None:
            raise RuntimeError("not started")
        return self._address

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[self._faults])
        app.router.add_get("/api/system/info", self._info)
        app.router.add_get("/api/system/asic", self._asic)
        app.router.add_patch("/api/system", self._patch)
        app.router.add_post("/api/system/pause", self._pause)
        app.router.add_post("/api/system/resume", self._resume)
        app.router.add_post("/api/system/mining", self._mining)
        app.router.add_post("/api/system/restart", self._restart)
        app.router.add_route("*", "/api/{tail:.*}", self._unknown)
        return app

    async def start(self) -> None:
        self._closing.clear()
        runner = web.AppRunner(self.make_app(), access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port)
        await site.start()
        self._runner = runner
        self._address = runner.addresses[0][:2]

    async def stop(self) -> None:
        self._closing.set()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    @web.middleware
    async def _faults(self, request: web.Request, handler) -> web.StreamResponse:
        faults = self.miner.faults
        if faults.api_unresponsive:
            await self._closing.wait()  # never answer while the server runs
            raise web.HTTPServiceUnavailable()
        if faults.api_delay_s:
            await asyncio.sleep(faults.api_delay_s)
        response = await handler(request)
        response.headers.update(CORS_HEADERS)
        return response

    async def _info(self, _request: web.Request) -> web.Response:
        return web.json_response(system_info(self.miner))

    async def _asic(self, _request: web.Request) -> web.Response:
        return web.json_response(
            {
                "ASICModel": self.miner.model.asic,
                "frequencyOptions": list(FREQUENCY_OPTIONS),
                "voltageOptions": list(VOLTAGE_OPTIONS),
            }
        )

    async def _patch(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        if body is _INVALID:
            return _send_err(400, "Invalid JSON")
        settings = check_settings(body)
        if settings is None:
            return _send_err(400, "Wrong API input")
        self._apply(settings)
        return web.Response(status=200)

    def _apply(self, settings: dict[str, Any]) -> None:
        miner = self.miner
        miner.settings.update(settings)
        if "coreVoltage" in settings:
            miner.core_voltage_mv = float(settings["coreVoltage"])
        if "frequency" in settings:
            miner.set_power_target(miner.model.power_for_frequency(float(settings["frequency"])))
        pool_keys = {"stratumURL", "stratumPort", "stratumUser", "stratumPassword"}
        if pool_keys & settings.keys():
            miner.update_pool_from_settings()
        log.info("bitaxe_settings_patched", miner=miner.miner_id, keys=sorted(settings))

    async def _pause(self, _request: web.Request) -> web.Response:
        self.miner.sleep()
        return web.json_response({"message": "Mining paused"})

    async def _resume(self, _request: web.Request) -> web.Response:
        self.miner.wake()
        return web.json_response({"message": "Mining resumed"})

    async def _mining(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        if body is _INVALID:
            return _send_err(400, "Invalid JSON")
        pause = body.get("pause") if isinstance(body, dict) else None
        if not isinstance(pause, bool):
            return _send_err(400, "Missing or invalid 'pause' field")
        self.miner.sleep() if pause else self.miner.wake()
        return web.json_response({"paused": pause})

    async def _restart(self, _request: web.Request) -> web.Response:
        asyncio.get_running_loop().call_later(0.05, self.miner.restart)  # reply first
        return web.json_response({"message": "System will restart shortly."})

    async def _unknown(self, _request: web.Request) -> web.Response:
        return web.json_response({"error": "unknown route"}, status=404)


_INVALID = object()


async def _json_body(request: web.Request) -> Any:
    try:
        raw = await request.read()
        return json.loads(raw.decode()) if raw else _INVALID
    except (UnicodeDecodeError, ValueError):
        return _INVALID


def _send_err(status: int, message: str) -> web.Response:
    """Like ESP-IDF's httpd_resp_send_err: the message as a text/html body."""
    return web.Response(status=status, text=message, content_type="text/html")
