"""The grid store on SQLite and PostgreSQL (fresh schema per test), and the timeline
surviving a restart and a kill mid-event."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

from grid.grid_helpers import RecordingSink, grid_settings

from miners.grid.service import GridService
from miners.grid.store import AuditRow, open_grid_store
from miners.grid.timeline import GridEvent
from pool.ledger import open_ledger

CHILD = Path(__file__).with_name("crash_child.py")


async def test_round_trip(ledger_url: str) -> None:
    store = open_grid_store(ledger_url)
    await store.migrate()
    await store.migrate()  # idempotent
    try:
        e1 = GridEvent("e1", "A", 500_000.0, 100.0, 200.0, 10.0, None, "http", "tso", 90.0)
        e2 = GridEvent("e2", "B", 0.0, 300.0, None, None, 5.0, "openadr", "ven", 95.0)
        rows = [AuditRow(90.0, "A", "received", "http", "tso", "e1", {"body": {"x": [1, 2]}})]
        await store.save_event(e1, rows)
        await store.save_event(e2)
        assert await store.load_events(0) == [e1, e2]
        assert await store.load_events(250) == [e2]  # e1 ended at 200
        e1b = GridEvent("e1", "A", 400_000.0, 100.0, 200.0, created=90.0, cancelled=150.0,
                        promised=120.0)
        await store.save_event(e1b)
        assert await store.load_events(0) == [e1b, e2]
        assert await store.load_events(160) == [e2]  # cancelled at 150
        await store.save_contacts({"A": 10.0, "B": 20.0})
        await store.save_contacts({"A": 30.0})
        assert await store.load_contacts() == {"A": 30.0, "B": 20.0}
        await store.append_audit([AuditRow(95.0, "B", "budget", "timer", detail={"w": 1.5})])
        audit = await store.audit()
        assert [(r.kind, r.site, r.detail) for r in audit] == [
            ("received", "A", {"body": {"x": [1, 2]}}), ("budget", "B", {"w": 1.5})]
        assert audit[0].seq < audit[1].seq
        assert [r.kind for r in await store.audit(site="B")] == ["budget"]
        assert await store.audit(since=94) == audit[1:]
    finally:
        await store.close()


async def test_lives_beside_the_ledger(ledger_url: str) -> None:
    ledger = open_ledger(ledger_url)
    await ledger.migrate()
    store = open_grid_store(ledger_url)
    await store.migrate()
    await ledger.close()
    ledger = open_ledger(ledger_url)
    await ledger.migrate()  # the ledger's own versions are untouched by the grid's
    await ledger.close()
    await store.close()


async def test_restart_mid_event_keeps_it_in_force(ledger_url: str) -> None:
    settings = grid_settings()
    store = open_grid_store(ledger_url)
    await store.migrate()
    first = GridService(settings, store, RecordingSink())
    await first.start()
    now = time.time()
    event = GridEvent("mid", "A", 300_000.0, now - 1, now + 3600, created=now - 1)
    ack = await first.submit(event, channel="http", actor="tso")
    await first.stop()
    await store.close()

    store = open_grid_store(ledger_url)
    sink = RecordingSink()
    second = GridService(settings, store, sink)
    await second.start()
    try:
        assert second.budget("A").watts == 300_000
        assert second.budget("A").binding == ("mid",)
        assert sink.budget("A") == 300_000  # sent to the fleet at start
        restored = second.timeline("A").get("mid")
        assert restored is not None and restored.promised == ack.under_limit_by
        await second.flush()
        kinds = [r.kind for r in await store.audit(site="A")]
        assert kinds[:3] == ["received", "applied", "ack"]
    finally:
        await second.stop()
        await store.close()


async def test_killed_after_the_ack_keeps_the_event(ledger_url: str, tmp_path: Path) -> None:
    """SIGKILL the process right after it acknowledged: the event is on disk."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(CHILD), ledger_url, str(tmp_path),
        stdout=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONPATH": os.getcwd()})
    try:
        async with asyncio.timeout(30):
            line = b""
            while not line.startswith(b"ACK "):  # skip the child's log lines
                line = await proc.stdout.readline()
                assert line, "the child exited before acknowledging"
        ack = json.loads(line[4:])
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    store = open_grid_store(ledger_url)
    try:
        events = await store.load_events(0)
        assert [e.event_id for e in events] == [ack["event_id"]]
        assert events[0].promised == ack["under_limit_by"]
    finally:
        await store.close()
