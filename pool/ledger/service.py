"""The pool's ledger side, wired together: the share recorder (acknowledged ⇒ durable), the
PPLNS planner, found blocks with their payouts, block status on every new tip, and pruning.

`LedgerService` is what the Stratum server calls per share (`record_share`, a future that
resolves once the share is durable) and per block (`block_found` while the nodes validate
it, `block_submitted` with their answers), and what the NodeSet calls on every new tip.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from pool import metrics
from pool.errors import LedgerError, NodeError, RPCError
from pool.jobs import block_subsidy_sats
from pool.ledger.blocks import BlockTracker
from pool.ledger.planner import PayoutPlanner, PlannedCoinbase
from pool.ledger.recorder import ShareRecorder
from pool.ledger.store import CONFIRMED, ORPHANED, FoundBlock, Ledger, PayoutRow, ShareRecord
from pool.ledger.store import open_ledger as open_store
from pool.node.rpc import RPCClient
from pool.payouts import CoinbasePlan
from pool.shares import Share, site_of_worker

if TYPE_CHECKING:
    from pool.config import GridpoolConfig, NodeConfig

log = structlog.get_logger(__name__)

SOLO_RAW_SHARE_MAX_AGE_S = 7 * 86400.0  # solo mode keeps raw shares a week (no window)
PRUNE_KEEP_WINDOWS = 2  # raw shares kept: this many PPLNS windows of work
PRUNE_BATCHES_PER_RUN = 10  # prune calls per run when each hits the per-call row limit
PRUNE_MAX_ROWS = 200_000  # the backends' per-call limit (sqlite.py, postgres.py)
MAX_UNRECORDED_BLOCKS = 1000  # found blocks waiting for the ledger to come back


@dataclass(slots=True)
class _UnrecordedBlock:
    block: FoundBlock
    rows: list[PayoutRow]
    results: dict[str, str | None] = field(default_factory=dict)


class NodeCaller:
    """`call(method, *params)` for the block tracker: the template node first, then the
    others (the tracker's reads are the same on every node)."""

    def __init__(self, nodes: Sequence[NodeConfig], template_node: Callable[[], str | None]):
        self._clients: dict[str, RPCClient] = {}
        for index, cfg in enumerate(nodes):
            auth = (cfg.rpc_user, cfg.rpc_password or "") if cfg.rpc_user is not None else None
            name = cfg.name or f"node{index}"
            self._clients[name] = RPCClient(cfg.rpc_url, auth=auth, cookie_path=cfg.rpc_cookie,
                                            timeout_s=cfg.timeout_s, max_concurrency=2,
                                            name=name)
        self._template_node = template_node

    async def call(self, method: str, *params: Any) -> Any:
        first = self._template_node()
        names = sorted(self._clients, key=lambda n: n != first)
        problem: NodeError = NodeError("no node configured")
        for name in names:
            try:
                return await self._clients[name].call(method, *params)
            except RPCError:
                raise  # an answer: the same everywhere
            except NodeError as err:
                problem = err
        raise problem

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()


class LedgerService:
    """Owns the ledger connection, the recorder, the planner (pplns) and the tracker."""

    def __init__(self, config: GridpoolConfig, *, pool_script: bytes | None) -> None:
        self.config = config
        self.settings = config.ledger
        self.pplns = config.payout.mode == "pplns"
        self.pool_script = pool_script
        self.ledger: Ledger | None = None
        self.recorder: ShareRecorder | None = None
        self.planner: PayoutPlanner | None = None
        self.tracker: BlockTracker | None = None
        self._caller: NodeCaller | None = None
        self._network_difficulty: Callable[[], float | None] = lambda: None
        self._unrecorded: dict[str, _UnrecordedBlock] = {}
        self._track_task: asyncio.Task[None] | None = None
        self._track_again = False
        self._prune_task: asyncio.Task[None] | None = None

    # ---- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Open and migrate the ledger, register configured payout addresses, replay a
        journal left by a crash and start recording."""
        settings = self.settings
        settings.log_settings(log)
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        self.ledger = open_store(settings.dsn(), op_timeout_s=settings.op_timeout_s)
        await self.ledger.migrate()
        for account in self.config.payout.accounts:
            await self.ledger.set_payout_address(account.name, account.address)
        journal = settings.journal_file
        self.recorder = ShareRecorder(self.ledger, journal_path=Path(journal) if journal else None,
                                      **settings.recorder_options())
        self.recorder.log_settings()
        await self.recorder.start()
        recorder = self.recorder
        metrics.LEDGER_PENDING_SHARES.set_function(lambda: recorder.pending)
        metrics.LEDGER_JOURNAL_BYTES.set_function(lambda: recorder.journal_bytes)
        metrics.LEDGER_DEGRADED.set_function(lambda: int(recorder.degraded))
        if self.pplns:
            self.planner = self._make_planner()
        log.info("ledger_ready", url=settings.redacted_url(), payout_mode=self.config.payout.mode,
                 accounts_registered=len(self.config.payout.accounts))

    def _make_planner(self) -> PayoutPlanner:
        payout = self.config.payout
        assert self.ledger is not None and self.pool_script is not None
        return PayoutPlanner(
            self.ledger, chain=self.config.network.chain, pool_script=self.pool_script,
            fee_bps=payout.fee_bps, window_multiple=payout.window_multiple,
            dust_sats=payout.dust_sats, max_coinbase_bytes=payout.max_coinbase_bytes,
            op_timeout_s=self.settings.op_timeout_s,
        )

    def follow_chain(self, nodes: Sequence[NodeConfig], template_node: Callable[[], str | None],
                     network_difficulty: Callable[[], float | None]) -> None:
        """Start tracking found blocks (call `on_new_tip` on every tip) and pruning."""
        assert self.ledger is not None
        self._caller = NodeCaller(nodes, template_node)
        self.tracker = BlockTracker(self.ledger, self._caller.call,
                                    timeout_s=self.settings.op_timeout_s)
        self._network_difficulty = network_difficulty
        self._prune_task = asyncio.create_task(self._prune_loop(), name="ledger-prune")
        self.track_soon()  # blocks found before a restart may have moved meanwhile

    async def stop(self) -> None:
        """Stop following the chain, make queued shares durable, close the ledger. (Stratum
        stops first: its block submissions, with their records, are finished by then.)"""
        tasks = [t for t in (self._track_task, self._prune_task) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.planner is not None:
            await self.planner.close()
        if self.recorder is not None:
            await self.recorder.stop()
        if self._caller is not None:
            await self._caller.close()
        if self.ledger is not None:
            await self.ledger.close()
        if self._unrecorded:
            log.error("found_blocks_not_recorded", blocks=sorted(self._unrecorded))

    # ---- shares ------------------------------------------------------------------------

    def record_share(self, share: Share) -> asyncio.Future[None]:
        """Queue an accepted share; the future resolves once it is durable (then, and only
        then, the miner may be told `true`). LedgerBusyError/LedgerError otherwise."""
        assert self.recorder is not None and share.identity is not None
        identity = share.identity
        return self.recorder.submit(ShareRecord(
            share_id=share.share_id, account=identity.account, worker=identity.worker,
            site=site_of_worker(identity.worker), difficulty=share.difficulty,
            network_difficulty=share.job.network_difficulty, time=share.received_s,
            job_id=share.job.job_id, hash_hex=share.hash_hex, is_block=share.is_block,
            solo=identity.solo or not self.pplns,
        ))

    # ---- blocks ------------------------------------------------------------------------

    async def block_found(self, share: Share) -> None:
        """Record the block (status `found`) with what its coinbase pays, settling balances
        in the same transaction; runs while the nodes validate the submission."""
        assert share.identity is not None
        job, identity = share.job, share.identity
        plan = job.payout_plan(identity.payout_script)
        planned = job.planned if identity.payout_script == job.policy.pool_script else None
        if isinstance(planned, PlannedCoinbase) and self.planner is not None:
            self.planner.settle(share.hash_hex, planned)
            rows = planned.payout_rows()
        else:
            rows = _solo_rows(identity.account, identity.solo, plan)
        template = job.template
        block = FoundBlock(
            hash_hex=share.hash_hex, height=template.height, account=identity.account,
            worker=identity.worker, site=site_of_worker(identity.worker),
            reward_sats=template.coinbase_value_sats,
            fees_sats=max(0, template.coinbase_value_sats
                          - block_subsidy_sats(template.height, self.config.network.chain)),
            pool_fee_sats=plan.pool_fee_sats, found_time=share.received_s,
            share_id=share.share_id, job_id=job.job_id,
        )
        await self._record_block(_UnrecordedBlock(block, rows))

    async def block_submitted(self, share: Share, results: dict[str, str | None]) -> None:
        """Store each node's submitblock answer."""
        pending = self._unrecorded.get(share.hash_hex)
        if pending is not None:
            pending.results.update(results)
            return
        try:
            await self._store_results(share.hash_hex, results)
        except (LedgerError, TimeoutError) as err:
            log.warning("block_submit_results_not_recorded", block_hash=share.hash_hex,
                        error=str(err) or "timeout")

    async def _record_block(self, item: _UnrecordedBlock) -> bool:
        assert self.ledger is not None
        block = item.block
        settling = (self.planner.recording(block.hash_hex) if self.planner is not None
                    else contextlib.nullcontext())
        try:
            async with asyncio.timeout(self.settings.op_timeout_s):
                async with settling:
                    await self.ledger.record_block_found(block, item.rows)
                if item.results:
                    await self._store_results(block.hash_hex, item.results)
        except (LedgerError, TimeoutError) as err:
            if len(self._unrecorded) < MAX_UNRECORDED_BLOCKS:
                self._unrecorded[block.hash_hex] = item
            log.error("block_not_recorded_will_retry", block_hash=block.hash_hex,
                      height=block.height, error=str(err) or "timeout")
            return False
        self._unrecorded.pop(block.hash_hex, None)
        log.info("block_recorded", block_hash=block.hash_hex, height=block.height,
                 account=block.account, reward_sats=block.reward_sats,
                 pool_fee_sats=block.pool_fee_sats, payout_rows=len(item.rows))
        return True

    async def _store_results(self, hash_hex: str, results: dict[str, str | None]) -> None:
        assert self.ledger is not None
        async with asyncio.timeout(self.settings.op_timeout_s):
            for node, result in results.items():
                await self.ledger.set_block_submit_result(hash_hex, node, result)

    # ---- following the chain -------------------------------------------------------------

    async def on_new_tip(self, _best_hash_hex: str) -> None:
        """NodeSet.on_new_tip callback: update block statuses in the background (the tip
        dispatcher moves on at once); tips arriving meanwhile coalesce into one more run."""
        self.track_soon()

    def track_soon(self) -> None:
        if self.tracker is None:
            return
        if self._track_task is not None and not self._track_task.done():
            self._track_again = True
        else:
            self._track_task = asyncio.create_task(self._track(), name="block-tracker")

    async def _track(self) -> None:
        assert self.tracker is not None
        again = True
        while again:
            self._track_again = False
            for item in list(self._unrecorded.values()):
                await self._record_block(item)
            try:
                changes = await self.tracker.update()
            except (NodeError, LedgerError, TimeoutError) as err:
                log.warning("block_tracking_failed", error=str(err) or "timeout")
                changes = []
            for change in changes:
                if change.status == CONFIRMED and change.old_status != CONFIRMED:
                    metrics.BLOCKS_CONFIRMED.inc()
                elif change.status == ORPHANED and change.old_status != ORPHANED:
                    metrics.BLOCKS_ORPHANED.inc()
            again = self._track_again

    async def _prune_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.prune_interval_s)
            try:
                await self.prune()
            except (LedgerError, TimeoutError) as err:
                log.warning("share_prune_failed", error=str(err) or "timeout")

    async def prune(self) -> int:
        """Delete raw shares no PPLNS window needs (twice the window's work, and older than
        raw_share_max_age_s when set; a week in solo mode)."""
        assert self.ledger is not None
        netdiff = self._network_difficulty()
        if netdiff is None:
            return 0
        keep = PRUNE_KEEP_WINDOWS * self.config.payout.window_multiple * netdiff
        max_age_s = self.settings.raw_share_max_age_s
        if max_age_s is None and not self.pplns:
            max_age_s = SOLO_RAW_SHARE_MAX_AGE_S
        deleted = 0
        for _ in range(PRUNE_BATCHES_PER_RUN):
            async with asyncio.timeout(self.settings.op_timeout_s):
                count = await self.ledger.prune_shares(keep, max_age_s=max_age_s)
            deleted += count
            if count < PRUNE_MAX_ROWS:
                break
        if deleted:
            log.info("ledger_pruned", deleted=deleted, keep_difficulty=keep, max_age_s=max_age_s)
        return deleted

    def status(self) -> dict[str, Any]:
        return {
            "url": self.settings.redacted_url(),
            "payout_mode": self.config.payout.mode,
            "recorder": self.recorder.status() if self.recorder else None,
            "pplns": self.planner.status() if self.planner else None,
            "blocks_waiting_for_ledger": len(self._unrecorded),
        }


def _solo_rows(account: str, solo: bool, plan: CoinbasePlan) -> list[PayoutRow]:
    """A solo block pays its finder's address directly: credited = paid, no balance."""
    if not solo or not plan.outputs:
        return []
    amount = plan.outputs[0].value_sats
    return [PayoutRow(account, amount, amount, account)]


