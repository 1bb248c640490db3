"""Power allocation for one site (pure: no I/O, no clock; time comes in as numbers).

Given the site budget and every miner's state, power curve and capabilities, `allocate`
chooses which miners run, at which power target, and in which order the changes are made.

The rules, in the order they apply:

1. Plan for ``limit = budget x (1 - safety_margin)``. Miners the controller cannot command
   (unreachable, faulted, flagged for ignoring commands, read-only firmware) are counted at
   the power they draw and left alone; everyone else shares what remains.
2. Which miners run (phase A). A miner is slept only when turning *every* running miner down
   to its lowest target would still exceed the limit ("tunable miners are turned down before
   any miner is slept"); then miners are kept, most efficient (J/TH at the lowest target)
   first, while they fit: a miner sleeps only when it does not fit beside every more
   efficient one, and miners woken less than ``min_on_s`` ago are kept first. A sleeping
   miner is woken, most efficient first, only if it has been off for ``min_off_s`` and everyone
   awake
   still fits at their lowest targets under ``limit x (1 - hysteresis)``, and never in a plan
   that sleeps a running miner: running miners are not swapped for sleeping ones, so a
   steady budget never makes a miner flap.
3. At which power each awake miner runs (phase B). The room left is handed out in pieces
   along each miner's curve (the upper concave hull of its settable points), best TH per
   watt first: the marginal rule that maximises hash rate for concave curves. A piece above
   a miner's current target must fit under ``limit x (1 - hysteresis)``; keeping a current
   target only has to fit under the limit.
4. Order (the steps). Step 0 holds every reduction (sleeps, lower targets); it is sent at
   once. Later steps hold increases: turn-ups first, then wake-ups in batches of at most
   ``wake_step_miners`` miners and ``wake_step_w`` watts, ``wake_step_interval_s`` apart.
   No increase may start while a reduction is still in progress (`Plan.settled`): a miner
   told to sleep counts at the power it still draws until it reports asleep.

Accounting. Every miner counts at ``draw_w``, which the controller sets conservatively: a
ramping miner at its peak (its target), a miner that was told to go down at what it still
draws until the read-back confirms it. During a step a changing miner counts at the larger
of its power before and after. Property (tested with hypothesis): when the plan is
feasible, no step's power exceeds the limit, counting ramping miners at their peak.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from miners.errors import AllocationError
from pool.errors import ConfigError

CURVE_EXPONENT = 0.75  # d ln(hashrate) / d ln(hashing power) when a model has no measured points
_EPS_W = 1e-6  # watts below this are rounding, not a change


@dataclass(frozen=True, slots=True)
class PowerCurve:
    """The settable operating points of one miner, ``(watts, hash rate in H/s)`` ascending in
    watts, and what it draws asleep. Firmware presets (LuxOS profiles, ESP-Miner frequency
    menus) are discrete, so the allocator only ever plans these points."""

    points: tuple[tuple[float, float], ...]
    sleep_w: float

    def __post_init__(self) -> None:
        if not self.points:
            raise AllocationError("a power curve needs at least one operating point")
        watts = [w for w, _ in self.points]
        if any(b <= a for a, b in itertools.pairwise(watts)):
            raise AllocationError("power curve points must be strictly ascending in watts")
        if any(not math.isfinite(w) or not math.isfinite(h) or h < 0 for w, h in self.points):
            raise AllocationError("power curve points must be finite with hash rate >= 0")
        if not 0 <= self.sleep_w < watts[0]:
            raise AllocationError("sleep power must be >= 0 and below the lowest target")

    @property
    def min_w(self) -> float:
        return self.points[0][0]

    @property
    def max_w(self) -> float:
        return self.points[-1][0]

    def hashrate_at(self, watts: float) -> float:
        """Hash rate (H/s) at a target, interpolated between points (clamped to the range)."""
        points = self.points
        if watts <= points[0][0]:
            return points[0][1]
        for (w0, h0), (w1, h1) in itertools.pairwise(points):
            if watts <= w1:
                return h0 + (h1 - h0) * (watts - w0) / (w1 - w0)
        return points[-1][1]

    def point_at_or_below(self, watts: float) -> tuple[float, float]:
        """The highest point not above `watts` (the lowest point if all are above)."""
        best = self.points[0]
        for point in self.points:
            if point[0] <= watts + _EPS_W:
                best = point
        return best

    @classmethod
    def fixed(cls, watts: float, hashrate_hs: float, sleep_w: float) -> PowerCurve:
        """A miner that runs at one power only (no tuning)."""
        return cls(((watts, hashrate_hs),), sleep_w)

    @classmethod
    def from_spec(
        cls,
        *,
        nominal_w: float,
        nominal_hs: float,
        sleep_w: float,
        min_w: float,
        max_w: float,
        steps: int = 8,
        exponent: float = CURVE_EXPONENT,
    ) -> PowerCurve:
        """Evenly spaced targets on ``H(P) = H_nom·((P - P_sleep)/(P_nom - P_sleep))^exponent``.

        Used when the firmware does not list its presets: hashing power grows as f·V², and the
        voltage rises with the clock, so power grows faster than hash rate (exponent < 1).
        """
        if not 0 <= sleep_w < min_w <= max_w or nominal_w <= sleep_w:
            raise AllocationError("need 0 <= sleep_w < min_w <= max_w and nominal_w > sleep_w")
        count = max(1, steps) if max_w > min_w else 1
        watts = [min_w + (max_w - min_w) * i / max(1, count - 1) for i in range(count)]
        span = nominal_w - sleep_w
        points = tuple((w, nominal_hs * ((w - sleep_w) / span) ** exponent) for w in watts)
        return cls(points, sleep_w)


@dataclass(frozen=True, slots=True)
class MinerInput:
    """One miner as the allocator sees it (the controller builds these every tick).

    ``running`` and ``target_w`` are what the miner was last told (or, before any command,
    what it reports); ``draw_w`` is the power to count for it right now; ``switched_s`` is
    the time of its last sleep or wake, on the same clock as ``now_s``.
    """

    miner_id: str
    curve: PowerCurve
    running: bool
    target_w: float
    draw_w: float
    can_sleep: bool = True
    can_tune: bool = True
    controllable: bool = True
    switched_s: float = -math.inf


def _check(name: str, ok: bool, reason: str) -> None:
    if not ok:
        raise ConfigError(name, reason)


@dataclass(frozen=True, slots=True)
class AllocationSettings:
    """Allocation policy; `ConfigError` names the field when a value is out of range."""

    safety_margin: float = 0.05  # fraction of the budget kept unplanned
    hysteresis: float = 0.02  # fraction of the limit kept free before waking or turning up
    min_on_s: float = 300.0  # s; miners woken more recently are slept last
    min_off_s: float = 300.0  # s; miners slept more recently are not woken
    wake_step_miners: int = 20  # miners woken per step
    wake_step_w: float = 0.0  # W woken per step (at target); 0 = no limit
    wake_step_interval_s: float = 30.0  # s between wake steps

    def __post_init__(self) -> None:
        _check("safety_margin", 0 <= self.safety_margin < 1, "must be in [0, 1)")
        _check("hysteresis", 0 <= self.hysteresis < 1, "must be in [0, 1)")
        _check("min_on_s", self.min_on_s >= 0, "must be >= 0")
        _check("min_off_s", self.min_off_s >= 0, "must be >= 0")
        _check("wake_step_miners", self.wake_step_miners >= 1, "must be >= 1")
        _check("wake_step_w", self.wake_step_w >= 0, "must be >= 0 (0 = no limit)")
        _check("wake_step_interval_s", self.wake_step_interval_s >= 0, "must be >= 0")


class Action(StrEnum):
    SLEEP = "sleep"
    WAKE = "wake"
    SET_TARGET = "set_target"


@dataclass(frozen=True, slots=True)
class Command:
    """One change to one miner; ``after_w`` counts a waking miner at its peak (its target)."""

    miner_id: str
    action: Action
    target_w: float  # the power target to apply (set before waking); sleep power for SLEEP
    before_w: float
    after_w: float


@dataclass(frozen=True, slots=True)
class Step:
    at_s: float  # earliest time the step may start
    commands: tuple[Command, ...]
    power_w: float  # planned site power during the step (changing miners at their larger value)


@dataclass(frozen=True, slots=True)
class Decision:
    running: bool
    target_w: float  # meaningful when running


@dataclass(frozen=True, slots=True)
class Plan:
    budget_w: float
    limit_w: float
    decisions: Mapping[str, Decision]  # controllable miners only
    steps: tuple[Step, ...]  # steps[0]: reductions (now); steps[1:]: increases, staggered
    power_w: float  # planned site power once every step is done
    hashrate_hs: float  # planned hash rate of the controllable miners
    settled: bool  # no reduction is still in progress, so increases may start
    shortfall_w: float  # > 0 when even shedding everything leaves the site over the limit
    efficiency_order: tuple[str, ...] = field(default=())  # controllable, best J/TH first

    @property
    def feasible(self) -> bool:
        return self.shortfall_w <= _EPS_W

    def due(self, now_s: float) -> tuple[Command, ...]:
        """Commands to send at `now_s`: every reduction, and the next increase step once
        reductions have settled and its time has come."""
        due = list(self.steps[0].commands)
        if self.settled and len(self.steps) > 1 and self.steps[1].at_s <= now_s:
            due.extend(self.steps[1].commands)
        return tuple(due)


def allocate(
    budget_w: float,
    miners: Sequence[MinerInput],
    settings: AllocationSettings,
    *,
    now_s: float,
    last_wake_s: float = -math.inf,
) -> Plan:
    """Plan the site: which miners run, at which targets, and the order of the changes."""
    if not math.isfinite(budget_w) or budget_w < 0:
        raise AllocationError(f"budget must be a finite number of watts >= 0, got {budget_w!r}")
    limit = budget_w * (1.0 - settings.safety_margin)
    wake_limit = limit * (1.0 - settings.hysteresis)
    control = [m for m in miners if _controllable(m)]
    fixed_w = sum(m.draw_w for m in miners if not _controllable(m))
    order = sorted(control, key=_min_point_j_per_h)
    awake, floor_w = _choose_awake(control, order, fixed_w, limit, wake_limit, settings, now_s)
    targets = _fill(control, awake, floor_w, limit, wake_limit)
    decisions = {
        m.miner_id: Decision(m.miner_id in awake, targets.get(m.miner_id, m.curve.min_w))
        for m in control
    }
    return _build_plan(budget_w, limit, miners, decisions, order, settings, now_s, last_wake_s)


def _controllable(m: MinerInput) -> bool:
    """Commandable, and able to reach every state the plan might want for it."""
    return m.controllable and (m.running or m.can_sleep)


def _min_point_j_per_h(m: MinerInput) -> float:
    w, h = _lowest_point(m)
    return w / h if h > 0 else math.inf


def _lowest_point(m: MinerInput) -> tuple[float, float]:
    if m.can_tune:
        return m.curve.points[0]
    return m.curve.point_at_or_below(m.target_w)


def _choose_awake(
    control: Sequence[MinerInput],
    order: Sequence[MinerInput],
    fixed_w: float,
    limit: float,
    wake_limit: float,
    settings: AllocationSettings,
    now_s: float,
) -> tuple[set[str], float]:
    """Phase A: the set of miners that run; returns it and the site power with each of them
    at its lowest target and everyone else asleep."""
    awake = {m.miner_id for m in control if not m.can_sleep}
    floor_w = fixed_w + sum(
        _lowest_point(m)[0] if not m.can_sleep else m.curve.sleep_w for m in control
    )
    running = [m for m in order if m.running and m.can_sleep]
    running.sort(key=lambda m: now_s - m.switched_s >= settings.min_on_s)  # stable: shed last
    shed = False
    for m in running:
        extra = _lowest_point(m)[0] - m.curve.sleep_w
        if floor_w + extra > limit + _EPS_W:
            shed = True  # it sleeps; a smaller, less efficient miner may still fit
            continue
        awake.add(m.miner_id)
        floor_w += extra
    if shed:
        return awake, floor_w  # no wake-ups in a plan that sleeps running miners
    for m in order:
        if m.running or now_s - m.switched_s < settings.min_off_s:
            continue
        extra = _lowest_point(m)[0] - m.curve.sleep_w
        if floor_w + extra <= wake_limit + _EPS_W:
            awake.add(m.miner_id)
            floor_w += extra
    return awake, floor_w


@functools.lru_cache(maxsize=4096)
def _hull(points: tuple[tuple[float, float], ...]) -> tuple[tuple[float, float], ...]:
    """Upper concave hull from the lowest point up to the highest hash rate (collinear and
    dominated points dropped), so per-miner marginal TH/W strictly decreases. Cached: a
    site has few distinct curves (one per model and firmware)."""
    hull: list[tuple[float, float]] = []
    for p in points:
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = hull[-2], hull[-1]
            if (y2 - y1) * (p[0] - x1) <= (p[1] - y1) * (x2 - x1):
                hull.pop()  # hull[-1] lies on or under the chord hull[-2] -> p
            else:
                break
        hull.append(p)
    while len(hull) >= 2 and hull[-1][1] <= hull[-2][1]:
        hull.pop()  # more watts for no more hash
    return tuple(hull)


def _fill(
    control: Sequence[MinerInput],
    awake: set[str],
    floor_w: float,
    limit: float,
    wake_limit: float,
) -> dict[str, float]:
    """Phase B: targets for the awake miners, best marginal TH per watt first."""
    targets: dict[str, float] = {}
    pieces: list[tuple[float, int, int, float, float, bool]] = []
    hulls: dict[int, tuple[tuple[float, float], ...]] = {}
    for index, m in enumerate(control):
        if m.miner_id not in awake:
            continue
        if not m.can_tune:
            targets[m.miner_id] = _lowest_point(m)[0]
            continue
        hull = hulls[index] = _hull(m.curve.points)
        targets[m.miner_id] = hull[0][0]
        for k in range(1, len(hull)):
            (w0, h0), (w1, h1) = hull[k - 1], hull[k]
            rise = not m.running or w1 > m.target_w + _EPS_W
            pieces.append(((h1 - h0) / (w1 - w0), index, k, w1 - w0, w1, rise))
    pieces.sort(key=lambda p: (-p[0], p[1], p[2]))
    used, reached = floor_w, dict.fromkeys(hulls, 0)
    for _slope, index, k, cost, upper_w, rise in pieces:
        if reached[index] != k - 1:
            continue  # an earlier piece of this miner did not fit
        if used + cost > (wake_limit if rise else limit) + _EPS_W:
            continue
        used += cost
        reached[index] = k
        targets[control[index].miner_id] = upper_w
    return targets


def _build_plan(
    budget_w: float,
    limit: float,
    miners: Sequence[MinerInput],
    decisions: Mapping[str, Decision],
    order: Sequence[MinerInput],
    settings: AllocationSettings,
    now_s: float,
    last_wake_s: float,
) -> Plan:
    after = {m.miner_id: _after_w(m, decisions.get(m.miner_id)) for m in miners}
    reductions, turn_ups, wakes = [], [], []
    for m in order:
        command = _command(m, decisions[m.miner_id], after[m.miner_id])
        if command is None:
            continue
        if command.after_w < command.before_w - _EPS_W or command.action is Action.SLEEP:
            reductions.append(command)
        elif command.action is Action.WAKE:
            wakes.append(command)
        else:
            turn_ups.append(command)
    level = {m.miner_id: min(m.draw_w, after[m.miner_id]) for m in miners}
    steps = [Step(now_s, tuple(reductions), sum(level.values()))]
    if turn_ups:
        steps.append(_step(now_s, turn_ups, level))
    start = max(now_s, last_wake_s + settings.wake_step_interval_s)
    for n, batch in enumerate(_batches(wakes, settings)):
        steps.append(_step(start + n * settings.wake_step_interval_s, batch, level))
    settled = all(m.draw_w <= after[m.miner_id] + _EPS_W for m in miners)
    power = sum(after.values())
    hashrate = sum(
        m.curve.hashrate_at(d.target_w)
        for m in order
        if (d := decisions[m.miner_id]).running
    )
    return Plan(
        budget_w=budget_w,
        limit_w=limit,
        decisions=decisions,
        steps=tuple(steps),
        power_w=power,
        hashrate_hs=hashrate,
        settled=settled,
        shortfall_w=max(0.0, power - limit),
        efficiency_order=tuple(m.miner_id for m in order),
    )


def _after_w(m: MinerInput, decision: Decision | None) -> float:
    if decision is None:  # not controllable: stays as it is
        return m.draw_w
    return decision.target_w if decision.running else m.curve.sleep_w


def _command(m: MinerInput, d: Decision, after_w: float) -> Command | None:
    if m.running and not d.running:
        return Command(m.miner_id, Action.SLEEP, m.curve.sleep_w, m.draw_w, after_w)
    if not m.running and d.running:
        return Command(m.miner_id, Action.WAKE, d.target_w, m.draw_w, after_w)
    if d.running and abs(d.target_w - m.target_w) > _EPS_W:
        return Command(m.miner_id, Action.SET_TARGET, d.target_w, m.draw_w, after_w)
    return None


def _step(at_s: float, commands: Sequence[Command], level: dict[str, float]) -> Step:
    """Apply increases to the running `level` map; the step's power is the level after it
    (increases only, so the larger of before and after is the after)."""
    for c in commands:
        level[c.miner_id] = max(level[c.miner_id], c.after_w)
    return Step(at_s, tuple(commands), sum(level.values()))


def _batches(wakes: Sequence[Command], settings: AllocationSettings) -> list[list[Command]]:
    batches: list[list[Command]] = []
    current: list[Command] = []
    watts = 0.0
    for c in wakes:  # already most efficient first
        over_w = settings.wake_step_w and current and watts + c.after_w > settings.wake_step_w
        if len(current) >= settings.wake_step_miners or over_w:
            batches.append(current)
            current, watts = [], 0.0
        current.append(c)
        watts += c.after_w
    if current:
        batches.append(current)
    return batches
