"""The pure budget timeline: vectors first, then properties (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from miners.grid.compliance import assess
from miners.grid.timeline import GridEvent, SiteLimits, Timeline
from pool.errors import ConfigError

LIMITS = SiteLimits("A", base_w=1_000_000.0, safe_w=400_000.0, silence_s=300.0)


def ev(event_id: str, limit_kw: float, start: float, end: float | None = None, *,
       down: float | None = None, up: float | None = None, created: float = 0.0) -> GridEvent:
    """An event with ramps given in kW/min, as the API takes them."""
    return GridEvent(event_id, "A", limit_kw * 1000, start, end,
                     None if down is None else down * 1000 / 60,
                     None if up is None else up * 1000 / 60, created=created)


def kw(timeline: Timeline, t: float, *, silent: bool = False) -> float:
    return round(timeline.budget_at(t, silent=silent).watts / 1000, 6)


# -- vectors ---------------------------------------------------------------------------------


def test_base_when_no_event() -> None:
    tl = Timeline(LIMITS)
    assert kw(tl, 0) == 1000
    assert tl.budget_at(0).binding == ("base",)


@pytest.mark.parametrize(("t", "expected"), [
    (99.999, 1000), (100, 500), (150, 300), (199.9, 300), (200, 300), (250, 300),
    (299.9, 300), (300, 500), (399.9, 500), (400, 1000), (1e9, 1000),
])
def test_overlapping_events_lowest_limit_wins(t: float, expected: float) -> None:
    tl = Timeline(LIMITS, [ev("e1", 500, 100, 400), ev("e2", 300, 150, 300)])
    assert kw(tl, t) == expected


def test_until_further_notice_and_cancel() -> None:
    tl = Timeline(LIMITS, [ev("e1", 200, 100)])
    assert kw(tl, 1e12) == 200
    tl.cancel("e1", 500)
    assert kw(tl, 499.9) == 200 and kw(tl, 500) == 1000
    # cancelling again later changes nothing; the past is not rewritten
    tl.cancel("e1", 800)
    assert tl.get("e1").cancelled == 500


def test_cancel_before_start_voids_the_event() -> None:
    tl = Timeline(LIMITS, [ev("e1", 200, 100, 200)])
    tl.cancel("e1", 50)
    assert tl.get("e1").void
    assert kw(tl, 150) == 1000
    assert tl.in_force(150) == []


@pytest.mark.parametrize(("t", "expected"), [
    (100, 1000), (130, 950), (160, 900), (400, 600), (500, 600),  # down 100 kW/min to 600
    (700, 600), (760, 700), (820, 800), (880, 900), (940, 1000), (2000, 1000),  # up 100 kW/min
])
def test_ramps(t: float, expected: float) -> None:
    tl = Timeline(LIMITS, [ev("e1", 600, 100, 700, down=100, up=100)])
    assert kw(tl, t) == expected
    assert tl.reach_time("e1") == pytest.approx(100 + 400 * 60 / 100)


def test_ramp_starts_from_the_budget_in_force() -> None:
    # e1 holds the site at 500 kW; e2 (later) ramps from 500, not from the base.
    tl = Timeline(LIMITS, [ev("e1", 500, 0, 1000), ev("e2", 200, 100, 1000, down=60)])
    assert tl.anchor("e2") == 500_000
    assert kw(tl, 100) == 500 and kw(tl, 160) == 440 and kw(tl, 400) == 200
    assert tl.reach_time("e2") == pytest.approx(100 + 300)


def test_cancel_mid_ramp_releases_with_up_ramp() -> None:
    tl = Timeline(LIMITS, [ev("e1", 0, 0, None, down=600, up=60)])
    assert kw(tl, 30) == 700
    tl.cancel("e1", 30)
    assert kw(tl, 30) == 700 and kw(tl, 90) == 760 and kw(tl, 330) == 1000


def test_silence_caps_at_safe_budget() -> None:
    tl = Timeline(LIMITS, [ev("e1", 300, 0, 100)])
    assert kw(tl, 50, silent=True) == 300  # an event lower than safe still applies
    assert kw(tl, 200, silent=True) == 400
    assert tl.budget_at(200, silent=True).binding == ("safe",)
    assert kw(tl, 200) == 1000


def test_prune_forgets_released_events_only() -> None:
    tl = Timeline(LIMITS, [ev("done", 500, 0, 10), ev("ramping", 500, 0, 10, up=60),
                           ev("open", 500, 0)])
    assert tl.prune(100) == ["done"]
    assert [e.event_id for e in tl.events] == ["open", "ramping"]  # (start, created, id)
    assert tl.prune(1e9) == ["ramping"]


def test_breakpoints() -> None:
    tl = Timeline(LIMITS, [ev("e1", 600, 100, 700, down=100, up=100)])
    assert tl.breakpoints(0) == [100, 340, 700, 940]
    assert tl.breakpoints(700) == [940]


def test_bad_limits_and_events_are_refused() -> None:
    with pytest.raises(ConfigError, match="safe_kw"):
        SiteLimits("A", base_w=100, safe_w=200)
    with pytest.raises(ConfigError, match="silence_s"):
        SiteLimits("A", base_w=100, safe_w=50, silence_s=0)
    with pytest.raises(ValueError, match="end"):
        ev("x", 1, 100, 100)
    with pytest.raises(ValueError, match="limit_w"):
        ev("x", -1, 100)
    with pytest.raises(ValueError, match="ramp_down"):
        ev("x", 1, 100, down=0)
    with pytest.raises(ValueError, match="site"):
        Timeline(LIMITS, [GridEvent("x", "B", 1, 0)])


def test_compliance_statuses() -> None:
    event = GridEvent("e1", "A", 500_000, 100, 400, created=90, promised=130)
    samples = [(95, 900e3), (110, 800e3), (120, 495e3), (140, 505e3), (200, 480e3)]
    assert assess(event, samples, 90).status == "scheduled"
    assert assess(event, samples, 115).status == "pending"
    mid = assess(event, samples, 300)
    assert mid.status == "complying"  # 505 kW is within the 2 % tolerance
    assert mid.under_limit_at == 120 and mid.seconds_to_comply == 20
    assert assess(event, samples, 500).status == "met"
    late = assess(event, [(110, 800e3), (140, 700e3)], 150)
    assert late.status == "violated" and late.over_limit_s == 10
    assert assess(event, [(110, 800e3)], 150).status == "late"


# -- properties -------------------------------------------------------------------------------

times = st.floats(min_value=0, max_value=10_000, allow_nan=False)
limits_kw = st.floats(min_value=0, max_value=1500, allow_nan=False)
rates = st.one_of(st.none(), st.floats(min_value=1, max_value=10_000, allow_nan=False))


@st.composite
def events(draw: st.DrawFn, *, ramps: st.SearchStrategy[float | None] = rates,
           max_size: int = 6) -> list[GridEvent]:
    out = []
    for i in range(draw(st.integers(0, max_size))):
        start = draw(times)
        length = draw(st.one_of(st.none(), st.floats(min_value=1, max_value=5000)))
        out.append(GridEvent(f"e{i}", "A", draw(limits_kw) * 1000, start,
                             None if length is None else start + length,
                             draw(ramps), draw(ramps), created=float(i)))
    return out


@settings(max_examples=200, deadline=None)
@given(events(ramps=st.none()), times, st.booleans())
def test_without_ramps_the_lowest_active_limit_wins(evs: list[GridEvent], t: float,
                                                     silent: bool) -> None:
    tl = Timeline(LIMITS, evs)
    active = [e.limit_w for e in evs if e.start <= t < e.stop]
    expected = min([LIMITS.base_w, *active, *([LIMITS.safe_w] if silent else [])])
    assert tl.budget_at(t, silent=silent).watts == expected


@settings(max_examples=200, deadline=None)
@given(events(), times, st.booleans())
def test_budget_never_above_base_or_an_active_limit_once_reached(
        evs: list[GridEvent], t: float, silent: bool) -> None:
    tl = Timeline(LIMITS, evs)
    budget = tl.budget_at(t, silent=silent).watts
    assert budget <= LIMITS.base_w
    if silent:
        assert budget <= LIMITS.safe_w
    for e in evs:
        if tl.reach_time(e.event_id) <= t < e.stop:
            assert budget <= e.limit_w + 1e-6


@settings(max_examples=150, deadline=None)
@given(events(ramps=st.floats(min_value=1, max_value=5000)), times,
       st.floats(min_value=0.001, max_value=50))
def test_with_ramps_everywhere_the_budget_moves_no_faster_than_the_ramps(
        evs: list[GridEvent], t: float, dt: float) -> None:
    tl = Timeline(LIMITS, evs)
    before, after = tl.planned_at(t), tl.planned_at(t + dt)
    max_down = max((e.ramp_down_w_per_s for e in evs), default=0.0)
    max_up = max((e.ramp_up_w_per_s for e in evs), default=0.0)
    tolerance = 1e-6 * max(1.0, abs(before))
    assert after - before <= max_up * dt + tolerance
    assert before - after <= max_down * dt + tolerance


@settings(max_examples=150, deadline=None)
@given(events(), times, times)
def test_cancellation_never_changes_the_past(evs: list[GridEvent], cancel_at: float,
                                             probe: float) -> None:
    tl = Timeline(LIMITS, evs)
    probes = [x for x in (probe * 0.5, probe) if x < cancel_at]
    before = [tl.budget_at(x).watts for x in probes]
    for e in evs:
        tl.cancel(e.event_id, cancel_at)
    assert [tl.budget_at(x).watts for x in probes] == before


@settings(max_examples=100, deadline=None)
@given(events(), times)
def test_everything_ends_back_at_base(evs: list[GridEvent], cancel_at: float) -> None:
    tl = Timeline(LIMITS, evs)
    for e in evs:
        tl.cancel(e.event_id, cancel_at)
    assert tl.budget_at(1e9).watts == LIMITS.base_w
    assert tl.budget_at(1e9, silent=True).watts == LIMITS.safe_w
