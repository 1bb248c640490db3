"""Public specifications of the ASIC models the simulator imitates (pure data, no I/O).

Each model has a nominal operating point from the vendor's spec sheet, a power-target
range, and a hash-rate curve in which efficiency improves when the miner is turned down.

The curve.  A hashboard's dynamic power goes as f·V², and the voltage a chip needs rises
with its frequency, so over a tuning range the hashing power grows faster than the hash
rate (which is proportional to f).  We model

    hashrate(P) = H_nom · ((P - P_idle) / (P_nom - P_idle)) ** CURVE_EXPONENT

with ``P_idle`` the control board and fans (the same as the sleep power) and an exponent
below one, so J/TH falls as the power target falls (down to P = 4·P_idle, where the
fixed overhead starts to dominate; every model's `min_w` is above that point).
CURVE_EXPONENT = 0.75 matches the LuxOS preset profiles for an S19j Pro: 545 MHz/13.4 V
(104 TH/s) → 495 MHz/13.2 V is -9 % frequency for -12 % f·V² (ln 0.908 / ln 0.881 ≈ 0.76); source:
https://docs.luxor.tech/firmware/features ("Preset Profiles").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

CURVE_EXPONENT = 0.75  # d ln(hashrate) / d ln(hashing power); see module docstring

ApiKind = Literal["luxos", "bitaxe"]


@dataclass(frozen=True, slots=True)
class MinerModel:
    """One ASIC model.  Powers in W, hash rates in TH/s, times in s, clocks in MHz."""

    key: str
    name: str
    api: ApiKind  # management API the simulated miner serves
    nominal_ths: float
    nominal_w: float
    min_w: float  # lowest power target the firmware accepts
    max_w: float  # highest power target (over-clock)
    sleep_w: float  # control board + fans while asleep (hashboards off)
    wake_ramp_s: float  # sleep → full hash rate
    shutdown_s: float  # sleep command → hashboards off
    noise: float  # relative standard deviation of reported power and hash rate
    nominal_mhz: float
    nominal_voltage: float  # board volts (Antminer) or core millivolts (Bitaxe)
    hashboards: int
    chips_per_board: int
    asic: str  # chip name, reported by ESP-Miner as ASICModel
    source: str  # where the numbers come from

    def __post_init__(self) -> None:
        if not (0 < self.sleep_w < self.min_w <= self.nominal_w <= self.max_w):
            raise ValueError(f"{self.key}: need 0 < sleep_w < min_w <= nominal_w <= max_w")

    def clamp_power(self, target_w: float) -> float:
        """The power target the firmware would actually apply."""
        return min(self.max_w, max(self.min_w, target_w))

    def hashrate_at(self, power_w: float) -> float:
        """Hash rate (TH/s) at a power target, on the model's curve (target is clamped)."""
        p = self.clamp_power(power_w)
        return self.nominal_ths * ((p - self.sleep_w) / (self.nominal_w - self.sleep_w)) ** (
            CURVE_EXPONENT
        )

    def power_for_hashrate(self, ths: float) -> float:
        """Inverse of `hashrate_at`: the power target that yields `ths` (clamped to range)."""
        x = max(ths, 0.0) / self.nominal_ths
        span = self.nominal_w - self.sleep_w
        return self.clamp_power(self.sleep_w + span * x ** (1 / CURVE_EXPONENT))

    def efficiency_j_per_th(self, power_w: float) -> float:
        p = self.clamp_power(power_w)
        return p / self.hashrate_at(p)

    def frequency_at(self, power_w: float) -> float:
        """Chip clock (MHz) at a power target: hash rate is proportional to frequency."""
        return self.nominal_mhz * self.hashrate_at(power_w) / self.nominal_ths

    def power_for_frequency(self, mhz: float) -> float:
        return self.power_for_hashrate(self.nominal_ths * mhz / self.nominal_mhz)


@dataclass(frozen=True, slots=True)
class Profile:
    """A LuxOS-style preset profile: a named operating point of one model."""

    name: str
    step: int  # 0 = default, negative = under-clock, positive = over-clock
    frequency_mhz: float
    voltage: float
    watts: float
    hashrate_ths: float


PROFILE_STEP_MHZ = 25.0  # LuxOS presets are 25 MHz apart (docs.luxor.tech/firmware/features)
PROFILE_STEP_VOLT = 0.1  # ... and 0.1 V apart


