"""Sites and their miners: from the configuration, an inventory file, or a subnet scan.

A miner is an id, a model, the address of its management API, the driver that speaks it,
the Stratum worker it mines as (so the pool can tie shares to a site and starve a miner
that ignores commands), and credentials *by reference* (``password_env`` names an
environment variable, ``password_file`` a file) that are read only when a driver is built.

The scan identifies firmware the way fleet tools do: ``{"command": "version"}`` on TCP 4028
(a ``LUXminer`` entry means LuxOS, ``BMMiner``/``CGMiner`` a stock cgminer API) and
``GET /api/system/info`` over HTTP (``ASICModel`` means ESP-Miner); the worker name comes
from the miner's own pool settings (``pools`` → ``User``, or ``stratumUser``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import structlog

from miners.drivers import cgminer_api
from miners.drivers.base import ModelSpec
from miners.errors import DriverError, InventoryError
from pool.errors import ConfigError

log = structlog.get_logger(__name__)

DRIVERS = ("luxos", "cgminer", "bitaxe", "pyasic")
MAX_SCAN_HOSTS = 65_536  # addresses per scan (a /16); larger ranges are refused
SCAN_TIMEOUT_S = 1.0  # per probe
SCAN_CONCURRENCY = 256  # probes in flight
INVENTORY_VERSION = 1  # the simulator's inventory format (miners.sim.fleet)

# Vendor spec sheets (nominal points); ranges, sleep power and timings are typical firmware
# behaviour (the same assumptions as the simulator, miners/sim/models.py).
KNOWN_MODELS: dict[str, ModelSpec] = {
    m.key: m
    for m in (
        ModelSpec("s19jpro", "Antminer S19j Pro", 104.0, 3068.0, 1200.0, 3400.0, 45.0,
                  40.0, 5.0, 545.0),
        ModelSpec("s21", "Antminer S21", 200.0, 3500.0, 1400.0, 3900.0, 50.0, 45.0, 5.0,
                  490.0),
        ModelSpec("m50s", "Whatsminer M50S", 126.0, 3276.0, 1300.0, 3600.0, 45.0, 40.0,
                  5.0, 560.0),
        ModelSpec("bitaxe-gamma", "Bitaxe Gamma", 1.2, 18.0, 10.0, 25.0, 2.5, 10.0, 1.0,
                  525.0),
    )
}
ASIC_MODELS = {"BM1370": "bitaxe-gamma"}  # ESP-Miner ASICModel -> model key
DEFAULT_DRIVER = {"bitaxe-gamma": "bitaxe"}  # others: luxos


@dataclass(frozen=True, slots=True)
class SecretRef:
    """A credential by reference: an environment variable or a file, read on demand."""

    env: str | None = None
    file: Path | None = None

    def resolve(self, environ: Mapping[str, str] | None = None) -> str:
        environ = os.environ if environ is None else environ
        if self.env is not None:
            if self.env not in environ:
                raise InventoryError(f"environment variable {self.env!r} is not set")
            return environ[self.env]
        if self.file is not None:
            try:
                return self.file.read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as err:
                reason = f"cannot read secret file {self.file}: {err.strerror}"
                raise InventoryError(reason) from None
        raise InventoryError("empty secret reference")


@dataclass(frozen=True, slots=True)
class MinerSpec:
    miner_id: str
    site: str
    model: ModelSpec
    driver: str
    host: str
    port: int
    worker: str
    password: SecretRef | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class SiteSpec:
    site_id: str
    miners: tuple[MinerSpec, ...]
    budget_w: float | None = None  # initial budget; None = the sum of nominal power
    worker_prefix: str = ""
    scan: tuple[ScanRange, ...] = ()

    @property
    def nominal_w(self) -> float:
        return sum(m.model.nominal_w for m in self.miners)


@dataclass(frozen=True, slots=True)
class ScanRange:
    subnet: str
    tcp_ports: tuple[int, ...] = (cgminer_api.DEFAULT_PORT,)
    http_ports: tuple[int, ...] = (80,)


# -- configuration ---------------------------------------------------------------------


def site_from_mapping(raw: Mapping[str, Any], *, key: str, base_dir: Path) -> SiteSpec:
    """One ``[[fleet.site]]`` table: id, budget_kw, worker_prefix, miner, scan, inventory."""
    _known(raw, key, ("id", "budget_kw", "worker_prefix", "miner", "scan", "inventory"))
    site_id = _str(raw, "id", key, required=True)
    prefix = _str(raw, "worker_prefix", key) or f"{site_id}."
    miners: list[MinerSpec] = []
    if "inventory" in raw:
        path = base_dir / _str(raw, "inventory", key, required=True)
        miners += _inventory_site(load_inventory_json(path), site_id, f"{key}.inventory")
    rows = raw.get("miner", [])
    if not isinstance(rows, list):
        raise ConfigError(f"{key}.miner", "must be an array of tables")
    for i, row in enumerate(rows):
        miners.append(miner_from_mapping(row, site=site_id, prefix=prefix,
                                         key=f"{key}.miner[{i}]", base_dir=base_dir))
    _unique(miners, key)
    budget = raw.get("budget_kw")
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int | float)
                               or not 0 <= budget < 1e7):
        raise ConfigError(f"{key}.budget_kw", "must be a number of kW between 0 and 1e7")
    scans = tuple(_scan_range(r, f"{key}.scan[{i}]") for i, r in enumerate(raw.get("scan", [])))
    return SiteSpec(site_id, tuple(miners), None if budget is None else budget * 1000.0,
                    prefix, scans)


def miner_from_mapping(
    raw: Any, *, site: str, prefix: str, key: str, base_dir: Path
) -> MinerSpec:
    if not isinstance(raw, Mapping):
        raise ConfigError(key, "must be a table")
    _known(raw, key, ("id", "model", "driver", "host", "port", "worker", "password_env",
                      "password_file"))
    miner_id = _str(raw, "id", key, required=True)
    model_key = _str(raw, "model", key, required=True)
    if model_key not in KNOWN_MODELS:
        raise ConfigError(f"{key}.model", f"unknown model; known: {', '.join(KNOWN_MODELS)}")
    driver = _str(raw, "driver", key) or DEFAULT_DRIVER.get(model_key, "luxos")
    if driver not in DRIVERS:
        raise ConfigError(f"{key}.driver", f"must be one of {', '.join(DRIVERS)}")
    port = raw.get("port", 80 if driver == "bitaxe" else cgminer_api.DEFAULT_PORT)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ConfigError(f"{key}.port", "must be a TCP port (1-65535)")
    secret = None
    if "password_env" in raw:
        secret = SecretRef(env=_str(raw, "password_env", key, required=True))
    elif "password_file" in raw:
        secret = SecretRef(file=base_dir / _str(raw, "password_file", key, required=True))
    return MinerSpec(miner_id, site, KNOWN_MODELS[model_key], driver,
                     _str(raw, "host", key, required=True), port,
                     _str(raw, "worker", key) or f"{prefix}{miner_id}", secret)


def _scan_range(raw: Any, key: str) -> ScanRange:
    if not isinstance(raw, Mapping):
        raise ConfigError(key, "must be a table")
    _known(raw, key, ("subnet", "tcp_ports", "http_ports"))
    subnet = _str(raw, "subnet", key, required=True)
    try:
        net = ipaddress.ip_network(subnet, strict=False)
    except ValueError as err:
        raise ConfigError(f"{key}.subnet", str(err)) from None
    if net.num_addresses > MAX_SCAN_HOSTS:
        raise ConfigError(f"{key}.subnet", f"more than {MAX_SCAN_HOSTS} addresses")
    ports = {}
    for name in ("tcp_ports", "http_ports"):
        value = raw.get(name, [4028] if name == "tcp_ports" else [80])
        if not isinstance(value, list) or not all(
            isinstance(p, int) and not isinstance(p, bool) and 0 < p < 65536 for p in value
        ):
            raise ConfigError(f"{key}.{name}", "must be a list of TCP ports")
        ports[name] = tuple(value)
    return ScanRange(subnet, ports["tcp_ports"], ports["http_ports"])


def _known(raw: Mapping[str, Any], key: str, allowed: tuple[str, ...]) -> None:
    if not isinstance(raw, Mapping):
        raise ConfigError(key, f"must be a table, not {type(raw).__name__}")
    for name in raw:
        if name not in allowed:
            raise ConfigError(f"{key}.{name}", f"unknown key (known: {', '.join(allowed)})")


def _str(raw: Mapping[str, Any], name: str, key: str, *, required: bool = False) -> str:
    value = raw.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value or len(value) > 256:
        raise ConfigError(f"{key}.{name}", "must be a non-empty string (at most 256 chars)")
    return value


def _unique(miners: Sequence[MinerSpec], key: str) -> None:
    seen: set[str] = set()
    for m in miners:
        if m.miner_id in seen:
            raise ConfigError(key, f"miner id {m.miner_id!r} appears twice")
        seen.add(m.miner_id)


# -- the simulator's inventory file ----------------------------------------------------


def load_inventory_json(path: Path) -> tuple[SiteSpec, ...]:
    """Sites from an inventory file in the simulator's format (``gridpool sim --inventory``)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise InventoryError(f"{path}: cannot read inventory: {err}") from None
    if not isinstance(doc, dict) or doc.get("version") != INVENTORY_VERSION:
        raise InventoryError(f"{path}: not an inventory (version {INVENTORY_VERSION})")
    sites = []
    for s, site in enumerate(doc.get("sites", [])):
        try:
            site_id = str(site["id"])
            miners = tuple(_inventory_row(row, site_id) for row in site["miners"])
        except (KeyError, TypeError, ValueError) as err:
            raise InventoryError(f"{path}: sites[{s}]: bad entry ({err})") from None
        sites.append(SiteSpec(site_id, miners, worker_prefix=f"{site_id}."))
    return tuple(sites)


