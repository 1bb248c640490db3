"""The budget timeline of one site (pure: no I/O, no clock; times are unix seconds).

A site has a *base* allocation, a *safe* budget for when the grid link is silent, and
curtailment *events* from the grid operator: "at most ``limit_w`` from ``start`` to ``end``"
(``end`` None: until further notice), with optional ramp limits.

Each event is an *envelope*, a ceiling over time:

- before ``start``: none;
- from ``start``: the limit, or — with a down ramp — a line from the budget in force just
  before the start (the event's *anchor*) down to the limit at ``ramp_down_w_per_s``, so the
  site is not asked to drop load faster than the grid operator allows;
- from the end (or the cancellation, whichever is first): none, or — with an up ramp — a
  line rising from where the envelope stood at ``ramp_up_w_per_s``, so load returns gently.

The budget in force is the lowest of the base and every envelope, so overlapping events
resolve to the lowest limit. While the link is silent the safe budget caps it as well
(`SiteLimits` requires ``safe_w <= base_w``, so the fallback never raises a budget).

Anchors are computed in start order from the envelopes of the events ordered before, so a
cancellation (which only truncates an event) never changes the past: the budget at any time
already passed stays what it was. With both ramps set on every event the budget is
continuous and moves no faster than the ramps (property-tested).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from pool.errors import ConfigError

INF = math.inf
SOURCES = ("http", "openadr", "cli", "config")


@dataclass(frozen=True, slots=True)
class SiteLimits:
    """A site's standing budgets (watts) and its link-silence fallback."""

    site: str
    base_w: float  # the allocation when no event is in force
    safe_w: float  # the cap while the grid link is silent
    silence_s: float | None = None  # silence longer than this falls back; None: never

    def __post_init__(self) -> None:
        key = f"grid.site.{self.site}"
        if not (math.isfinite(self.base_w) and self.base_w >= 0):
            raise ConfigError(f"{key}.base_kw", "must be a finite number >= 0")
        if not (math.isfinite(self.safe_w) and 0 <= self.safe_w <= self.base_w):
            raise ConfigError(f"{key}.safe_kw", "must be between 0 and base_kw")
        if self.silence_s is not None and not self.silence_s > 0:
            raise ConfigError(f"{key}.silence_s", "must be > 0 (omit it to disable)")


@dataclass(frozen=True, slots=True)
class GridEvent:
    """One curtailment: at most ``limit_w`` on ``site`` from ``start`` to ``end``."""

    event_id: str
    site: str
    limit_w: float
    start: float
    end: float | None = None  # None: until further notice (or cancellation)
    ramp_down_w_per_s: float | None = None  # None: the limit applies at once
    ramp_up_w_per_s: float | None = None  # None: released at once at the end
    source: str = "http"
    issued_by: str = ""  # operator key id, VEN/VTN ids
    created: float = 0.0  # when the command was received
    cancelled: float | None = None  # when it was cancelled (truncates the event)
    promised: float | None = None  # acknowledged time by which the site is under the limit

    def __post_init__(self) -> None:
        if not (math.isfinite(self.limit_w) and self.limit_w >= 0):
            raise ValueError("limit_w must be a finite number >= 0")
        if not math.isfinite(self.start):
            raise ValueError("start must be a finite time")
        if self.end is not None and not (math.isfinite(self.end) and self.end > self.start):
            raise ValueError("end must be a finite time after start")
        for name in ("ramp_down_w_per_s", "ramp_up_w_per_s"):
            rate = getattr(self, name)
            if rate is not None and not (math.isfinite(rate) and rate > 0):
                raise ValueError(f"{name} must be a finite number > 0")
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}")

    @property
    def stop(self) -> float:
        """When the event stops constraining (before its up ramp): end or cancellation."""
        end = INF if self.end is None else self.end
        return end if self.cancelled is None else min(end, self.cancelled)

    @property
    def void(self) -> bool:
        """Cancelled before it started: it never constrains anything."""
        return self.stop <= self.start

    def order_key(self) -> tuple[float, float, str]:
        return (self.start, self.created, self.event_id)


@dataclass(frozen=True, slots=True)
class Budget:
    """The budget in force at one time and what sets it."""

    watts: float
    binding: tuple[str, ...]  # "base", "safe" or event ids whose ceiling equals the budget
    silent: bool = False


def envelope(event: GridEvent, anchor_w: float, t: float) -> float:
    """The event's ceiling at `t` (INF when it does not constrain)."""
    if t < event.start or event.void:
        return INF
    stop = event.stop
    if t < stop:
        return _descent(event, anchor_w, t)
    if event.ramp_up_w_per_s is None or stop == INF:
        return INF
    return _descent(event, anchor_w, stop) + event.ramp_up_w_per_s * (t - stop)


def _descent(event: GridEvent, anchor_w: float, t: float) -> float:
    if event.ramp_down_w_per_s is None:
        return event.limit_w
    return max(event.limit_w, anchor_w - event.ramp_down_w_per_s * (t - event.start))


