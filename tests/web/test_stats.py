"""Hash rate maths on whole-minute windows, chart buckets, the best-share tracker and the
answer cache (pure or in-process)."""

from __future__ import annotations

import asyncio

import pytest

from pool.web.queries import TtlCache
from pool.web.stats import (
    BestShares,
    chart_points,
    difficulty_of_hash,
    hashrate_hs,
    window_hashrates,
    window_since,
)

MINUTE0 = 1_699_999_980  # a whole minute (unix seconds divisible by 60)
NOW = MINUTE0 + 30.0  # 30 s into it


def test_windows_start_at_whole_minutes_and_divide_by_their_span() -> None:
    assert window_since(NOW, 60) == MINUTE0 - 60  # the minute holding NOW - 60
    assert window_since(NOW, 300) == MINUTE0 - 300
    # 2**32 work units = one difficulty-1 share = 2**32 hashes, over the 90 s span
    assert hashrate_hs(2**32, NOW, 60) == 2**32 / 90
    assert hashrate_hs(0, NOW, 86400) == 0.0


def test_a_steady_miner_reads_its_own_hash_rate_in_every_window() -> None:
    rate = 1e12  # 1 TH/s, as per-minute work since a day ago
    start = window_since(NOW, 86400)
    minutes = [(m, int(rate * 60)) for m in range(start, MINUTE0, 60)]
    minutes.append((MINUTE0, int(rate * 30)))  # this minute so far
    for window, value in window_hashrates(minutes, NOW).items():
        assert value == pytest.approx(rate, rel=1e-9), window


def test_shares_before_a_window_do_not_count() -> None:
    old = window_since(NOW, 60) - 60
    assert window_hashrates([(old, 10**9)], NOW)["1m"] == 0.0
    assert window_hashrates([(old, 10**9)], NOW)["5m"] > 0


def test_chart_has_every_bucket_and_a_fair_last_one() -> None:
    start = window_since(NOW, 3600)
    rows = [(start, 2, 600), (start + 120, 1, 300), (MINUTE0, 3, 90)]
    points = chart_points(rows, NOW, 3600, 60)
    assert [p.time for p in points] == list(range(start, MINUTE0 + 1, 60))
    assert (points[0].hashrate_hs, points[0].shares) == (10.0, 2)
    assert (points[1].hashrate_hs, points[1].shares) == (0.0, 0)
    assert points[-1].hashrate_hs == 90 / 30  # 30 s of the current minute have passed
    coarse = chart_points(rows, NOW, 3600, 900)
    assert sum(p.shares for p in coarse) == 6
    assert all(p.time % 900 == 0 for p in coarse)


def test_best_share_keeps_the_highest_per_worker_account_and_site() -> None:
    best = BestShares(max_tracked=2)
    best.observe("alice", "rig1", "a", 10.0, 1.0)
    best.observe("alice", "rig2", "b", 50.0, 2.0)
    best.observe("alice", "rig1", "a", 5.0, 3.0)
    best.observe("bob", "w1", "a", 99.0, 4.0)  # over the tracking bound: pool-wide only
    assert best.pool is not None and (best.pool.account, best.pool.difficulty) == ("bob", 99.0)
    assert best.workers[("alice", "rig1")].difficulty == 10.0
    assert best.accounts["alice"].worker == "rig2"
    assert best.sites["a"].difficulty == 10.0 and "bob" not in best.accounts
    best.observe("alice", "rig1", "a", float("nan"), 5.0)
    assert best.workers[("alice", "rig1")].difficulty == 10.0
    assert difficulty_of_hash(0xFFFF << 208) == 1.0


async def test_cache_computes_once_for_concurrent_askers_and_expires() -> None:
    calls = 0

    async def make() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        return calls

    cache = TtlCache(ttl_s=0.05)
    assert await asyncio.gather(*(cache.get("k", make) for _ in range(10))) == [1] * 10
    assert await cache.get("k", make) == 1
    await asyncio.sleep(0.06)
    assert await cache.get("k", make) == 2


async def test_cache_forgets_failures_and_is_bounded() -> None:
    async def boom() -> int:
        raise RuntimeError("ledger down")

    async def fine() -> int:
        return 7

    cache = TtlCache(ttl_s=60.0, max_entries=3)
    with pytest.raises(RuntimeError):
        await cache.get("k", boom)
    assert await cache.get("k", fine) == 7  # the failure was not cached
    for i in range(10):
        await cache.get(i, fine)
    assert len(cache._entries) == 3
