"""Grid command latency: from a command's receipt to the site under the new limit.

One site of `--miners` simulated miners (each with its own LuxOS-style TCP management API
on loopback; S19j Pro / S21 / M50S in equal parts) under the real FleetController, the
GridService on a SQLite store, the signed HTTP command API and an OpenADR VEN registered
with openleadr's own VTN, all in this process. Each round restores the base budget, then
commands the site down to `--limit-fraction` of its nominal power through one channel, and
times, from the command's receipt by the grid service:

- allocation: the controller's first plan under the new budget;
- commands: the first and the last miner command acknowledged by the firmware;
- under: the first site power reading (read back from the miners) under the limit;
- promise: the acknowledged "under the limit by" time.

For OpenADR, receipt is the VEN's on_event; the VTN's delivery waits for the VEN's next
poll (`--poll-s`), printed separately as `vtn_to_receipt`. Model timings are shortened
(`--ramp-s`, `--shutdown-s`) so rounds are quick; a cut that only turns miners down does
not wait for them, one that sleeps miners waits for the shutdown time.

    .venv/bin/python bench/grid.py [--miners 1000] [--rounds 3] [--limit-fraction 0.5]
        [--poll-s 1] [--interval-s 2] [--ramp-s 2] [--shutdown-s 1]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import importlib.util
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from miners.allocate import AllocationSettings
from miners.compliance import ControlSettings
from miners.controller import FleetController, SiteController
from miners.fleet import PollSettings
from miners.grid.fleet_sink import FleetSink
from miners.grid.hmac_auth import (
    NonceStore,
    Verifier,
    load_keys,
    new_key_file,
    signed_headers,
)
from miners.grid.http_api import grid_api_app, mount
from miners.grid.openadr_ven import GridVen
from miners.grid.service import GridService
from miners.grid.settings import GridSettings, HttpApiSettings, VenSettings
from miners.grid.store import open_grid_store
from miners.grid.timeline import SiteLimits
from miners.inventory import KNOWN_MODELS, MinerSpec, SiteSpec
from miners.sim import models as sim_models
from miners.sim.miner import SimulatedMiner
from pool.logs import configure_logging

VTN_HELPERS = Path(__file__).resolve().parents[1] / "tests" / "grid" / "vtn_helpers.py"
SITE = "A"
MODELS = ("s19jpro", "s21", "m50s")
START_BATCH = 100  # miners started at once


async def start_miners(n: int, ramp_s: float, shutdown_s: float) -> list[SimulatedMiner]:
    miners = []
    for i in range(n):
        model = dataclasses.replace(sim_models.get_model(MODELS[i % len(MODELS)]),
                                    wake_ramp_s=ramp_s, shutdown_s=shutdown_s)
        miners.append(SimulatedMiner(f"{SITE}.m{i:05d}", model, pool=None, seed=i))
    for i in range(0, n, START_BATCH):
        await asyncio.gather(*(m.start() for m in miners[i:i + START_BATCH]))
    return miners


def load_test_vtn() -> Any:
    """openleadr's VTN as the tests run it (tests/grid/vtn_helpers.py)."""
    spec = importlib.util.spec_from_file_location("grid_vtn_helpers", VTN_HELPERS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.TestVtn


def site_spec(miners: list[SimulatedMiner]) -> SiteSpec:
    specs = []
    for m in miners:
        known = dataclasses.replace(KNOWN_MODELS[m.model.key], min_w=m.model.min_w,
                                    wake_ramp_s=m.model.wake_ramp_s,
                                    shutdown_s=m.model.shutdown_s)
        host, port = m.api_address
        specs.append(MinerSpec(m.miner_id, SITE, known, m.model.api, host, port, m.miner_id))
    return SiteSpec(SITE, tuple(specs))


async def until(predicate: Any, timeout_s: float, step_s: float = 0.01) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110 - polling state owned by other tasks
            await asyncio.sleep(step_s)


def breakdown(site: SiteController, receipt: float, limit_w: float,
              promised: float) -> dict[str, float]:
    plan_at = next(at for at, p in site.plans if at >= receipt and p.limit_w <= limit_w)
    commands = [e.at for e in site.events if e.kind == "command" and e.at >= receipt
                and e.detail.get("result") == "ok"]
    under_at = next(s.at for s in site.history if s.at >= receipt and s.power_w <= limit_w)
    cmds = [c for c in commands if c <= under_at] or commands
    return {"allocation": plan_at - receipt, "first_command": min(cmds) - receipt,
            "last_command": max(cmds) - receipt, "under": under_at - receipt,
            "promise": promised - receipt, "commands": float(len(cmds))}


class Bench:
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args, self.tmp = args, tmp
        self.results: dict[str, list[dict[str, float]]] = {"http": [], "openadr": []}

    async def setup(self) -> None:
        a = self.args
        self.miners = await start_miners(a.miners, a.ramp_s, a.shutdown_s)
        self.nominal_w = sum(m.model.nominal_w for m in self.miners)
        self.fleet = FleetController(
            [site_spec(self.miners)],
            poll=PollSettings(interval_s=a.interval_s, request_timeout_s=2.0,
                              max_concurrency=512),
            control=ControlSettings(command_timeout_s=3.0, comply_grace_s=1.0),
            allocation=AllocationSettings(min_on_s=0, min_off_s=0, wake_step_miners=a.miners,
                                          wake_step_interval_s=0))
        await self.fleet.start()
        self.fleet_task = asyncio.create_task(self.fleet.run())
        self.site = self.fleet.sites[SITE]
        await until(lambda: len(self.site.history) >= 2, 120)
        await self._start_grid()

    async def _start_grid(self) -> None:
        a = self.args
        self.secret = bytes.fromhex(new_key_file(self.tmp / "tso.json", "tso")["secret_hex"])
        (self.tmp / "keys.toml").write_text('[[key]]\nfile = "tso.json"\nrole = "grid"\n')
        self.vtn = load_test_vtn()(poll_s=a.poll_s)
        vtn_url = await self.vtn.start()
        ven = VenSettings(site=SITE, vtn_url=vtn_url, ven_name="bench", report_interval_s=10)
        http = HttpApiSettings(keys_file=self.tmp / "keys.toml")
        settings = GridSettings(sites=(SiteLimits(SITE, self.nominal_w, self.nominal_w),),
                                tick_s=0.5, http=http, openadr=(ven,))
        self.store = open_grid_store(f"sqlite://{self.tmp}/ledger.db")
        await self.store.migrate()
        self.service = GridService(settings, self.store, FleetSink(self.fleet))
        await self.service.start()
        verifier = Verifier(load_keys(http.keys_file), NonceStore(10_000), http.skew_s,
                            self.service.started_at)
        root = web.Application()
        mount(root, grid_api_app(self.service, verifier, http))
        self.runner = web.AppRunner(root, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"
        self.ven = GridVen(ven, self.service)
        await self.ven.start()
        await asyncio.wait_for(self.ven.registered.wait(), 30)
        self.session = aiohttp.ClientSession()

    async def restore(self) -> None:
        for event in self.service.timeline(SITE).events:
            if event.cancelled is None:
                await self.service.cancel(SITE, event.event_id, channel="http", actor="bench")
        t = time.time()
        await until(lambda: self.site.budget_w >= self.nominal_w, 10)
        await until(lambda: any(s.at > t and s.power_w >= 0.9 * self.nominal_w
                                for s in self.site.history), 120)
        await asyncio.sleep(self.args.interval_s)  # settle: one quiet sweep

    async def http_round(self, limit_w: float) -> tuple[str, float]:
        path = f"/grid/v1/sites/{SITE}/curtailments"
        body = json.dumps({"limit_kw": limit_w / 1000}).encode()
        headers = signed_headers("tso", self.secret, "POST", path, body, now=time.time())
        headers["Content-Type"] = "application/json"
        sent = time.time()
        async with self.session.post(self.url + path, data=body, headers=headers) as resp:
            reply = await resp.json()
            assert resp.status == 201, reply
        self.ack_rtt = time.time() - sent
        return reply["event"]["id"], sent

    async def openadr_round(self, limit_w: float) -> tuple[str, float]:
        sent = time.time()
        oadr_id = self.vtn.send(self.ven.client.ven_id, "LOAD_DISPATCH", "setpoint",
                                [limit_w / 1000])
        event_id = f"oadr-{oadr_id}-0-0"
        await until(lambda: self.service.timeline(SITE).get(event_id) is not None, 30)
        return event_id, sent

    async def run(self) -> None:
        a = self.args
        limit_w = round(a.limit_fraction * self.nominal_w, -3)
        for channel in ("http", "openadr"):
            for _ in range(a.rounds):
                await self.restore()
                send = self.http_round if channel == "http" else self.openadr_round
                event_id, sent = await send(limit_w)
                event = self.service.timeline(SITE).get(event_id)
                assert event is not None and event.promised is not None
                receipt = event.created
                await until(lambda: any(s.at >= receipt and s.power_w <= limit_w  # noqa: B023
                                        for s in self.site.history), 60)
                row = breakdown(self.site, receipt, limit_w, event.promised)
                row["send_to_receipt"] = event.created - sent
                self.results[channel].append(row)
        self.report(limit_w)

    def report(self, limit_w: float) -> None:
        a = self.args
        print(f"miners: {a.miners}")
        print(f"nominal_kw: {self.nominal_w / 1000:.0f}")
        print(f"limit_kw: {limit_w / 1000:.0f}")
        print(f"poll_interval_s: {a.interval_s}  vtn_poll_s: {a.poll_s}  "
              f"model_shutdown_s: {a.shutdown_s}  model_wake_ramp_s: {a.ramp_s}")
        for channel, rows in self.results.items():
            for key in ("send_to_receipt", "allocation", "first_command", "last_command",
                        "under", "promise"):
                values = [r[key] for r in rows]
                print(f"{channel}.{key}: median {statistics.median(values) * 1000:.0f} ms, "
                      f"max {max(values) * 1000:.0f} ms")
            commands = statistics.median(r["commands"] for r in rows)
            print(f"{channel}.commands_per_cut: {commands:.0f}")

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.session.close()
            await self.ven.stop()
            await self.runner.cleanup()
            await self.service.stop()
            await self.store.close()
            await self.vtn.stop()
        self.fleet_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.fleet_task
        await self.fleet.close()
        await asyncio.gather(*(m.stop() for m in self.miners), return_exceptions=True)


async def main(args: argparse.Namespace) -> None:
    configure_logging(level="warning")
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(args, Path(tmp))
        await bench.setup()
        try:
            await bench.run()
        finally:
            await bench.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--miners", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--limit-fraction", type=float, default=0.5)
    parser.add_argument("--poll-s", type=int, default=1, help="VEN poll period (VTN-set)")
    parser.add_argument("--interval-s", type=float, default=2.0, help="fleet sweep period")
    parser.add_argument("--ramp-s", type=float, default=2.0, help="model wake ramp")
    parser.add_argument("--shutdown-s", type=float, default=1.0, help="model shutdown time")
    asyncio.run(main(parser.parse_args()))
