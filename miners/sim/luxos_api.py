"""LuxOS-style cgminer API of a simulated miner: JSON over TCP, one request per connection.

Wire format (cgminer API-README, kept by LuxOS): the client sends one JSON object
``{"command": "summary", "parameter": "..."}``; the miner answers with one JSON object
followed by a NUL byte and closes the connection.  ``"summary+pools"`` runs several read
commands at once and answers ``{"summary": [<reply>], "pools": [<reply>], "id": 1}``.

Every reply carries the STATUS envelope
``{"STATUS": [{"STATUS": "S"|"E", "When": <unix s>, "Code": n, "Msg": "...",
"Description": "LUXminer <version>"}], <SECTION>: [...], "id": 1}``.

Sources for command names, codes and reply shapes:

- LuxOS API docs, https://docs.luxor.tech/firmware/api/ : ``logon`` (316 "Session created",
  ``SESSION[{SessionID}]``), ``session`` (319), ``curtail`` (parameter
  ``"<session_id>,sleep|wakeup"``, 335 "Curtailment command sent", ``CURTAIL[{Action:
  "sleep mode"|"wake up"}]``), ``profileset`` (``"<session_id>,<profile>"``, 321 "Profile
  Set", ``PROFILE[{Board, FrequencyStep, Profile, VoltageStep}]``, selectors ``<n>THs``,
  ``<n>kW``, ``<n>W``), ``version`` (22 "LUXminer versions"), ``stats`` (first element is a
  header, the second the S19-style board fields), ``asc`` field names; sessions expire one
  minute after last use and only one can exist.
- luxos-tooling (github.com/LuxorLabs/luxos-tooling) ``src/luxos/api.json`` for which
  commands need a session, and ``asyncops.logon``: a second ``logon`` while a session is
  active answers Code 402 "Another session is active".
- pyasic ``pyasic/miners/backends/luxminer.py`` for the fields real drivers read:
  ``SUMMARY[0]["GHS 5s"]``, ``STATS[1]["total_rateideal"|"rate_unit"|"Elapsed"|
  "chain_rate<i>"|"chain_acn<i>"|"temp<i>"|"temp2_<i>"]``, ``POWER[0]["Watts"]``,
  ``CONFIG[0]["MACAddr"|"Profile"]``, ``PROFILES[i]["Profile Name"|"Watts"|"Hashrate"|
  "IsTuned"|"Frequency"|"Voltage"]``.
- cgminer ``api.c`` for the generic codes and messages: 7 "%d Pool(s)", 9 "%d ASC(s)",
  11 "Summary", 14 "Invalid command", 23 "Invalid JSON", 24 "Missing JSON 'command'",
  33 config, 45 "Access denied to '%s' command", 70 stats, and the SUMMARY/POOLS/DEVS fields.

Codes the public documents do not show are the simulator's own and marked ``# sim``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import string
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog

from miners.sim import models

if TYPE_CHECKING:
    from miners.sim.miner import SimulatedMiner

log = structlog.get_logger(__name__)

DEFAULT_PORT = 4028  # cgminer / LuxOS API port
MAX_REQUEST_BYTES = 16 * 1024  # a request larger than this is dropped unanswered
READ_TIMEOUT_S = 5.0  # deadline for the whole request to arrive
REQUEST_IDLE_S = 0.25  # a request that stops arriving for this long is taken as complete
WRITE_TIMEOUT_S = 5.0  # deadline for the reply to drain
SESSION_TTL_S = 60.0  # LuxOS: sessions expire one minute after last use
LUXMINER_VERSION = "2024.6.3.190505-sim"  # reported as the LUXminer version
API_VERSION = "3.7"  # LuxOS reports the cgminer API version it mimics

# Codes (see module docstring for sources).
C_POOLS, C_DEVS, C_SUMMARY, C_INVALID_CMD = 7, 9, 11, 14
C_VERSION, C_INVALID_JSON, C_MISSING_CMD, C_CONFIG = 22, 23, 24, 33
C_ACCESS_DENIED, C_STATS = 45, 70
C_LOGON, C_LOGOFF, C_SESSION, C_PROFILES, C_PROFILESET = 316, 317, 319, 320, 321  # 317, 320: sim
C_POWER, C_CURTAIL = 330, 335  # 330: sim
C_BAD_PARAMETER, C_SESSION_ACTIVE = 400, 402  # 400: sim

# Commands that need a valid session id as their first parameter (luxos-tooling api.json).
PRIVILEGED = frozenset({"curtail", "profileset", "logoff"})
_SESSION_CHARS = string.ascii_letters + string.digits


class LuxosApi:
    """The command handler: bytes of one request in, bytes of one reply out (no sockets)."""

    def __init__(self, miner: SimulatedMiner, *, clock: Callable[[], float] | None = None):
        self.miner = miner
        self.clock = clock or miner.clock
        self.session_id = ""
        self._session_used = 0.0
        self._commands: dict[str, Callable[[list[str]], dict[str, Any]]] = {
            "version": self._version,
            "summary": self._summary,
            "stats": self._stats,
            "devs": self._devs,
            "pools": self._pools,
            "config": self._config,
            "power": self._power,
            "profiles": self._profiles,
            "session": self._session,
            "logon": self._logon,
            "logoff": self._logoff,
            "curtail": self._curtail,
            "profileset": self._profileset,
        }

    @property
    def description(self) -> str:
        return f"LUXminer {LUXMINER_VERSION}"

    def handle(self, raw: bytes) -> bytes:
        return json.dumps(self.dispatch(raw), sort_keys=True).encode()

    def dispatch(self, raw: bytes) -> dict[str, Any]:
        try:
            request = json.loads(raw.rstrip(b"\x00 \r\n\t").decode())
        except (UnicodeDecodeError, ValueError):
            return self._error(C_INVALID_JSON, "Invalid JSON")
        if not isinstance(request, dict) or not isinstance(request.get("command"), str):
            return self._error(C_MISSING_CMD, "Missing JSON 'command'")
        command = request["command"].strip().lower()
        params = _split_params(request.get("parameter"))
        if "+" in command:
            return self._multi(command.split("+"), params)
        return self._run(command, params)

    # -- plumbing -----------------------------------------------------------------------

    def _run(self, command: str, params: list[str]) -> dict[str, Any]:
        handler = self._commands.get(command)
        if handler is None:
            return self._error(C_INVALID_CMD, "Invalid command")
        if command in PRIVILEGED and not self._check_session(params):
            return self._error(C_ACCESS_DENIED, f"Access denied to '{command}' command")
        return handler(params)

    def _multi(self, commands: list[str], params: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for command in commands:
            if command in PRIVILEGED:  # cgminer joins read commands only
                out[command] = [
                    self._error(C_ACCESS_DENIED, f"Access denied to '{command}' command")
                ]
            else:
                out[command] = [self._run(command, params)]
        out["id"] = 1
        return out

    def _status(self, code: int, msg: str, severity: str = "S") -> list[dict[str, Any]]:
        return [
            {
                "Code": code,
                "Description": self.description,
                "Msg": msg,
                "STATUS": severity,
                "When": int(self.clock()),
            }
        ]

    def _ok(self, code: int, msg: str, **sections: Any) -> dict[str, Any]:
        return {"STATUS": self._status(code, msg), **sections, "id": 1}

    def _error(self, code: int, msg: str) -> dict[str, Any]:
        return {"STATUS": self._status(code, msg, "E"), "id": 1}

    def _check_session(self, params: list[str]) -> bool:
        now = self.clock()
        if not self.session_id or now - self._session_used > SESSION_TTL_S:
            self.session_id = ""
            return False
        if not params or params[0] != self.session_id:
            return False
        self._session_used = now
        return True

    # -- session commands ---------------------------------------------------------------

    def _session(self, _params: list[str]) -> dict[str, Any]:
        if self.session_id and self.clock() - self._session_used > SESSION_TTL_S:
            self.session_id = ""
        return self._ok(C_SESSION, "Session information", SESSION=[{"SessionID": self.session_id}])

    def _logon(self, _params: list[str]) -> dict[str, Any]:
        now = self.clock()
        if self.session_id and now - self._session_used <= SESSION_TTL_S:
            return self._error(C_SESSION_ACTIVE, "Another session is active")
        self.session_id = "".join(self.miner.rng.choice(_SESSION_CHARS) for _ in range(8))
        self._session_used = now
        return self._ok(C_LOGON, "Session created", SESSION=[{"SessionID": self.session_id}])

    def _logoff(self, _params: list[str]) -> dict[str, Any]:
        self.session_id = ""
        return self._ok(C_LOGOFF, "Session terminated")

    # -- control commands ---------------------------------------------------------------

    def _curtail(self, params: list[str]) -> dict[str, Any]:
        action = params[1].lower() if len(params) > 1 else ""
        if action == "sleep":
            self.miner.sleep()
            return self._ok(
                C_CURTAIL, "Curtailment command sent", CURTAIL=[{"Action": "sleep mode"}]
            )
        if action == "wakeup":
            self.miner.wake()
            return self._ok(C_CURTAIL, "Curtailment command sent", CURTAIL=[{"Action": "wake up"}])
        return self._error(C_BAD_PARAMETER, "Invalid parameter: action must be sleep or wakeup")

    def _profileset(self, params: list[str]) -> dict[str, Any]:
        args = params[1:]
        if len(args) > 1 and args[0].isdigit() and int(args[0]) <= 3:
            args = args[1:]  # legacy "<session>,<board>,<profile>" form
        if not args or not args[0]:
            return self._error(C_BAD_PARAMETER, "Invalid parameter: missing profile name")
        profile = models.select_profile(self.miner.profiles(), args[0])
        if profile is None:
            return self._error(C_BAD_PARAMETER, f"Invalid parameter: unknown profile '{args[0]}'")
        self.miner.apply_profile(profile)
        section = {"Board": 0, "FrequencyStep": 5, "Profile": profile.name, "VoltageStep": 0.05}
        return self._ok(C_PROFILESET, "Profile Set", PROFILE=[section])

    # -- read commands ------------------------------------------------------------------

    def _version(self, _params: list[str]) -> dict[str, Any]:
        version = {
            "API": API_VERSION,
            "CompileTime": "Mon Jun 3 19:05:05 UTC 2024",
            "LUXminer": LUXMINER_VERSION,
            "Miner": LUXMINER_VERSION.split("-")[0],
            "Type": self.miner.model.name,
        }
        return self._ok(C_VERSION, "LUXminer versions", VERSION=[version])

    def _summary(self, _params: list[str]) -> dict[str, Any]:
        return self._ok(C_SUMMARY, "Summary", SUMMARY=[summary_section(self.miner, self.clock())])

    def _stats(self, _params: list[str]) -> dict[str, Any]:
        header = {
            "BMMiner": "1.0.0",
            "CompileTime": "Mon Jun 3 19:05:05 UTC 2024",
            "Miner": "uart_trans.1.3",
            "Type": self.miner.model.name,
        }
        return self._ok(C_STATS, "LUXminer stats", STATS=[header, stats_section(self.miner)])

    def _devs(self, _params: list[str]) -> dict[str, Any]:
        boards = devs_sections(self.miner, self.clock())
        return self._ok(C_DEVS, f"{len(boards)} ASC(s)", DEVS=boards)

    def _pools(self, _params: list[str]) -> dict[str, Any]:
        pools = pools_sections(self.miner)
        return self._ok(C_POOLS, f"{len(pools)} Pool(s)", POOLS=pools)

    def _config(self, _params: list[str]) -> dict[str, Any]:
        config = {
            "ASC Count": self.miner.model.hashboards,
            "CurtailMode": "Sleep" if self.miner.sleep_requested else "None",
            "Device Code": "",
            "Hotplug": "None",
            "Log Interval": 5,
            "MACAddr": self.miner.mac,
            "Model": self.miner.model.name,
            "OS": "Linux",
            "PGA Count": 0,
            "Pool Count": 1 if self.miner.pool else 0,
            "Profile": self.miner.profile_name,
            "Strategy": "Failover",
        }
        return self._ok(C_CONFIG, "LUXminer config", CONFIG=[config])

    def _power(self, _params: list[str]) -> dict[str, Any]:
        telemetry = self.miner.telemetry()
        return self._ok(C_POWER, "Power", POWER=[{"PSU": True, "Watts": round(telemetry.power_w)}])

    def _profiles(self, _params: list[str]) -> dict[str, Any]:
        rows = [
            {
                "Frequency": p.frequency_mhz,
                "Hashrate": p.hashrate_ths,
                "IsDynamic": False,
                "IsTuned": False,
                "Profile Name": p.name,
                "Step": p.step,
                "Voltage": p.voltage,
                "Watts": p.watts,
            }
            for p in self.miner.profiles()
        ]
        return self._ok(C_PROFILES, "Profiles", PROFILES=rows)


def _split_params(parameter: Any) -> list[str]:
    if parameter is None:
        return []
    return [part.strip() for part in str(parameter).split(",")]


def _mhs(ths: float) -> float:
    return round(ths * 1e6, 2)


def summary_section(miner: SimulatedMiner, now: float) -> dict[str, Any]:
    t, s = miner.telemetry(), miner.stats
    mhs = _mhs(t.hashrate_ths)
    work = s.diff_accepted + s.diff_rejected + s.diff_stale
    return {
        "Accepted": s.accepted,
        "Best Share": int(s.best_share),
        "Device Hardware%": 0.0,
        "Device Rejected%": round(100 * s.diff_rejected / work, 4) if work else 0.0,
        "Difficulty Accepted": s.diff_accepted,
        "Difficulty Rejected": s.diff_rejected,
        "Difficulty Stale": s.diff_stale,
        "Discarded": 0,
        "Elapsed": int(t.uptime_s),
        "Found Blocks": 0,
        "GHS 5s": round(t.hashrate_ths * 1e3, 2),
        "GHS av": round(t.hashrate_ths * 1e3, 2),
        "Get Failures": 0,
        "Getworks": 0,
        "Hardware Errors": 0,
        "Last getwork": int(now),
        "Local Work": 0,
        "MHS 15m": mhs,
        "MHS 1m": mhs,
        "MHS 5m": mhs,
        "MHS 5s": mhs,
        "MHS av": mhs,
        "Network Blocks": 0,
        "Pool Rejected%": round(100 * s.diff_rejected / work, 4) if work else 0.0,
        "Pool Stale%": round(100 * s.diff_stale / work, 4) if work else 0.0,
        "Rejected": s.rejected,
        "Remote Failures": 0,
        "Stale": s.stale,
        "Total MH": round(mhs * t.uptime_s, 0),
        "Utility": round(s.accepted / max(t.uptime_s, 1.0) * 60, 2),
        "Work Utility": 0.0,
    }


def stats_section(miner: SimulatedMiner) -> dict[str, Any]:
    """The S19-style second element of ``stats`` (boards numbered from 1)."""
    t, model = miner.telemetry(), miner.model
    boards = model.hashboards
    per_board_gh = t.hashrate_ths * 1e3 / boards
    ideal_gh = model.hashrate_at(t.target_w) * 1e3
    section: dict[str, Any] = {
        "Calls": 0,
        "Elapsed": int(t.uptime_s),
        "GHS 5s": round(t.hashrate_ths * 1e3, 2),
        "GHS av": round(t.hashrate_ths * 1e3, 2),
        "fan_num": 4,
        "frequency": round(t.frequency_mhz),
        "miner_count": boards,
        "rate_unit": "GH",
        "temp_max": t.chip_temp_c,
        "temp_num": boards,
        "total_acn": model.chips_per_board * boards,
        "total_freqavg": round(t.frequency_mhz, 2),
        "total_rate": round(t.hashrate_ths * 1e3, 2),
        "total_rateideal": round(ideal_gh, 2),
    }
    for fan in range(1, 5):
        section[f"fan{fan}"] = t.fan_rpm
    for i in range(1, boards + 1):
        section[f"chain_acn{i}"] = model.chips_per_board
        section[f"chain_acs{i}"] = " " + " ".join(["oooooooo"] * (model.chips_per_board // 8))
        section[f"chain_hw{i}"] = 0
        section[f"chain_rate{i}"] = round(per_board_gh, 2)
        section[f"temp{i}"] = t.chip_temp_c
        section[f"temp2_{i}"] = t.board_temp_c
    return section


def devs_sections(miner: SimulatedMiner, now: float) -> list[dict[str, Any]]:
    t, s, model = miner.telemetry(), miner.stats, miner.model
    boards = model.hashboards
    mhs = _mhs(t.hashrate_ths / boards)
    return [
        {
            "ASC": i,
            "Accepted": s.accepted // boards,
            "Device Elapsed": int(t.uptime_s),
            "Device Hardware%": 0.0,
            "Device Rejected%": 0.0,
            "Diff1 Work": 0,
            "Difficulty Accepted": s.diff_accepted / boards,
            "Difficulty Rejected": s.diff_rejected / boards,
            "Enabled": "Y",
            "Hardware Errors": 0,
            "ID": i,
            "IsRamping": t.state.value == "ramping",
            "IsUserShutdown": miner.sleep_requested,
            "Last Share Difficulty": s.last_share_difficulty,
            "Last Share Pool": 0 if s.last_share_time else -1,
            "Last Share Time": int(s.last_share_time),
            "Last Valid Work": int(s.last_share_time or now),
            "MHS 15m": mhs,
            "MHS 1m": mhs,
            "MHS 5m": mhs,
            "MHS 5s": mhs,
            "MHS av": mhs,
            "Name": "",
            "Nominal MHS": _mhs(model.nominal_ths / boards),
            "Profile": miner.profile_name,
            "Rejected": s.rejected // boards,
            "Status": "Alive" if t.hash_fraction > 0 else "Disabled",
            "Temperature": t.board_temp_c,
            "Total MH": round(mhs * t.uptime_s, 0),
            "Utility": 0.0,
        }
        for i in range(boards)
    ]


def pools_sections(miner: SimulatedMiner) -> list[dict[str, Any]]:
    pool, s = miner.pool, miner.stats
    if pool is None:
        return []
    work = s.diff_accepted + s.diff_rejected + s.diff_stale
    connected = miner.stratum_connected
    return [
        {
            "Accepted": s.accepted,
            "Bad Work": 0,
            "Best Share": int(s.best_share),
            "Current Block Height": 0,
            "Current Block Version": 536870912,
            "Diff1 Shares": 0,
            "Difficulty Accepted": s.diff_accepted,
            "Difficulty Rejected": s.diff_rejected,
            "Difficulty Stale": s.diff_stale,
            "Discarded": 0,
            "Get Failures": 0,
            "Getworks": 0,
            "Has GBT": False,
            "Has Stratum": True,
            "Has Vmask": True,
            "Last Share Difficulty": s.last_share_difficulty,
            "Last Share Time": int(s.last_share_time),
            "Long Poll": "N",
            "POOL": 0,
            "Pool Rejected%": round(100 * s.diff_rejected / work, 4) if work else 0.0,
            "Pool Stale%": round(100 * s.diff_stale / work, 4) if work else 0.0,
            "Priority": 0,
            "Proxy": "",
            "Proxy Type": "",
            "Quota": 1,
            "Rejected": s.rejected,
            "Remote Failures": 0,
            "Stale": s.stale,
            "Status": "Alive" if connected else "Dead",
            "Stratum Active": connected,
            "Stratum Difficulty": s.pool_difficulty if connected else 0.0,
            "Stratum URL": pool.url if connected else "",
            "URL": pool.url,
            "User": pool.user,
            "Work Difficulty": s.pool_difficulty,
            "Works": 0,
        }
    ]


class LuxosApiServer:
    """The TCP listener: reads one request per connection, answers, closes."""

    def __init__(self, miner: SimulatedMiner, *, host: str = "127.0.0.1", port: int = DEFAULT_PORT):
        self.miner = miner
        self.api = LuxosApi(miner)
        self._host, self._port = host, port
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task] = set()

    @property
    def address(self) -> tuple[str, int]:
        if self._server is None:
            raise RuntimeError("not started")
        return self._server.sockets[0].getsockname()[:2]

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self._host, self._port)

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for task in list(self._conns):
            task.cancel()
        if server is not None:
            with contextlib.suppress(Exception):
                await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._conns.add(task)
        try:
            await self._answer(reader, writer)
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError) as err:
            log.debug("luxos_api_conn_dropped", miner=self.miner.miner_id, error=type(err).__name__)
        finally:
            self._conns.discard(task)  # type: ignore[arg-type]
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async with asyncio.timeout(READ_TIMEOUT_S):
            raw = await read_request(reader)
        if raw is None:
            return
        faults = self.miner.faults
        if faults.api_unresponsive:
            await reader.read()  # hang until the client gives up (or the server stops)
            return
        if faults.api_delay_s:
            await asyncio.sleep(faults.api_delay_s)
        writer.write(self.api.handle(raw) + b"\x00")
        async with asyncio.timeout(WRITE_TIMEOUT_S):
            await writer.drain()


async def read_request(reader: asyncio.StreamReader) -> bytes | None:
    """Read until the bytes parse as JSON, the peer half-closes, goes quiet, or the size limit.

    Clients differ: some half-close after writing, others keep the socket open and wait;
    so each chunk is tried as a complete JSON document, and a request that stops arriving
    for REQUEST_IDLE_S is answered as it is (cgminer answers after a single read).  Returns
    None for an empty or oversized request (dropped unanswered).
    """
    buf = bytearray()
    while True:
        try:
            async with asyncio.timeout(REQUEST_IDLE_S if buf else None):
                chunk = await reader.read(4096)
        except TimeoutError:
            return bytes(buf)
        if not chunk:
            return bytes(buf) or None
        buf += chunk
        if len(buf) > MAX_REQUEST_BYTES:
            return None
        text = bytes(buf).rstrip(b"\x00 \r\n\t")
        if not text.startswith(b"{"):
            return bytes(buf)  # not JSON at all: answered with "Invalid JSON"
        try:
            json.loads(text)
        except ValueError:
            continue
        return bytes(buf)
