"""Vardiff on synthetic share arrival times (pure)."""

import random

from pool.stratum.vardiff import Vardiff, VardiffPolicy

POLICY = VardiffPolicy(
    target_interval_s=10.0,
    retarget_interval_s=30.0,
    retarget_shares=30,
    hysteresis=0.3,
    max_step_factor=4.0,
)


def simulate(vardiff: Vardiff, hashrate_diff1_per_s: float, seconds: float, seed: int = 1):
    """Shares as a Poisson process: rate = hashrate / difficulty (diff-1 shares per s)."""
    rng = random.Random(seed)
    now, changes = 0.0, []
    while now < seconds:
        gap = rng.expovariate(hashrate_diff1_per_s / vardiff.difficulty)
        # the periodic sweep runs every second between shares
        while now + 1.0 < min(now + gap, seconds):
            now += 1.0
            if (new := vardiff.maybe_retarget(now)) is not None:
                changes.append(new)
            gap -= 1.0
        now += gap
        if (new := vardiff.on_share(now)) is not None:
            changes.append(new)
    return changes


def test_converges_to_target_rate_from_far_below():
    vardiff = Vardiff(POLICY, 1.0, 0.001, 1e12, 0.0)
    simulate(vardiff, hashrate_diff1_per_s=10_000.0, seconds=600)
    # Ideal: 10,000 diff-1 shares/s * 10 s per share = 100,000.
    assert 60_000 < vardiff.difficulty < 160_000


def test_steps_are_clamped_and_bounded():
    vardiff = Vardiff(POLICY, 1.0, 0.001, 50.0, 0.0)
    for second in range(1, 31):
        vardiff.on_share(second / 100)  # 30 shares in 0.3 s: far too easy
    assert vardiff.difficulty == 4.0  # one step of at most x4
    simulate(vardiff, hashrate_diff1_per_s=10_000.0, seconds=300)
    assert vardiff.difficulty == 50.0  # the max clamps


def test_no_shares_steps_down_after_clear_evidence():
    vardiff = Vardiff(POLICY, 1000.0, 0.001, 1e12, 0.0)
    assert vardiff.maybe_retarget(30.0) is None  # 3 expected, 0 seen: still noise
    assert vardiff.maybe_retarget(85.0) is None  # 8.5 expected: under three sigma
    assert vardiff.maybe_retarget(91.0) == 250.0  # 9.1 expected: past three sigma


def test_hysteresis_keeps_a_right_difficulty_still():
    changes = []
    for seed in range(5):
        vardiff = Vardiff(POLICY, 1000.0, 0.001, 1e12, 0.0)
        changes += simulate(vardiff, hashrate_diff1_per_s=100.0, seconds=3600, seed=seed)
    # Right difficulty (100/s * 10 s = 1000): changes are rare and small.
    assert len(changes) <= 10
    assert all(250 <= c <= 4000 for c in changes)


def test_set_clamps_to_min_and_max():
    vardiff = Vardiff(POLICY, 1.0, 0.5, 8.0, 0.0)
    assert vardiff.set(100.0, 1.0) == 8.0
    assert vardiff.set(0.001, 1.0) == 0.5
