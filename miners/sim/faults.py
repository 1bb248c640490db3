"""Faults a simulated miner can be told to have, from its config or by an admin call.

Every fault is off by default.  They exist so that the fleet controller and the pool are
tested against the ways real miners misbehave:

==========================  ===============================================================
``api_unresponsive``        the management API accepts connections and reads the request,
                            then never answers (the client's deadline must fire)
``api_delay_s``             the management API answers this many seconds late
``ignore_sleep``            sleep/pause is acknowledged with the normal success reply but the
                            miner keeps hashing and drawing full power
``slow_ramp_factor``        a wake or boot ramp takes this many times the model's ramp time
``reconnect_every_s``       the Stratum connection is dropped every N seconds and reopened
                            (a disconnect/reconnect loop); 0 = never
``invalid_share_rate``      this fraction of found shares is submitted with a wrong nonce
``duplicate_share_rate``    this fraction of found shares is submitted twice
``stale_share_rate``        this fraction of found shares is submitted against a job id the
                            pool has already retired
``crash_after_s``           the miner crashes this many seconds after it starts; 0 = never
``crash_restart_s``         a crashed miner reboots after this many seconds; 0 = stays down
==========================  ===============================================================

A crash drops the Stratum connection, closes the management API and cuts the power;
`SimulatedMiner.crash()` triggers one on demand.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pool.errors import ConfigError

_RATES = ("invalid_share_rate", "duplicate_share_rate", "stale_share_rate")
_NON_NEGATIVE = ("api_delay_s", "reconnect_every_s", "crash_after_s", "crash_restart_s")


@dataclass(slots=True)
class Faults:
    """The fault switches of one miner; mutable so an admin call can flip them at run time."""

    api_unresponsive: bool = False
    api_delay_s: float = 0.0
    ignore_sleep: bool = False
    slow_ramp_factor: float = 1.0
    reconnect_every_s: float = 0.0
    invalid_share_rate: float = 0.0
    duplicate_share_rate: float = 0.0
    stale_share_rate: float = 0.0
    crash_after_s: float = 0.0
    crash_restart_s: float = 0.0

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], *, key: str = "faults") -> Faults:
        faults = cls()
        faults.update(raw, key=key)
        return faults

    def update(self, raw: Mapping[str, Any], *, key: str = "faults") -> None:
        """Validate every value first, then apply them all (all or nothing)."""
        known = {f.name: f for f in dataclasses.fields(self)}
        parsed: dict[str, Any] = {}
        for name, value in raw.items():
            if name not in known:
                raise ConfigError(f"{key}.{name}", f"unknown fault; known: {', '.join(known)}")
            parsed[name] = _parse(f"{key}.{name}", name, value)
        for name, value in parsed.items():
            setattr(self, name, value)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def active(self) -> dict[str, Any]:
        """Only the switches that differ from the defaults (for logs and the live view)."""
        default = Faults()
        return {k: v for k, v in self.as_dict().items() if getattr(default, k) != v}


def _parse(dotted: str, name: str, value: Any) -> Any:
    if name in ("api_unresponsive", "ignore_sleep"):
        if not isinstance(value, bool):
            raise ConfigError(dotted, "must be true or false")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(dotted, "must be a number")
    number = float(value)
    if name in _RATES and not 0.0 <= number <= 1.0:
        raise ConfigError(dotted, "must be a fraction between 0 and 1")
    if name in _NON_NEGATIVE and number < 0.0:
        raise ConfigError(dotted, "must be >= 0")
    if name == "slow_ramp_factor" and number < 1.0:
        raise ConfigError(dotted, "must be >= 1 (1 = normal ramp)")
    return number
