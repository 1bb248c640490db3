"""Abuse limits (pure; time is passed in): the cost model, message rate, IP accounting.

aiorpcX-style cost: each misbehaviour (bad JSON, an over-long line, an invalid share, a
message over the rate) adds cost; cost decays linearly with time. Past the soft limit the
session's reading is paused until it decays back; past the hard limit the session is
dropped and its IP refused for a while. Honest miners never come near either limit: stale
shares after a new block cost nothing.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class CostMeter:
    """Accumulated misbehaviour cost with linear decay."""

    decay_per_s: float
    cost: float = 0.0
    updated_s: float = 0.0

    def add(self, amount: float, now_s: float) -> float:
        """Add cost (after decaying what is there) and return the new total."""
        self.cost = max(0.0, self.cost - self.decay_per_s * (now_s - self.updated_s)) + amount
        self.updated_s = now_s
        return self.cost

    def seconds_until_below(self, level: float) -> float:
        """How long the current cost needs to decay under `level`."""
        return max(0.0, (self.cost - level) / self.decay_per_s) if self.decay_per_s else 0.0


@dataclass(slots=True)
class TokenBucket:
    """Message rate limit: `rate_per_s` tokens a second, bursts up to one second's worth."""

    rate_per_s: float
    tokens: float = 0.0
    updated_s: float = 0.0

    def take(self, now_s: float) -> bool:
        """Consume a token; False when the bucket is empty (the message is over the rate)."""
        elapsed = now_s - self.updated_s
        self.updated_s = now_s
        self.tokens = min(self.rate_per_s, self.tokens + elapsed * self.rate_per_s)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class IPLimits:
    """Live connections per IP and temporary bans, both bounded in size."""

    __slots__ = ("_bans", "_counts", "max_bans", "max_per_ip")

    def __init__(self, max_per_ip: int, *, max_bans: int = 100_000) -> None:
        self.max_per_ip = max_per_ip
        self.max_bans = max_bans
        self._counts: dict[str, int] = {}
        self._bans: dict[str, float] = {}  # ip -> banned until (monotonic s)

    def admit(self, ip: str, now_s: float) -> str | None:
        """Count a new connection from ip; return the refusal reason instead if refused."""
        until = self._bans.get(ip)
        if until is not None:
            if now_s < until:
                return "banned"
            del self._bans[ip]
        count = self._counts.get(ip, 0)
        if count >= self.max_per_ip:
            return "too_many_per_ip"
        self._counts[ip] = count + 1
        return None

    def release(self, ip: str) -> None:
        count = self._counts.get(ip, 0) - 1
        if count > 0:
            self._counts[ip] = count
        else:
            self._counts.pop(ip, None)

    def ban(self, ip: str, until_s: float) -> None:
        if len(self._bans) >= self.max_bans:
            self._bans.pop(next(iter(self._bans)))  # oldest first: insertion order
        self._bans[ip] = until_s

    def purge(self, now_s: float) -> None:
        """Forget expired bans (called from the server's periodic sweep)."""
        for ip in [ip for ip, until in self._bans.items() if until <= now_s]:
            del self._bans[ip]

    def connections(self, ip: str) -> int:
        return self._counts.get(ip, 0)
