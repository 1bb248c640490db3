"""Stratum server limits and policies: every one a named field with a unit and a default.

`from_mapping` turns the `[stratum]` table of the config file into a frozen `StratumSettings`,
naming the offending key (`stratum.max_line_bytes`) in any error; `log_settings` logs every
field once at start-up so an operator can see what the server is really enforcing.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from pool.config import parse_host_port
from pool.errors import ConfigError

T = TypeVar("T")


def settings_from_mapping(cls: type[T], raw: Mapping[str, Any], key: str) -> T:
    """Build a frozen settings dataclass from a config table: unknown keys and values of the
    wrong type raise ConfigError naming `<key>.<field>`; ints are accepted for floats, and lists
    for tuples. Range checks live in the class's `__post_init__` (raising ConfigError too)."""
    if not isinstance(raw, Mapping):
        raise ConfigError(key, "must be a table")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for name, value in raw.items():
        if name not in fields:
            raise ConfigError(f"{key}.{name}", f"unknown setting (known: {', '.join(fields)})")
        values[name] = _coerce(hints[name], value, f"{key}.{name}")
    try:
        return cls(**values)
    except ConfigError as err:
        raise ConfigError(f"{key}.{err.key}", err.reason) from err


def _coerce(hint: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(inner, value, key)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(key, f"must be a list, not {type(value).__name__}")
        (inner, _ellipsis) = typing.get_args(hint)
        return tuple(_coerce(inner, item, key) for item in value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(key, f"must be a number, not {type(value).__name__}")
        try:
            return float(value)
        except OverflowError:
            raise ConfigError(key, "number too large") from None
    if hint is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(key, f"must be an integer, not {type(value).__name__}")
    if not isinstance(value, hint):
        raise ConfigError(key, f"must be a {hint.__name__}, not {type(value).__name__}")
    return value


def check_range(name: str, value: float, low: float, high: float) -> None:
    """Raise ConfigError(name, ...) unless low <= value <= high."""
    if not low <= value <= high:
        raise ConfigError(name, f"must be between {low:g} and {high:g}, got {value!r}")


@dataclasses.dataclass(frozen=True, slots=True)
class StratumSettings:
    """Every limit the Stratum server enforces. Units are in the names."""

    # Plain TCP listeners, "host:port"; each accepts Stratum V1 (stratum+tcp://).
    listen: tuple[str, ...] = ("127.0.0.1:3333",)
    # TLS listeners (stratum+ssl://); need tls_cert_file and tls_key_file.
    tls_listen: tuple[str, ...] = ()
    tls_cert_file: str | None = None
    tls_key_file: str | None = None

    # Difficulty: a new session starts at start_difficulty unless it suggests one; vardiff
    # and suggestions stay within [min_difficulty, max_difficulty].
    start_difficulty: float = 1024.0
    min_difficulty: float = 0.001
    max_difficulty: float = 2.0**40
    # Vardiff aims at one share per this many seconds per connection.
    vardiff_target_share_interval_s: float = 10.0
    # Retarget when this much time has passed since the last retarget ...
    vardiff_retarget_interval_s: float = 30.0
    # ... or earlier, once this many shares arrived (a fast miner on a low difficulty).
    vardiff_retarget_shares: int = 30
    # No change while the measured rate is within this fraction of the target (hysteresis).
    vardiff_hysteresis: float = 0.3
    # One retarget moves the difficulty by at most this factor up or down.
    vardiff_max_step_factor: float = 4.0

    # Extranonce2 bytes the miner rolls (4..8: some firmware breaks above 8).
    extranonce2_size: int = 8
    # BIP 320 version-rolling bits the pool allows (answered as pool_mask & miner_mask).
    version_mask: int = 0x1FFFE000

    # A line longer than this is dropped unparsed and costs the session (bytes).
    max_line_bytes: int = 16384
    # A connection that has not authorized within this time is closed (s).
    pre_auth_timeout_s: float = 30.0
    # A connection that sends nothing for this long is closed (s).
    idle_timeout_s: float = 900.0
    # New connections from one IP beyond this are refused (sites behind NAT share one IP).
    max_connections_per_ip: int = 4096
    # Total live sessions in this process; new connections beyond it are refused.
    max_sessions: int = 100_000
    # A session whose send buffer has not drained for this long is dropped (s).
    send_stall_timeout_s: float = 30.0
    # Writes pause (and the stall clock starts) above this many unsent bytes.
    send_buffer_high_bytes: int = 256 * 1024
    # A session with more unsent bytes than this is dropped at once (bounds memory).
    send_buffer_max_bytes: int = 4 * 1024 * 1024
    # Messages per second a session may send before each extra one costs.
    max_messages_per_s: float = 50.0
    # Workers one connection may authorize (mining.authorize calls that succeed).
    max_workers_per_session: int = 64

    # Cost model (aiorpcX-style): misbehaviour adds cost, which decays over time. Past the
    # soft limit the session's reading is paused; past the hard limit it is disconnected
    # and its IP refused for ban_s.
    cost_soft_limit: float = 500.0
    cost_hard_limit: float = 1000.0
    cost_decay_per_s: float = 10.0
    cost_bad_json: float = 100.0
    cost_oversized_line: float = 400.0
    cost_bad_request: float = 20.0
    cost_invalid_share: float = 5.0
    cost_excess_message: float = 2.0
    ban_s: float = 60.0

    # On graceful shutdown: client.reconnect is sent, then sessions are closed after this (s).
    drain_grace_s: float = 2.0

    def __post_init__(self) -> None:
        for i, item in enumerate(self.listen):
            parse_host_port(f"listen[{i}]", item)
        for i, item in enumerate(self.tls_listen):
            parse_host_port(f"tls_listen[{i}]", item)
        if self.tls_listen and not (self.tls_cert_file and self.tls_key_file):
            raise ConfigError("tls_listen", "needs tls_cert_file and tls_key_file")
        check_range("min_difficulty", self.min_difficulty, 1e-12, 2.0**64)
        check_range("max_difficulty", self.max_difficulty, self.min_difficulty, 2.0**64)
        check_range(
            "start_difficulty", self.start_difficulty, self.min_difficulty, self.max_difficulty
        )
        for name in ("vardiff_target_share_interval_s", "vardiff_retarget_interval_s"):
            check_range(name, getattr(self, name), 0.01, 86400)
        check_range("vardiff_retarget_shares", self.vardiff_retarget_shares, 1, 10**6)
        check_range("vardiff_hysteresis", self.vardiff_hysteresis, 0.0, 10.0)
        check_range("vardiff_max_step_factor", self.vardiff_max_step_factor, 1.0, 1e6)
        check_range("extranonce2_size", self.extranonce2_size, 4, 8)
        check_range("version_mask", self.version_mask, 0, 0xFFFFFFFF)
        check_range("max_line_bytes", self.max_line_bytes, 1024, 1 << 24)
        for name in ("pre_auth_timeout_s", "idle_timeout_s", "send_stall_timeout_s"):
            check_range(name, getattr(self, name), 0.01, 86400 * 7)
        check_range("max_connections_per_ip", self.max_connections_per_ip, 1, 10**7)
        check_range("max_sessions", self.max_sessions, 1, 10**7)
        check_range("send_buffer_high_bytes", self.send_buffer_high_bytes, 1024, 1 << 30)
        check_range("send_buffer_max_bytes", self.send_buffer_max_bytes,
                    self.send_buffer_high_bytes, 1 << 31)
        check_range("max_workers_per_session", self.max_workers_per_session, 1, 10_000)
        check_range("max_messages_per_s", self.max_messages_per_s, 0.1, 1e6)
        check_range("cost_hard_limit", self.cost_hard_limit, 1.0, 1e12)
        check_range("cost_soft_limit", self.cost_soft_limit, 0.0, self.cost_hard_limit)
        check_range("ban_s", self.ban_s, 0.0, 86400.0)
        check_range("drain_grace_s", self.drain_grace_s, 0.0, 600.0)

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], *, key: str = "stratum") -> StratumSettings:
        """Parse the `[stratum]` config table; errors name `stratum.<field>`."""
        return settings_from_mapping(cls, raw, key)

    def log_settings(self, logger: Any) -> None:
        """Log every limit once, so operators see what the server enforces."""
        values = dataclasses.asdict(self)
        values["version_mask"] = f"{self.version_mask:08x}"
        logger.info("stratum settings", **values)
