"""Power state machine of one simulated ASIC (pure: the clock and the noise source are injected).

States and transitions (times come from the model; `ramp_factor` stretches the ramp for the
slow-ramp fault)::

    OFF ──power_on──► RAMPING ──wake_ramp_s──► MINING ──sleep──► STOPPING ──shutdown_s──► SLEEPING
                         ▲                                          │                       │
                         └───────────────────── wake ───────────────┴───────────────────────┘

While ramping the hash rate and the power above the sleep floor rise linearly; while
stopping they fall linearly to the floor.  `hash_fraction` is the share of the target's hash
rate the chips really run at: the miner grinds nonces at exactly that rate (times the scale
factor).  Only the *reported* telemetry carries noise (`read`).

Ground truth: `energy_j` is the exact integral of `power_w` since the model was created.
Power is linear in time within every state (constant when mining, sleeping or off, a
straight line while ramping or stopping), so the integral over each piece is its trapezoid;
it is taken up to every state change, target change and ramp-factor change, and up to the
instant of each call.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from miners.sim.models import MinerModel


class PowerState(StrEnum):
    OFF = "off"
    RAMPING = "ramping"
    MINING = "mining"
    STOPPING = "stopping"
    SLEEPING = "sleeping"


@dataclass(frozen=True, slots=True)
class PowerReading:
    """What the firmware reports at one instant (power and hash rate carry noise)."""

    state: PowerState
    power_w: float
    hashrate_ths: float
    target_w: float
    hash_fraction: float  # exact, without noise


class PowerModel:
    """The power and hash-rate state of one miner, advanced lazily from an injected clock."""

    def __init__(
        self,
        model: MinerModel,
        *,
        clock: Callable[[], float],
        rng: random.Random | None = None,
        target_w: float | None = None,
        state: PowerState = PowerState.MINING,
    ) -> None:
        if state not in (PowerState.MINING, PowerState.SLEEPING, PowerState.OFF):
            raise ValueError("a miner starts mining, sleeping or off")
        self.model = model
        self._clock = clock
        self._rng = rng or random.Random()
        self._target_w = model.clamp_power(model.nominal_w if target_w is None else target_w)
        self._state = state
        self._since = clock()
        self._frac0 = 1.0 if state is PowerState.MINING else 0.0  # fraction at `_since`
        self._ramp_factor = 1.0  # > 1 for the slow-ramp fault
        self._energy_j = 0.0  # exact energy up to `_energy_at`
        self._energy_at = self._since

    # -- transitions -------------------------------------------------------------------

    @property
    def state(self) -> PowerState:
        self._advance()
        return self._state

    @property
    def target_w(self) -> float:
        return self._target_w

    @property
    def ramp_factor(self) -> float:
        """Stretch of the wake/boot ramp (> 1 for the slow-ramp fault)."""
        return self._ramp_factor

    @ramp_factor.setter
    def ramp_factor(self, factor: float) -> None:
        if factor == self._ramp_factor:
            return
        self._advance()
        if self._state is PowerState.RAMPING:  # re-base so the ramp continues from here
            self._enter(PowerState.RAMPING, self._fraction())
        self._ramp_factor = factor

    def sleep(self) -> bool:
        """Start shutting the hashboards down; False if already stopping, asleep or off."""
        self._advance()
        if self._state not in (PowerState.MINING, PowerState.RAMPING):
            return False
        self._enter(PowerState.STOPPING, self._fraction())
        return True

    def wake(self) -> bool:
        """Start ramping up from sleep (or from a shutdown in progress)."""
        self._advance()
        if self._state not in (PowerState.SLEEPING, PowerState.STOPPING):
            return False
        self._enter(PowerState.RAMPING, self._fraction())
        return True

    def power_off(self) -> None:
        """Lose power at once (crash, unplug)."""
        self._advance()
        self._enter(PowerState.OFF, 0.0)

    def power_on(self) -> None:
        """Boot: ramps up like a wake from zero."""
        self._advance()
        if self._state is PowerState.OFF:
            self._enter(PowerState.RAMPING, 0.0)

    def set_power_target(self, target_w: float) -> float:
        """Apply a new power target (clamped to the model's range); returns the applied value."""
        self._advance()
        self._accrue(self._clock())
        self._target_w = self.model.clamp_power(target_w)
        return self._target_w

    # -- readings ----------------------------------------------------------------------

    def hash_fraction(self) -> float:
        """Share (0..1) of the target's hash rate the chips run at now."""
        self._advance()
        return self._fraction()

    def expected_ths(self) -> float:
        """Exact hash rate (TH/s) the miner runs at now, without noise."""
        return self.model.hashrate_at(self._target_w) * self.hash_fraction()

    def power_w(self) -> float:
        """Exact power draw (W) now, without noise."""
        self._advance()
        return self._power_at(self._clock())

    def energy_j(self) -> float:
        """Exact energy (J) drawn since the model was created: the integral of `power_w`."""
        self._advance()
        self._accrue(self._clock())
        return self._energy_j

    def read(self) -> PowerReading:
        """A telemetry reading with the model's noise on power and hash rate."""
        fraction = self.hash_fraction()
        power = self.power_w()
        ths = self.model.hashrate_at(self._target_w) * fraction
        return PowerReading(
            state=self._state,
            power_w=max(0.0, power * self._jitter()) if power else 0.0,
            hashrate_ths=max(0.0, ths * self._jitter()) if ths else 0.0,
            target_w=self._target_w,
            hash_fraction=fraction,
        )

    def seconds_to_next_change(self) -> float | None:
        """Time until the next automatic transition, or None when the state is stable."""
        self._advance()
        duration = self._duration()
        if duration is None:
            return None
        return max(0.0, self._since + duration - self._clock())

    # -- internals ---------------------------------------------------------------------

    def _enter(self, state: PowerState, frac0: float) -> None:
        now = self._clock()
        self._accrue(now)
        self._state = state
        self._since = now
        self._frac0 = frac0

    def _accrue(self, until: float) -> None:
        """Add the energy of the current piece up to `until` (power is linear within it)."""
        start = self._energy_at
        if until <= start:  # nothing elapsed (or the clock stepped back: never count twice)
            return
        self._energy_j += (self._power_at(start) + self._power_at(until)) / 2 * (until - start)
        self._energy_at = until

    def _power_at(self, when: float) -> float:
        """Power of the current piece at `when` (within the piece)."""
        if self._state is PowerState.OFF:
            return 0.0
        floor = self.model.sleep_w
        return floor + (self._target_w - floor) * self._fraction(when)

    def _duration(self) -> float | None:
        """Length of the current transitional state, from `_since`."""
        if self._state is PowerState.RAMPING:
            return self.model.wake_ramp_s * self._ramp_factor * (1.0 - self._frac0)
        if self._state is PowerState.STOPPING:
            return self.model.shutdown_s * self._frac0
        return None

    def _advance(self) -> None:
        duration = self._duration()
        if duration is None or self._clock() - self._since < duration:
            return
        end = self._since + duration
        self._accrue(end)  # the piece ends here; the next one starts at `end`
        if self._state is PowerState.RAMPING:
            self._state, self._frac0 = PowerState.MINING, 1.0
        else:
            self._state, self._frac0 = PowerState.SLEEPING, 0.0
        self._since = end

    def _fraction(self, when: float | None = None) -> float:
        elapsed = (self._clock() if when is None else when) - self._since
        if self._state is PowerState.RAMPING:
            ramp_s = self.model.wake_ramp_s * self._ramp_factor
            return min(1.0, self._frac0 + elapsed / ramp_s)
        if self._state is PowerState.STOPPING:
            return max(0.0, self._frac0 - elapsed / self.model.shutdown_s)
        return self._frac0

    def _jitter(self) -> float:
        return 1.0 + self._rng.gauss(0.0, self.model.noise)
