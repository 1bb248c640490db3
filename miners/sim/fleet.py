"""A fleet of simulated miners in one asyncio process: layout, inventory, admin API.

Layout: ``sites`` sites named ``site1..siteN`` with ``miners_per_site`` miners each named
``m001..``; the Stratum user of a miner is ``username_template`` filled with ``site`` and
``miner`` (default ``sim.{site}.{miner}``: account ``sim``, worker ``site1.m001``, which
the pool files under site ``site1``, the part of the worker name before its first dot; see
`pool.shares.site_of_worker`).  Models are dealt from ``model_mix`` in a fixed, seeded
order.

Management endpoints: each miner gets its own listener, either its own port on
``api_host`` (``address_mode="ports"``, ports from ``base_port`` upward, or ephemeral when
``base_port`` is 0), or its own loopback address in 127.0.0.0/8 on the firmware's real
port (``address_mode="addresses"``: 127.<10+site>.<n // 250>.<n % 250 + 1>, port 4028
for LuxOS-style miners and ``bitaxe_port`` for Bitaxes).

Scale: with ``hash_scale`` unset the fleet picks one scale factor so that its total real
hash rate is ``fleet_rate_hs`` (default 3 MH/s, well under one core with the native
scanner), never more than `DEFAULT_HASH_SCALE`.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from miners.meter import MeterSpec
from miners.sim.faults import Faults
from miners.sim.luxos_api import DEFAULT_PORT as LUXOS_PORT
from miners.sim.miner import DEFAULT_HASH_SCALE, PoolConfig, SimulatedMiner
from miners.sim.models import MinerModel, get_model
from pool.errors import ConfigError

log = structlog.get_logger(__name__)

DEFAULT_MODEL_MIX: tuple[tuple[str, float], ...] = (
    ("s19jpro", 0.4),
    ("s21", 0.3),
    ("m50s", 0.2),
    ("bitaxe-gamma", 0.1),
)
DEFAULT_FLEET_RATE_HS = 3e6  # total real sha256d rate of an auto-scaled fleet
DEFAULT_USERNAME_TEMPLATE = "sim.{site}.{miner}"  # account.worker, the worker site.miner
START_CONCURRENCY = 32  # miners started at once (listeners + first connection)
INVENTORY_VERSION = 1


@dataclass(frozen=True, slots=True)
class FleetSpec:
    """Everything that shapes a simulated fleet; validated on construction."""

    pool_url: str
    sites: int = 3
    miners_per_site: int = 50
    model_mix: tuple[tuple[str, float], ...] = DEFAULT_MODEL_MIX
    hash_scale: float | None = None  # real H/s per model TH/s; None = auto
    fleet_rate_hs: float = DEFAULT_FLEET_RATE_HS
    password: str = "x"
    username_template: str = DEFAULT_USERNAME_TEMPLATE
    address_mode: str = "ports"  # "ports" or "addresses"
    api_host: str = "127.0.0.1"
    base_port: int = 0  # 0 = ephemeral ports
    bitaxe_port: int = 80
    seed: int = 1
    faults: dict[str, Any] = field(default_factory=dict)  # applied to every miner

    def __post_init__(self) -> None:
        if self.sites < 1 or self.miners_per_site < 1:
            raise ConfigError("sim.sites", "need at least one site with one miner")
        if self.miners_per_site > 60_000:
            raise ConfigError("sim.miners_per_site", "at most 60000 per site")
        if self.address_mode not in ("ports", "addresses"):
            raise ConfigError("sim.address_mode", "must be 'ports' or 'addresses'")
        if self.hash_scale is not None and self.hash_scale <= 0:
            raise ConfigError("sim.hash_scale", "must be > 0 (real H/s per model TH/s)")
        if self.fleet_rate_hs <= 0:
            raise ConfigError("sim.fleet_rate_hs", "must be > 0")
        for key, weight in self.model_mix:
            try:
                get_model(key)
            except ValueError as err:
                raise ConfigError("sim.model_mix", str(err)) from err
            if weight < 0:
                raise ConfigError("sim.model_mix", f"negative weight for {key}")
        if sum(w for _, w in self.model_mix) <= 0:
            raise ConfigError("sim.model_mix", "weights must not all be zero")
        try:
            self.username_template.format(site="s", miner="m")
        except (KeyError, IndexError, ValueError) as err:
            raise ConfigError("sim.username_template", f"bad template: {err}") from err
        Faults.from_mapping(self.faults, key="sim.faults")


@dataclass(frozen=True, slots=True)
class MinerSlot:
    """Where one miner of the fleet lives (decided before anything starts)."""

    site: str
    miner_id: str  # m001, ...
    model: MinerModel
    worker: str
    api_host: str
    api_port: int


def plan(spec: FleetSpec) -> list[MinerSlot]:
    """Deal models and endpoints to every miner (pure and deterministic for a seed)."""
    rng = random.Random(spec.seed)
    keys = [k for k, _ in spec.model_mix]
    weights = [w for _, w in spec.model_mix]
    slots = []
    for s in range(1, spec.sites + 1):
        site = f"site{s}"
        for n in range(spec.miners_per_site):
            model = get_model(rng.choices(keys, weights)[0])
            miner_id = f"m{n + 1:03d}"
            host, port = _endpoint(spec, model, s, n, len(slots))
            worker = spec.username_template.format(site=site, miner=miner_id)
            slots.append(MinerSlot(site, miner_id, model, worker, host, port))
    return slots


def _endpoint(spec: FleetSpec, model: MinerModel, site: int, n: int, index: int) -> tuple[str, int]:
    if spec.address_mode == "addresses":
        host = f"127.{10 + site}.{n // 250}.{n % 250 + 1}"
        return host, spec.bitaxe_port if model.api == "bitaxe" else LUXOS_PORT
    return spec.api_host, spec.base_port + index if spec.base_port else 0


def auto_hash_scale(spec: FleetSpec, slots: Sequence[MinerSlot]) -> float:
    if spec.hash_scale is not None:
        return spec.hash_scale
    total_ths = sum(slot.model.nominal_ths for slot in slots)
    return min(DEFAULT_HASH_SCALE, spec.fleet_rate_hs / total_ths)


class Fleet:
    """Builds, starts and stops the miners of a FleetSpec; writes the inventory."""

    def __init__(self, spec: FleetSpec) -> None:
        self.spec = spec
        self.slots = plan(spec)
        self.hash_scale = auto_hash_scale(spec, self.slots)
        self.miners: dict[str, SimulatedMiner] = {}
        self.sites: dict[str, list[SimulatedMiner]] = {}
        for i, slot in enumerate(self.slots):
            miner = SimulatedMiner(
                f"{slot.site}.{slot.miner_id}",
                slot.model,
                worker=slot.worker,
                pool=PoolConfig(spec.pool_url, slot.worker, spec.password),
                hash_scale=self.hash_scale,
                api_host=slot.api_host,
                api_port=slot.api_port,
                faults=Faults.from_mapping(spec.faults, key="sim.faults"),
                seed=spec.seed * 1_000_003 + i,
            )
            self.miners[miner.miner_id] = miner
            self.sites.setdefault(slot.site, []).append(miner)

    async def start(self) -> None:
        log.info(
            "sim_fleet_starting",
            miners=len(self.miners),
            sites=len(self.sites),
            pool=self.spec.pool_url,
            hash_scale=round(self.hash_scale, 3),
            real_rate_hs=round(self.real_rate_hs()),
        )
        gate = asyncio.Semaphore(START_CONCURRENCY)

        async def start_one(miner: SimulatedMiner) -> None:
            async with gate:
                await miner.start()

        async with asyncio.TaskGroup() as group:
            for miner in self.miners.values():
                group.create_task(start_one(miner))

    async def stop(self) -> None:
        await asyncio.gather(*(m.stop() for m in self.miners.values()), return_exceptions=True)

    def real_rate_hs(self) -> float:
        return sum(m.real_hashrate_hs() for m in self.miners.values())

    def site_power_w(self, site: str) -> float:
        """Exact power (W) of a site's miners now (ground truth, no telemetry noise)."""
        return sum(m.power.power_w() for m in self.sites[site])

    def site_energy_j(self, site: str) -> float:
        """Exact energy (J) a site's miners have drawn since they were created."""
        return sum(m.power.energy_j() for m in self.sites[site])

    def inventory(self, meters: Mapping[str, MeterSpec] | None = None) -> dict[str, Any]:
        """The fleet as the fleet controller's inventory (see docs/simulator.md); with
        ``meters`` (site -> spec of its running simulated meter) each site gets a ``meter``."""
        sites = []
        for site, miners in self.sites.items():
            rows = []
            for miner in miners:
                host, port = miner.api_address
                model = miner.model
                rows.append(
                    {
                        "id": miner.miner_id,
                        "worker": miner.worker,
                        "model": model.key,
                        "model_name": model.name,
                        "driver": model.api,
                        "host": host,
                        "port": port,
                        "nominal_ths": model.nominal_ths,
                        "nominal_w": model.nominal_w,
                        "min_w": model.min_w,
                        "max_w": model.max_w,
                        "sleep_w": model.sleep_w,
                        "wake_ramp_s": model.wake_ramp_s,
                        "shutdown_s": model.shutdown_s,
                    }
                )
            entry: dict[str, Any] = {"id": site, "miners": rows}
            if meters and site in meters:
                m = meters[site]
                entry["meter"] = {"host": m.host, "port": m.port, "unit_id": m.unit_id}
            sites.append(entry)
        return {
            "version": INVENTORY_VERSION,
            "generated_by": "gridpool sim",
            "pool": self.spec.pool_url,
            "hash_scale": self.hash_scale,
            "sites": sites,
        }

    def write_inventory(self, path: Path, meters: Mapping[str, MeterSpec] | None = None) -> None:
        """Write atomically (temp file + rename) so a reader never sees half a file."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.inventory(meters), indent=2) + "\n")
        os.replace(tmp, path)
        log.info("sim_inventory_written", path=str(path), miners=len(self.miners))

    def site_summary(self) -> list[dict[str, Any]]:
        """Per-site totals for the live view."""
        out = []
        for site, miners in self.sites.items():
            states: dict[str, int] = {}
            power = ths = 0.0
            accepted = rejected = connected = faulty = 0
            for miner in miners:
                t = miner.telemetry()
                states[t.state.value] = states.get(t.state.value, 0) + 1
                power += t.power_w
                ths += t.hashrate_ths
                accepted += miner.stats.accepted
                rejected += miner.stats.rejected
                connected += miner.stratum_connected
                faulty += bool(miner.faults.active())
            out.append(
                {
                    "site": site,
                    "miners": len(miners),
                    "states": states,
                    "power_kw": power / 1000,
                    "hashrate_ths": ths,
                    "accepted": accepted,
                    "rejected": rejected,
                    "connected": connected,
                    "faulty": faulty,
                }
            )
        return out


async def start_fleet(pool_url: str, *, inventory_path: Path | None = None, **spec: Any) -> Fleet:
    """Start a fleet (default: three sites of 50 miners) and write its inventory.

    For `gridpool run` with no config: ``fleet = await start_fleet(pool_url,
    inventory_path=data_dir / "sim-inventory.json")`` and ``await fleet.stop()`` at exit.
    """
    fleet = Fleet(FleetSpec(pool_url=pool_url, **spec))
    try:
        await fleet.start()
        if inventory_path is not None:
            fleet.write_inventory(inventory_path)
    except BaseException:
        await fleet.stop()
        raise
    return fleet


# -- admin API: faults and commands on demand ---------------------------------------------


FLEET_KEY = web.AppKey("fleet", Fleet)


def admin_app(fleet: Fleet) -> web.Application:
    """HTTP admin API of the simulator (not a firmware API): inspect miners, inject faults.

    GET  /miners                       -> [{id, worker, model, state, power_w, faults}, ...]
    GET  /miners/{id}                  -> one miner, with its telemetry and share counters
    POST /miners/{id}/faults  {..}     -> update fault switches (see miners.sim.faults)
    POST /miners/{id}/crash   {"restart_after_s": s}  -> crash now
    POST /miners/{id}/sleep | /wake    -> the same as the firmware command, bypassing the API
    """
    app = web.Application(client_max_size=64 * 1024)
    app[FLEET_KEY] = fleet
    app.router.add_get("/miners", _list_miners)
    app.router.add_get("/miners/{id}", _get_miner)
    app.router.add_post("/miners/{id}/faults", _set_faults)
    app.router.add_post("/miners/{id}/crash", _crash)
    app.router.add_post("/miners/{id}/sleep", _sleep)
    app.router.add_post("/miners/{id}/wake", _wake)
    return app


def _miner_json(miner: SimulatedMiner, *, detail: bool = False) -> dict[str, Any]:
    t = miner.telemetry()
    out: dict[str, Any] = {
        "id": miner.miner_id,
        "worker": miner.worker,
        "model": miner.model.key,
        "state": t.state.value,
        "power_w": round(t.power_w, 1),
        "hashrate_ths": round(t.hashrate_ths, 3),
        "faults": miner.faults.active(),
    }
    if detail:
        out |= {
            "target_w": t.target_w,
            "real_hashrate_hs": miner.real_hashrate_hs(),
            "stratum_connected": miner.stratum_connected,
            "accepted": miner.stats.accepted,
            "rejected": miner.stats.rejected,
            "api": list(miner.api_address) if not miner.crashed else None,
        }
    return out


def _lookup(request: web.Request) -> SimulatedMiner:
    miner = request.app[FLEET_KEY].miners.get(request.match_info["id"])
    if miner is None:
        raise web.HTTPNotFound(text="unknown miner")
    return miner


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json() if request.can_read_body else {}
    except ValueError:
        raise web.HTTPBadRequest(text="invalid JSON") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="expected a JSON object")
    return body


async def _list_miners(request: web.Request) -> web.Response:
    fleet: Fleet = request.app[FLEET_KEY]
    return web.json_response([_miner_json(m) for m in fleet.miners.values()])


async def _get_miner(request: web.Request) -> web.Response:
    return web.json_response(_miner_json(_lookup(request), detail=True))


async def _set_faults(request: web.Request) -> web.Response:
    miner = _lookup(request)
    try:
        miner.update_faults(await _body(request))
    except ConfigError as err:
        raise web.HTTPBadRequest(text=str(err)) from None
    log.info("sim_faults_set", miner=miner.miner_id, faults=miner.faults.active())
    return web.json_response(miner.faults.as_dict())


async def _crash(request: web.Request) -> web.Response:
    miner = _lookup(request)
    restart = (await _body(request)).get("restart_after_s", miner.faults.crash_restart_s)
    if isinstance(restart, bool) or not isinstance(restart, int | float) or restart < 0:
        raise web.HTTPBadRequest(text="restart_after_s must be a number >= 0")
    miner.crash(restart_after_s=float(restart))
    return web.json_response({"crashed": True, "restart_after_s": restart})


async def _sleep(request: web.Request) -> web.Response:
    return web.json_response({"ok": _lookup(request).sleep()})


async def _wake(request: web.Request) -> web.Response:
    return web.json_response({"ok": _lookup(request).wake()})
