"""GridService: link silence falls back to the safe budget (also across a restart), ramps
are followed tick by tick, a command that cannot be stored changes nothing, compliance is
audited."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from grid.grid_helpers import RecordingSink, grid_settings, until

from miners.grid.errors import GridStoreError
from miners.grid.service import GridService
from miners.grid.store import open_grid_store
from miners.grid.timeline import GridEvent, SiteLimits


def fast_settings(silence_s: float | None = 0.5):
    return grid_settings(sites=(SiteLimits("A", 1_000_000.0, 400_000.0, silence_s),),
                         contact_write_s=0.1)


async def start(tmp_path: Path, settings=None, sink=None) -> GridService:
    store = open_grid_store(f"sqlite://{tmp_path}/ledger.db")
    await store.migrate()
    service = GridService(settings or fast_settings(), store, sink or RecordingSink())
    await service.start()
    return service


async def stop(service: GridService) -> None:
    await service.stop()
    await service.store.close()


async def test_silence_falls_back_to_safe_and_contact_restores(tmp_path: Path) -> None:
    service = await start(tmp_path)
    sink = service.sink
    try:
        assert sink.budget("A") == 1_000_000
        await until(lambda: sink.budget("A") == 400_000, 3)
        assert service.budget("A").binding == ("safe",)
        service.touch(["A"])
        await until(lambda: sink.budget("A") == 1_000_000, 2)
        await service.flush()
        kinds = [r.kind for r in await service.store.audit(site="A")]
        assert kinds.index("fallback") < kinds.index("restored")
    finally:
        await stop(service)


async def test_silence_survives_a_restart(tmp_path: Path) -> None:
    service = await start(tmp_path, fast_settings(silence_s=60))
    service.touch(["A"])
    await service.flush()
    await stop(service)
    store = open_grid_store(f"sqlite://{tmp_path}/ledger.db")
    await store.migrate()
    await store.save_contacts({"A": time.time() - 120})  # last heard two minutes ago
    await store.close()
    sink = RecordingSink()
    service = await start(tmp_path, fast_settings(silence_s=60), sink)
    try:
        assert sink.calls[0][1] == 400_000  # safe from the first budget sent
    finally:
        await stop(service)


async def test_ramp_is_followed_tick_by_tick(tmp_path: Path) -> None:
    service = await start(tmp_path, fast_settings(silence_s=None))
    sink = service.sink
    try:
        now = time.time()
        ack = await service.submit(
            GridEvent("r", "A", 400_000.0, now, None, ramp_down_w_per_s=600_000.0, created=now),
            channel="http", actor="tso")
        assert ack.under_limit_by == pytest.approx(now + 1.0 + 2.0, abs=0.1)
        await until(lambda: sink.budget("A") == 400_000, 3)
        budgets = [w for s, w, _ in sink.calls if s == "A"]
        assert len(budgets) >= 4, budgets  # intermediate steps on the way down
        assert budgets == sorted(budgets, reverse=True)
    finally:
        await stop(service)


async def test_a_command_that_cannot_be_stored_changes_nothing(tmp_path: Path) -> None:
    service = await start(tmp_path, fast_settings(silence_s=None))
    try:
        await service.store.close()  # the database goes away
        now = time.time()
        with pytest.raises(GridStoreError):
            await service.submit(GridEvent("x", "A", 0.0, now, created=now), channel="http",
                                 actor="tso")
        assert service.timeline("A").get("x") is None
        assert service.sink.budget("A") == 1_000_000
        assert service.budget("A").watts == 1_000_000
    finally:
        await service.stop()


async def test_compliance_is_audited(tmp_path: Path) -> None:
    service = await start(tmp_path, fast_settings(silence_s=None))
    sink = service.sink
    try:
        now = time.time()
        await service.submit(GridEvent("c", "A", 500_000.0, now, now + 60, created=now),
                             channel="http", actor="tso")
        sink.power["A"] = (time.time(), 480_000.0)
        await until(lambda: service.compliance("A", "c").status == "complying")
        assert service.compliance("A", "c").samples >= 1
        await asyncio.sleep(0.3)
        await service.flush()
        rows = [r for r in await service.store.audit(site="A") if r.event_id == "c"]
        assert "compliance_complying" in [r.kind for r in rows]
    finally:
        await stop(service)
