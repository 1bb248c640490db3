"""miners.allocate: vectors on real model curves, then properties with hypothesis.

The transition check (`replay`) is written independently of the allocator: it starts
from each miner's counted power, applies the steps in order, counts a changing miner at
the larger of its power before and after, and checks the limit at every step.
"""

import itertools
import math

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from miners.allocate import (
    Action,
    AllocationSettings,
    MinerInput,
    Plan,
    PowerCurve,
    allocate,
)
from miners.errors import AllocationError
from miners.inventory import KNOWN_MODELS
from pool.errors import ConfigError

EPS = 1e-6
FREE = AllocationSettings(min_on_s=0, min_off_s=0, hysteresis=0.0, wake_step_interval_s=0)


def running(miner_id: str, model: str, *, target: float | None = None, **kw) -> MinerInput:
    curve = KNOWN_MODELS[model].curve()
    t = curve.max_w if target is None else target
    return MinerInput(miner_id, curve, True, t, kw.pop("draw", t), **kw)


def asleep(miner_id: str, model: str, **kw) -> MinerInput:
    curve = KNOWN_MODELS[model].curve()
    return MinerInput(miner_id, curve, False, curve.max_w, kw.pop("draw", curve.sleep_w), **kw)


def site(counts: dict[str, int], make=running) -> list[MinerInput]:
    return [make(f"{k}-{i}", k) for k, n in counts.items() for i in range(n)]


MIX = {"s19jpro": 4, "s21": 3, "m50s": 2, "bitaxe-gamma": 3}


def final_w(plan: Plan, miners: list[MinerInput]) -> dict[str, float]:
    out = {}
    for m in miners:
        d = plan.decisions.get(m.miner_id)
        out[m.miner_id] = m.draw_w if d is None else (d.target_w if d.running else m.curve.sleep_w)
    return out


def replay(plan: Plan, miners: list[MinerInput]) -> list[float]:
    """Apply the steps; return the peak site power of each step (step 0 = after it)."""
    by_id = {m.miner_id: m for m in miners}
    final = final_w(plan, miners)
    power = {m.miner_id: m.draw_w for m in miners}
    seen: set[str] = set()
    peaks = []
    for index, step in enumerate(plan.steps):
        during = dict(power)
        for c in step.commands:
            assert c.miner_id not in seen, "a miner is commanded twice in one plan"
            seen.add(c.miner_id)
            if index == 0:
                assert c.after_w <= c.before_w + EPS or c.action is Action.SLEEP
            else:
                assert c.after_w >= c.before_w - EPS, "increase steps only raise power"
            assert c.after_w == pytest.approx(final[c.miner_id])
            during[c.miner_id] = max(power[c.miner_id], c.after_w)
            power[c.miner_id] = c.after_w
        if index == 0:  # reductions already under way finish with this step as well
            power = {k: min(v, final[k]) for k, v in power.items()}
            peaks.append(sum(power.values()))
        else:
            peaks.append(sum(during.values()))
    for miner_id, m in by_id.items():
        d = plan.decisions.get(miner_id)
        if d is None:
            continue
        changed = d.running != m.running or (d.running and abs(d.target_w - m.target_w) > EPS)
        assert (miner_id in seen) == changed, f"{miner_id}: command iff the decision changes"
    return peaks


# -- vectors ----------------------------------------------------------------------------


def test_ample_budget_runs_everything_at_nominal_and_sends_nothing():
    miners = site(MIX)
    nominal = sum(m.target_w for m in miners)
    plan = allocate(nominal * 1.2, miners, FREE, now_s=0)
    assert plan.steps[0].commands == () and len(plan.steps) == 1
    assert plan.power_w == pytest.approx(nominal) and plan.settled and plan.feasible
    assert all(d.running for d in plan.decisions.values())


def test_half_budget_turns_miners_down_and_sleeps_none():
    """With the models' real tuning ranges (~40 % of nominal), a 50 % cut needs no sleep:
    turning down is more efficient (J/TH falls with power) and comes first."""
    miners = site(MIX)
    nominal = sum(m.target_w for m in miners)
    plan = allocate(nominal * 0.5, miners, FREE, now_s=0)
    assert all(d.running for d in plan.decisions.values())
    assert plan.power_w <= plan.limit_w
    assert {c.action for c in plan.steps[0].commands} == {Action.SET_TARGET}
    targets = {k: d.target_w for k, d in plan.decisions.items()}
    # the least efficient model sits at its lowest target, the most efficient above it
    assert all(targets[f"s19jpro-{i}"] == pytest.approx(1200.0) for i in range(4))
    assert max(targets[f"s21-{i}"] for i in range(3)) > 1400.0
    assert not plan.settled  # the reductions are in progress
    assert plan.due(now_s=0) == plan.steps[0].commands


