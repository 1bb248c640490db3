"""Variable difficulty per connection (pure: no I/O, time passed in).

The pool wants about one share per `target_interval_s` from each connection, whatever its
hashrate. It counts shares since the last retarget and, on a schedule (every
`retarget_interval_s`, or earlier after `retarget_shares` shares), estimates the difficulty
that would have produced the target rate. Hysteresis (widened to three standard deviations of
Poisson noise) keeps the difficulty still while the rate is close enough; a clamp bounds
each step so one lucky or unlucky window cannot swing it far; the pool's [min, max] (raised
by a miner's `minimum-difficulty`) bound the result.
"""

from __future__ import annotations

from dataclasses import dataclass

# Checked on every share, so the noise band must be wide: with 3 sigmas a miner at the
# right difficulty sees well under one change an hour (simulated: tests/stratum/test_vardiff).
NOISE_SIGMAS = 3.0
WINDOW_SHARES_MAX = 2  # x retarget_shares: the longest window kept while nothing changes


@dataclass(frozen=True, slots=True)
class VardiffPolicy:
    """The tunables, taken from StratumSettings."""

    target_interval_s: float = 10.0
    retarget_interval_s: float = 30.0
    retarget_shares: int = 30
    hysteresis: float = 0.3
    max_step_factor: float = 4.0


@dataclass(slots=True)
class Vardiff:
    """One connection's vardiff state. `difficulty` is the current one."""

    policy: VardiffPolicy
    difficulty: float
    min_difficulty: float
    max_difficulty: float
    window_start_s: float
    window_shares: int = 0

    def clamp(self, difficulty: float) -> float:
        return min(max(difficulty, self.min_difficulty), self.max_difficulty)

    def set(self, difficulty: float, now_s: float) -> float:
        """Force a difficulty (suggest_difficulty, d= password); restarts the window."""
        self.difficulty = self.clamp(difficulty)
        self._restart(now_s)
        return self.difficulty

    def on_share(self, now_s: float) -> float | None:
        """Count an accepted share; return a new difficulty if it is time to change it."""
        self.window_shares += 1
        return self.maybe_retarget(now_s)

    def maybe_retarget(self, now_s: float) -> float | None:
        """Retarget if the window is long or full enough; None when the difficulty stays."""
        policy = self.policy
        elapsed_s = now_s - self.window_start_s
        shares = self.window_shares
        if elapsed_s <= 0 or (
            elapsed_s < policy.retarget_interval_s and shares < policy.retarget_shares
        ):
            return None
        expected = elapsed_s / policy.target_interval_s
        # Shares arrive as a Poisson process: a deviation within the hysteresis band or
        # within NOISE_SIGMAS standard deviations (sqrt(expected)) is noise, not a wrong
        # difficulty. The window grows until the evidence is clear, up to WINDOW_SHARES_MAX
        # times retarget_shares (then it restarts, so old history does not dull reactions).
        noise = max(policy.hysteresis * expected, NOISE_SIGMAS * expected**0.5)
        if abs(shares - expected) <= noise:
            if shares >= WINDOW_SHARES_MAX * policy.retarget_shares:
                self._restart(now_s)
            return None
        # No shares at all only says "too hard": step down as far as one step allows.
        ratio = shares / expected if shares else 0.0
        ratio = min(max(ratio, 1.0 / policy.max_step_factor), policy.max_step_factor)
        new = self.clamp(self.difficulty * ratio)
        self._restart(now_s)
        if new == self.difficulty:
            return None
        self.difficulty = new
        return new

    def _restart(self, now_s: float) -> None:
        self.window_start_s = now_s
        self.window_shares = 0
