"""The closed loop for one site: read, plan, command, verify, enforce.

Every ``poll.interval_s`` the site is swept (miners.fleet); readings are checked against what
each miner was told (miners.compliance); the allocator (miners.allocate) plans the site
under its budget; the commands that are due go out at once, each as its own task with its
own deadline, at most ``command_concurrency`` in flight, so a dead miner never holds up the
others or the next sweep. A budget change does not wait for the next sweep: it re-plans and
commands at once from the latest readings.

Every step is an audit event (`ControlEvent`) kept in memory (the last ``events_kept``) and
passed to ``on_event`` (the audit trail); per-miner events are logged at debug level and a
summary per tick at info, so a 10,000-miner site does not flood the log. `ControlEvent`,
`BudgetAck` and `PowerSample` live in miners.compliance and are re-exported here.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from typing import Any

import structlog

from miners import metrics
from miners.allocate import Action, AllocationSettings, Command, Plan, allocate
from miners.compliance import (
    RUNNING_STATES,
    BudgetAck,
    ControlEvent,
    ControlSettings,
    EventSink,
    Intent,
    MinerControl,
    PowerSample,
    WorkGate,
    allocation_input,
    apply_intent,
    complies,
    comply_window_s,
    draws_power,
    result_label,
)
from miners.drivers.base import MinerDriver
from miners.errors import BudgetError, DriverError, UnknownSiteError
from miners.fleet import MinerRecord, PollSettings, SiteFleet, SweepStats
from miners.inventory import SiteSpec

log = structlog.get_logger(__name__)


class SiteController:
    """Runs one site's loop; `set_budget` may be called from any task of the same loop."""

    def __init__(
        self,
        fleet: SiteFleet,
        *,
        budget_w: float,
        control: ControlSettings,
        allocation: AllocationSettings,
        gate: WorkGate | None = None,
        on_event: EventSink | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.fleet = fleet
        self.site = fleet.site.site_id
        self.control = control
        self.allocation = allocation
        self.gate = gate
        self.on_event = on_event
        self.clock = clock
        self.budget_w = self._checked(budget_w)
        self.controls = {m.miner_id: MinerControl() for m in fleet.site.miners}
        self.events: deque[ControlEvent] = deque(maxlen=control.events_kept)
        self.history: deque[PowerSample] = deque(maxlen=10_000)
        self.plan: Plan | None = None
        self.plans: deque[tuple[float, Plan]] = deque(maxlen=256)  # (wall clock, plan)
        self.last_wake_s = -math.inf
        self._readback: dict[str, float] = {}  # miner id -> monotonic time to read it back
        self._wake_at = math.inf  # when the loop wakes next (monotonic)
        self._replan = False  # plan at the next turn of the loop (budget change, sweep)
        self._dirty = False  # read-backs arrived since the last plan
        self._wakeup = asyncio.Event()
        self._gate = asyncio.Semaphore(control.command_concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._sweep_gate = asyncio.Event()  # cleared while a burst of commands is in flight
        self._sweep_gate.set()
        self._tick_counts: Counter[str] = Counter()
        self.log = log.bind(site=self.site)
        metrics.SITE_BUDGET_WATTS.labels(self.site).set(self.budget_w)

    # -- budget -------------------------------------------------------------------------

    def _checked(self, watts: float) -> float:
        if isinstance(watts, bool) or not isinstance(watts, int | float):
            raise BudgetError(f"site {self.site}: budget must be a number of watts")
        if not math.isfinite(watts) or not 0 <= watts <= self.control.max_budget_w:
            raise BudgetError(
                f"site {self.site}: budget must be between 0 and {self.control.max_budget_w:g} W"
            )
        return float(watts)

    def set_budget(self, watts: float, *, source: str = "api") -> BudgetAck:
        """Set the site budget; the loop re-plans at once. Returns when it should comply."""
        old, self.budget_w = self.budget_w, self._checked(watts)
        metrics.SITE_BUDGET_WATTS.labels(self.site).set(self.budget_w)
        self._event("budget", detail={"old_w": old, "new_w": self.budget_w, "source": source})
        self.log.info("site_budget_set", old_w=old, new_w=self.budget_w, source=source)
        self._replan = True
        self._wakeup.set()
        return BudgetAck(self.site, self.budget_w, self.clock() + self.time_to_comply_s())

    def time_to_comply_s(self) -> float:
        """Commands, the slowest shutdown of the site's models, then one sweep to see it."""
        shutdown = max((r.spec.model.shutdown_s for r in self.fleet.records.values()), default=0)
        return self.control.command_timeout_s + shutdown + self.fleet.settings.interval_s

    # -- the loop -----------------------------------------------------------------------

    async def run(self) -> None:
        """Sweep every interval (its own task); read commanded miners back when they should
        be done; re-plan at once on a budget change or after a sweep, otherwise at most every
        ``plan_interval_s`` (planning 10,000 miners takes a quarter of a second)."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._sweep_forever())
            group.create_task(self._control_forever())

    async def _sweep_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await self.sweep()
            self._replan = True
            self._wakeup.set()
            await asyncio.sleep(max(0.0, started + self.fleet.settings.interval_s - loop.time()))

    async def _control_forever(self) -> None:
        loop = asyncio.get_running_loop()
        pace = self.control.plan_interval_s
        planned_at = -math.inf
        while True:
            self._wakeup.clear()
            now = loop.time()
            if due := [m for m, at in self._readback.items() if at <= now + pace / 4]:
                await self.read_back(due)  # everything due within a quarter of the pace
                self._dirty = True
            if self._replan or (now >= planned_at + pace and (self._dirty or self._due(now))):
                self._replan = self._dirty = False
                planned_at = loop.time()
                self.step()
            self._wake_at = min(min(self._readback.values(), default=math.inf),
                                max(planned_at + pace, self._next_due() if not self._dirty
                                    else planned_at + pace))
            try:
                async with asyncio.timeout(max(0.0, self._wake_at - loop.time())):
                    await self._wakeup.wait()
            except TimeoutError:
                pass

    def _due(self, now: float) -> bool:
        return self._next_due() <= now

    def _next_due(self) -> float:
        """When the plan's next staggered step or the earliest resend falls due."""
        plan, at = self.plan, math.inf
        if plan is not None and plan.settled and len(plan.steps) > 1:
            at = plan.steps[1].at_s
        for ctl in self.controls.values():
            i = ctl.intent
            if i is not None and not (i.complied or i.acked or i.in_flight):
                at = min(at, i.next_send_at)
        return at

    async def tick(self) -> Plan:
        """One sweep and one planning step (tests and benchmarks drive the loop with this)."""
        await self.sweep()
        return self.step()

    async def sweep(self) -> SweepStats:
        started = time.monotonic()
        stats = await self.fleet.sweep(gate=self._sweep_gate)
        self._readback = {m: at for m, at in self._readback.items() if at > started}
        self._after_read(stats, self.fleet.records.values())
        metrics.SWEEP_SECONDS.labels(self.site).set(stats.seconds)
        for state, count in self.fleet.counts().items():
            metrics.MINERS.labels(self.site, state.value).set(count)
        if stats.seconds > self.fleet.settings.interval_s:
            self.log.warning("fleet_sweep_slow", seconds=round(stats.seconds, 3))
        return stats

    async def read_back(self, miner_ids: list[str]) -> SweepStats:
        """Read just these miners (commanded ones whose change should be done by now)."""
        for miner_id in miner_ids:
            self._readback.pop(miner_id, None)
        records = [self.fleet.records[m] for m in miner_ids]
        stats = await self.fleet.sweep(only=records)
        self._after_read(stats, records)
        return stats

    def _after_read(self, stats: SweepStats, records) -> None:
        now = time.monotonic()
        for record in records:
            self._verify(record, self.controls[record.miner_id], now)
        self.history.append(PowerSample(self.clock(), stats.power_w, self.budget_w,
                                        stats.hashrate_hs))
        metrics.SITE_POWER_WATTS.labels(self.site).set(stats.power_w)
        metrics.SITE_HASHRATE_HPS.labels(self.site).set(stats.hashrate_hs)
        metrics.READ_FAILURES.labels(self.site).inc(stats.failed)

    def step(self) -> Plan:
        """Plan from the latest readings and send what is due."""
        now = time.monotonic()
        inputs = [allocation_input(r, self.controls[r.miner_id], self.control)
                  for r in self.fleet.records.values()]
        plan = allocate(self.budget_w, inputs, self.allocation, now_s=now,
                        last_wake_s=self.last_wake_s)
        self.plan = plan
        self.plans.append((self.clock(), plan))
        metrics.SITE_PLANNED_POWER_WATTS.labels(self.site).set(plan.power_w)
        for command in plan.due(now):
            self._issue(command, now)
        self._resend_due(now)
        self._enforce()
        if self._tick_counts:
            self.log.info("fleet_commands", shortfall_w=round(plan.shortfall_w),
                          planned_w=round(plan.power_w), **self._tick_counts)
            self._tick_counts.clear()
        return plan

    async def commands_idle(self) -> None:
        """Wait until no command is in flight."""
        await self._idle.wait()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.fleet.close()

    # -- commands -----------------------------------------------------------------------

    def _issue(self, command: Command, now: float) -> None:
        ctl = self.controls[command.miner_id]
        record = self.fleet.records[command.miner_id]
        running = command.action is not Action.SLEEP
        old = ctl.intent
        if old is not None and (old.in_flight or old.matches(running, command.target_w)):
            return
        action = command.action
        awake = record.state in RUNNING_STATES and not (
            record.telemetry is not None and record.telemetry.sleep_requested)
        if action is Action.SET_TARGET and not awake:
            action = Action.WAKE  # not confirmed running (e.g. an unconfirmed wake): wake too
        decrease = action is Action.SLEEP or command.after_w < command.before_w
        ctl.intent = Intent(action, running, command.target_w, decrease, now)
        if running:
            ctl.last_target_w = command.target_w
        if action in (Action.SLEEP, Action.WAKE):
            ctl.switched_at = now
        if action is Action.WAKE:
            self.last_wake_s = now
        self._launch(record, ctl, ctl.intent)

    def _resend_due(self, now: float) -> None:
        for miner_id, ctl in self.controls.items():
            intent = ctl.intent
            if (intent is None or intent.complied or intent.acked or intent.in_flight
                    or now < intent.next_send_at):
                continue
            self._launch(self.fleet.records[miner_id], ctl, intent)

    def _launch(self, record: MinerRecord, ctl: MinerControl, intent: Intent) -> None:
        intent.in_flight = True
        self._idle.clear()
        task = asyncio.get_running_loop().create_task(self._send(record, ctl, intent))
        self._tasks.add(task)
        if len(self._tasks) >= self.control.sweep_yield_commands:
            self._sweep_gate.clear()  # a burst of commands: telemetry reads wait
        task.add_done_callback(self._task_done)
        self._tick_counts[intent.action.value] += 1

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if len(self._tasks) < self.control.sweep_yield_commands:
            self._sweep_gate.set()
        if not task.cancelled() and task.exception() is not None:
            self.log.error("fleet_command_task_crashed", exc_info=task.exception())
        if not self._tasks:
            self._idle.set()

    async def _send(self, record: MinerRecord, ctl: MinerControl, intent: Intent) -> None:
        async with self._gate:
            intent.attempts += 1
            intent.sent_at = started = time.monotonic()
            try:
                async with asyncio.timeout(self.control.command_timeout_s):
                    applied = await apply_intent(record, intent)
            except (DriverError, TimeoutError) as err:
                self._send_failed(record, ctl, intent, err, time.monotonic() - started)
                return
            finally:
                intent.in_flight = False
        elapsed = time.monotonic() - started
        if intent.running and applied is not None:
            intent.target_w = ctl.last_target_w = applied
        intent.acked = True
        now = time.monotonic()
        intent.due_by = now + comply_window_s(record, intent, self.control)
        shutdown = record.spec.model.shutdown_s if intent.action is Action.SLEEP else 0.0
        readback_at = now + shutdown + self.control.readback_margin_s
        self._readback[record.miner_id] = readback_at
        if readback_at < self._wake_at:
            self._wakeup.set()  # the loop sleeps past it: let it re-arm its timer
        metrics.COMMANDS.labels(self.site, intent.action.value, "ok").inc()
        metrics.COMMAND_SECONDS.labels(intent.action.value).observe(elapsed)
        self._event("command", record.miner_id, {
            "action": intent.action.value, "target_w": intent.target_w, "result": "ok",
            "attempt": intent.attempts, "seconds": round(elapsed, 4)})

    def _send_failed(self, record: MinerRecord, ctl: MinerControl, intent: Intent,
                     err: BaseException, elapsed: float) -> None:
        result = result_label(err)
        intent.acked = False
        intent.next_send_at = time.monotonic() + self.control.backoff_s(intent.attempts)
        metrics.COMMANDS.labels(self.site, intent.action.value, result).inc()
        self._tick_counts["failed"] += 1
        self._event("command", record.miner_id, {
            "action": intent.action.value, "target_w": intent.target_w, "result": result,
            "attempt": intent.attempts, "seconds": round(elapsed, 4), "error": str(err)})
        if intent.attempts >= self.control.max_attempts:
            self._flag(record, ctl, f"{intent.action.value} failed {intent.attempts} times: "
                       f"{result}")

    # -- verification and enforcement ---------------------------------------------------

    def _verify(self, record: MinerRecord, ctl: MinerControl, now: float) -> None:
        intent = ctl.intent
        if intent is None or intent.in_flight or record.read_at <= intent.sent_at:
            return
        ok = complies(record, intent, self.control)
        if ok and not intent.complied:
            intent.complied, intent.acked = True, True
            self._event("complied", record.miner_id, {
                "action": intent.action.value, "seconds": round(now - intent.created_at, 3),
                "attempts": intent.attempts})
            if ctl.flagged:
                self._unflag(record, ctl)
        elif not ok and intent.complied:
            intent.complied = intent.acked = False
            intent.attempts, intent.next_send_at = 0, now
            self._event("drift", record.miner_id, {"action": intent.action.value,
                                                    "state": record.state.value})
        elif not ok and intent.acked and record.read_at < intent.due_by:
            self._readback.setdefault(record.miner_id,
                                      intent.due_by + self.control.readback_margin_s)
        elif not ok and intent.acked:
            intent.acked = False
            intent.next_send_at = now + self.control.backoff_s(intent.attempts)
            metrics.NONCOMPLIANCE.labels(self.site, intent.action.value).inc()
            self._event("overdue", record.miner_id, {
                "action": intent.action.value, "attempt": intent.attempts,
                "power_w": record.power_w, "state": record.state.value})
            if intent.attempts >= self.control.max_attempts:
                self._flag(record, ctl, f"ignored {intent.action.value} {intent.attempts} times")

    def _flag(self, record: MinerRecord, ctl: MinerControl, reason: str) -> None:
        if ctl.flagged:
            return
        ctl.flagged = True
        self.log.warning("miner_flagged", miner=record.miner_id, reason=reason)
        self._event("flagged", record.miner_id, {"reason": reason})
        self._count_flags()

    def _unflag(self, record: MinerRecord, ctl: MinerControl) -> None:
        ctl.flagged = False
        self._event("unflagged", record.miner_id)
        if ctl.starved:
            self._call_gate("release", record, ctl, "")
        self._count_flags()

    def _enforce(self) -> None:
        """Starve flagged miners that still draw power (once; released on compliance)."""
        for miner_id, ctl in self.controls.items():
            if not ctl.flagged or ctl.starved or ctl.intent is None:
                continue
            record = self.fleet.records[miner_id]
            if draws_power(record, ctl.intent, self.control):
                reason = (f"ignores {ctl.intent.action.value}: draws {record.power_w:.0f} W "
                          f"at site {self.site}")
                self._call_gate("starve", record, ctl, reason)

    def _call_gate(self, what: str, record: MinerRecord, ctl: MinerControl, reason: str) -> None:
        worker, kind = record.spec.worker, "starved" if what == "starve" else "released"
        try:
            if self.gate is not None and what == "starve":
                self.gate.starve(worker, reason)
            elif self.gate is not None:
                self.gate.release(worker)
        except Exception as err:  # the pool's failure must not stop control; retried next tick
            self.log.error("work_gate_failed", miner=record.miner_id, call=what, error=repr(err))
            self._event(f"{what}_failed", record.miner_id, {"worker": worker, "error": repr(err)})
            return
        ctl.starved = what == "starve"
        detail = {"worker": worker, "reason": reason, "gate": self.gate is not None}
        self.log.warning(f"miner_{kind}", miner=record.miner_id, **detail)
        self._event(kind, record.miner_id, detail)
        self._count_flags()

    def _count_flags(self) -> None:
        ctls = self.controls.values()
        metrics.MINERS_FLAGGED.labels(self.site).set(sum(c.flagged for c in ctls))
        metrics.MINERS_STARVED.labels(self.site).set(sum(c.starved for c in ctls))

    def _event(self, kind: str, miner: str = "", detail: Mapping[str, Any] | None = None) -> None:
        event = ControlEvent(self.clock(), self.site, kind, miner, detail or {})
        self.events.append(event)
        if miner:
            self.log.debug(f"fleet_{kind}", miner=miner, **(detail or {}))
        if self.on_event is not None:
            self.on_event(event)

    # -- status -------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        last = self.fleet.last_sweep
        plan = self.plan
        return {
            "site": self.site,
            "budget_w": self.budget_w,
            "power_w": last.power_w if last else None,
            "hashrate_hs": last.hashrate_hs if last else None,
            "planned_w": plan.power_w if plan else None,
            "limit_w": plan.limit_w if plan else None,
            "shortfall_w": plan.shortfall_w if plan else None,
            "miners": {s.value: n for s, n in self.fleet.counts().items() if n},
            "flagged": sorted(m for m, c in self.controls.items() if c.flagged),
            "starved": sorted(m for m, c in self.controls.items() if c.starved),
            "commands_in_flight": len(self._tasks),
            "sweep_s": last.seconds if last else None,
        }


class FleetController:
    """Every site this process controls: their fleets, loops and budgets."""

    def __init__(
        self,
        sites: list[SiteSpec],
        *,
        poll: PollSettings,
        control: ControlSettings,
        allocation: AllocationSettings,
        gate: WorkGate | None = None,
        on_event: EventSink | None = None,
        drivers: Mapping[str, MinerDriver] | None = None,
    ) -> None:
        self.specs = {s.site_id: s for s in sites}
        if len(self.specs) != len(sites):
            raise ValueError("site ids must be unique")
        self.poll, self.control, self.allocation = poll, control, allocation
        self.gate, self.on_event, self.drivers = gate, on_event, drivers
        self.sites: dict[str, SiteController] = {}

    def default_budget_w(self, site: SiteSpec) -> float:
        """A site without a configured budget runs every miner at nominal power."""
        if site.budget_w is not None:
            return site.budget_w
        return site.nominal_w / (1.0 - self.allocation.safety_margin)

    async def start(self) -> None:
        for site_id, spec in self.specs.items():
            fleet = SiteFleet(spec, self.poll, drivers=self.drivers)
            await fleet.start()
            self.sites[site_id] = SiteController(
                fleet, budget_w=self.default_budget_w(spec), control=self.control,
                allocation=self.allocation, gate=self.gate, on_event=self.on_event)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            for controller in self.sites.values():
                group.create_task(controller.run())

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self.sites.values()))

    def site(self, site_id: str) -> SiteController:
        try:
            return self.sites[site_id]
        except KeyError:
            raise UnknownSiteError(f"unknown site {site_id!r}") from None

    def set_budget(self, site_id: str, watts: float, *, source: str = "api") -> BudgetAck:
        return self.site(site_id).set_budget(watts, source=source)

    def status(self) -> dict[str, Any]:
        return {site_id: c.status() for site_id, c in self.sites.items()}
