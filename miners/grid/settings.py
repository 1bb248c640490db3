"""The ``[grid]`` configuration, parsed once into frozen objects (`GridSettings.from_mapping`).

Every limit has a unit in its name and a default; every error names its dotted key.
docs/grid-api.md has the reference with an example.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from miners.grid.hmac_auth import check_skew
from miners.grid.timeline import SiteLimits, limits_by_site
from pool.errors import ConfigError

SIMPLE_LEVELS = 4  # OpenADR SIMPLE signal levels 0 (normal) to 3 (high)


@dataclass(frozen=True, slots=True)
class HttpApiSettings:
    keys_file: Path | None = None  # [[key]] tables; None: the command API is not served
    skew_s: float = 30.0  # accepted difference between a request's timestamp and our clock
    max_nonces: int = 100_000  # nonces remembered (those of the last 2 x skew_s seconds)
    max_body_bytes: int = 16 * 1024  # larger request bodies are refused unread (413)
    listen: str | None = None  # own listener "host:port" (needed for mTLS); None: mounted
    tls_cert: Path | None = None  # server certificate of the own listener
    tls_key: Path | None = None
    client_ca: Path | None = None  # set: mTLS, client certificates from this CA required
    rejects_audited_per_min: int = 600  # audit rows for refused requests; more are counted


@dataclass(frozen=True, slots=True)
class VenSettings:
    """One OpenADR 2.0b VEN: a site's registration with the operator's VTN."""

    site: str
    vtn_url: str  # ".../OpenADR2/Simple/2.0b"
    ven_name: str
    ven_id: str | None = None  # None: assigned by the VTN at registration
    simple_levels_kw: tuple[float, ...] = ()  # SIMPLE level 0..3 -> site budget (kW)
    cert: Path | None = None  # TLS client certificate (also signs messages)
    key: Path | None = None
    passphrase_env: str | None = None  # environment variable holding the key's passphrase
    ca_file: Path | None = None  # CA that signed the VTN's certificate
    vtn_fingerprint: str | None = None  # verify the VTN's message signatures
    check_hostname: bool = True
    report_interval_s: float = 10.0  # site power telemetry sampling and reporting period
    reconnect_s: float = 30.0  # wait before registering again after a failure


@dataclass(frozen=True, slots=True)
class GridSettings:
    sites: tuple[SiteLimits, ...] = ()
    tick_s: float = 1.0  # budget re-evaluation period (ramps, starts, ends, silence)
    deadband_w: float = 1.0  # budget changes smaller than this are not sent to the fleet
    contact_write_s: float = 10.0  # last-contact times are persisted at most this often
    default_comply_s: float = 30.0  # promise before the fleet has answered a budget once
    samples_kept: int = 8640  # power samples kept per site for compliance (24 h at 10 s)
    compliance_tolerance: float = 0.02  # fraction of a limit allowed for meter noise
    retention_s: float = 7 * 86400.0  # finished events stay in memory (and in GETs) this long
    max_events_per_site: int = 256  # events in force or scheduled, per site (each change
    # re-anchors the site's events in start order: quadratic in this number)
    http: HttpApiSettings = field(default_factory=HttpApiSettings)
    openadr: tuple[VenSettings, ...] = ()

    def __post_init__(self) -> None:
        limits_by_site(self.sites)
        for name in ("tick_s", "contact_write_s", "default_comply_s", "retention_s"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise ConfigError(f"grid.{name}", "must be > 0")
        if not self.deadband_w >= 0:
            raise ConfigError("grid.deadband_w", "must be >= 0")
        if self.samples_kept < 1 or self.max_events_per_site < 1:
            raise ConfigError("grid.samples_kept", "samples_kept and max_events_per_site >= 1")
        if not 0 <= self.compliance_tolerance < 1:
            raise ConfigError("grid.compliance_tolerance", "must be in [0, 1)")
        check_skew(self.http.skew_s)
        known = {s.site for s in self.sites}
        for i, ven in enumerate(self.openadr):
            if ven.site not in known:
                raise ConfigError(f"grid.openadr[{i}].site", f"unknown site {ven.site!r}")

    def limits(self) -> dict[str, SiteLimits]:
        return dict(limits_by_site(self.sites))

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], *, base_dir: Path,
                     key: str = "grid") -> GridSettings:
        _known(raw, key, ("site", "http", "openadr", *_SCALARS))
        sites = tuple(_site(r, f"{key}.site[{i}]") for i, r in enumerate(_list(raw, "site", key)))
        http = _http(_table(raw, "http", key), f"{key}.http", base_dir)
        vens = tuple(_ven(r, f"{key}.openadr[{i}]", base_dir)
                     for i, r in enumerate(_list(raw, "openadr", key)))
        scalars = {k: _number(raw, k, key) for k in _SCALARS if k in raw}
        for name in ("samples_kept", "max_events_per_site"):
            if name in scalars:
                scalars[name] = int(scalars[name])
        return cls(sites=sites, http=http, openadr=vens, **scalars)


_SCALARS = ("tick_s", "deadband_w", "contact_write_s", "default_comply_s", "samples_kept",
            "compliance_tolerance", "retention_s", "max_events_per_site")


def _site(raw: Any, key: str) -> SiteLimits:
    if not isinstance(raw, Mapping):
        raise ConfigError(key, "must be a table")
    _known(raw, key, ("id", "base_kw", "safe_kw", "silence_s"))
    site = raw.get("id")
    if not isinstance(site, str) or not site:
        raise ConfigError(f"{key}.id", "must be a non-empty string")
    base = _number(raw, "base_kw", key, required=True) * 1000
    safe = _number(raw, "safe_kw", key) * 1000 if "safe_kw" in raw else base
    silence = _number(raw, "silence_s", key) if "silence_s" in raw else None
    return SiteLimits(site, base, safe, silence)


def _http(raw: Mapping[str, Any], key: str, base: Path) -> HttpApiSettings:
    paths = ("keys_file", "tls_cert", "tls_key", "client_ca")
    _known(raw, key, (*paths, "skew_s", "max_nonces", "max_body_bytes", "listen",
                      "rejects_audited_per_min"))
    out: dict[str, Any] = {p: base / str(raw[p]) for p in paths if p in raw}
    for name in ("skew_s",):
        if name in raw:
            out[name] = _number(raw, name, key)
    for name in ("max_nonces", "max_body_bytes", "rejects_audited_per_min"):
        if name in raw:
            value = int(_number(raw, name, key))
            if value < 1:
                raise ConfigError(f"{key}.{name}", "must be >= 1")
            out[name] = value
    if "listen" in raw:
        out["listen"] = str(raw["listen"])
    if ("tls_cert" in out) != ("tls_key" in out):
        raise ConfigError(f"{key}.tls_key", "tls_cert and tls_key go together")
    if "client_ca" in out and "tls_cert" not in out:
        raise ConfigError(f"{key}.client_ca", "mTLS needs tls_cert and tls_key")
    if "tls_cert" in out and "listen" not in out:
        raise ConfigError(f"{key}.listen", "TLS needs the API's own listener")
    return HttpApiSettings(**out)


def _ven(raw: Any, key: str, base: Path) -> VenSettings:
    if not isinstance(raw, Mapping):
        raise ConfigError(key, "must be a table")
    paths = ("cert", "key", "ca_file")
    strings = ("site", "vtn_url", "ven_name", "ven_id", "passphrase_env", "vtn_fingerprint")
    _known(raw, key, (*paths, *strings, "simple_levels_kw", "check_hostname",
                      "report_interval_s", "reconnect_s"))
    out: dict[str, Any] = {p: base / str(raw[p]) for p in paths if p in raw}
    for name in strings:
        if name in raw:
            if not isinstance(raw[name], str) or not raw[name]:
                raise ConfigError(f"{key}.{name}", "must be a non-empty string")
            out[name] = raw[name]
    for name in ("site", "vtn_url", "ven_name"):
        if name not in out:
            raise ConfigError(f"{key}.{name}", "is required")
    levels = raw.get("simple_levels_kw", [])
    if (not isinstance(levels, list) or len(levels) != SIMPLE_LEVELS
            or not all(isinstance(v, int | float) and v >= 0 for v in levels)):
        raise ConfigError(f"{key}.simple_levels_kw", "must list 4 budgets (kW) for levels 0-3")
    out["simple_levels_kw"] = tuple(float(v) for v in levels)
    if "check_hostname" in raw:
        out["check_hostname"] = bool(raw["check_hostname"])
    for name in ("report_interval_s", "reconnect_s"):
        if name in raw:
            value = _number(raw, name, key)
            if value < 1:
                raise ConfigError(f"{key}.{name}", "must be >= 1 s")
            out[name] = value
    if ("cert" in out) != ("key" in out):
        raise ConfigError(f"{key}.key", "cert and key go together")
    return VenSettings(**out)


def _known(raw: Mapping[str, Any], key: str, allowed: tuple[str, ...]) -> None:
    for name in raw:
        if name not in allowed:
            raise ConfigError(f"{key}.{name}", "unknown key")


def _table(raw: Mapping[str, Any], name: str, key: str) -> Mapping[str, Any]:
    value = raw.get(name, {})
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key}.{name}", "must be a table")
    return value


def _list(raw: Mapping[str, Any], name: str, key: str) -> list[Any]:
    value = raw.get(name, [])
    if not isinstance(value, list):
        raise ConfigError(f"{key}.{name}", "must be an array of tables")
    return value


def _number(raw: Mapping[str, Any], name: str, key: str, *, required: bool = False) -> float:
    if name not in raw:
        if required:
            raise ConfigError(f"{key}.{name}", "is required")
        return 0.0
    value = raw[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{key}.{name}", "must be a finite number")
    try:
        number = float(value)  # an int beyond a double's range overflows here
    except OverflowError:
        raise ConfigError(f"{key}.{name}", "must be a finite number") from None
    if not math.isfinite(number):
        raise ConfigError(f"{key}.{name}", "must be a finite number")
    return number