def _inventory_row(row: Mapping[str, Any], site: str) -> MinerSpec:
    key = str(row["model"])
    known = KNOWN_MODELS.get(key)
    model = ModelSpec(
        key, str(row.get("model_name", key)), float(row["nominal_ths"]), float(row["nominal_w"]),
        float(row["min_w"]), float(row["max_w"]), float(row["sleep_w"]),
        float(row["wake_ramp_s"]), float(row["shutdown_s"]),
        known.nominal_mhz if known else 0.0,
    )
    driver = str(row["driver"])
    if driver not in DRIVERS:
        raise ValueError(f"unknown driver {driver!r}")
    return MinerSpec(str(row["id"]), site, model, driver, str(row["host"]), int(row["port"]),
                     str(row.get("worker") or row["id"]))


def _inventory_site(sites: Sequence[SiteSpec], site_id: str, key: str) -> list[MinerSpec]:
    for site in sites:
        if site.site_id == site_id:
            return list(site.miners)
    raise ConfigError(key, f"the inventory file has no site {site_id!r}")


# -- scan ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScanResult:
    found: tuple[MinerSpec, ...]
    unidentified: tuple[str, ...]  # "host:port (why)" of APIs that answered but are unknown


async def scan(
    site: str,
    ranges: Sequence[ScanRange],
    *,
    worker_prefix: str = "",
    timeout_s: float = SCAN_TIMEOUT_S,
    concurrency: int = SCAN_CONCURRENCY,
) -> ScanResult:
    """Probe every address of `ranges` on their ports; identify firmware by its answers."""
    probes = [(h, p, "tcp") for r in ranges for h in _hosts(r.subnet) for p in r.tcp_ports]
    probes += [(h, p, "http") for r in ranges for h in _hosts(r.subnet) for p in r.http_ports]
    found: list[MinerSpec] = []
    unknown: list[str] = []
    gate = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession() as http:

        async def probe(host: str, port: int, kind: str) -> None:
            async with gate:
                try:
                    if kind == "tcp":
                        spec = await _identify_tcp(site, host, port, timeout_s)
                    else:
                        spec = await _identify_http(site, host, port, timeout_s, http)
                except DriverError:
                    return  # nothing there, or not a miner API
                except InventoryError as err:
                    unknown.append(f"{host}:{port} ({err})")
                    return
            found.append(_with_worker(spec, worker_prefix))

        async with asyncio.TaskGroup() as group:
            for host, port, kind in probes:
                group.create_task(probe(host, port, kind))
    found.sort(key=lambda m: (ipaddress.ip_address(m.host), m.port))
    log.info("fleet_scan_done", site=site, probes=len(probes), found=len(found),
             unidentified=len(unknown))
    return ScanResult(tuple(found), tuple(sorted(unknown)))


