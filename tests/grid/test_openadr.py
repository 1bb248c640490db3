"""The OpenADR 2.0b VEN against openleadr's own VTN on loopback: SIMPLE levels and
LOAD_DISPATCH setpoints become site budgets, cancellations release them, impossible events
are opted out of with a reason, power is reported back, all of it audited. The fleet is a
recording stand-in here; test_e2e.py drives the simulated fleet."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from grid.grid_helpers import RecordingSink, grid_settings, until
from grid.vtn_helpers import TestVtn
from openleadr.objects import PowerAttributes

from miners.grid.openadr_ven import GridVen, Refusal, event_to_grid
from miners.grid.service import GridService
from miners.grid.settings import VenSettings
from miners.grid.store import open_grid_store

LEVELS_KW = (1000.0, 800.0, 500.0, 0.0)


@dataclass
class VenSetup:
    vtn: TestVtn
    service: GridService
    ven: GridVen
    sink: RecordingSink

    @property
    def ven_id(self) -> str:
        assert self.ven.client is not None
        return self.ven.client.ven_id



@pytest.fixture
async def ven_setup(tmp_path: Path) -> AsyncIterator[VenSetup]:
    vtn = TestVtn(poll_s=1)
    url = await vtn.start()
    ven_settings = VenSettings(site="A", vtn_url=url, ven_name="siteA",
                               simple_levels_kw=LEVELS_KW, report_interval_s=1)
    store = open_grid_store(f"sqlite://{tmp_path}/ledger.db")
    await store.migrate()
    sink = RecordingSink()
    sink.power["A"] = (time.time(), 950_000.0)  # the fleet's first reading
    service = GridService(grid_settings(openadr=(ven_settings,)), store, sink)
    await service.start()
    ven = GridVen(ven_settings, service)
    await ven.start()
    try:
        async with asyncio.timeout(10):
            await ven.registered.wait()
        yield VenSetup(vtn, service, ven, sink)
    finally:
        await ven.stop()
        await service.stop()
        await store.close()
        await vtn.stop()


async def test_events_levels_setpoints_cancel_opt_out_and_reports(ven_setup: VenSetup) -> None:
    s = ven_setup
    # SIMPLE level 2 -> the budget configured for level 2
    e1 = s.vtn.send(s.ven_id, "simple", "level", [2])
    await until(lambda: s.sink.budget("A") == 500_000)
    await until(lambda: s.vtn.opts.get(e1) == "optIn")
    # LOAD_DISPATCH setpoint in kW (no item base), lower: it wins
    e2 = s.vtn.send(s.ven_id, "LOAD_DISPATCH", "setpoint", [300])
    await until(lambda: s.sink.budget("A") == 300_000)
    await until(lambda: s.vtn.opts.get(e2) == "optIn")  # the opt reply may trail the budget
    # ... and in MW with an item base
    e3 = s.vtn.send(s.ven_id, "LOAD_DISPATCH", "setpoint", [0.2], measurement={
        "name": "powerReal", "description": "RealPower", "unit": "W", "scale": "M",
        "power_attributes": PowerAttributes(hertz=50, voltage=230, ac=True)})
    await until(lambda: s.sink.budget("A") == 200_000)
    # the VTN cancels both setpoints: back to level 2
    s.vtn.cancel(s.ven_id, e3)
    s.vtn.cancel(s.ven_id, e2)
    await until(lambda: s.sink.budget("A") == 500_000)
    # a price signal cannot be followed: opt out, and say why in an oadrCreateOpt
    e4 = s.vtn.send(s.ven_id, "ELECTRICITY_PRICE", "price", [0.31])
    await until(lambda: s.vtn.opts.get(e4) == "optOut")
    await until(lambda: any(o["event_id"] == e4 for o in s.vtn.opt_reasons))
    opt = next(o for o in s.vtn.opt_reasons if o["event_id"] == e4)
    assert opt["opt_type"] == "optOut" and opt["opt_reason"] == "notParticipating"
    assert s.sink.budget("A") == 500_000
    # site power goes back to the VTN as a RealPower telemetry report
    s.sink.power["A"] = (time.time(), 432_100.0)
    await until(lambda: any(v == 432_100.0 for _, v in s.vtn.reports["A"]), 6)
    # the audit trail has the messages, opts and commands of the channel
    await s.service.flush()
    rows = [r for r in await s.service.store.audit(site="A") if r.channel == "openadr"]
    kinds = {r.kind for r in rows}
    assert {"received", "opt", "applied", "ack", "cancelled"} <= kinds
    opts = [r.detail["opt"] for r in rows if r.kind == "opt"]
    assert opts.count("optOut") == 1 and opts.count("optIn") >= 4


async def test_silent_vtn_falls_back_to_safe(tmp_path: Path) -> None:
    """The VTN goes away: polls fail, the link is silent, the safe budget applies."""
    vtn = TestVtn(poll_s=1)
    url = await vtn.start()
    settings = VenSettings(site="A", vtn_url=url, ven_name="siteA", simple_levels_kw=LEVELS_KW)
    store = open_grid_store(f"sqlite://{tmp_path}/ledger.db")
    await store.migrate()
    sink = RecordingSink()
    from miners.grid.timeline import SiteLimits

    service = GridService(grid_settings(sites=(SiteLimits("A", 1e6, 4e5, 2.5),),
                                        openadr=(settings,)), store, sink)
    await service.start()
    ven = GridVen(settings, service)
    await ven.start()
    try:
        async with asyncio.timeout(10):
            await ven.registered.wait()
        await asyncio.sleep(3)  # polls every second keep the link alive
        assert sink.budget("A") == 1_000_000
        await vtn.stop()
        await until(lambda: sink.budget("A") == 400_000, 8)
    finally:
        await ven.stop()
        await service.stop()
        await store.close()


def oadr_event(signal_name: str, signal_type: str, values: list[float], *,
               measurement: dict | None = None, duration_s: float = 600) -> dict:
    start = datetime(2030, 1, 1, tzinfo=UTC)
    return {
        "event_descriptor": {"event_id": "E", "modification_number": 0},
        "active_period": {"dtstart": start, "duration": timedelta(seconds=duration_s)},
        "event_signals": [{
            "signal_name": signal_name, "signal_type": signal_type,
            **({"measurement": measurement} if measurement else {}),
            "intervals": [{"dtstart": start + timedelta(seconds=i * duration_s),
                           "duration": timedelta(seconds=duration_s), "signal_payload": v}
                          for i, v in enumerate(values)]}],
    }


def test_event_mapping_vectors() -> None:
    args = {"site": "A", "base_w": 1e6, "levels_kw": LEVELS_KW, "issued_by": "v", "now": 0.0}
    events = event_to_grid(oadr_event("SIMPLE", "level", [1, 3]), **args)
    assert [(e.event_id, e.limit_w, e.end - e.start) for e in events] == [
        ("oadr-E-0-0", 800e3, 600), ("oadr-E-0-1", 0.0, 600)]
    assert events[1].start - events[0].start == 600
    assert event_to_grid(oadr_event("LOAD_DISPATCH", "delta", [250]), **args)[0].limit_w == 750e3
    kw = {"name": "powerReal", "unit": "W", "scale": "k"}
    assert event_to_grid(oadr_event("LOAD_DISPATCH", "setpoint", [400], measurement=kw),
                         **args)[0].limit_w == 400e3
    open_ended = event_to_grid(oadr_event("simple", "level", [2], duration_s=0), **args)[0]
    assert open_ended.end is None
    for bad, reason in [
        (oadr_event("simple", "level", [4]), "SIMPLE level 4"),
        (oadr_event("simple", "level", [1.5]), "SIMPLE level 1.5"),
        (oadr_event("LOAD_DISPATCH", "setpoint", [-1]), "negative"),
        (oadr_event("LOAD_DISPATCH", "delta", [-1]), "negative"),
        (oadr_event("LOAD_DISPATCH", "setpoint", [1], measurement={"unit": "Wh"}), "not power"),
        (oadr_event("LOAD_CONTROL", "x-loadControlCapacity", [1]), "not supported"),
    ]:
        with pytest.raises(Refusal, match=reason):
            event_to_grid(bad, **args)
    with pytest.raises(Refusal, match="not configured"):
        event_to_grid(oadr_event("simple", "level", [1]), **{**args, "levels_kw": ()})
