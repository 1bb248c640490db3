"""Did the site obey an event? (pure: power samples and times come in as numbers).

A sample is *under* the limit when ``power_w <= limit_w x (1 + tolerance)``: the tolerance
absorbs meter and telemetry noise, not sustained overshoot. Before the acknowledged time
(``promised``) the site may legitimately be above the limit (ramps, shutdown times); from
then on every sample over the limit counts, for the time until the next sample, as time
over the limit.

Statuses: ``scheduled`` (not started), ``pending`` (started, not yet under, promise not
passed), ``complying`` (under, never over since the promise), ``late`` (promise passed and
never under), ``violated`` (over the limit after the promise), ``met`` (over and complied
throughout), ``void`` (cancelled before it started).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from miners.grid.timeline import GridEvent

DEFAULT_TOLERANCE = 0.02  # fraction of the limit allowed for measurement noise


@dataclass(frozen=True, slots=True)
class Compliance:
    event_id: str
    status: str
    limit_w: float
    promised: float | None
    under_limit_at: float | None  # first sample at or after the start under the limit
    seconds_to_comply: float | None  # from receipt (or start, if later) to under_limit_at
    over_limit_s: float  # measured time over the limit after the promise
    max_power_w: float | None  # highest sample after the promise
    last_power_w: float | None
    samples: int  # samples inside the event

    def as_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "status": self.status,
            "limit_kw": self.limit_w / 1000,
            "promised": self.promised,
            "under_limit_at": self.under_limit_at,
            "seconds_to_comply": self.seconds_to_comply,
            "over_limit_s": self.over_limit_s,
            "max_power_kw": None if self.max_power_w is None else self.max_power_w / 1000,
            "last_power_kw": None if self.last_power_w is None else self.last_power_w / 1000,
            "samples": self.samples,
        }


def assess(
    event: GridEvent,
    samples: Sequence[tuple[float, float]],
    now: float,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
) -> Compliance:
    """Compliance of `event` from `(time, power_w)` samples sorted by time (bisected, so
    a long sample history costs only the samples inside the event)."""
    ceiling = event.limit_w * (1 + tolerance)
    promised = event.promised if event.promised is not None else event.start
    stop, horizon = event.stop, min(event.stop, now)
    first = bisect.bisect_left(samples, event.start, key=_time)
    last = bisect.bisect_left(samples, stop, key=_time)
    inside = [(t, p) for t, p in samples[first:last] if t <= now]
    under_at = next((t for t, p in inside if p <= ceiling), None)
    over_s, max_after = 0.0, None
    for i, (t, p) in enumerate(inside):
        if t < promised:
            continue
        max_after = p if max_after is None else max(max_after, p)
        if p > ceiling:
            following = inside[i + 1][0] if i + 1 < len(inside) else horizon
            over_s += max(0.0, following - t)
    since = max(event.start, event.created)
    to_comply = None if under_at is None else max(0.0, under_at - since)
    status = _status(event, now, promised, under_at, over_s, max_after, ceiling)
    return Compliance(event.event_id, status, event.limit_w, event.promised, under_at,
                      to_comply, over_s, max_after, inside[-1][1] if inside else None,
                      len(inside))


def _time(sample: tuple[float, float]) -> float:
    return sample[0]


def _status(event: GridEvent, now: float, promised: float, under_at: float | None,
            over_s: float, max_after: float | None, ceiling: float) -> str:
    if event.void:
        return "void"
    if now < event.start:
        return "scheduled"
    if over_s > 0 or (max_after is not None and max_after > ceiling):
        return "violated"
    if under_at is None:
        return "late" if now > promised else "pending"
    return "met" if now >= event.stop and math.isfinite(event.stop) else "complying"