def test_deep_cut_sleeps_the_least_efficient_first():
    miners = site(MIX)
    nominal = sum(m.target_w for m in miners)
    plan = allocate(nominal * 0.3, miners, FREE, now_s=0)
    slept = {k for k, d in plan.decisions.items() if not d.running}
    assert slept and all(k.startswith("s19jpro") for k in slept)
    order = list(plan.efficiency_order)
    assert order.index(max(slept, key=order.index)) == len(order) - 1
    assert all(c.action is not Action.WAKE for s in plan.steps for c in s.commands)
    assert max(replay(plan, miners)) <= plan.limit_w + EPS


def test_restoring_the_budget_wakes_in_staggered_steps_most_efficient_first():
    miners = site({"s21": 4, "s19jpro": 5}, make=asleep)
    settings = AllocationSettings(min_off_s=0, wake_step_miners=3, wake_step_interval_s=30)
    plan = allocate(1e6, miners, settings, now_s=1000, last_wake_s=990)
    wake_steps = [s for s in plan.steps[1:]]
    assert [len(s.commands) for s in wake_steps] == [3, 3, 3]
    assert [s.at_s for s in wake_steps] == [1020, 1050, 1080]
    assert [c.miner_id for c in wake_steps[0].commands] == ["s21-0", "s21-1", "s21-2"]
    assert plan.due(now_s=1000) == ()  # 20 s left of the stagger interval
    assert plan.due(now_s=1020) == wake_steps[0].commands
    peaks = replay(plan, miners)
    assert peaks == sorted(peaks) and max(peaks) <= plan.limit_w + EPS


def test_wake_steps_also_respect_a_power_limit():
    miners = site({"s21": 4}, make=asleep)
    settings = AllocationSettings(min_off_s=0, wake_step_miners=10, wake_step_w=7500)
    plan = allocate(1e6, miners, settings, now_s=0)
    assert [len(s.commands) for s in plan.steps[1:]] == [2, 2]


def test_no_increase_while_a_reduction_is_in_progress():
    still_stopping = asleep("s19-stopping", "s19jpro", draw=2500.0, switched_s=0)
    s = AllocationSettings(min_off_s=300, wake_step_interval_s=0)
    plan = allocate(1e6, [still_stopping, asleep("s21-new", "s21")], s, now_s=10)
    assert not plan.decisions["s19-stopping"].running and plan.decisions["s21-new"].running
    assert not plan.settled
    assert plan.due(now_s=1e9) == ()


def test_hysteresis_keeps_a_running_miner_but_does_not_wake_one_into_the_band():
    s = AllocationSettings(min_on_s=0, min_off_s=0, hysteresis=0.05, safety_margin=0.0)
    curve = KNOWN_MODELS["s21"].curve()
    budget = curve.min_w * 1.02  # fits under the limit, not under limit x (1 - 0.05)
    on = allocate(budget, [running("a", "s21", target=curve.min_w)], s, now_s=0)
    assert on.decisions["a"].running
    off = allocate(budget, [asleep("a", "s21")], s, now_s=0)
    assert not off.decisions["a"].running


def test_min_off_time_blocks_a_wake_and_min_on_time_sheds_recent_wakes_last():
    s = AllocationSettings(min_on_s=300, min_off_s=300, hysteresis=0)
    recent = asleep("a", "s21", switched_s=900)
    assert not allocate(1e6, [recent], s, now_s=1000).decisions["a"].running
    assert allocate(1e6, [recent], s, now_s=1200).decisions["a"].running
    # one miner must sleep: the S19 (worse J/TH) was just woken, so the S21 goes
    miners = [running("s19", "s19jpro", switched_s=990), running("s21", "s21")]
    limit_one = (1400 + 45) / 0.95
    plan = allocate(limit_one, miners, s, now_s=1000)
    assert plan.decisions["s19"].running and not plan.decisions["s21"].running


def test_locked_miners_are_counted_and_left_alone_and_shortfall_is_reported():
    flagged = running("flagged", "s21", controllable=False, draw=3600.0)
    plan = allocate(3000, [flagged, running("ok", "s21")], FREE, now_s=0)
    assert "flagged" not in plan.decisions and not plan.decisions["ok"].running
    assert not plan.feasible and plan.shortfall_w == pytest.approx(3600 + 50 - 2850)


