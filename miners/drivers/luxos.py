"""LuxOS (LUXminer) driver: the cgminer API on TCP 4028 plus LuxOS's session commands.

Reads use one multi-command request, ``summary+devs+power+config``. Commands that change
the miner (``curtail``, ``profileset``) need a session id as their first parameter
(https://docs.luxor.tech/firmware/api/): ``logon`` opens the miner's only session (Code 316,
``SESSION[0].SessionID``); a second ``logon`` while one is active answers Code 402
"Another session is active"; a session expires one minute after its last use.

Session policy: one session per miner, reused while fresh. When ``logon`` answers 402 the
session belongs to an earlier run of this controller (or an operator's tool): ``session``
returns the active id and the driver adopts it. A command refused with Code 45 "Access
denied" means the session was lost (expired, logged off elsewhere): the driver logs on again
and retries that command once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import structlog

from miners.drivers import cgminer_api as api
from miners.drivers.base import TH, Capabilities, ReportedState, Telemetry
from miners.errors import MinerCommandError, MinerProtocolError, MinerSessionError

log = structlog.get_logger(__name__)

READ_COMMANDS = ["summary", "devs", "power", "config"]
CODE_ACCESS_DENIED = 45  # cgminer api.c MSG_ACCDENY
CODE_SESSION_ACTIVE = 402  # LuxOS: another session is active
SESSION_TTL_S = 60.0  # LuxOS expires a session this long after its last use
SESSION_MARGIN_S = 5.0  # treat a session as gone this much earlier (clock skew, latency)


class LuxosDriver:
    """One LuxOS miner. Not safe to share across event loops; safe across tasks."""

    def __init__(
        self,
        miner_id: str,
        host: str,
        port: int = api.DEFAULT_PORT,
        *,
        timeout_s: float = 3.0,
        clock=time.monotonic,
    ) -> None:
        self.miner_id = miner_id
        self.host, self.port = host, port
        self.timeout_s = timeout_s
        self._clock = clock
        self._session_id = ""
        self._session_used = -SESSION_TTL_S
        self._session_lock = asyncio.Lock()
        self._profiles: dict[str, tuple[float, float]] = {}  # name -> (W, H/s)
        self._caps = Capabilities(can_sleep=True, can_tune=True, reports_power=True)
        self.logons = 0  # sessions opened (logon or adopted), for tests and status

    @property
    def capabilities(self) -> Capabilities:
        return self._caps

    async def _call(self, command: str, parameter: str | None = None) -> dict[str, Any]:
        return await api.request(
            self.miner_id, self.host, self.port, command, parameter, timeout_s=self.timeout_s
        )

    # -- reads --------------------------------------------------------------------------

    async def probe(self) -> Capabilities:
        reply = api.check_status(await self._call("profiles"), self.miner_id, "profiles")
        rows = api.section(reply, "PROFILES", self.miner_id, "profiles")
        profiles = {}
        for row in rows:
            watts, ths = api.number(row, "Watts"), api.number(row, "Hashrate")
            name = row.get("Profile Name")
            if isinstance(name, str) and watts and ths is not None:
                profiles[name] = (watts, ths * TH)
        if not profiles:
            raise MinerProtocolError(self.miner_id, "profiles", "no usable profile")
        self._profiles = profiles
        points = tuple(sorted(set(profiles.values())))
        self._caps = Capabilities(True, True, True, points, firmware="luxos")
        return self._caps

    async def read(self) -> Telemetry:
        reply = await self._call("+".join(READ_COMMANDS))
        parts = api.multi_sections(reply, READ_COMMANDS, self.miner_id)
        cmd = "read"
        summary = api.section(parts["summary"], "SUMMARY", self.miner_id, cmd)[0]
        boards = api.section(parts["devs"], "DEVS", self.miner_id, cmd)
        power = api.section(parts["power"], "POWER", self.miner_id, cmd)[0]
        config = api.section(parts["config"], "CONFIG", self.miner_id, cmd)[0]
        hashrate = api.hashrate_hs(summary)
        watts = api.number(power, "Watts")
        if hashrate is None or watts is None:
            raise MinerProtocolError(self.miner_id, cmd, "no hash rate or power in the reply")
        curtailed = str(config.get("CurtailMode", "None")).lower() == "sleep"
        if curtailed:
            state = ReportedState.SLEEPING
        elif any(b.get("IsRamping") is True for b in boards):
            state = ReportedState.RAMPING
        else:
            state = ReportedState.MINING if hashrate > 0 else ReportedState.FAULTED
        temps = tuple(t for b in boards if (t := api.number(b, "Temperature")) is not None)
        return Telemetry(
            state=state,
            power_w=watts,
            hashrate_hs=hashrate,
            temps_c=temps,
            power_target_w=self._profile_watts(config.get("Profile")),
            sleep_requested=curtailed,
        )

    def _profile_watts(self, name: Any) -> float | None:
        if not isinstance(name, str):
            return None
        if name in self._profiles:
            return self._profiles[name][0]
        if name.upper().endswith("W") and name[:-1].replace(".", "", 1).isdigit():
            # a power target set outside the presets, e.g. "3400W" (isdigit() is true for
            # "²" too, which float() refuses)
            with contextlib.suppress(ValueError):
                return api.finite(float(name[:-1]))
        return None

    # -- commands -----------------------------------------------------------------------

    async def sleep(self) -> None:
        await self._privileged("curtail", "sleep")

    async def wake(self) -> None:
        await self._privileged("curtail", "wakeup")

    async def set_power_target(self, watts: float) -> float:
        if not self._profiles:
            await self.probe()
        fitting = [(w, n) for n, (w, _h) in self._profiles.items() if w <= watts + 1e-6]
        chosen_w, name = max(fitting) if fitting else min(
            (w, n) for n, (w, _h) in self._profiles.items()
        )
        await self._privileged("profileset", name)
        return chosen_w

    async def close(self) -> None:
        """Log off (best effort) so an operator's tool can open a session at once."""
        sid, self._session_id = self._session_id, ""
        if sid and self._fresh():
            try:
                await self._call("logoff", sid)
            except Exception as err:  # closing must not fail; the session expires anyway
                log.debug("luxos_logoff_failed", miner=self.miner_id, error=str(err))

    async def _privileged(self, command: str, *args: str) -> dict[str, Any]:
        for attempt in (1, 2):
            sid = await self._session()
            reply = await self._call(command, ",".join([sid, *args]))
            code = api.status_of(reply).get("Code")
            if code == CODE_ACCESS_DENIED and attempt == 1:
                log.info("luxos_session_lost", miner=self.miner_id, command=command)
                self._forget(sid)
                continue
            try:
                api.check_status(reply, self.miner_id, command)
            except MinerCommandError as err:
                if err.code == CODE_ACCESS_DENIED:
                    raise MinerSessionError(self.miner_id, command, err.reason, err.code) from None
                raise
            self._session_used = self._clock()
            return reply
        raise AssertionError("unreachable")  # pragma: no cover

    def _fresh(self) -> bool:
        return self._clock() - self._session_used < SESSION_TTL_S - SESSION_MARGIN_S

    def _forget(self, sid: str) -> None:
        if self._session_id == sid:
            self._session_id = ""

    async def _session(self) -> str:
        async with self._session_lock:
            if self._session_id and self._fresh():
                return self._session_id
            reply = await self._call("logon")
            status = api.status_of(reply)
            if status.get("Code") == CODE_SESSION_ACTIVE:
                sid = await self._active_session()
            else:
                api.check_status(reply, self.miner_id, "logon")
                sid = self._session_from(reply, "logon")
            self._session_id, self._session_used = sid, self._clock()
            self.logons += 1
            return sid

    async def _active_session(self) -> str:
        """Adopt the session that is already open (ours from an earlier run, or a tool's)."""
        reply = api.check_status(await self._call("session"), self.miner_id, "session")
        sid = self._session_from(reply, "session")
        log.info("luxos_session_adopted", miner=self.miner_id)
        return sid

    def _session_from(self, reply: dict[str, Any], command: str) -> str:
        rows = reply.get("SESSION")
        first = rows[0] if isinstance(rows, list) and rows else None
        sid = first.get("SessionID") if isinstance(first, dict) else None
        if not isinstance(sid, str) or not sid:
            raise MinerSessionError(self.miner_id, command, "no session id in the reply")
        return sid
