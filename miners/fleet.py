"""Telemetry polling for one site and the per-miner state machine.

States: ``unknown`` (not read yet) → ``mining`` / ``ramping`` / ``sleeping`` / ``faulted`` as
the firmware reports, or ``unreachable`` after ``unreachable_after`` failed reads in a row
(a timeout, a refused connection, an answer that is not the firmware's API). Every change is
kept with its wall-clock time and reason (the last ``transitions_kept`` per miner).

A sweep reads every miner once, at most ``concurrency`` requests in flight, each with its
own deadline, so a dead or slow miner costs one deadline of one worker and never stalls the
rest. The concurrency is sized from the site: ``ceil(miners x request_timeout_s /
interval_s)`` (so a sweep ends within the interval even if every request hit its deadline),
at least ``min_concurrency``, at most ``max_concurrency``.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

import aiohttp
import structlog

from miners.allocate import PowerCurve
from miners.drivers.base import Capabilities, MinerDriver, ReportedState, Telemetry, curve_for
from miners.errors import DriverError, MinerError
from miners.inventory import MinerSpec, SiteSpec
from pool.errors import ConfigError

log = structlog.get_logger(__name__)


class MinerState(StrEnum):
    UNKNOWN = "unknown"
    MINING = "mining"
    RAMPING = "ramping"
    SLEEPING = "sleeping"
    UNREACHABLE = "unreachable"
    FAULTED = "faulted"


_FROM_REPORT = {
    ReportedState.MINING: MinerState.MINING,
    ReportedState.RAMPING: MinerState.RAMPING,
    ReportedState.SLEEPING: MinerState.SLEEPING,
    ReportedState.FAULTED: MinerState.FAULTED,
}


@dataclass(frozen=True, slots=True)
class PollSettings:
    interval_s: float = 10.0  # time between the starts of two sweeps
    request_timeout_s: float = 3.0  # deadline of one management API call
    min_concurrency: int = 16  # requests in flight per site, at least
    max_concurrency: int = 4096  # ... and at most (each is one socket)
    unreachable_after: int = 2  # failed reads in a row before a miner is unreachable
    transitions_kept: int = 32  # state changes remembered per miner
    allow_overclock: bool = False  # plan targets above the nominal power

    def __post_init__(self) -> None:
        if not self.interval_s > 0 or not self.request_timeout_s > 0:
            raise ConfigError("interval_s", "interval_s and request_timeout_s must be > 0")
        if not 1 <= self.min_concurrency <= self.max_concurrency:
            raise ConfigError("max_concurrency", "need 1 <= min_concurrency <= max_concurrency")
        if self.unreachable_after < 1 or self.transitions_kept < 1:
            raise ConfigError("unreachable_after", "unreachable_after and transitions_kept >= 1")

    def concurrency(self, miners: int) -> int:
        wanted = math.ceil(miners * self.request_timeout_s / self.interval_s)
        return max(self.min_concurrency, min(self.max_concurrency, wanted))


@dataclass(frozen=True, slots=True)
class Transition:
    at: float  # wall clock (unix s)
    old: MinerState
    new: MinerState
    reason: str


@dataclass(slots=True)
class MinerRecord:
    """Everything the site knows about one miner; owned by its SiteFleet."""

    spec: MinerSpec
    driver: MinerDriver
    curve: PowerCurve
    state: MinerState = MinerState.UNKNOWN
    since: float = 0.0  # wall clock of the last transition
    telemetry: Telemetry | None = None
    read_at: float = 0.0  # monotonic time of the last successful read
    failures: int = 0  # failed reads in a row
    last_error: str = ""
    probed: bool = False
    transitions: deque[Transition] = field(default_factory=lambda: deque(maxlen=32))

    @property
    def miner_id(self) -> str:
        return self.spec.miner_id

    @property
    def power_w(self) -> float | None:
        """Reported power, or the model's estimate for firmware that reports none."""
        t = self.telemetry
        if t is None:
            return None
        if t.power_w is not None:
            return t.power_w
        return self.spec.model.estimate_power(t.hashrate_hs)

    def move(self, new: MinerState, reason: str, now: float) -> Transition | None:
        if new is self.state:
            return None
        change = Transition(now, self.state, new, reason)
        self.transitions.append(change)
        self.state, self.since = new, now
        return change


@dataclass(frozen=True, slots=True)
class SweepStats:
    miners: int
    ok: int
    failed: int
    seconds: float
    power_w: float  # reported (estimated for read-only firmware), last known for failures
    hashrate_hs: float  # latest readings of the miners whose last read succeeded


def make_driver(
    spec: MinerSpec, *, timeout_s: float, http: aiohttp.ClientSession | None
) -> MinerDriver:
    """The driver for `spec.driver`, reading credentials only now."""
    if spec.driver == "luxos":
        from miners.drivers.luxos import LuxosDriver

        return LuxosDriver(spec.miner_id, spec.host, spec.port, timeout_s=timeout_s)
    if spec.driver == "cgminer":
        from miners.drivers.cgminer import CgminerDriver

        return CgminerDriver(spec.miner_id, spec.host, spec.port, timeout_s=timeout_s)
    if spec.driver == "bitaxe":
        from miners.drivers.bitaxe import BitaxeDriver

        return BitaxeDriver(spec.miner_id, spec.host, spec.port, model=spec.model, http=http,
                            timeout_s=timeout_s)
    if spec.driver == "pyasic":
        from miners.drivers.pyasic_adapter import PyasicDriver

        password = spec.password.resolve() if spec.password else None
        return PyasicDriver(spec.miner_id, spec.host, model=spec.model, timeout_s=timeout_s,
                            password=password)
    raise MinerError(f"{spec.miner_id}: unknown driver {spec.driver!r}")


