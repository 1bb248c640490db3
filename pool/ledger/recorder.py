"""The batching share recorder: "acknowledged ⇒ durable".

`await recorder.record(share)` returns only once the share is durable: committed to the
ledger database, or — while the database cannot take writes — appended and fsync'd to the
local journal. The Stratum session awaits it before answering `true`, so a share the miner
saw accepted survives a crash (SIGKILL, power cut) of the pool at any instant.

The writer task takes whatever shares are queued (after waiting `linger_ms` for more, up to
`max_batch`) and commits them in one transaction, so the cost of a commit (an fsync) is
shared by every share that arrived meanwhile; the queue is bounded by `max_pending`.

When a commit fails with LedgerUnavailableError, or hangs past `commit_timeout_s`, the
recorder switches to the journal: that batch and every later one is appended there and
acknowledged. A replayer task
retries the database (backoff from `retry_min_s` to `retry_max_s`) and moves the journal
into it a chunk at a time while the writer keeps journaling (so a hung database never
stalls acks); once everything journaled is committed it empties the journal, and the writer
commits to the database again. At start, a journal left by a crash is replayed first.
Replays are idempotent: the ledger skips share_ids it already holds.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog

from pool import metrics
from pool.errors import LedgerBusyError, LedgerError, LedgerUnavailableError
from pool.ledger.journal import ShareJournal
from pool.ledger.store import Ledger, ShareRecord

log = structlog.get_logger(__name__)

MAX_BATCH = 2000  # shares per transaction
LINGER_MS = 1.0  # wait after the first queued share for others to join its batch (ms)
MAX_PENDING = 50_000  # shares queued but not yet durable
RECORD_TIMEOUT_S = 10.0  # deadline of record(): queueing plus commit (s)
COMMIT_TIMEOUT_S = 3.0  # a batch commit slower than this counts as an outage: journal it (s)
JOURNAL_MAX_BYTES = 1 << 30  # journal size bound (~4 M shares); past it shares are refused
RETRY_MIN_S = 0.25  # first database retry after a failure (s), doubling ...
RETRY_MAX_S = 10.0  # ... up to this (s)
REPLAY_CHUNK = 5000  # journaled shares per replay transaction
STOP_TIMEOUT_S = 30.0  # how long stop() waits for queued shares to become durable (s)
EXPIRY_CHECKS_PER_TIMEOUT = 4  # submit() deadlines are checked this often per record timeout

_Item = tuple[ShareRecord, asyncio.Future[None]]


class ShareRecorder:
    """Owns the writer and replayer tasks; `start()` before `record()`, `stop()` at the end."""

    def __init__(
        self,
        ledger: Ledger,
        *,
        journal_path: Path | None = None,
        max_batch: int = MAX_BATCH,
        linger_ms: float = LINGER_MS,
        max_pending: int = MAX_PENDING,
        record_timeout_s: float = RECORD_TIMEOUT_S,
        commit_timeout_s: float = COMMIT_TIMEOUT_S,
        journal_max_bytes: int = JOURNAL_MAX_BYTES,
        retry_min_s: float = RETRY_MIN_S,
        retry_max_s: float = RETRY_MAX_S,
        replay_chunk: int = REPLAY_CHUNK,
    ) -> None:
        self.ledger = ledger
        self.journal = (
            ShareJournal(journal_path, max_bytes=journal_max_bytes) if journal_path else None
        )
        self.max_batch = max_batch
        self.linger_s = linger_ms / 1000
        self.record_timeout_s = record_timeout_s
        self.commit_timeout_s = commit_timeout_s
        self.retry_min_s = retry_min_s
        self.retry_max_s = retry_max_s
        self.replay_chunk = replay_chunk
        self._queue: asyncio.Queue[_Item] = asyncio.Queue(maxsize=max_pending)
        self._writer: asyncio.Task[None] | None = None
        self._replayer: asyncio.Task[None] | None = None
        self._journal_lock = asyncio.Lock()  # appends vs. the replayer emptying the journal
        self._degraded = False  # True: new shares go to the journal
        self._replay_offset = 0  # journal bytes already committed to the database
        # submit()'s futures in submission order with their deadlines (monotonic s)
        self._deadlines: collections.deque[tuple[float, asyncio.Future[None]]] = (
            collections.deque())
        self._expirer: asyncio.Task[None] | None = None
        self.batches = 0  # database transactions of the writer
        self.committed = 0  # shares acknowledged after a database commit
        self.journaled = 0  # shares acknowledged after a journal fsync
        self.replayed = 0  # journaled shares since committed to the database

    def log_settings(self) -> None:
        log.info("ledger_recorder_settings", max_batch=self.max_batch,
                 linger_ms=self.linger_s * 1000, max_pending=self._queue.maxsize,
                 record_timeout_s=self.record_timeout_s, commit_timeout_s=self.commit_timeout_s,
                 journal=str(self.journal.path) if self.journal else None,
                 journal_max_bytes=self.journal.max_bytes if self.journal else None)

    @property
    def degraded(self) -> bool:
        return self._degraded

    @property
    def pending(self) -> int:
        """Shares queued, not yet durable."""
        return self._queue.qsize()

    @property
    def journal_bytes(self) -> int:
        return self.journal.size if self.journal else 0

    async def start(self) -> None:
        if self.journal is not None:
            await asyncio.to_thread(self.journal.open)
            if self.journal.size:
                log.warning("ledger_journal_found", path=str(self.journal.path),
                            bytes=self.journal.size)
                self._degraded = True
                try:
                    await self._replay_all()
                except LedgerUnavailableError as err:
                    log.warning("ledger_unavailable_at_start", error=str(err))
                    self._replayer = asyncio.create_task(self._replay_loop(),
                                                         name="share-replayer")
        self._writer = asyncio.create_task(self._write_loop(), name="share-recorder")
        self._expirer = asyncio.create_task(self._expire_loop(), name="share-expirer")

    async def stop(self) -> None:
        """Make every queued share durable (database or journal), then stop."""
        if self._writer is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await self._queue.join()
        for task in (self._writer, self._replayer, self._expirer):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._writer = self._replayer = self._expirer = None
        while not self._queue.empty():  # only after the timeout: never acknowledged
            _, future = self._queue.get_nowait()
            if not future.done():
                future.set_exception(LedgerBusyError("share recorder stopped"))
        if self.journal is not None:
            self.journal.close()

    def status(self) -> dict[str, Any]:
        return {
            "degraded": self._degraded,
            "pending": self._queue.qsize(),
            "journal_bytes": self.journal.size if self.journal else 0,
            "batches": self.batches,
            "committed": self.committed,
            "journaled": self.journaled,
            "replayed": self.replayed,
        }

    async def record(self, share: ShareRecord) -> None:
        """Return once `share` is durable; LedgerBusyError / LedgerError if it is not (then
        it must not be acknowledged to the miner)."""
        if self._writer is None:
            raise LedgerError("share recorder is not running")
        share.check()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(self.record_timeout_s):
                await self._queue.put((share, future))
                await future  # a timeout cancels only this wait; the batch goes on
        except TimeoutError:
            raise LedgerBusyError(
                f"share {share.share_id} not durable within {self.record_timeout_s:g} s"
            ) from None

    def submit(self, share: ShareRecord) -> asyncio.Future[None]:
        """record() without a coroutine per share, for the Stratum hot path: queue `share`
        now and return a future that resolves once it is durable, or fails with
        LedgerBusyError (queue full, or not durable within `record_timeout_s`) or
        LedgerError. Raises LedgerBusyError at once when the queue is full."""
        if self._writer is None:
            raise LedgerError("share recorder is not running")
        share.check()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait((share, future))
        except asyncio.QueueFull:
            raise LedgerBusyError(
                f"{self._queue.maxsize} shares already wait for the ledger") from None
        self._deadlines.append((time.monotonic() + self.record_timeout_s, future))
        return future

    async def _expire_loop(self) -> None:
        """Fail submit() futures past their deadline (the share stays queued and is still
        stored; it is only no longer acknowledged), and forget the resolved ones."""
        deadlines = self._deadlines
        while True:
            await asyncio.sleep(self.record_timeout_s / EXPIRY_CHECKS_PER_TIMEOUT)
            now = time.monotonic()
            while deadlines and (deadlines[0][1].done() or deadlines[0][0] <= now):
                _, future = deadlines.popleft()
                if not future.done():
                    future.set_exception(LedgerBusyError(
                        f"share not durable within {self.record_timeout_s:g} s"))

    # -- the writer task ------------------------------------------------------------------

    async def _write_loop(self) -> None:
        while True:
            batch = await self._collect()
            try:
                await self._flush(batch)
            except Exception as err:
                # A bug, not an outage: its shares get the error (so they are not
                # acknowledged) and the writer lives on for the next batch.
                log.exception("share_recorder_failed", shares=len(batch))
                _resolve(batch, err)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _collect(self) -> list[_Item]:
        first = await self._queue.get()
        if self.linger_s > 0 and self._queue.qsize() < self.max_batch - 1:
            await asyncio.sleep(self.linger_s)
        batch = [first]
        while len(batch) < self.max_batch and not self._queue.empty():
            batch.append(self._queue.get_nowait())
        return batch

    async def _flush(self, batch: list[_Item]) -> None:
        shares = [share for share, _ in batch]
        while True:
            if not self._degraded and await self._commit(batch, shares):
                return
            async with self._journal_lock:
                if self._degraded:  # (the replayer may have just finished: then loop)
                    await self._append(batch, shares)
                    return

    async def _commit(self, batch: list[_Item], shares: list[ShareRecord]) -> bool:
        """Commit to the database; False when it is unavailable and the journal takes over."""
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.commit_timeout_s):
                await self.ledger.record_shares(shares)
        except (LedgerUnavailableError, TimeoutError) as err:
            # (after a timeout the commit may still land: the replay will skip those ids)
            log.warning("ledger_unavailable_journaling", error=str(err) or "commit timeout",
                        journal=str(self.journal.path) if self.journal else None)
            if self.journal is None:
                _resolve(batch, LedgerBusyError(f"ledger unavailable, no journal: {err}"))
                return True
            self._degraded = True
            self._replayer = asyncio.create_task(self._replay_loop(), name="share-replayer")
            return False
        except LedgerError as err:
            log.error("ledger_rejected_batch", error=str(err), shares=len(shares))
            _resolve(batch, err)
            return True
        self.batches += 1
        self.committed += len(shares)
        metrics.LEDGER_COMMIT_SECONDS.observe(time.perf_counter() - started)
        metrics.LEDGER_BATCH_SHARES.observe(len(shares))
        _resolve(batch, None)
        return True

    async def _append(self, batch: list[_Item], shares: list[ShareRecord]) -> None:
        """Journal the batch (the caller holds the journal lock) and acknowledge it."""
        assert self.journal is not None
        try:
            await asyncio.to_thread(self.journal.append, shares)
        except LedgerBusyError as err:
            _resolve(batch, err)
            return
        except OSError as err:
            log.error("ledger_journal_write_failed", error=str(err))
            _resolve(batch, LedgerBusyError(f"share journal write failed: {err}"))
            return
        self.journaled += len(shares)
        metrics.LEDGER_JOURNALED_SHARES.inc(len(shares))
        _resolve(batch, None)

    # -- the replayer task ------------------------------------------------------------------

    async def _replay_loop(self) -> None:
        delay_s = self.retry_min_s
        while self._degraded:
            await asyncio.sleep(delay_s)
            try:
                await self._replay_all()
            except LedgerUnavailableError as err:
                delay_s = min(delay_s * 2, self.retry_max_s)
                log.info("ledger_still_unavailable", error=str(err), retry_s=delay_s)

    async def _replay_all(self) -> None:
        """Commit the journal to the database chunk by chunk; when it is all in, empty it
        and send new shares to the database again. Raises LedgerUnavailableError."""
        journal = self.journal
        assert journal is not None
        while True:
            shares, offset = await asyncio.to_thread(
                journal.read, self._replay_offset, self.replay_chunk
            )
            await self._commit_replayed(shares)
            self._replay_offset = offset
            self.replayed += len(shares)
            async with self._journal_lock:
                if offset >= journal.size:
                    await asyncio.to_thread(journal.clear)
                    self._replay_offset = 0
                    self._degraded = False
                    log.info("ledger_journal_replayed", replayed=self.replayed)
                    return

    async def _commit_replayed(self, shares: Sequence[ShareRecord]) -> None:
        if not shares:
            return
        try:
            await self.ledger.record_shares(shares)
        except LedgerUnavailableError:
            raise
        except LedgerError:
            # A bad record must not block the journal forever: store the others one by one.
            for share in shares:
                try:
                    await self.ledger.record_shares([share])
                except LedgerUnavailableError:
                    raise
                except LedgerError as err:
                    log.error("ledger_journal_share_rejected", share_id=share.share_id,
                              error=str(err))


def _resolve(batch: list[_Item], error: Exception | None) -> None:
    for _, future in batch:
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
