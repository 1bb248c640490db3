"""ShareRecorder on both backends: batching, the ack guarantee through a real database
outage (journal, then replay), replay at start, and refusal when nothing is durable."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from ledger_helpers import Outage, TcpProxy, make_share, pg_schema

from pool.errors import LedgerBusyError, LedgerError
from pool.ledger import open_ledger, work_units
from pool.ledger.recorder import ShareRecorder
from pool.ledger.store import Ledger

RECOVERY_TIMEOUT_S = 15.0
POLL_S = 0.05


async def record_all(recorder: ShareRecorder, shares: list) -> None:
    async with asyncio.TaskGroup() as tg:
        for share in shares:
            tg.create_task(recorder.record(share))


async def wait_recovered(recorder: ShareRecorder) -> None:
    for _ in range(int(RECOVERY_TIMEOUT_S / POLL_S)):
        if not recorder.degraded:
            return
        await asyncio.sleep(POLL_S)
    raise AssertionError(f"recorder still degraded after {RECOVERY_TIMEOUT_S} s")


async def test_concurrent_shares_share_transactions(ledger: Ledger) -> None:
    recorder = ShareRecorder(ledger, linger_ms=2.0)
    await recorder.start()
    shares = [make_share(i, account=f"a{i % 5}") for i in range(500)]
    await record_all(recorder, shares)
    assert recorder.committed == 500
    assert recorder.batches < 50  # 500 acks, a handful of commits
    assert await ledger.known_share_ids([s.share_id for s in shares]) == {
        s.share_id for s in shares}
    await recorder.stop()


async def test_outage_journals_then_replays(outage: Outage, tmp_path: Path) -> None:
    ledger = outage.open()
    journal = tmp_path / "shares.journal"
    recorder = ShareRecorder(ledger, journal_path=journal, retry_min_s=0.05, retry_max_s=0.2)
    await recorder.start()
    now = time.time()
    before = [make_share(i, at=now) for i in range(50)]
    await record_all(recorder, before)
    await outage.down()
    during = [make_share(100 + i, at=now) for i in range(300)]
    await record_all(recorder, during)  # every one acknowledged while the database is away
    assert recorder.degraded
    assert recorder.journaled == 300
    assert journal.stat().st_size > 0
    await outage.up()
    await wait_recovered(recorder)
    after = [make_share(1000 + i, at=now) for i in range(20)]
    await record_all(recorder, after)
    await recorder.stop()

    everything = before + during + after
    assert await ledger.known_share_ids([s.share_id for s in everything]) == {
        s.share_id for s in everything}
    assert journal.stat().st_size == 0
    [stats] = await ledger.share_stats(since=now - 60)
    assert (stats.shares, stats.work) == (370, 370 * work_units(1024.0))
    await ledger.close()


async def test_journal_replayed_at_start_idempotently(outage: Outage, tmp_path: Path) -> None:
    journal = tmp_path / "shares.journal"
    now = time.time()
    shares = [make_share(i, at=now) for i in range(100)]
    await outage.down()
    first_ledger = outage.open()
    first = ShareRecorder(first_ledger, journal_path=journal, retry_min_s=60)
    await first.start()
    await record_all(first, shares)
    await first.stop()  # the pool stops (or dies) with the database still away
    await first_ledger.close()
    saved = journal.read_bytes()
    assert saved.count(b"\n") == 100

    await outage.up()
    ledger = outage.open()
    second = ShareRecorder(ledger, journal_path=journal)
    await second.start()  # replays before accepting anything
    assert not second.degraded
    assert await ledger.known_share_ids([s.share_id for s in shares]) == {
        s.share_id for s in shares}
    await second.stop()

    # A crash after the replay committed but before the journal was emptied: replay again.
    journal.write_bytes(saved)
    third = ShareRecorder(ledger, journal_path=journal)
    await third.start()
    await third.stop()
    [stats] = await ledger.share_stats(since=now - 60)
    assert stats.shares == 100  # not double counted
    assert (await ledger.totals()).cum_work == 100 * work_units(1024.0)
    await ledger.close()


async def test_without_journal_an_outage_refuses_shares(outage: Outage) -> None:
    ledger = outage.open()
    recorder = ShareRecorder(ledger, record_timeout_s=15)
    await recorder.start()
    await outage.down()
    with pytest.raises(LedgerBusyError):
        await recorder.record(make_share(1))
    await outage.up()
    await recorder.record(make_share(2))  # the next batch tries the database again
    assert await ledger.known_share_ids([make_share(1).share_id, make_share(2).share_id]) == {
        make_share(2).share_id}
    await recorder.stop()
    await ledger.close()


async def test_full_journal_refuses_shares(outage: Outage, tmp_path: Path) -> None:
    ledger = outage.open()
    recorder = ShareRecorder(ledger, journal_path=tmp_path / "j", journal_max_bytes=2000,
                             retry_min_s=60)
    await recorder.start()
    await outage.down()
    accepted = refused = 0
    for i in range(30):
        try:
            await recorder.record(make_share(i))
            accepted += 1
        except LedgerBusyError:
            refused += 1
    assert accepted > 0 and refused > 0
    assert recorder.journaled == accepted
    await recorder.stop()
    await ledger.close()


async def test_record_needs_a_running_recorder(ledger: Ledger) -> None:
    recorder = ShareRecorder(ledger)
    with pytest.raises(LedgerError, match="not running"):
        await recorder.record(make_share(1))


@pytest.mark.postgres
async def test_hung_database_is_journaled_after_the_commit_timeout(tmp_path: Path) -> None:
    """A database that stops answering (no error, no reset) costs at most commit_timeout_s
    of latency; the shares are journaled, then replayed once it answers again."""
    async with pg_schema() as url:
        parts = urlsplit(url)
        proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
        await proxy.start()
        user = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
        ledger = open_ledger(parts._replace(netloc=f"{user}127.0.0.1:{proxy.port}").geturl(),
                             op_timeout_s=20.0)
        await ledger.migrate()
        recorder = ShareRecorder(ledger, journal_path=tmp_path / "j", commit_timeout_s=0.5,
                                 retry_min_s=0.05, retry_max_s=0.2)
        await recorder.start()
        proxy.flowing.clear()
        started = time.monotonic()
        shares = [make_share(i) for i in range(50)]
        await record_all(recorder, shares)
        assert time.monotonic() - started < 5.0
        assert recorder.journaled == 50
        proxy.flowing.set()
        await wait_recovered(recorder)
        assert await ledger.known_share_ids([s.share_id for s in shares]) == {
            s.share_id for s in shares}
        await recorder.stop()
        await ledger.close()
        await proxy.stop()