class SiteFleet:
    """The miners of one site: drivers, records, sweeps."""

    def __init__(
        self,
        site: SiteSpec,
        settings: PollSettings,
        *,
        drivers: Mapping[str, MinerDriver] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.site = site
        self.settings = settings
        self.clock = clock
        self._http: aiohttp.ClientSession | None = None
        self._given = dict(drivers or {})
        self.records: dict[str, MinerRecord] = {}
        self.log = log.bind(site=site.site_id)
        self.last_sweep: SweepStats | None = None

    async def start(self) -> None:
        """Build the drivers (one shared HTTP session for the site's HTTP miners)."""
        limit = self.settings.concurrency(len(self.site.miners))
        self._http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=limit))
        for spec in self.site.miners:
            driver = self._given.get(spec.miner_id) or make_driver(
                spec, timeout_s=self.settings.request_timeout_s, http=self._http)
            record = MinerRecord(spec, driver, curve_for(spec.model, driver.capabilities,
                                 allow_overclock=self.settings.allow_overclock))
            record.transitions = deque(maxlen=self.settings.transitions_kept)
            record.since = self.clock()
            self.records[spec.miner_id] = record
        self.log.info("fleet_site_started", miners=len(self.records), concurrency=limit,
                      **{k: getattr(self.settings, k) for k in ("interval_s", "request_timeout_s",
                                                                "unreachable_after")})

    async def close(self) -> None:
        await self.for_each(lambda r: r.driver.close(), list(self.records.values()))
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def for_each(self, fn: Callable[[MinerRecord], object], records: list[MinerRecord],
                       *, concurrency: int | None = None,
                       gate: asyncio.Event | None = None) -> None:
        """Run ``await fn(record)`` for every record with bounded concurrency, each worker
        first waiting for `gate` (if given) to be set; DriverError/MinerError are logged
        (the caller records them inside `fn`), anything else propagates."""
        it: Iterator[MinerRecord] = iter(records)
        workers = min(len(records), concurrency or self.settings.concurrency(len(records)))

        async def worker() -> None:
            for record in it:
                if gate is not None:
                    await gate.wait()
                try:
                    await fn(record)  # type: ignore[misc]
                except (DriverError, MinerError) as err:
                    self.log.debug("fleet_call_failed", miner=record.miner_id, error=str(err))

        async with asyncio.TaskGroup() as group:
            for _ in range(workers):
                group.create_task(worker())

    async def sweep(self, only: list[MinerRecord] | None = None,
                    gate: asyncio.Event | None = None) -> SweepStats:
        """Read every miner (or `only` these) once, probing the ones not probed yet; each
        read waits for `gate` (commands have priority). Power and hash rate are the site's
        totals from every miner's latest reading."""
        started = time.monotonic()
        records = list(self.records.values()) if only is None else only
        await self.for_each(self._read_one, records, gate=gate)
        ok = sum(1 for r in records if r.failures == 0 and r.read_at >= started)
        every = self.records.values()
        power = sum(p for r in every if (p := r.power_w) is not None)
        hashrate = sum(r.telemetry.hashrate_hs for r in every if r.telemetry and not r.failures)
        stats = SweepStats(len(records), ok, len(records) - ok, time.monotonic() - started,
                           power, hashrate)
        if only is None:
            self.last_sweep = stats
        return stats

    async def _read_one(self, record: MinerRecord) -> None:
        try:
            if not record.probed:
                caps = await record.driver.probe()
                record.curve = curve_for(record.spec.model, caps,
                                         allow_overclock=self.settings.allow_overclock)
                record.probed = True
            telemetry = await record.driver.read()
        except DriverError as err:
            self.record_failure(record, err)
            return
        self.record_reading(record, telemetry)

    def record_reading(self, record: MinerRecord, telemetry: Telemetry) -> None:
        record.telemetry = telemetry
        record.read_at = time.monotonic()
        record.failures, record.last_error = 0, ""
        change = record.move(_FROM_REPORT[telemetry.state], "reported", self.clock())
        if change is not None:
            self.log.info("miner_state", miner=record.miner_id, old=change.old.value,
                          new=change.new.value, reason=change.reason)

    def record_failure(self, record: MinerRecord, err: DriverError) -> None:
        record.failures += 1
        record.last_error = str(err)
        if record.failures >= self.settings.unreachable_after:
            change = record.move(MinerState.UNREACHABLE, err.reason, self.clock())
            if change is not None:
                self.log.warning("miner_unreachable", miner=record.miner_id, error=str(err))

    def counts(self) -> dict[MinerState, int]:
        out = dict.fromkeys(MinerState, 0)
        for record in self.records.values():
            out[record.state] += 1
        return out

    def capabilities(self, miner_id: str) -> Capabilities:
        return self.records[miner_id].driver.capabilities
