"""`SimulatedMiner`: one simulated ASIC = power model + management API + Stratum client.

The miner's *model* hash rate (TH/s, what its firmware reports) is turned into a *real*
hash rate by one scale factor, ``hash_scale`` in real H/s per model TH/s (default
`DEFAULT_HASH_SCALE` = 1000, i.e. 1 TH/s of model = 1 kH/s of real sha256d work).  The
Stratum client grinds nonces at exactly ``expected_ths() * hash_scale`` H/s, so the work
the pool measures from the shares is the model's hash rate times the scale: shares stop when
the power model stops, follow the wake ramp, and follow the power target.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from miners.sim import models
from miners.sim.faults import Faults
from miners.sim.models import MinerModel, Profile
from miners.sim.power import PowerModel, PowerState
from miners.sim.stratum_client import Solution, StratumClient
from pool.bitcoin.target import DIFF1_TARGET

log = structlog.get_logger(__name__)

DEFAULT_HASH_SCALE = 1000.0  # real H/s per model TH/s (1 TH/s of model = 1 kH/s real)
RESTART_OFF_S = 3.0  # a restart keeps the hashboards off this long before the boot ramp
AMBIENT_C = 25.0  # inlet air
BOARD_RISE_C = 40.0  # board temperature rise at the maximum power target
CHIP_OVER_BOARD_C = 12.0  # chips run this much hotter than the board sensors
FAN_MIN_RPM = 1500
FAN_MAX_RPM = 6000
SUGGEST_SHARE_INTERVAL_S = 10.0  # suggest_difficulty aims at one share per this many seconds
RECONNECT_DELAY_S = 1.0  # wait before reconnecting after a dropped Stratum connection


@dataclass(frozen=True, slots=True)
class PoolConfig:
    """Where the miner mines: a stratum+tcp:// URL, user (worker name) and password."""

    url: str
    user: str
    password: str = "x"

    @property
    def host_port(self) -> tuple[str, int]:
        rest = self.url.split("://", 1)[-1].rstrip("/")
        host, _, port = rest.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"pool URL {self.url!r} must look like stratum+tcp://HOST:PORT")
        return host, int(port)


@dataclass(slots=True)
class ShareStats:
    """Counters the firmware keeps about its shares (reported by both management APIs)."""

    accepted: int = 0
    rejected: int = 0
    stale: int = 0
    diff_accepted: float = 0.0
    diff_rejected: float = 0.0
    diff_stale: float = 0.0
    best_share: float = 0.0
    last_share_time: float = 0.0  # unix seconds, 0 = none yet
    last_share_difficulty: float = 0.0
    pool_difficulty: float = 0.0
    rejected_reasons: dict[str, int] = field(default_factory=dict)

    def record(self, *, accepted: bool, difficulty: float, reason: str | None, now: float) -> None:
        self.last_share_time = now
        self.last_share_difficulty = difficulty
        if accepted:
            self.accepted += 1
            self.diff_accepted += difficulty
            return
        message = reason or "rejected"
        if "stale" in message.lower() or "not found" in message.lower():
            self.stale += 1
            self.diff_stale += difficulty
        self.rejected += 1
        self.diff_rejected += difficulty
        self.rejected_reasons[message] = self.rejected_reasons.get(message, 0) + 1


@dataclass(frozen=True, slots=True)
class Telemetry:
    """One reading of everything a management API reports about the hardware."""

    state: PowerState
    power_w: float
    hashrate_ths: float
    target_w: float
    hash_fraction: float
    frequency_mhz: float
    voltage: float
    board_temp_c: float
    chip_temp_c: float
    fan_rpm: int
    uptime_s: float