def profiles(model: MinerModel) -> tuple[Profile, ...]:
    """Preset profiles from the lowest to the highest clock that fits the power range.

    LuxOS generates linear 25 MHz / 0.1 V steps around the EEPROM default (named
    "default"); the others are named by their clock, e.g. "495MHz".
    """
    out = []
    lo = -int(model.nominal_mhz // PROFILE_STEP_MHZ)
    for step in range(lo, 9):
        mhz = model.nominal_mhz + step * PROFILE_STEP_MHZ
        if mhz <= 0:
            continue
        ths = model.nominal_ths * mhz / model.nominal_mhz
        watts = model.sleep_w + (model.nominal_w - model.sleep_w) * (ths / model.nominal_ths) ** (
            1 / CURVE_EXPONENT
        )
        if not model.min_w <= watts <= model.max_w:
            continue
        name = "default" if step == 0 else f"{mhz:g}MHz"
        volt = round(model.nominal_voltage + step * PROFILE_STEP_VOLT, 2)
        out.append(Profile(name, step, mhz, volt, round(watts), round(ths, 2)))
    return tuple(out)


def select_profile(profiles: Sequence[Profile], name: str) -> Profile | None:
    """A profile by name, or by the LuxOS selectors ``<n>THs``, ``<n>kW`` and ``<n>W``.

    A selector picks the highest profile that does not exceed the requested hash rate or
    power (so a power budget is never overshot), else the lowest profile.
    """
    for p in profiles:
        if p.name.lower() == name.lower():
            return p
    lowered = name.lower()
    for suffix, attr, factor in (
        ("ths", "hashrate_ths", 1.0),
        ("kw", "watts", 1000.0),
        ("w", "watts", 1.0),
    ):
        if lowered.endswith(suffix):
            try:
                wanted = float(lowered[: -len(suffix)]) * factor
            except ValueError:
                return None
            fitting = [p for p in profiles if getattr(p, attr) <= wanted]
            return max(fitting, key=lambda p: getattr(p, attr)) if fitting else profiles[0]
    return None


# Vendor spec sheets (nominal points); ranges, sleep power and timings are the simulator's
# documented assumptions for typical firmware behaviour, not vendor numbers.
S19J_PRO = MinerModel(
    key="s19jpro",
    name="Antminer S19j Pro",
    api="luxos",
    nominal_ths=104.0,
    nominal_w=3068.0,
    min_w=1200.0,
    max_w=3400.0,
    sleep_w=45.0,
    wake_ramp_s=40.0,
    shutdown_s=5.0,
    noise=0.01,
    nominal_mhz=545.0,
    nominal_voltage=13.4,
    hashboards=3,
    chips_per_board=126,
    asic="BM1362",
    source="Bitmain S19j Pro 104T spec sheet (104 TH/s, 3068 W, 29.5 J/TH); "
    "545 MHz / 13.4 V default from https://docs.luxor.tech/firmware/features",
)
S21 = MinerModel(
    key="s21",
    name="Antminer S21",
    api="luxos",
    nominal_ths=200.0,
    nominal_w=3500.0,
    min_w=1400.0,
    max_w=3900.0,
    sleep_w=50.0,
    wake_ramp_s=45.0,
    shutdown_s=5.0,
    noise=0.01,
    nominal_mhz=490.0,
    nominal_voltage=13.2,
    hashboards=3,
    chips_per_board=108,
    asic="BM1368",
    source="Bitmain Antminer S21 200T spec sheet (200 TH/s, 3500 W, 17.5 J/TH); "
    "490 MHz nominal clock as quoted from Bitmain in a HackerNoon S21 review",
)
M50S = MinerModel(
    key="m50s",
    name="Whatsminer M50S",
    api="luxos",
    nominal_ths=126.0,
    nominal_w=3276.0,
    min_w=1300.0,
    max_w=3600.0,
    sleep_w=45.0,
    wake_ramp_s=40.0,
    shutdown_s=5.0,
    noise=0.01,
    nominal_mhz=560.0,
    nominal_voltage=13.0,
    hashboards=3,
    chips_per_board=105,
    asic="K5",
    source="MicroBT Whatsminer M50S 126T spec card (126 TH/s, 26 J/TH = 3276 W); "
    "served through the LuxOS-style API as a simulator simplification",
)
BITAXE_GAMMA = MinerModel(
    key="bitaxe-gamma",
    name="Bitaxe Gamma",
    api="bitaxe",
    nominal_ths=1.2,
    nominal_w=18.0,
    min_w=10.0,
    max_w=25.0,
    sleep_w=2.5,
    wake_ramp_s=10.0,
    shutdown_s=1.0,
    noise=0.02,
    nominal_mhz=525.0,
    nominal_voltage=1150.0,
    hashboards=1,
    chips_per_board=1,
    asic="BM1370",
    source="Bitaxe Gamma 601/602 (one BM1370, ~1.2 TH/s at ~15-18 W from a 5 V supply), "
    "https://bitaxe.org and https://github.com/bitaxeorg/ESP-Miner",
)

MODELS: dict[str, MinerModel] = {m.key: m for m in (S19J_PRO, S21, M50S, BITAXE_GAMMA)}


def get_model(key: str) -> MinerModel:
    try:
        return MODELS[key]
    except KeyError:
        raise ValueError(f"unknown miner model {key!r}; known: {', '.join(MODELS)}") from None
