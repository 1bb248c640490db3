"""Hash rate from credited work (pure), and the best-share tracker.

A share of difficulty d stands for d * 2³² hashes on average (the pool convention; the exact
expectation is 65536/65535 times that, 1.5e-5 more). The ledger keeps work in units of
2⁻³² difficulty, so one work unit is one hash and a window's hash rate is its work units
divided by its length.

Windows are whole minutes, because the ledger aggregates per minute: the `1m` window holds
the current minute so far plus the previous whole minute, `5m` the current minute plus
the five before it, and so on. The rate divides by exactly that span (from the start of the
oldest minute to now), so it is unbiased however far into the current minute `now` is.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

MINUTE_S = 60
HASHES_PER_UNIT = 1  # hashes = difficulty * 2**32 and a work unit is 2**-32 difficulty
WINDOWS_S: dict[str, int] = {"1m": 60, "5m": 300, "1h": 3600, "24h": 86400}
CHART_STEPS_S = (60, 300, 900, 3600)  # allowed chart bucket sizes (s)
K = TypeVar("K")
MAX_BEST_TRACKED = 200_000  # workers with a tracked best share; later ones count pool-wide


def minute_of(time_s: float) -> int:
    return int(time_s // MINUTE_S) * MINUTE_S


def window_since(now_s: float, window_s: int) -> int:
    """Start (unix s) of the oldest whole minute inside a window ending now."""
    return minute_of(now_s - window_s)


def window_span_s(now_s: float, window_s: int) -> float:
    return max(now_s - window_since(now_s, window_s), 1.0)


def hashrate_hs(work_units: int, now_s: float, window_s: int) -> float:
    """Average hashes per second over the window ending at `now_s`."""
    return work_units * HASHES_PER_UNIT / window_span_s(now_s, window_s)


def window_hashrates(
    minutes: Iterable[tuple[int, int]], now_s: float, windows: Sequence[str] = tuple(WINDOWS_S)
) -> dict[str, float]:
    """{window: H/s} from (minute start, work units) pairs covering the longest window."""
    rows = list(minutes)
    rates = {}
    for name in windows:
        since = window_since(now_s, WINDOWS_S[name])
        work = sum(w for m, w in rows if m >= since)
        rates[name] = hashrate_hs(work, now_s, WINDOWS_S[name])
    return rates


@dataclass(frozen=True, slots=True)
class ChartPoint:
    time: int  # start of the bucket (unix s)
    hashrate_hs: float
    shares: int


def chart_points(
    minutes: Iterable[tuple[int, int, int]], now_s: float, window_s: int, step_s: int
) -> list[ChartPoint]:
    """Buckets of `step_s` from the window's start to now, every one present (zero when no
    shares); (minute, shares, work) rows. The newest, partial bucket divides by its
    elapsed part so it is not drawn low."""
    first = int(window_since(now_s, window_s) // step_s) * step_s
    count = int((now_s - first) // step_s) + 1
    work = [0] * count
    shares = [0] * count
    for minute, n, units in minutes:
        index = (minute - first) // step_s
        if 0 <= index < count:
            work[index] += units
            shares[index] += n
    points = []
    for i in range(count):
        start = first + i * step_s
        span = min(step_s, max(now_s - start, 1.0))
        points.append(ChartPoint(start, work[i] * HASHES_PER_UNIT / span, shares[i]))
    return points


def difficulty_of_hash(hash_int: int) -> float:
    """The difficulty a block hash reached (DIFF1 target / hash)."""
    return (0xFFFF << 208) / max(hash_int, 1)


@dataclass(slots=True)
class Best:
    difficulty: float
    time: float
    account: str
    worker: str


class BestShares:
    """The highest-difficulty share hashes seen since the process started: pool-wide, per
    account, per site and per (account, worker). Memory is bounded by MAX_BEST_TRACKED
    workers; accounts and sites are bounded by the workers that map to them."""

    def __init__(self, max_tracked: int = MAX_BEST_TRACKED) -> None:
        self.max_tracked = max_tracked
        self.pool: Best | None = None
        self.accounts: dict[str, Best] = {}
        self.sites: dict[str, Best] = {}
        self.workers: dict[tuple[str, str], Best] = {}

    def observe(self, account: str, worker: str, site: str, difficulty: float,
                time_s: float) -> None:
        if not math.isfinite(difficulty):
            return
        best = Best(difficulty, time_s, account, worker)
        if self.pool is None or difficulty > self.pool.difficulty:
            self.pool = best
        key = (account, worker)
        if key not in self.workers and len(self.workers) >= self.max_tracked:
            return
        _keep_best(self.workers, key, best)
        _keep_best(self.accounts, account, best)
        _keep_best(self.sites, site, best)


def _keep_best(table: dict[K, Best], key: K, best: Best) -> None:
    old = table.get(key)
    if old is None or best.difficulty > old.difficulty:
        table[key] = best