class Timeline:
    """The events of one site and the budget they make. Mutations return nothing; every
    query is a pure function of the limits, the events and the time asked about."""

    def __init__(self, limits: SiteLimits, events: Iterable[GridEvent] = ()) -> None:
        self.limits = limits
        self._events: dict[str, GridEvent] = {}
        self._order: list[GridEvent] = []
        self._anchors: dict[str, float] = {}
        for event in events:
            self._events[event.event_id] = self._checked(event)
        self._reindex()

    # -- changes ------------------------------------------------------------------------

    def _checked(self, event: GridEvent) -> GridEvent:
        if event.site != self.limits.site:
            raise ValueError(f"event {event.event_id} is for site {event.site!r}, "
                             f"not {self.limits.site!r}")
        return event

    def _reindex(self) -> None:
        self._order = sorted(self._events.values(), key=GridEvent.order_key)
        self._anchors = {}
        for i, event in enumerate(self._order):
            self._anchors[event.event_id] = self._planned(event.start, self._order[:i])

    def put(self, event: GridEvent) -> None:
        """Add an event, or replace the one with the same id (an OpenADR modification)."""
        self._events[event.event_id] = self._checked(event)
        self._reindex()

    def cancel(self, event_id: str, at: float) -> GridEvent:
        """Truncate the event at `at` (a no-op for one already over); returns it."""
        event = self._events[event_id]
        if event.cancelled is None or at < event.cancelled:
            event = replace(event, cancelled=at)
            self._events[event_id] = event
            self._reindex()
        return event

    def discard(self, event_id: str) -> None:
        """Forget an event entirely (only to undo a change that could not be stored)."""
        if self._events.pop(event_id, None) is not None:
            self._reindex()

    def set_promised(self, event_id: str, promised: float) -> GridEvent:
        event = replace(self._events[event_id], promised=promised)
        self._events[event_id] = event
        for i, old in enumerate(self._order):
            if old.event_id == event_id:
                self._order[i] = event
        return event

    def prune(self, before: float) -> list[str]:
        """Forget events whose ceiling is gone (stopped, ramped back up) before `before`."""
        gone = [e.event_id for e in self._order if self._released_by(e) < before]
        for event_id in gone:
            del self._events[event_id]
        if gone:
            self._reindex()
        return gone

    def _released_by(self, event: GridEvent) -> float:
        stop = event.stop
        if event.void or event.ramp_up_w_per_s is None or stop == INF:
            return stop
        level = _descent(event, self._anchors[event.event_id], stop)
        return stop + max(0.0, self.limits.base_w - level) / event.ramp_up_w_per_s

    # -- queries ------------------------------------------------------------------------

    @property
    def events(self) -> tuple[GridEvent, ...]:
        return tuple(self._order)

    def get(self, event_id: str) -> GridEvent | None:
        return self._events.get(event_id)

    def anchor(self, event_id: str) -> float:
        return self._anchors[event_id]

    def _planned(self, t: float, events: Iterable[GridEvent]) -> float:
        level = self.limits.base_w
        for event in events:
            level = min(level, envelope(event, self._anchors[event.event_id], t))
        return level

    def planned_at(self, t: float) -> float:
        """The budget from the base and the events alone (link assumed alive)."""
        return self._planned(t, self._order)

    def budget_at(self, t: float, *, silent: bool = False) -> Budget:
        """The budget in force at `t`, and which ceilings set it."""
        ceilings: dict[str, float] = {"base": self.limits.base_w}
        if silent:
            ceilings["safe"] = self.limits.safe_w
        for event in self._order:
            level = envelope(event, self._anchors[event.event_id], t)
            if level < INF:
                ceilings[event.event_id] = level
        watts = min(ceilings.values())
        binding = tuple(k for k, v in ceilings.items() if v <= watts)
        return Budget(watts, binding, silent)

    def in_force(self, t: float) -> list[GridEvent]:
        """Events constraining the site at `t` (including their up ramps)."""
        return [e for e in self._order
                if envelope(e, self._anchors[e.event_id], t) < INF]

    def reach_time(self, event_id: str) -> float:
        """Latest time by which the budget is at or under this event's limit (its own
        envelope gets there then; a lower ceiling may get there sooner)."""
        event = self._events[event_id]
        if event.ramp_down_w_per_s is None:
            return event.start
        drop = max(0.0, self._anchors[event_id] - event.limit_w)
        return event.start + drop / event.ramp_down_w_per_s

    def breakpoints(self, after: float) -> list[float]:
        """Times after `after` where the budget may jump or start/stop ramping, sorted."""
        points: set[float] = set()
        for event in self._order:
            if event.void:
                continue
            points.update((event.start, self.reach_time(event.event_id)))
            if event.stop < INF:
                points.update((event.stop, self._released_by(event)))
        return sorted(p for p in points if p > after)


def limits_by_site(limits: Iterable[SiteLimits]) -> Mapping[str, SiteLimits]:
    out: dict[str, SiteLimits] = {}
    for item in limits:
        if item.site in out:
            raise ConfigError(f"grid.site.{item.site}", "site listed twice")
        out[item.site] = item
    return out