def _hosts(subnet: str) -> Iterable[str]:
    net = ipaddress.ip_network(subnet, strict=False)
    if net.num_addresses > MAX_SCAN_HOSTS:
        raise InventoryError(f"{subnet}: more than {MAX_SCAN_HOSTS} addresses")
    hosts = list(net.hosts()) or [net.network_address]
    return [str(h) for h in hosts]


def _with_worker(spec: MinerSpec, prefix: str) -> MinerSpec:
    if spec.worker:
        return spec
    return MinerSpec(spec.miner_id, spec.site, spec.model, spec.driver, spec.host, spec.port,
                     f"{prefix}{spec.miner_id}")


def _scan_id(host: str, port: int, default_port: int) -> str:
    name = host.replace(".", "-").replace(":", "-")
    return name if port == default_port else f"{name}-{port}"


async def _identify_tcp(site: str, host: str, port: int, timeout_s: float) -> MinerSpec:
    reply = await cgminer_api.request("scan", host, port, "version", timeout_s=timeout_s)
    cgminer_api.check_status(reply, "scan", "version")
    version = cgminer_api.section(reply, "VERSION", "scan", "version")[0]
    if "LUXminer" in version:
        driver = "luxos"
    elif "BMMiner" in version or "CGMiner" in version:
        driver = "cgminer"
    else:
        raise InventoryError("version reply names no known firmware")
    model = _model_by_name(str(version.get("Type", "")))
    worker = ""
    try:
        pools = await cgminer_api.request("scan", host, port, "pools", timeout_s=timeout_s)
        rows = pools.get("POOLS") or []
        worker = str(rows[0].get("User", "")) if rows and isinstance(rows[0], dict) else ""
    except DriverError:
        pass  # the worker falls back to the site prefix + id
    return MinerSpec(_scan_id(host, port, 4028), site, model, driver, host, port, worker)


