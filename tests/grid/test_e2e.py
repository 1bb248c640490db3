"""End to end on loopback: both grid channels drive a simulated fleet (miners' real
management APIs, the real FleetController) under the budget.

- OpenADR: openleadr's VTN sends a SIMPLE event -> site budget -> fleet under it -> the
  site's measured power, reported back to the VTN, is under the limit.
- HTTP: a signed curtailment -> fleet under budget by the acknowledged time; the grid
  service restarts mid-event and the event is still in force.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from grid.grid_helpers import (
    grid_settings,
    nominal_w,
    sim_fleet,
    start_harness,
    until,
)
from grid.vtn_helpers import TestVtn

from miners.grid.fleet_sink import FleetSink
from miners.grid.openadr_ven import GridVen
from miners.grid.service import GridService
from miners.grid.settings import HttpApiSettings, VenSettings
from miners.grid.store import open_grid_store
from miners.grid.timeline import SiteLimits

MODELS = ["s19jpro", "s21", "m50s"] * 4  # 12 miners, ~40 kW
SLACK_S = 0.5  # scheduling slack on a shared 2-core machine


async def test_openadr_event_to_fleet_and_compliance_back_to_the_vtn(tmp_path: Path) -> None:
    async with sim_fleet("A", MODELS) as (fleet, miners):
        base_kw = nominal_w(miners) / 1000
        levels = (base_kw, 0.8 * base_kw, 0.5 * base_kw, 0.0)
        vtn = TestVtn(poll_s=1)
        url = await vtn.start()
        ven_settings = VenSettings(site="A", vtn_url=url, ven_name="siteA",
                                   simple_levels_kw=levels, report_interval_s=1)
        settings = grid_settings(sites=(SiteLimits("A", base_kw * 1000, base_kw * 500, None),),
                                 openadr=(ven_settings,))
        store = open_grid_store(f"sqlite://{tmp_path}/ledger.db")
        await store.migrate()
        service = GridService(settings, store, FleetSink(fleet))
        await service.start()
        ven = GridVen(ven_settings, service)
        await ven.start()
        try:
            async with asyncio.timeout(10):
                await ven.registered.wait()
            limit_w = levels[2] * 1000
            t_sent = time.time()
            event_id = vtn.send(ven.client.ven_id, "simple", "level", [2])
            await until(lambda: fleet.sites["A"].budget_w == limit_w, 8)
            await until(lambda: vtn.opts.get(event_id) == "optIn", 5)
            ack = next(e for e in service.timeline("A").events if e.source == "openadr")
            site = fleet.sites["A"]
            await until(lambda: any(s.power_w <= limit_w for s in site.history
                                    if s.at > t_sent), 10)
            under_at = next(s.at for s in site.history if s.at > t_sent and s.power_w <= limit_w)
            assert under_at <= ack.promised + SLACK_S
            # the VTN hears it: telemetry after the promise is under the limit
            await until(lambda: any(dt.timestamp() >= ack.promised + 0.5
                                    for dt, _ in vtn.reports["A"]), 8)
            late = [v for dt, v in vtn.reports["A"] if dt.timestamp() >= ack.promised + 0.5]
            assert max(late) <= limit_w, (late, limit_w)
            assert service.compliance("A", ack.event_id).status == "complying"
        finally:
            await ven.stop()
            await service.stop()
            await store.close()
            await vtn.stop()


async def test_signed_http_curtailment_and_restart_mid_event(tmp_path: Path) -> None:
    async with sim_fleet("A", MODELS) as (fleet, miners):
        base_w = nominal_w(miners)
        limit_w = round(0.5 * base_w, -3)
        keys = tmp_path / "keys"
        keys.mkdir()
        http = HttpApiSettings(keys_file=keys / "keys.toml")
        settings = grid_settings(sites=(SiteLimits("A", base_w, base_w / 2, None),), http=http)
        url = f"sqlite://{tmp_path}/ledger.db"
        h = await start_harness(tmp_path, url, FleetSink(fleet), settings=settings)
        site = fleet.sites["A"]
        try:
            await asyncio.sleep(0.6)  # a couple of sweeps at the base budget
            assert site.history[-1].power_w > limit_w
            t_sent = time.time()
            status, ack = await h.request("POST", "/v1/sites/A/curtailments",
                                          {"limit_kw": limit_w / 1000, "duration_s": 3600,
                                           "id": "e2e"})
            assert status == 201, ack
            assert site.budget_w == limit_w
            await until(lambda: any(s.power_w <= limit_w for s in site.history
                                    if s.at > t_sent), 10)
            under_at = next(s.at for s in site.history if s.at > t_sent and s.power_w <= limit_w)
            assert under_at <= ack["under_limit_by"], (under_at - t_sent, ack)
        finally:
            await h.close()
        # the grid service restarts while the event is in force (the fleet keeps running)
        site.set_budget(base_w, source="test: a stale budget before the grid restarts")
        h = await start_harness(tmp_path, url, FleetSink(fleet), settings=settings)
        try:
            assert site.budget_w == limit_w  # the stored event is put back in force at start
            status, timeline = await h.request("GET", "/v1/sites/A/timeline")
            assert status == 200 and [e["id"] for e in timeline["events"]] == ["e2e"]
            t_restart = time.time()
            await asyncio.sleep(1.5)
            assert all(s.power_w <= limit_w for s in site.history if s.at > t_restart + 1.0)
        finally:
            await h.close()