class ManagementServer(Protocol):
    """What the miner needs from its management API server (LuxOS TCP or Bitaxe HTTP)."""

    @property
    def address(self) -> tuple[str, int]: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class SimulatedMiner:
    """One simulated ASIC.  The management API and the Stratum client run once `start`ed."""

    def __init__(
        self,
        miner_id: str,
        model: MinerModel,
        *,
        worker: str | None = None,
        pool: PoolConfig | None = None,
        hash_scale: float = DEFAULT_HASH_SCALE,
        api_host: str = "127.0.0.1",
        api_port: int = 0,
        faults: Faults | None = None,
        clock: Callable[[], float] = time.time,
        seed: int | None = None,
        state: PowerState = PowerState.MINING,
    ) -> None:
        if hash_scale <= 0:
            raise ValueError("hash_scale must be > 0 (real H/s per model TH/s)")
        self.miner_id = miner_id
        self.model = model
        self.worker = worker or miner_id
        self.pool = pool
        self.hash_scale = hash_scale
        self.api_host = api_host
        self.api_port = api_port
        self.faults = faults or Faults()
        self.clock = clock
        self.rng = random.Random(seed if seed is not None else miner_id)
        self.power = PowerModel(model, clock=clock, rng=self.rng, state=state)
        self.power.ramp_factor = self.faults.slow_ramp_factor
        self.stats = ShareStats()
        self.profile_name = "default"
        self.core_voltage_mv = model.nominal_voltage  # Bitaxe: set by PATCH /api/system
        self.sleep_requested = state is PowerState.SLEEPING  # what the operator last asked
        self.started_at = clock()
        self.mac = _mac_for(miner_id)
        self.hostname = miner_id.replace(".", "-")
        self.settings: dict[str, object] = {}  # ESP-Miner NVS-style settings set over the API
        self._api_server: ManagementServer | None = None
        self._tasks: set[asyncio.Task] = set()
        self.crashed = False
        self._client: SimStratumClient | None = None
        self.stratum_connects = 0  # successful TCP connections to the pool so far
        self._reconnect_task: asyncio.Task | None = None
        self.log = log.bind(miner=miner_id, model=model.key)

    # -- commands (from the management APIs, the fleet admin API, or tests) --------------

    def sleep(self) -> bool:
        """Curtail.  Returns True (acknowledged) even when the ignore-sleep fault swallows it."""
        self.sleep_requested = True
        if self.faults.ignore_sleep:
            self.log.info("sim_sleep_ignored")
            return True
        self.power.sleep()
        return True

    def wake(self) -> bool:
        self.sleep_requested = False
        self.power.ramp_factor = self.faults.slow_ramp_factor
        self.power.wake()
        return True

    def set_power_target(self, watts: float) -> float:
        applied = self.power.set_power_target(watts)
        match = next((p for p in self.profiles() if p.watts == round(applied)), None)
        self.profile_name = match.name if match else f"{applied:.0f}W"
        return applied

    def apply_profile(self, profile: Profile) -> None:
        self.power.set_power_target(profile.watts)
        self.profile_name = profile.name

    def profiles(self) -> tuple[Profile, ...]:
        return models.profiles(self.model)

    def restart(self) -> None:
        """Reboot: connection dropped, hashboards off for RESTART_OFF_S, then the boot ramp."""
        self.power.power_off()
        self.sleep_requested = False
        self._spawn(self._reboot(RESTART_OFF_S))

    def set_pool(self, pool: PoolConfig | None) -> None:
        """Point the miner at another pool; a running Stratum client reconnects."""
        self.pool = pool
        self._on_pool_changed()

    def update_pool_from_settings(self) -> None:
        """ESP-Miner keeps the pool as stratumURL (host) + stratumPort + user/password."""
        old_host, old_port = self.pool.host_port if self.pool else ("", 0)
        host = str(self.settings.get("stratumURL", old_host))
        port = int(self.settings.get("stratumPort", old_port))  # type: ignore[arg-type]
        user = str(self.settings.get("stratumUser", self.pool.user if self.pool else ""))
        password = str(
            self.settings.get("stratumPassword", self.pool.password if self.pool else "x")
        )
        self.set_pool(PoolConfig(f"stratum+tcp://{host}:{port}", user, password))

    def crash(self, *, restart_after_s: float = 0.0) -> None:
        """Crash now: Stratum connection and management API gone, power cut.

        With ``restart_after_s`` > 0 the miner reboots after that long (API back on the same
        port, boot ramp, Stratum reconnect); with 0 it stays down.
        """
        if self.crashed:
            return
        self.crashed = True
        self.power.power_off()
        self.log.warning("sim_miner_crashed", restart_after_s=restart_after_s)
        self._spawn(self._crash_and_reboot(restart_after_s))

    def update_faults(self, raw: dict) -> None:
        self.faults.update(raw)
        self.power.ramp_factor = self.faults.slow_ramp_factor
        if self.faults.reconnect_every_s > 0 and self._client and self._reconnect_task is None:
            self._reconnect_task = self._spawn(self._reconnect_loop())

    # -- readings -----------------------------------------------------------------------

    def uptime_s(self) -> float:
        return max(0.0, self.clock() - self.started_at)

    def real_hashrate_hs(self) -> float:
        """The sha256d rate (H/s) the Stratum client must grind at right now."""
        return self.power.expected_ths() * self.hash_scale

    def telemetry(self) -> Telemetry:
        reading = self.power.read()
        load = (reading.power_w - self.model.sleep_w) / (self.model.max_w - self.model.sleep_w)
        load = min(1.0, max(0.0, load))
        board = AMBIENT_C + BOARD_RISE_C * load if reading.power_w else AMBIENT_C
        fan = FAN_MIN_RPM + (FAN_MAX_RPM - FAN_MIN_RPM) * load if reading.power_w else 0
        return Telemetry(
            state=reading.state,
            power_w=reading.power_w,
            hashrate_ths=reading.hashrate_ths,
            target_w=reading.target_w,
            hash_fraction=reading.hash_fraction,
            frequency_mhz=self.model.frequency_at(reading.target_w) * (reading.hash_fraction > 0),
            voltage=self._voltage(reading.target_w),
            board_temp_c=round(board, 1),
            chip_temp_c=round(board + CHIP_OVER_BOARD_C * load, 1),
            fan_rpm=int(fan),
            uptime_s=self.uptime_s(),
        )

    def _voltage(self, target_w: float) -> float:
        if self.model.api == "bitaxe":
            return self.core_voltage_mv
        steps = (self.model.frequency_at(target_w) - self.model.nominal_mhz) / 25.0
        return round(self.model.nominal_voltage + 0.1 * steps, 2)

    # -- life cycle ---------------------------------------------------------------------

    @property
    def api_address(self) -> tuple[str, int]:
        """(host, port) of the management API, once started."""
        server = self._api_server
        if server is None:
            raise RuntimeError("management API not started")
        return server.address

    async def start(self) -> None:
        """Start the management API (and the Stratum client when a pool is configured)."""
        self.started_at = self.clock()
        await self._start_api()
        self._start_client()
        if self.faults.crash_after_s > 0:
            self._spawn(self._crash_later(self.faults.crash_after_s))
        self.log.info("sim_miner_started", api=self.api_address, state=str(self.power.state))

    async def stop(self) -> None:
        await self._stop_client()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._stop_api()

    async def _start_api(self) -> None:
        # Imported here: the API modules import this one for their type hints.
        server: ManagementServer
        if self.model.api == "bitaxe":
            from miners.sim.bitaxe_api import BitaxeApiServer

            server = BitaxeApiServer(self, host=self.api_host, port=self.api_port)
        else:
            from miners.sim.luxos_api import LuxosApiServer

            server = LuxosApiServer(self, host=self.api_host, port=self.api_port)
        await server.start()
        self._api_server = server
        self.api_port = server.address[1]  # a reboot comes back on the same port

    async def _stop_api(self) -> None:
        server, self._api_server = self._api_server, None
        if server is not None:
            await server.stop()

    async def _crash_and_reboot(self, restart_after_s: float) -> None:
        await self._stop_client()
        await self._stop_api()
        if restart_after_s <= 0:
            return
        await asyncio.sleep(restart_after_s)
        self.crashed = False
        self.started_at = self.clock()
        await self._start_api()
        self.power.ramp_factor = self.faults.slow_ramp_factor
        self.power.power_on()
        self._start_client()
        self.log.info("sim_miner_rebooted")

    async def _crash_later(self, after_s: float) -> None:
        await asyncio.sleep(after_s)
        self.crash(restart_after_s=self.faults.crash_restart_s)

    def _start_client(self) -> None:
        """Start the Stratum client (when a pool is configured and the miner is up)."""
        if self.pool is None or self.crashed or self._client is not None:
            return
        host, port = self.pool.host_port
        self._client = SimStratumClient(self, host, port, self.pool.user, self.pool.password)
        self._client.start()
        if self.faults.reconnect_every_s > 0 and self._reconnect_task is None:
            self._reconnect_task = self._spawn(self._reconnect_loop())

    async def _stop_client(self) -> None:
        client, self._client = self._client, None
        task, self._reconnect_task = self._reconnect_task, None
        if task is not None:
            task.cancel()
        if client is not None:
            await client.stop()

    def _on_pool_changed(self) -> None:
        if self._client is not None:
            self._spawn(self._restart_client())

    async def _restart_client(self) -> None:
        await self._stop_client()
        self._start_client()

    async def _reconnect_loop(self) -> None:
        """The disconnect/reconnect-loop fault: drop the connection every N seconds."""
        while self.faults.reconnect_every_s > 0:
            await asyncio.sleep(self.faults.reconnect_every_s)
            client = self._client
            if client is not None and client.connected:
                self.log.info("sim_fault_disconnect")
                await client.close()  # the client's run loop reconnects on its own
        self._reconnect_task = None

    # -- Stratum client hooks -----------------------------------------------------------

    @property
    def stratum_connected(self) -> bool:
        return self._client is not None and self._client.connected

    @property
    def stratum_client(self) -> StratumClient | None:
        """The running Stratum client (None while stopped, crashed or rebooting)."""
        return self._client

    def on_stratum_connect(self) -> None:
        self.stratum_connects += 1

    def on_share(self, solution: Solution, accepted: bool, reason: str | None) -> None:
        """The pool's verdict on one submitted share."""
        stats = self.stats
        stats.record(
            accepted=accepted, difficulty=solution.difficulty, reason=reason, now=self.clock()
        )
        if self._client is not None and self._client.difficulty:
            stats.pool_difficulty = self._client.difficulty
        hash_int = int.from_bytes(solution.hash_le, "little")
        if accepted and hash_int:
            stats.best_share = max(stats.best_share, DIFF1_TARGET / hash_int)

    def shares_to_submit(
        self, solution: Solution, retired_job_ids: Sequence[str] = ()
    ) -> list[Solution]:
        """The submissions a found share turns into, after the share faults (a stale share
        names the newest retired job, or an id the pool never issued)."""
        faults, rng = self.faults, self.rng
        if faults.invalid_share_rate and rng.random() < faults.invalid_share_rate:
            return [dataclasses.replace(solution, nonce=solution.nonce ^ 0x5A5A5A5A)]
        if faults.stale_share_rate and rng.random() < faults.stale_share_rate:
            retired = retired_job_ids[-1] if retired_job_ids else "retired-job"
            job = dataclasses.replace(solution.job, job_id=retired)
            return [dataclasses.replace(solution, job=job)]
        if faults.duplicate_share_rate and rng.random() < faults.duplicate_share_rate:
            return [solution, solution]
        return [solution]

    async def _reboot(self, off_s: float) -> None:
        await self._stop_client()
        await asyncio.sleep(off_s)
        self.power.ramp_factor = self.faults.slow_ramp_factor
        self.power.power_on()
        self._start_client()

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


