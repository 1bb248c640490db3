"""The power state machine, driven by a fake clock."""

import random

import pytest

from miners.sim.models import BITAXE_GAMMA, S21
from miners.sim.power import PowerModel, PowerState


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock():
    return FakeClock()


def make(clock, **kwargs):
    return PowerModel(S21, clock=clock, rng=random.Random(1), **kwargs)


def test_mining_at_nominal(clock):
    pm = make(clock)
    assert pm.state is PowerState.MINING
    assert pm.power_w() == S21.nominal_w
    assert pm.expected_ths() == pytest.approx(200.0)
    assert pm.seconds_to_next_change() is None


def test_sleep_stops_hashing_within_the_shutdown_time(clock):
    pm = make(clock)
    assert pm.sleep()
    assert pm.state is PowerState.STOPPING
    clock.advance(S21.shutdown_s / 2)
    assert 0 < pm.hash_fraction() < 1
    assert S21.sleep_w < pm.power_w() < S21.nominal_w
    clock.advance(S21.shutdown_s / 2)
    assert pm.state is PowerState.SLEEPING
    assert pm.hash_fraction() == 0.0
    assert pm.power_w() == S21.sleep_w
    assert not pm.sleep()  # already asleep


def test_wake_ramps_back_over_the_ramp_time(clock):
    pm = make(clock, state=PowerState.SLEEPING)
    assert pm.power_w() == S21.sleep_w
    assert pm.wake()
    assert pm.state is PowerState.RAMPING
    assert pm.seconds_to_next_change() == pytest.approx(S21.wake_ramp_s)
    clock.advance(S21.wake_ramp_s / 4)
    assert pm.hash_fraction() == pytest.approx(0.25)
    clock.advance(S21.wake_ramp_s)
    assert pm.state is PowerState.MINING
    assert pm.hash_fraction() == 1.0
    assert not pm.wake()  # already awake


def test_wake_during_shutdown_ramps_from_where_it_was(clock):
    pm = make(clock)
    pm.sleep()
    clock.advance(S21.shutdown_s * 0.4)
    assert pm.wake()
    assert pm.hash_fraction() == pytest.approx(0.6)
    assert pm.seconds_to_next_change() == pytest.approx(S21.wake_ramp_s * 0.4)


def test_slow_ramp_factor_stretches_the_wake(clock):
    pm = make(clock, state=PowerState.SLEEPING)
    pm.ramp_factor = 3.0
    pm.wake()
    clock.advance(S21.wake_ramp_s * 2)
    assert pm.state is PowerState.RAMPING
    clock.advance(S21.wake_ramp_s)
    assert pm.state is PowerState.MINING


def test_power_target_is_clamped_and_moves_the_hash_rate(clock):
    pm = make(clock)
    assert pm.set_power_target(2000.0) == 2000.0
    assert pm.power_w() == 2000.0
    assert pm.expected_ths() == pytest.approx(S21.hashrate_at(2000.0))
    assert pm.set_power_target(1.0) == S21.min_w


def test_off_and_boot(clock):
    pm = make(clock)
    pm.power_off()
    assert pm.state is PowerState.OFF and pm.power_w() == 0.0 and pm.expected_ths() == 0.0
    assert not pm.wake()  # a dead miner does not wake on command
    pm.power_on()
    assert pm.state is PowerState.RAMPING
    clock.advance(S21.wake_ramp_s)
    assert pm.state is PowerState.MINING


def test_readings_carry_small_noise_around_the_exact_values(clock):
    pm = PowerModel(BITAXE_GAMMA, clock=clock, rng=random.Random(7))
    readings = [pm.read() for _ in range(400)]
    powers = [r.power_w for r in readings]
    assert len(set(powers)) > 1
    mean = sum(powers) / len(powers)
    assert mean == pytest.approx(BITAXE_GAMMA.nominal_w, rel=0.01)
    assert all(abs(p / BITAXE_GAMMA.nominal_w - 1) < 6 * BITAXE_GAMMA.noise for p in powers)
    assert all(r.hash_fraction == 1.0 for r in readings)


def test_a_sleeping_miner_reports_zero_hash_rate_exactly(clock):
    pm = make(clock, state=PowerState.SLEEPING)
    reading = pm.read()
    assert reading.hashrate_ths == 0.0
    assert reading.state is PowerState.SLEEPING
