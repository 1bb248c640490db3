"""ShareRecorder.submit(): the Stratum hot path's record() without a coroutine per share.
Its future resolves only once the share is durable, fails at once when the queue is full,
and fails (never resolves true) when nothing is durable within record_timeout_s."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest
from ledger_helpers import make_share

from pool.errors import LedgerBusyError
from pool.ledger import open_ledger
from pool.ledger.recorder import ShareRecorder
from pool.ledger.store import Ledger


async def test_submit_resolves_once_durable(ledger: Ledger) -> None:
    recorder = ShareRecorder(ledger, linger_ms=2.0)
    await recorder.start()
    shares = [make_share(i) for i in range(300)]
    futures = [recorder.submit(share) for share in shares]
    assert not any(f.done() for f in futures)  # nothing is durable before a commit
    await asyncio.gather(*futures)
    assert await ledger.known_share_ids([s.share_id for s in shares]) == {
        s.share_id for s in shares}
    assert recorder.batches < 30 and recorder.pending == 0
    await recorder.stop()


async def test_submit_refuses_at_once_when_the_queue_is_full(ledger: Ledger) -> None:
    recorder = ShareRecorder(ledger, max_pending=10)
    await recorder.start()
    futures = [recorder.submit(make_share(i)) for i in range(10)]
    with pytest.raises(LedgerBusyError):
        recorder.submit(make_share(99))
    await asyncio.gather(*futures)
    await recorder.stop()


async def test_submit_fails_when_nothing_is_durable_in_time(tmp_path: Path) -> None:
    """The database is locked (and the commit waits for it longer than record_timeout_s),
    no journal: the future fails with LedgerBusyError near the deadline."""
    path = tmp_path / "ledger.db"
    ledger = open_ledger(f"sqlite://{path}", busy_timeout_s=3.0)
    await ledger.migrate()
    lock = sqlite3.connect(path, timeout=10, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    recorder = ShareRecorder(ledger, record_timeout_s=0.3, commit_timeout_s=5.0)
    await recorder.start()
    started = time.monotonic()
    future = recorder.submit(make_share(1))
    with pytest.raises(LedgerBusyError):
        await future
    assert 0.3 <= time.monotonic() - started < 1.5
    lock.close()  # the database returns: the share is still stored (just not acknowledged)
    await recorder.stop()
    assert await ledger.known_share_ids([make_share(1).share_id]) == {make_share(1).share_id}
    await ledger.close()