async def _identify_http(
    site: str, host: str, port: int, timeout_s: float, http: aiohttp.ClientSession
) -> MinerSpec:
    from miners.errors import MinerUnreachableError

    url = f"http://{host}:{port}/api/system/info"
    try:
        async with asyncio.timeout(timeout_s), http.get(url) as resp:
            info = await resp.json(content_type=None) if resp.status == 200 else None
    except (TimeoutError, aiohttp.ClientError, ValueError) as err:
        raise MinerUnreachableError("scan", "system/info", f"{url}: {err!r}") from None
    if not isinstance(info, dict) or "ASICModel" not in info:
        raise MinerUnreachableError("scan", "system/info", f"{url}: not ESP-Miner")
    key = ASIC_MODELS.get(str(info["ASICModel"]))
    if key is None:
        raise InventoryError(f"unknown ESP-Miner ASIC {info['ASICModel']!r}")
    worker = str(info.get("stratumUser") or "")
    return MinerSpec(_scan_id(host, port, 80), site, KNOWN_MODELS[key], "bitaxe", host, port,
                     worker)


def _model_by_name(name: str) -> ModelSpec:
    for model in KNOWN_MODELS.values():
        if model.name.lower() == name.lower():
            return model
    raise InventoryError(f"unknown model {name!r}")


# -- the [fleet] configuration table ---------------------------------------------------

FLEET_KEYS = ("poll", "control", "allocation", "admin", "pool", "site")


@dataclass(frozen=True, slots=True)
class FleetConfig:
    sites: tuple[SiteSpec, ...]
    poll: Any  # miners.fleet.PollSettings
    control: Any  # miners.compliance.ControlSettings
    allocation: Any  # miners.allocate.AllocationSettings
    admin_listen: str = "127.0.0.1:8081"
    admin_token: SecretRef | None = None
    pool_api: str | None = None  # the central pool's admin API, for the work gate
    pool_token: SecretRef | None = None


