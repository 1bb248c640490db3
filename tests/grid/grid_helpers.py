"""Test harness for the grid interface: a GridService on a real store, its HTTP API on a
loopback port, operator keys written by `new_key_file`, and a signing client."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from miners.allocate import AllocationSettings
from miners.compliance import ControlSettings
from miners.controller import FleetController
from miners.fleet import PollSettings
from miners.grid.hmac_auth import NonceStore, Verifier, load_keys, new_key_file, signed_headers
from miners.grid.http_api import grid_api_app, mount
from miners.grid.service import GridService
from miners.grid.settings import GridSettings, HttpApiSettings
from miners.grid.store import GridStore, open_grid_store
from miners.grid.timeline import SiteLimits
from miners.inventory import KNOWN_MODELS, MinerSpec, SiteSpec
from miners.sim import models as sim_models
from miners.sim.miner import SimulatedMiner

KEYS_TOML = """
[[key]]
file = "tso.json"
role = "grid"

[[key]]
file = "tso-a.json"
role = "grid"
sites = ["A"]

[[key]]
file = "siteop.json"
role = "site"
sites = ["A"]

[[key]]
file = "admin.json"
role = "admin"
"""


async def until(predicate: Any, timeout_s: float = 8.0, step_s: float = 0.02) -> None:
    """Poll `predicate` (state owned by other tasks and processes) until it holds."""
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110 - polling state we do not own
            await asyncio.sleep(step_s)


class RecordingSink:
    """A stand-in fleet for API-level tests: records budgets, reports a set power."""

    def __init__(self, comply_s: float = 2.0) -> None:
        self.comply_s = comply_s
        self.calls: list[tuple[str, float, str]] = []
        self.power: dict[str, tuple[float, float]] = {}

    async def set_site_budget(self, site: str, watts: float, *, reason: str) -> float:
        self.calls.append((site, watts, reason))
        return self.comply_s

    def site_power(self, site: str) -> tuple[float, float] | None:
        return self.power.get(site)

    def budget(self, site: str) -> float | None:
        return next((w for s, w, _ in reversed(self.calls) if s == site), None)


def write_keys(directory: Path) -> dict[str, bytes]:
    """Key files for tso (grid, every site), tso-a (grid, site A), siteop, admin."""
    secrets_by_id = {}
    for key_id in ("tso", "tso-a", "siteop", "admin"):
        data = new_key_file(directory / f"{key_id}.json", key_id)
        secrets_by_id[key_id] = bytes.fromhex(data["secret_hex"])
    (directory / "keys.toml").write_text(KEYS_TOML)
    return secrets_by_id


def grid_settings(**overrides: Any) -> GridSettings:
    sites = (SiteLimits("A", 1_000_000.0, 400_000.0, 300.0),
             SiteLimits("B", 2_000_000.0, 2_000_000.0, None))
    return GridSettings(sites=overrides.pop("sites", sites), tick_s=0.2, **overrides)


@dataclass
class GridHarness:
    service: GridService
    store: GridStore
    sink: Any
    url: str
    secrets: dict[str, bytes]
    session: aiohttp.ClientSession
    runner: web.AppRunner | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    async def request(self, method: str, path: str, body: Any = None, *, key: str = "tso",
                      now: float | None = None, nonce: str | None = None,
                      headers: dict[str, str] | None = None, raw: bytes | None = None,
                      sign: bool = True) -> tuple[int, Any]:
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        target = urlsplit(self.url).path.rstrip("/") + path
        sent = {}
        if sign:
            sent = signed_headers(key, self.secrets[key], method, target, data,
                                  now=time.time() if now is None else now, nonce=nonce)
        sent.update(headers or {})
        if data:
            sent["Content-Type"] = "application/json"
        async with self.session.request(method, self.url.rstrip("/") + path, data=data,
                                        headers=sent) as resp:
            text = await resp.text()
            return resp.status, (json.loads(text) if text.startswith(("{", "[")) else text)

    async def close(self) -> None:
        await self.session.close()
        if self.runner is not None:
            await self.runner.cleanup()
        await self.service.stop()
        await self.store.close()


async def start_harness(tmp_path: Path, store_url: str, sink: Any, *,
                        settings: GridSettings | None = None,
                        skew_s: float = 30.0, max_nonces: int = 1000) -> GridHarness:
    key_dir = tmp_path / "keys"
    key_dir.mkdir(exist_ok=True)
    if not (key_dir / "keys.toml").exists():
        secrets_by_id = write_keys(key_dir)
    else:
        secrets_by_id = {k: bytes.fromhex(json.loads((key_dir / f"{k}.json").read_text())
                                          ["secret_hex"]) for k in ("tso", "tso-a", "siteop",
                                                                    "admin")}
    http = HttpApiSettings(keys_file=key_dir / "keys.toml", skew_s=skew_s, max_body_bytes=4096)
    settings = settings or grid_settings(http=http)
    store = open_grid_store(store_url)
    await store.migrate()
    service = GridService(settings, store, sink)
    await service.start()
    verifier = Verifier(load_keys(key_dir / "keys.toml"), NonceStore(max_nonces), skew_s,
                        not_before=service.started_at)
    root = web.Application()
    mount(root, grid_api_app(service, verifier, http))
    runner = web.AppRunner(root, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return GridHarness(service, store, sink, f"http://127.0.0.1:{port}/grid", secrets_by_id,
                       aiohttp.ClientSession(), runner)


# -- a simulated fleet behind the FleetController -------------------------------------------

FAST_MODEL = {"wake_ramp_s": 0.6, "shutdown_s": 0.3}  # the real ones take 40-45 s and 1-5 s
POLL = PollSettings(interval_s=0.25, request_timeout_s=0.4, unreachable_after=1)
CONTROL = ControlSettings(command_timeout_s=1.0, comply_grace_s=0.3, retry_backoff_s=0.1,
                          retry_backoff_max_s=0.4)
ALLOCATION = AllocationSettings(min_on_s=0.0, min_off_s=0.5, wake_step_miners=8,
                                wake_step_interval_s=0.3)


def spec_for(miner: SimulatedMiner, site: str) -> MinerSpec:
    """The controller's view of a simulated miner (same numbers as the simulator's model)."""
    model = miner.model
    known = dataclasses.replace(KNOWN_MODELS[model.key], min_w=model.min_w,
                                wake_ramp_s=model.wake_ramp_s, shutdown_s=model.shutdown_s)
    host, port = miner.api_address
    return MinerSpec(miner.miner_id, site, known, model.api, host, port, miner.miner_id)


@contextlib.asynccontextmanager
async def sim_fleet(site_id: str, keys: list[str], *, poll: PollSettings = POLL,
                    ) -> AsyncIterator[tuple[FleetController, dict[str, SimulatedMiner]]]:
    """Simulated miners (management APIs on loopback, no pool) under a running controller."""
    miners: dict[str, SimulatedMiner] = {}
    task = None
    fleet = None
    try:
        for i, key in enumerate(keys):
            model = dataclasses.replace(sim_models.get_model(key), **FAST_MODEL)
            miner = SimulatedMiner(f"{site_id}.m{i + 1:04d}", model, pool=None, seed=i)
            await miner.start()
            miners[miner.miner_id] = miner
        spec = SiteSpec(site_id, tuple(spec_for(m, site_id) for m in miners.values()),
                        worker_prefix=f"{site_id}.")
        fleet = FleetController([spec], poll=poll, control=CONTROL, allocation=ALLOCATION)
        await fleet.start()
        task = asyncio.create_task(fleet.run())
        await until(lambda: bool(fleet.sites[site_id].history), 10)
        yield fleet, miners
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if fleet is not None:
            await fleet.close()
        await asyncio.gather(*(m.stop() for m in miners.values()), return_exceptions=True)


def nominal_w(miners: dict[str, SimulatedMiner]) -> float:
    return sum(m.model.nominal_w for m in miners.values())