def test_a_miner_that_cannot_be_tuned_is_slept_whole_and_one_that_cannot_sleep_stays_on():
    fixed = running("fixed", "s21", can_tune=False)
    stuck = running("stuck", "s19jpro", can_sleep=False)
    plan = allocate((3500 + 1200 + 100) / 0.95, [fixed, stuck], FREE, now_s=0)
    assert plan.decisions["fixed"].running and plan.decisions["fixed"].target_w == 3500
    plan = allocate((1200 + 50 + 100) / 0.95, [fixed, stuck], FREE, now_s=0)
    assert not plan.decisions["fixed"].running
    assert plan.decisions["stuck"] == type(plan.decisions["stuck"])(True, 1200.0)


def test_dominated_points_are_never_planned():
    curve = PowerCurve(((100.0, 10.0), (200.0, 11.0), (300.0, 30.0)), 10.0)
    plan = allocate(1e6, [MinerInput("m", curve, True, 100.0, 100.0)], FREE, now_s=0)
    assert plan.decisions["m"].target_w == 300.0
    plan = allocate(250 / 0.95, [MinerInput("m", curve, True, 100.0, 100.0)], FREE, now_s=0)
    assert plan.decisions["m"].target_w == 100.0  # 200 W is under the chord: skipped


def test_model_curves_get_more_efficient_when_turned_down():
    for model in KNOWN_MODELS.values():
        curve = model.curve()
        j_per_h = [w / h for w, h in curve.points]
        assert j_per_h == sorted(j_per_h), model.key
        assert curve.max_w == model.nominal_w
        assert curve.hashrate_at(model.nominal_w) == pytest.approx(model.nominal_hs)


def test_bad_input_is_refused():
    with pytest.raises(AllocationError):
        allocate(-1, [], FREE, now_s=0)
    with pytest.raises(AllocationError):
        allocate(math.nan, [], FREE, now_s=0)
    with pytest.raises(AllocationError):
        PowerCurve(((100.0, 1.0), (100.0, 2.0)), 5.0)
    with pytest.raises(AllocationError):
        PowerCurve(((100.0, 1.0),), 150.0)
    with pytest.raises(ConfigError) as err:
        AllocationSettings(safety_margin=1.5)
    assert err.value.key == "safety_margin"
    with pytest.raises(ConfigError):
        AllocationSettings(wake_step_miners=0)


# -- properties -------------------------------------------------------------------------


@st.composite
def curves(draw) -> PowerCurve:
    n = draw(st.integers(1, 6))
    sleep_w = draw(st.floats(0, 100))
    start = sleep_w + draw(st.floats(1, 1000))
    steps = draw(st.lists(st.floats(1, 800), min_size=n - 1, max_size=n - 1))
    watts = [start]
    for s in steps:
        watts.append(watts[-1] + s)
    rates = draw(st.lists(st.floats(0, 1e15), min_size=n, max_size=n))
    return PowerCurve(tuple(zip(watts, sorted(rates), strict=True)), sleep_w)


@st.composite
def miner_inputs(draw, index: int) -> MinerInput:
    curve = draw(curves())
    is_running = draw(st.booleans())
    target = draw(st.sampled_from([w for w, _ in curve.points]))
    after = target if is_running else curve.sleep_w
    pending = draw(st.floats(0, 2000)) if draw(st.booleans()) else 0.0
    controllable = draw(st.booleans()) or draw(st.booleans())
    draw_w = draw(st.floats(0, 5000)) if not controllable else after + pending
    return MinerInput(
        f"m{index}",
        curve,
        is_running,
        target,
        draw_w,
        can_sleep=draw(st.booleans()) or draw(st.booleans()),
        can_tune=draw(st.booleans()) or draw(st.booleans()),
        controllable=controllable,
        switched_s=draw(st.sampled_from([-math.inf, 0.0, 500.0, 990.0])),
    )


@st.composite
def sites(draw):
    n = draw(st.integers(0, 25))
    miners = [draw(miner_inputs(i)) for i in range(n)]
    total = sum(max(m.draw_w, m.curve.max_w) for m in miners) or 1000.0
    budget = draw(st.floats(0, total * 1.5))
    s = AllocationSettings(
        safety_margin=draw(st.floats(0, 0.3)),
        hysteresis=draw(st.floats(0, 0.2)),
        min_on_s=draw(st.sampled_from([0.0, 100.0])),
        min_off_s=draw(st.sampled_from([0.0, 100.0])),
        wake_step_miners=draw(st.integers(1, 5)),
        wake_step_w=draw(st.sampled_from([0.0, 2000.0])),
        wake_step_interval_s=draw(st.sampled_from([0.0, 30.0])),
    )
    return miners, budget, s


