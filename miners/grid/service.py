"""GridService: the budget timelines of every site, kept in force on the fleet.

Commands (HTTP, OpenADR) come in through `submit` and `cancel`: the event goes into the
site's timeline, the budget in force is sent to the fleet at once (`BudgetSink`), then the
event — with the promised time — and the audit rows of the command are stored in one
transaction, and only then is the command acknowledged. If the store fails, the event is
taken out again and the previous budget restored, and the command is refused (503).

A loop re-evaluates every site each ``tick_s`` (sooner at a known breakpoint): ramps,
starts, ends, and link silence — a site whose grid link has been silent longer than its
``silence_s`` is capped at its safe budget until the link speaks again. Each tick also
samples the site's power for per-event compliance, and writes audit rows when an event is
first under its limit, late, or violated.

The promise ("under the limit by") is the later of now and the time the ramped budget
reaches the limit, plus the fleet's own estimate of how long it takes to comply
(`BudgetSink.set_site_budget` returns it; before the first answer ``default_comply_s``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from miners.errors import MinerError
from miners.grid.compliance import Compliance, assess
from miners.grid.errors import (
    GridBusyError,
    GridConflictError,
    GridNotFoundError,
    GridSiteError,
    GridStoreError,
)
from miners.grid.settings import GridSettings
from miners.grid.store import AuditRow, GridStore
from miners.grid.timeline import Budget, GridEvent, Timeline
from miners.metrics import GRID_LAST_CONTACT, GRID_SILENT

log = structlog.get_logger(__name__)

AUDIT_QUEUE = 10_000  # audit rows waiting for the background writer; more are dropped+counted
AUDIT_BATCH = 500  # rows per background write
SINK_TIMEOUT_S = 5.0  # deadline for the fleet controller to take a budget
_FINAL = ("met", "violated")  # compliance statuses that never change again
_JUDGED_AFTER_S = 60.0  # an event over this long, once judged, is not assessed again
_TERMS = ("site", "limit_w", "start", "end", "ramp_down_w_per_s", "ramp_up_w_per_s")


class BudgetSink(Protocol):
    """What the grid needs from the fleet controller (miners.grid.fleet_sink adapts it)."""

    async def set_site_budget(self, site: str, watts: float, *, reason: str) -> float:
        """Set the budget; returns the expected seconds until the site is under it."""
        ...

    def site_power(self, site: str) -> tuple[float, float] | None:
        """The latest measured site power: (unix time of the reading, watts), or None."""
        ...


@dataclass(frozen=True, slots=True)
class Ack:
    """The answer to an accepted command."""

    event: GridEvent
    budget: Budget  # in force now
    under_limit_by: float  # unix time by which the site will be under the limit
    duplicate: bool = False  # the same command was already accepted


@dataclass(slots=True)
class _SiteState:
    timeline: Timeline
    last_contact: float  # unix s of the last grid message for this site
    samples: deque[tuple[float, float]]  # (unix s, W) site power readings, bounded
    sent_w: float | None = None  # last budget the fleet accepted
    comply_s: float | None = None  # the fleet's last estimate
    silent: bool = False
    reported: dict[str, str] = field(default_factory=dict)  # event id -> status audited
    contact_dirty: bool = False


class GridService:
    def __init__(self, settings: GridSettings, store: GridStore, sink: BudgetSink, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.store = store
        self.sink = sink
        self.clock = clock
        self.started_at = clock()
        self._sites: dict[str, _SiteState] = {}
        self._lock = asyncio.Lock()  # one command or tick at a time
        self._wakeup = asyncio.Event()
        self._audit_q: asyncio.Queue[AuditRow] = asyncio.Queue(AUDIT_QUEUE)
        self._tasks: list[asyncio.Task[None]] = []
        self._last_contact_write = 0.0
        self.audit_dropped = 0
        self.log = log

    # -- life cycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Load the stored timeline, put the budgets in force, start the loops."""
        now = self.clock()
        events = await self.store.load_events(now - self.settings.retention_s)
        contacts = await self.store.load_contacts()
        by_site: dict[str, list[GridEvent]] = {}
        for event in events:
            by_site.setdefault(event.site, []).append(event)
        for site, limits in self.settings.limits().items():
            self._sites[site] = _SiteState(
                Timeline(limits, by_site.get(site, [])), contacts.get(site, now),
                deque(maxlen=self.settings.samples_kept))
        self.log.info("grid_started", sites=len(self._sites), events=len(events),
                      **{k: getattr(self.settings, k) for k in (
                          "tick_s", "deadband_w", "default_comply_s", "samples_kept",
                          "compliance_tolerance", "retention_s", "max_events_per_site")})
        async with self._lock:
            for site in self._sites:
                await self._enforce(site, now, force=True)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._tick_loop()), loop.create_task(self._audit_loop())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self._flush_audit()
        with contextlib.suppress(GridStoreError):
            await self._write_contacts(force=True)

    # -- queries ------------------------------------------------------------------------

    @property
    def sites(self) -> list[str]:
        return list(self._sites)

    def state(self, site: str) -> _SiteState:
        try:
            return self._sites[site]
        except KeyError:
            raise GridSiteError(f"unknown site {site!r}") from None

    def timeline(self, site: str) -> Timeline:
        return self.state(site).timeline

    def budget(self, site: str, at: float | None = None) -> Budget:
        state = self.state(site)
        t = self.clock() if at is None else at
        return state.timeline.budget_at(t, silent=self._is_silent(state, t))

    def compliance(self, site: str, event_id: str,
                   samples: list[tuple[float, float]] | None = None) -> Compliance:
        """The event's compliance now (`samples`: a copy of the site's, to reuse)."""
        state = self.state(site)
        event = state.timeline.get(event_id)
        if event is None:
            raise GridNotFoundError(f"site {site} has no event {event_id!r}")
        if samples is None:
            samples = list(state.samples)
        return assess(event, samples, self.clock(),
                      tolerance=self.settings.compliance_tolerance)

    def samples(self, site: str, since: float, until: float) -> list[tuple[float, float]]:
        """(time, watts) power samples in [since, until]."""
        return [(t, w) for t, w in self.state(site).samples if since <= t <= until]

    def power(self, site: str) -> tuple[float, float] | None:
        samples = self.state(site).samples
        return samples[-1] if samples else None

    # -- contact (link silence) ---------------------------------------------------------

    def touch(self, sites: Iterable[str]) -> None:
        """The grid spoke to these sites: restart their silence clocks."""
        now = self.clock()
        woke = False
        for site in sites:
            state = self._sites.get(site)
            if state is None:
                continue
            state.last_contact, state.contact_dirty = now, True
            woke = woke or state.silent
        if woke:
            self._wakeup.set()

    def _is_silent(self, state: _SiteState, now: float) -> bool:
        silence = state.timeline.limits.silence_s
        return silence is not None and now - state.last_contact > silence

    # -- commands -----------------------------------------------------------------------

    async def submit(self, event: GridEvent, *, channel: str, actor: str,
                     received: Mapping[str, Any] | None = None) -> Ack:
        """Put an event in force; returns once it is stored (the acknowledgement)."""
        async with self._lock:
            state = self.state(event.site)
            old = state.timeline.get(event.event_id)
            if old is not None and _same_terms(old, event):
                return Ack(old, self.budget(event.site), old.promised or old.start, True)
            if old is not None and event.source == "http":
                raise GridConflictError(f"event id {event.event_id!r} exists with other terms")
            live = [e for e in state.timeline.events if not e.void]
            if old is None and len(live) >= self.settings.max_events_per_site:
                raise GridBusyError(f"site {event.site} has {len(live)} events; cancel some")
            state.timeline.put(event)
            try:
                return await self._commit(state, event, old, channel, actor, received, "applied")
            except BaseException:
                self._undo(state, event.event_id, old)
                await self._enforce(event.site, self.clock(), force=True)
                raise

    async def cancel(self, site: str, event_id: str, *, channel: str, actor: str,
                     received: Mapping[str, Any] | None = None) -> Ack:
        """End an event now (its up ramp, if any, still applies)."""
        async with self._lock:
            state = self.state(site)
            old = state.timeline.get(event_id)
            if old is None:
                raise GridNotFoundError(f"site {site} has no event {event_id!r}")
            event = state.timeline.cancel(event_id, self.clock())
            if event is old:
                return Ack(old, self.budget(site), old.promised or old.start, True)
            try:
                return await self._commit(state, event, old, channel, actor, received,
                                          "cancelled")
            except BaseException:
                self._undo(state, event_id, old)
                await self._enforce(site, self.clock(), force=True)
                raise

    def _undo(self, state: _SiteState, event_id: str, old: GridEvent | None) -> None:
        if old is None:
            state.timeline.discard(event_id)
        else:
            state.timeline.put(old)

    async def _commit(self, state: _SiteState, event: GridEvent, old: GridEvent | None,
                      channel: str, actor: str, received: Mapping[str, Any] | None,
                      kind: str) -> Ack:
        now = self.clock()
        site = event.site
        await self._enforce(site, now, force=False, reason=f"{kind}:{event.event_id}")
        comply_s = state.comply_s if state.comply_s is not None else (
            self.settings.default_comply_s)
        if kind == "cancelled":
            promised = now + comply_s
        else:
            reach = state.timeline.reach_time(event.event_id)
            promised = max(now, reach) + comply_s
            event = state.timeline.set_promised(event.event_id, promised)
        budget = state.timeline.budget_at(now, silent=self._is_silent(state, now))
        rows = [
            AuditRow(event.created if kind == "applied" else now, site, "received", channel,
                     actor, event.event_id, dict(received or {})),
            AuditRow(now, site, kind, channel, actor, event.event_id,
                     {**_event_detail(event), "replaces": old is not None}),
            AuditRow(now, site, "ack", channel, actor, event.event_id,
                     {"under_limit_by": promised, "budget_w": budget.watts}),
        ]
        await self.store.save_event(event, rows)
        self.log.info("grid_command", site=site, kind=kind, event_id=event.event_id,
                      limit_w=event.limit_w, channel=channel, actor=actor,
                      budget_w=budget.watts, under_limit_by=round(promised, 3))
        self._wakeup.set()
        return Ack(event, budget, promised)

    # -- the loop -----------------------------------------------------------------------

    async def _tick_loop(self) -> None:
        while True:
            now = self.clock()
            async with self._lock:
                for site in self._sites:
                    await self._tick_site(site, now)
            with contextlib.suppress(GridStoreError):
                await self._write_contacts()
            wait = self._next_wait(now)
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wakeup.wait()

    def _next_wait(self, now: float) -> float:
        wait = self.settings.tick_s
        for state in self._sites.values():
            points = state.timeline.breakpoints(now)
            if points:
                wait = min(wait, points[0] - now)
        return max(0.01, wait)

    async def _tick_site(self, site: str, now: float) -> None:
        state = self._sites[site]
        silent = self._is_silent(state, now)
        if silent != state.silent:
            state.silent = silent
            kind = "fallback" if silent else "restored"
            self.log.warning(f"grid_link_{kind}", site=site, last_contact=state.last_contact,
                             safe_w=state.timeline.limits.safe_w)
            self.audit_nowait(AuditRow(now, site, kind, "timer", detail={
                "last_contact": state.last_contact, "safe_w": state.timeline.limits.safe_w}))
        GRID_SILENT.labels(site=site).set(1 if silent else 0)
        GRID_LAST_CONTACT.labels(site=site).set(state.last_contact)
        await self._enforce(site, now, force=False)
        self._sample(state, site)
        self._audit_compliance(state, site, now)
        for event_id in state.timeline.prune(now - self.settings.retention_s):
            state.reported.pop(event_id, None)

    async def _enforce(self, site: str, now: float, *, force: bool,
                       reason: str | None = None) -> None:
        """Send the budget in force if it moved by more than the deadband."""
        state = self._sites[site]
        budget = state.timeline.budget_at(now, silent=self._is_silent(state, now))
        if not force and state.sent_w is not None and (
                abs(budget.watts - state.sent_w) <= self.settings.deadband_w):
            return
        why = reason or ",".join(budget.binding)
        try:
            async with asyncio.timeout(SINK_TIMEOUT_S):
                comply_s = await self.sink.set_site_budget(site, budget.watts, reason=why)
        except (MinerError, ValueError, TimeoutError) as err:
            self.log.error("grid_budget_refused", site=site, budget_w=budget.watts,
                           error=str(err))
            self.audit_nowait(AuditRow(now, site, "budget_failed", "timer", detail={
                "budget_w": budget.watts, "error": str(err)}))
            return
        state.sent_w, state.comply_s = budget.watts, max(0.0, comply_s)
        self.audit_nowait(AuditRow(now, site, "budget", "timer", detail={
            "budget_w": budget.watts, "binding": list(budget.binding), "silent": budget.silent,
            "reason": why, "comply_s": state.comply_s}))

    def _sample(self, state: _SiteState, site: str) -> None:
        reading = self.sink.site_power(site)
        if reading is None:
            return
        if not state.samples or reading[0] > state.samples[-1][0]:
            state.samples.append(reading)

    def _audit_compliance(self, state: _SiteState, site: str, now: float) -> None:
        samples: list[tuple[float, float]] | None = None
        for event in state.timeline.events:
            last = state.reported.get(event.event_id)
            if (event.void or now < event.start or last in _FINAL
                    or (last is not None and event.stop < now - _JUDGED_AFTER_S)):
                continue
            samples = list(state.samples) if samples is None else samples
            result = assess(event, samples, now, tolerance=self.settings.compliance_tolerance)
            if result.status == "pending" or result.status == last:
                continue
            state.reported[event.event_id] = result.status
            self.audit_nowait(AuditRow(now, site, f"compliance_{result.status}", "timer",
                                       event_id=event.event_id, detail=result.as_dict()))

    # -- audit --------------------------------------------------------------------------

    def audit_nowait(self, row: AuditRow) -> None:
        """Queue an audit row for the background writer (dropped and counted when full)."""
        try:
            self._audit_q.put_nowait(row)
        except asyncio.QueueFull:
            self.audit_dropped += 1
            if self.audit_dropped == 1 or self.audit_dropped % 1000 == 0:
                self.log.error("grid_audit_dropped", dropped=self.audit_dropped)

    async def _audit_loop(self) -> None:
        while True:
            row = await self._audit_q.get()
            rows = [row]
            while len(rows) < AUDIT_BATCH and not self._audit_q.empty():
                rows.append(self._audit_q.get_nowait())
            try:
                await self.store.append_audit(rows)
            except GridStoreError as err:
                self.log.error("grid_audit_write_failed", rows=len(rows), error=str(err))
                await asyncio.sleep(self.settings.tick_s)

    async def _flush_audit(self) -> None:
        rows = []
        while not self._audit_q.empty():
            rows.append(self._audit_q.get_nowait())
        if rows:
            with contextlib.suppress(GridStoreError):
                await self.store.append_audit(rows)

    async def flush(self) -> None:
        """Write queued audit rows and contact times now (tests, shutdown)."""
        await self._flush_audit()
        await self._write_contacts(force=True)

    async def _write_contacts(self, *, force: bool = False) -> None:
        now = self.clock()
        if not force and now - self._last_contact_write < self.settings.contact_write_s:
            return
        dirty = {s: st.last_contact for s, st in self._sites.items() if st.contact_dirty}
        self._last_contact_write = now
        if dirty:
            await self.store.save_contacts(dirty)
            for site in dirty:
                self._sites[site].contact_dirty = False


def _same_terms(a: GridEvent, b: GridEvent) -> bool:
    return all(getattr(a, k) == getattr(b, k) for k in _TERMS) and a.cancelled is None


def _event_detail(event: GridEvent) -> dict[str, Any]:
    return {k: getattr(event, k) for k in (*_TERMS, "source", "issued_by", "created",
                                            "cancelled", "promised")}