def fleet_config_from_mapping(
    raw: Mapping[str, Any], *, key: str = "fleet", base_dir: Path | None = None
) -> FleetConfig:
    """Parse a ``[fleet]`` table: ``[fleet.poll]``, ``[fleet.control]``,
    ``[fleet.allocation]`` (settings by field name), ``[fleet.admin]`` (listen, token_env |
    token_file), ``[fleet.pool]`` (api_url, token_env | token_file), ``[[fleet.site]]``."""
    from miners.allocate import AllocationSettings  # late: these modules import this one
    from miners.compliance import ControlSettings
    from miners.fleet import PollSettings

    base_dir = base_dir or Path.cwd()
    if not isinstance(raw, Mapping):
        raise ConfigError(key, "must be a table")
    _known(raw, key, FLEET_KEYS)
    rows = raw.get("site", [])
    if not isinstance(rows, list) or not rows:
        raise ConfigError(f"{key}.site", "needs at least one [[fleet.site]]")
    sites = tuple(site_from_mapping(r, key=f"{key}.site[{i}]", base_dir=base_dir)
                  for i, r in enumerate(rows))
    if len({s.site_id for s in sites}) != len(sites):
        raise ConfigError(f"{key}.site", "site ids must be unique")
    admin = _table(raw.get("admin", {}), f"{key}.admin", ("listen", "token_env", "token_file"))
    pool = _table(raw.get("pool", {}), f"{key}.pool", ("api_url", "token_env", "token_file"))
    return FleetConfig(
        sites=sites,
        poll=settings_from_mapping(PollSettings, raw.get("poll", {}), f"{key}.poll"),
        control=settings_from_mapping(ControlSettings, raw.get("control", {}), f"{key}.control"),
        allocation=settings_from_mapping(AllocationSettings, raw.get("allocation", {}),
                                         f"{key}.allocation"),
        admin_listen=_str(admin, "listen", f"{key}.admin") or "127.0.0.1:8081",
        admin_token=_secret(admin, f"{key}.admin", base_dir),
        pool_api=_str(pool, "api_url", f"{key}.pool") or None,
        pool_token=_secret(pool, f"{key}.pool", base_dir),
    )


def load_fleet_config(path: Path) -> FleetConfig:
    """Read the ``[fleet]`` table of a TOML file (the gridpool config or a fleet-only one)."""
    import tomllib

    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigError(str(path), f"cannot read config file: {err.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(str(path), f"not valid TOML: {err}") from None
    if "fleet" not in doc:
        raise ConfigError("fleet", f"{path} has no [fleet] table")
    return fleet_config_from_mapping(doc["fleet"], base_dir=path.parent)


def settings_from_mapping(cls: type, raw: Any, key: str) -> Any:
    """A frozen settings dataclass from a TOML table: known fields only, types as the
    defaults', range checks from the class (re-keyed under `key`)."""
    import dataclasses
    import math

    if not isinstance(raw, Mapping):
        raise ConfigError(key, "must be a table")
    defaults = cls()
    names = [f.name for f in dataclasses.fields(cls)]
    values: dict[str, Any] = {}
    for name, value in raw.items():
        if name not in names:
            raise ConfigError(f"{key}.{name}", f"unknown key (known: {', '.join(names)})")
        default = getattr(defaults, name)
        ok = (isinstance(value, bool) if isinstance(default, bool)
              else isinstance(value, int) and not isinstance(value, bool)
              if isinstance(default, int)
              else isinstance(value, int | float) and not isinstance(value, bool))
        if not ok:
            raise ConfigError(f"{key}.{name}", f"must be a {type(default).__name__}")
        if isinstance(default, float):
            try:
                value = float(value)
            except OverflowError:
                raise ConfigError(f"{key}.{name}", "number is too large") from None
            if not math.isfinite(value):
                raise ConfigError(f"{key}.{name}", "must be a finite number")
        values[name] = value
    try:
        return cls(**values)
    except ConfigError as err:
        raise ConfigError(f"{key}.{err.key}", err.reason) from None


def _table(raw: Any, key: str, allowed: tuple[str, ...]) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise ConfigError(key, "must be a table")
    _known(raw, key, allowed)
    return raw


def _secret(raw: Mapping[str, Any], key: str, base_dir: Path) -> SecretRef | None:
    if "token_env" in raw:
        return SecretRef(env=_str(raw, "token_env", key, required=True))
    if "token_file" in raw:
        return SecretRef(file=base_dir / _str(raw, "token_file", key, required=True))
    return None