def _controllable(m: MinerInput) -> bool:
    return m.controllable and (m.running or m.can_sleep)


def _lowest(m: MinerInput) -> tuple[float, float]:
    return m.curve.points[0] if m.can_tune else m.curve.point_at_or_below(m.target_w)


def _floor(miners, awake: set[str]) -> float:
    total = 0.0
    for m in miners:
        if not _controllable(m):
            total += m.draw_w
        elif m.miner_id in awake or not m.can_sleep:
            total += _lowest(m)[0]
        else:
            total += m.curve.sleep_w
    return total


PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(sites())
def test_no_step_exceeds_the_budget_and_the_plan_ends_where_it_says(case):
    miners, budget, s = case
    plan = allocate(budget, miners, s, now_s=1000.0)
    final = final_w(plan, miners)
    assert plan.power_w == pytest.approx(sum(final.values()))
    everyone_asleep = _floor(miners, set())
    if abs(everyone_asleep - plan.limit_w) > 1e-3:  # away from rounding at the boundary
        assert plan.feasible == (everyone_asleep < plan.limit_w)
    peaks = replay(plan, miners)
    if plan.feasible:
        assert all(p <= plan.limit_w + 1e-3 for p in peaks), (peaks, plan.limit_w)
    else:
        for m in miners:
            d = plan.decisions.get(m.miner_id)
            if d is not None:
                assert not d.running if m.can_sleep else d.target_w == _lowest(m)[0]
    ats = [step.at_s for step in plan.steps]
    assert ats == sorted(ats) and ats[0] == 1000.0


@PROPERTY
@given(sites())
def test_targets_are_firmware_points_and_locked_miners_are_untouched(case):
    miners, budget, s = case
    plan = allocate(budget, miners, s, now_s=1000.0)
    for m in miners:
        d = plan.decisions.get(m.miner_id)
        if not _controllable(m):
            assert d is None
        elif d.running:
            assert d.target_w in {w for w, _ in m.curve.points}
            if not m.can_tune:
                assert d.target_w == _lowest(m)[0]


@PROPERTY
@given(sites())
def test_turn_down_before_sleep_least_efficient_first_and_no_flapping(case):
    miners, budget, s = case
    now = 1000.0
    plan = allocate(budget, miners, s, now_s=now)
    limit = plan.limit_w
    ctrl = [m for m in miners if _controllable(m)]
    was_on = {m.miner_id for m in ctrl if m.running}
    slept = {m.miner_id for m in ctrl if m.running and m.can_sleep
             and not plan.decisions[m.miner_id].running}
    woken = {m.miner_id for m in ctrl if not m.running and plan.decisions[m.miner_id].running}
    if slept:  # a sleep only when everyone running, turned down to the bottom, is too much
        assert _floor(miners, was_on) > limit - 1e-3
    assert not (slept and woken), "running miners are never swapped for sleeping ones"
    for m in ctrl:
        if m.miner_id in woken:
            assert now - m.switched_s >= s.min_off_s
    if woken:
        awake = {k for k, d in plan.decisions.items() if d.running}
        assert _floor(miners, awake) <= limit * (1 - s.hysteresis) + 1e-3

    # kept first-fit, most efficient first (recently woken ones before the rest)
    order = list(plan.efficiency_order)
    group = sorted((m for m in ctrl if m.running and m.can_sleep),
                   key=lambda m: (now - m.switched_s >= s.min_on_s, order.index(m.miner_id)))
    level = _floor(miners, set())  # everyone asleep who can sleep
    for m in group:
        extra = _lowest(m)[0] - m.curve.sleep_w
        if m.miner_id in slept:
            assert level + extra > limit - 1e-3, f"{m.miner_id} was slept but fits"
        else:
            level += extra


@PROPERTY
@given(sites())
def test_wake_batches_respect_size_power_and_interval(case):
    miners, budget, s = case
    assume(any(not m.running for m in miners))
    plan = allocate(budget, miners, s, now_s=1000.0, last_wake_s=995.0)
    wake_steps = [st_ for st_ in plan.steps[1:] if any(c.action is Action.WAKE
                                                       for c in st_.commands)]
    for step in wake_steps:
        wakes = [c for c in step.commands if c.action is Action.WAKE]
        assert len(wakes) <= s.wake_step_miners
        if s.wake_step_w and len(wakes) > 1:
            assert sum(c.after_w for c in wakes) <= s.wake_step_w + EPS
        assert step.at_s >= 995.0 + s.wake_step_interval_s
    gaps = [b.at_s - a.at_s for a, b in itertools.pairwise(wake_steps)]
    assert all(g >= s.wake_step_interval_s - EPS for g in gaps)
