"""The driver protocol every firmware API implements, and the data it returns.

A driver talks to one miner's management API. Every call has a deadline (the driver's
``timeout_s``) and raises a `miners.errors.DriverError` subclass on failure, so one slow or
dead miner costs the caller at most one deadline and never an exception of another kind.

Units: power in W, hash rate in H/s (``hashrate_hs``), temperatures in °C. Firmware reports
GH/s or MH/s; drivers convert at the edge, once.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable

from miners.allocate import CURVE_EXPONENT, PowerCurve

TH = 1e12  # H/s per TH/s
GH = 1e9  # H/s per GH/s
MH = 1e6  # H/s per MH/s


class ReportedState(StrEnum):
    """What the firmware says the hashboards are doing."""

    MINING = "mining"
    RAMPING = "ramping"  # waking or booting: hash rate still climbing to its target
    SLEEPING = "sleeping"  # told to sleep/pause (power may still be falling)
    FAULTED = "faulted"  # not asleep, not ramping, and not hashing


@dataclass(frozen=True, slots=True)
class Telemetry:
    """One reading of one miner."""

    state: ReportedState
    power_w: float | None  # None: the firmware does not report power (plain cgminer)
    hashrate_hs: float
    temps_c: tuple[float, ...] = ()
    power_target_w: float | None = None  # the target the firmware applies, when it says
    sleep_requested: bool = False  # the firmware acknowledges a sleep/pause request


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a driver can do with its miner; `operating_points` are the power targets the
    firmware offers as ``(W, H/s)`` (LuxOS profiles, an ESP-Miner frequency menu), empty
    when it does not list them."""

    can_sleep: bool
    can_tune: bool
    reports_power: bool
    operating_points: tuple[tuple[float, float], ...] = ()
    firmware: str = ""


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """Public specifications of one ASIC model (W, TH/s, s, MHz)."""

    key: str
    name: str
    nominal_ths: float
    nominal_w: float
    min_w: float  # lowest power target the firmware accepts
    max_w: float  # highest (over-clock)
    sleep_w: float  # control board and fans while asleep
    wake_ramp_s: float  # sleep -> full hash rate
    shutdown_s: float  # sleep command -> hashboards off
    nominal_mhz: float = 0.0  # 0 = unknown

    def __post_init__(self) -> None:
        if not 0 <= self.sleep_w < self.min_w <= self.nominal_w <= self.max_w:
            raise ValueError(f"{self.key}: need 0 <= sleep_w < min_w <= nominal_w <= max_w")
        if self.nominal_ths <= 0 or self.wake_ramp_s < 0 or self.shutdown_s < 0:
            raise ValueError(f"{self.key}: nominal_ths must be > 0 and times >= 0")

    @property
    def nominal_hs(self) -> float:
        return self.nominal_ths * TH

    def hashrate_at(self, watts: float) -> float:
        """H/s at a power target on the exponent curve (see miners.allocate.PowerCurve)."""
        p = min(self.max_w, max(self.min_w, watts))
        x = (p - self.sleep_w) / (self.nominal_w - self.sleep_w)
        return self.nominal_hs * x**CURVE_EXPONENT

    def power_for_hashrate(self, hashrate_hs: float) -> float:
        """Inverse of `hashrate_at` (clamped to the target range)."""
        x = max(hashrate_hs, 0.0) / self.nominal_hs
        watts = self.sleep_w + (self.nominal_w - self.sleep_w) * x ** (1 / CURVE_EXPONENT)
        return min(self.max_w, max(self.min_w, watts))

    def estimate_power(self, hashrate_hs: float) -> float:
        """Power of a miner that reports only its hash rate: asleep when it hashes nothing."""
        return self.power_for_hashrate(hashrate_hs) if hashrate_hs > 0 else self.sleep_w

    def curve(self, *, allow_overclock: bool = False, steps: int = 8) -> PowerCurve:
        ceiling = self.max_w if allow_overclock else self.nominal_w
        return PowerCurve.from_spec(
            nominal_w=self.nominal_w,
            nominal_hs=self.nominal_hs,
            sleep_w=self.sleep_w,
            min_w=self.min_w,
            max_w=ceiling,
            steps=steps,
        )


@runtime_checkable
class MinerDriver(Protocol):
    """One miner's management API. Every method has a deadline and raises DriverError."""

    miner_id: str

    @property
    def capabilities(self) -> Capabilities: ...

    async def probe(self) -> Capabilities:
        """Ask the firmware what it offers (profiles, menus); updates `capabilities`."""
        ...

    async def read(self) -> Telemetry: ...

    async def sleep(self) -> None: ...

    async def wake(self) -> None: ...

    async def set_power_target(self, watts: float) -> float:
        """Apply the firmware's nearest target not above `watts`; returns the applied W."""
        ...

    async def close(self) -> None: ...


def curve_for(
    model: ModelSpec, caps: Capabilities, *, allow_overclock: bool = False
) -> PowerCurve:
    """The allocator's curve for a miner: the firmware's own points when it lists them
    (capped at nominal unless over-clocking is allowed), else the model's exponent curve;
    a single point when the miner cannot be tuned."""
    if not caps.can_tune:
        return PowerCurve.fixed(model.nominal_w, model.nominal_hs, model.sleep_w)
    ceiling = model.max_w if allow_overclock else model.nominal_w
    usable = {w: h for w, h in sorted(caps.operating_points) if model.sleep_w < w <= ceiling + 1e-6}
    points = tuple(sorted(usable.items()))
    if points:
        return PowerCurve(points, model.sleep_w)
    return model.curve(allow_overclock=allow_overclock)