class SimStratumClient(StratumClient):
    """The reusable Stratum client, paced by the power model, with the share faults.

    Only the client's public hooks are used: `hashrate_hs` follows the power model,
    `on_solution` applies the invalid, duplicate and stale share faults, `on_share` keeps
    the firmware's share counters and `on_connect` counts connections across reconnects.
    """

    def __init__(self, miner: SimulatedMiner, host: str, port: int, user: str, password: str):
        rate = miner.real_hashrate_hs()
        super().__init__(
            host,
            port,
            user,
            password,
            user_agent=f"gridpool-sim/{miner.model.key}",
            suggest_difficulty=max(rate * SUGGEST_SHARE_INTERVAL_S / 2**32, 1e-9) if rate else None,
            hashrate_hs=miner.real_hashrate_hs,
            reconnect_delay_s=RECONNECT_DELAY_S,
            on_share=miner.on_share,
            on_solution=lambda found: miner.shares_to_submit(found, self.retired_job_ids),
            on_connect=miner.on_stratum_connect,
        )
        self.miner = miner


def _mac_for(miner_id: str) -> str:
    """A stable, locally administered MAC address derived from the miner id."""
    digest = bytearray(hashlib.sha256(miner_id.encode()).digest()[:6])
    digest[0] = (digest[0] & 0xFC) | 0x02
    return ":".join(f"{b:02X}" for b in digest)
