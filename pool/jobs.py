"""Mining jobs: block templates turned into Stratum V1 work (DESIGN §5).

A `Template` is one getblocktemplate answer, parsed once: merkle branch, transactions
pre-joined for block assembly, network target. A `Job` is a template under a job id that
never repeats (even across restarts), with coinbase parts built per payout script on first
use and cached, together with the encoded mining.notify line, so a broadcast to 10,000
sessions paying the same script encodes once.

`JobManager` keeps the jobs current:
- on a new tip it first publishes an empty (coinbase-only) job for the new height, built
  without waiting for bitcoind, then the full template as soon as getblocktemplate answers;
  both are clean jobs for miners, the full one is not (the empty job's work stays valid);
- every `refresh_interval_s` it publishes a non-clean refresh (new transactions and fees);
- jobs of an old tip stay valid until one more job follows the new tip's first (grace),
  jobs of the current tip until `max_jobs_per_tip` newer ones exist.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from pool import metrics
from pool.bitcoin.coinbase import build_coinbase_parts, coinbase_with_witness
from pool.bitcoin.merkle import coinbase_merkle_branch
from pool.bitcoin.script import bip34_height_push, push_data
from pool.bitcoin.serialize import ser_compact_size
from pool.bitcoin.target import bits_to_target, difficulty_to_target, target_to_difficulty
from pool.bitcoin.tx import TxOut
from pool.errors import ConfigError, NodeError, TemplateError
from pool.payouts import CoinbasePlan, CoinbasePolicy
from pool.stratum.protocol import notification_line, prevhash_to_stratum, u32_hex
from pool.stratum.settings import check_range, settings_from_mapping

log = structlog.get_logger(__name__)

COIN_SATS = 100_000_000
INITIAL_SUBSIDY_SATS = 50 * COIN_SATS
HALVING_INTERVAL_BLOCKS = {"regtest": 150}  # chainparams nSubsidyHalvingInterval; else 210000
DEFAULT_HALVING_INTERVAL_BLOCKS = 210_000
RETARGET_INTERVAL_BLOCKS = 2016  # difficulty adjustment period (not on regtest)
# Chains whose next-block nBits is known from the previous template outside retarget
# heights; testnet3/testnet4 may switch to minimum difficulty after 20 minutes.
EMPTY_FIRST_CHAINS = ("main", "signet", "regtest")
MAX_FUTURE_NTIME_S = 7200  # consensus MAX_FUTURE_BLOCK_TIME: a share's ntime may run this far
EXTRANONCE1_SIZE = 4  # bytes, allocated per connection
MAX_COINBASE_TAG_BYTES = 64
LEFT_TIPS_KEPT = 8  # tips the pool moved away from, remembered for late templates/reorgs
NO_FEES = CoinbasePolicy()  # every coinbase pays its session's script the whole value


def block_subsidy_sats(height: int, chain: str) -> int:
    """The block reward without fees at `height` (Core's GetBlockSubsidy)."""
    halvings = height // HALVING_INTERVAL_BLOCKS.get(chain, DEFAULT_HALVING_INTERVAL_BLOCKS)
    return 0 if halvings >= 64 else INITIAL_SUBSIDY_SATS >> halvings


@dataclass(frozen=True, slots=True)
class JobSettings:
    """The `[jobs]` config table."""

    # Pushed into every coinbase scriptSig after the height (UTF-8, at most 64 bytes).
    coinbase_tag: str = "/gridpool/"
    # A non-clean job with a fresh template (new transactions, fees) this often (s).
    refresh_interval_s: float = 30.0
    # On a new tip, send a coinbase-only job at once, before getblocktemplate answers.
    empty_block_first: bool = True
    # Jobs of the current tip kept for share validation; older ones answer "job not found".
    max_jobs_per_tip: int = 32
    # After a failed getblocktemplate, retry after this long (s).
    template_retry_s: float = 1.0
    # Coinbase transaction version (1 or 2).
    coinbase_version: int = 2

    def __post_init__(self) -> None:
        if len(self.coinbase_tag.encode()) > MAX_COINBASE_TAG_BYTES:
            raise ConfigError("coinbase_tag", f"at most {MAX_COINBASE_TAG_BYTES} bytes of UTF-8")
        check_range("refresh_interval_s", self.refresh_interval_s, 0.05, 3600)
        check_range("max_jobs_per_tip", self.max_jobs_per_tip, 1, 1024)
        check_range("template_retry_s", self.template_retry_s, 0.01, 600)
        check_range("coinbase_version", self.coinbase_version, 1, 2)

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], *, key: str = "jobs") -> JobSettings:
        """Parse the `[jobs]` config table; errors name `jobs.<field>`."""
        return settings_from_mapping(cls, raw, key)


@dataclass(frozen=True, slots=True, eq=False)
class Template:
    """One block template, parsed once. Hashes are internal byte order (`_le`)."""

    height: int
    prev_hash_le: bytes
    version: int
    bits: int
    curtime: int
    mintime: int
    coinbase_value_sats: int
    witness_commitment_script: bytes | None  # the BIP141 output script, if the block needs it
    tx_count: int  # without the coinbase
    tx_blob: bytes  # the non-coinbase transactions, serialized and concatenated
    txids_le: tuple[bytes, ...]  # of those transactions, in block order
    branch: tuple[bytes, ...]
    fetched_s: float  # time.monotonic() when it was fetched or built

    @property
    def prev_hash_hex(self) -> str:
        return self.prev_hash_le[::-1].hex()

    @classmethod
    def from_gbt(cls, gbt: Mapping[str, Any]) -> Template:
        """Parse a getblocktemplate answer; TemplateError names a bad or missing field."""
        try:
            txs = gbt["transactions"]
            txids_le = [bytes.fromhex(tx["txid"])[::-1] for tx in txs]
            blob = b"".join(bytes.fromhex(tx["data"]) for tx in txs)
            commitment = gbt.get("default_witness_commitment")
            template = cls(
                height=_int(gbt["height"]),
                prev_hash_le=_hash32(gbt["previousblockhash"]),
                version=_int(gbt["version"]) & 0xFFFFFFFF,
                bits=int(gbt["bits"], 16),
                curtime=_int(gbt["curtime"]),
                mintime=_int(gbt.get("mintime", gbt["curtime"])),
                coinbase_value_sats=_int(gbt["coinbasevalue"]),
                witness_commitment_script=bytes.fromhex(commitment) if commitment else None,
                tx_count=len(txs),
                tx_blob=blob,
                txids_le=tuple(txids_le),
                branch=tuple(coinbase_merkle_branch(txids_le)),
                fetched_s=time.monotonic(),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise TemplateError(
                f"unusable getblocktemplate answer: {type(err).__name__} {err}") from err
        if any(len(txid) != 32 for txid in txids_le):
            raise TemplateError("unusable getblocktemplate answer: a txid is not 32 bytes")
        return template

    def empty_successor(self, *, prev_hash_le: bytes, height: int, chain: str,
                        ntime: int, mintime: int) -> Template:
        """A coinbase-only template on a new tip, from what is known before bitcoind answers:
        same version and nBits, subsidy only, no transactions, no witness commitment."""
        return Template(
            height=height, prev_hash_le=prev_hash_le, version=self.version, bits=self.bits,
            curtime=ntime, mintime=mintime,
            coinbase_value_sats=block_subsidy_sats(height, chain),
            witness_commitment_script=None, tx_count=0, tx_blob=b"", txids_le=(), branch=(),
            fetched_s=time.monotonic(),
        )


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {value!r:.40}")
    return value


def _hash32(hex_text: Any) -> bytes:
    raw = bytes.fromhex(hex_text)
    if len(raw) != 32:
        raise ValueError(f"expected a 32-byte hash, got {len(raw)} bytes")
    return raw[::-1]


@dataclass(frozen=True, slots=True)
class CoinbaseLayout:
    """What every coinbase of this pool shares: tag, extranonce sizes, tx version."""

    tag: bytes
    extranonce1_size: int
    extranonce2_size: int
    version: int

    def parts(self, template: Template, payout: bytes | CoinbasePlan) -> tuple[bytes, bytes]:
        """coinb1/coinb2 paying one script the whole value, or a plan's outputs."""
        if isinstance(payout, CoinbasePlan):
            outputs = list(payout.outputs)
        else:
            outputs = [TxOut(template.coinbase_value_sats, payout)]
        if template.witness_commitment_script is not None:
            outputs.append(TxOut(0, template.witness_commitment_script))
        return build_coinbase_parts(
            height=template.height, tag=self.tag, extranonce1_size=self.extranonce1_size,
            extranonce2_size=self.extranonce2_size, outputs=outputs, version=self.version,
        )

    def script_sig_bytes(self, height: int) -> int:
        """Length of the coinbase scriptSig at `height` (for the payout size bound)."""
        tag = push_data(self.tag) if self.tag else b""
        return (len(bip34_height_push(height)) + len(tag) + 1
                + self.extranonce1_size + self.extranonce2_size)


@dataclass(slots=True, eq=False)
class CoinbaseParts:
    """coinb1/coinb2 for one payout script, and (while the job is current) the encoded
    mining.notify that carries them."""

    coinb1: bytes
    coinb2: bytes
    notify_line: bytes | None = None


class Job:
    """A template under a job id. `seen_hashes` (duplicate detection) is shared by every
    job on the same tip, so the same header submitted under two job ids is a duplicate.

    Memory: coinb1 is the same for every payout script and kept once; per script a job
    keeps coinb2 and, only while it is the current job, its notify line (see retire())."""

    __slots__ = ("_coinb1", "_network_difficulty", "_parts", "block_target", "clean", "job_id",
                 "kind", "layout", "ntime", "planned", "policy", "seen_hashes", "template",
                 "tip_seen_s")

    def __init__(self, *, job_id: str, template: Template, layout: CoinbaseLayout, clean: bool,
                 kind: str, ntime: int, block_target: int, seen_hashes: set[bytes],
                 tip_seen_s: float | None, policy: CoinbasePolicy = NO_FEES,
                 planned: PlannedPayout | None = None) -> None:
        self.job_id = job_id
        self.policy = policy  # solo fee split, and which script is the pool's
        self.planned = planned  # the PPLNS plan paid to the pool's script, if any
        self.template = template
        self.layout = layout
        self.clean = clean
        self.kind = kind  # "empty", "full" or "refresh" (the metric label)
        self.ntime = ntime
        self.block_target = block_target  # a hash at or under it is a block candidate
        self.seen_hashes = seen_hashes
        self.tip_seen_s = tip_seen_s  # monotonic time the tip behind a clean job was seen
        self._parts: dict[bytes, CoinbaseParts] = {}
        self._coinb1: bytes | None = None
        self._network_difficulty: float | None = None

    @property
    def mintime(self) -> int:
        return self.template.mintime

    @property
    def max_ntime(self) -> int:
        return self.ntime + MAX_FUTURE_NTIME_S

    @property
    def network_difficulty(self) -> float:
        """The difficulty a share needs to be a block (simulated on a demo regtest)."""
        if self._network_difficulty is None:
            self._network_difficulty = target_to_difficulty(self.block_target)
        return self._network_difficulty

    def payout_plan(self, payout_script: bytes) -> CoinbasePlan:
        """What the coinbase of a session paid by `payout_script` pays: the job's PPLNS
        plan for the pool's script, else the policy's solo split."""
        if self.planned is not None and payout_script == self.policy.pool_script:
            return self.planned.plan
        return self.policy.plan_for(self.template.coinbase_value_sats, payout_script)

    def parts_for(self, payout_script: bytes) -> CoinbaseParts:
        """Coinbase parts paying `payout_script` (built once per script, then cached)."""
        parts = self._parts.get(payout_script)
        if parts is None:
            coinb1, coinb2 = self.layout.parts(self.template, self.payout_plan(payout_script))
            if self._coinb1 is None:
                self._coinb1 = coinb1
            parts = CoinbaseParts(self._coinb1, coinb2)
            self._parts[payout_script] = parts
        return parts

    def notify_params(self, payout_script: bytes, *, clean: bool | None = None) -> list[Any]:
        """mining.notify params for a session paid by `payout_script`."""
        parts = self.parts_for(payout_script)
        t = self.template
        return [
            self.job_id, prevhash_to_stratum(t.prev_hash_le), parts.coinb1.hex(),
            parts.coinb2.hex(), [h.hex() for h in t.branch], u32_hex(t.version),
            u32_hex(t.bits), u32_hex(self.ntime), self.clean if clean is None else clean,
        ]

    def notify_line(self, payout_script: bytes, *, clean: bool | None = None) -> bytes:
        """The encoded mining.notify, cached per script so a broadcast encodes once per
        script; `clean` overrides the job's flag (a resend after a difficulty change is
        never clean) and is not cached."""
        if clean is not None and clean != self.clean:
            return notification_line("mining.notify", self.notify_params(payout_script,
                                                                         clean=clean))
        parts = self.parts_for(payout_script)
        if parts.notify_line is None:
            parts.notify_line = notification_line("mining.notify",
                                                  self.notify_params(payout_script))
        return parts.notify_line

    def retire(self) -> None:
        """No longer the current job: forget the notify lines (shares only need coinb2)."""
        for parts in self._parts.values():
            parts.notify_line = None

    def block_bytes(self, header80: bytes, coinbase_nowit: bytes) -> bytes:
        """The full block for submitblock; the coinbase carries the witness reserved value
        when the block commits to witnesses (BIP141)."""
        t = self.template
        coinbase = (coinbase_with_witness(coinbase_nowit)
                    if t.witness_commitment_script is not None else coinbase_nowit)
        return header80 + ser_compact_size(t.tx_count + 1) + coinbase + t.tx_blob


class JobIdSource:
    """Job ids that never repeat, even across restarts: each id is max(previous + 1,
    now in milliseconds), so a restarted pool starts above every id it issued before unless
    it issued more than 1,000 jobs per second on average."""

    __slots__ = ("_clock", "_last")

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._last = 0

    def next(self) -> str:
        self._last = max(self._last + 1, int(self._clock() * 1000))
        return f"{self._last:x}"


class TemplateSource(Protocol):
    """What JobManager needs from pool.node.NodeSet."""

    async def get_block_template(self) -> dict[str, Any]: ...

    def on_new_tip(self, callback: Callable[[str], Any]) -> None: ...


class PlannedPayout(Protocol):
    """A PPLNS plan as a job keeps it (pool.ledger.planner.PlannedCoinbase)."""

    plan: CoinbasePlan


class PlanSource(Protocol):
    """What JobManager needs from pool.ledger.planner.PayoutPlanner (pplns mode)."""

    def refresh_task(self, network_difficulty: float) -> asyncio.Task[Any]: ...

    def plan(self, coinbasevalue: int, *, script_sig_bytes: int,
             witness_commitment: bool) -> PlannedPayout: ...

    async def plan_async(self, coinbasevalue: int, *, script_sig_bytes: int,
                         witness_commitment: bool) -> PlannedPayout: ...

    def prepare(self, coinbasevalue: int, *, script_sig_bytes: int,
                witness_commitment: bool) -> None: ...


JobCallback = Callable[[Job], None]


class JobManager:
    """Keeps the current job fresh from `nodes` and tells subscribers about each new one.

    `on_job` callbacks run synchronously when a job is published (the Stratum server
    writes the notify lines there); `get(job_id)` serves share validation.
    """

    def __init__(
        self,
        nodes: TemplateSource,
        settings: JobSettings,
        *,
        chain: str,
        extranonce2_size: int,
        simulated_difficulty: float | None = None,
        clock: Callable[[], float] = time.time,
        policy: CoinbasePolicy | None = None,
        planner: PlanSource | None = None,
        window_read_timeout_s: float = 1.0,
    ) -> None:
        self.nodes = nodes
        self.settings = settings
        self.chain = chain
        self.simulated_difficulty = simulated_difficulty
        self.policy = policy or NO_FEES
        # pplns: every job's coinbase for the pool's script comes from the planner, whose
        # ledger read of the window runs beside getblocktemplate (waited for at most
        # window_read_timeout_s, else the previous window is used).
        self.planner = planner
        self.window_read_timeout_s = window_read_timeout_s
        self.layout = CoinbaseLayout(settings.coinbase_tag.encode(), EXTRANONCE1_SIZE,
                                     extranonce2_size, settings.coinbase_version)
        self._check_layout()
        self._clock = clock
        self._ids = JobIdSource(clock)
        self._jobs: dict[str, Job] = {}
        self._retiring: list[str] = []  # old-tip job ids, dropped when the next job comes
        # Tips the pool moved away from -> the height of the block built on them.
        self._left_tips: collections.OrderedDict[bytes, int] = collections.OrderedDict()
        self._current: Job | None = None
        self._last_full: Template | None = None
        self._callbacks: list[JobCallback] = []
        self._lock = asyncio.Lock()  # one template fetch-and-publish at a time
        self._wake = asyncio.Event()
        self._failing_since: float | None = None
        self._last_attempt_s = 0.0
        self._last_error: str | None = None
        self._task: asyncio.Task[None] | None = None

    def _check_layout(self) -> None:
        # Fail at start, not at the first block: the largest height push must still fit.
        try:
            self.layout.parts(
                Template(0x7FFFFFFF, bytes(32), 0, 0, 0, 0, 0, None, 0, b"", (), (), 0.0), b"\x51")
        except ValueError as err:
            raise ConfigError("jobs.coinbase_tag", str(err)) from err

    # ---- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Subscribe to new tips and start the refresh loop (the first template is fetched
        at once; a node that is down only delays it)."""
        self.nodes.on_new_tip(self._on_tip)
        metrics.TEMPLATE_AGE_SECONDS.set_function(self.template_age_s)
        self._task = asyncio.create_task(self._run(), name="jobs-refresh")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def on_job(self, callback: JobCallback) -> None:
        self._callbacks.append(callback)

    # ---- queries -----------------------------------------------------------------------

    @property
    def current(self) -> Job | None:
        return self._current

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def template_age_s(self) -> float:
        return time.monotonic() - self._current.template.fetched_s if self._current else 0.0

    def status(self) -> dict[str, Any]:
        job = self._current
        return {
            "height": job.template.height if job else None,
            "job_id": job.job_id if job else None,
            "job_kind": job.kind if job else None,
            "transactions": job.template.tx_count if job else None,
            "template_age_s": round(self.template_age_s(), 3),
            "jobs_kept": len(self._jobs),
            "last_error": self._last_error,
            "simulated_difficulty": self.simulated_difficulty,
        }

    # ---- template flow -----------------------------------------------------------------

    async def refresh(self, *, tip_seen_s: float | None = None) -> Job:
        """Fetch a template and publish it: clean when the tip changed, else a refresh
        (or the full job that follows an empty one). A template on a tip the pool already
        left (fetched while the new tip arrived) is dropped. NodeError/TemplateError
        propagate."""
        async with self._lock:
            self._last_attempt_s = time.monotonic()
            window = self._read_window(self._current.template if self._current else None)
            template = Template.from_gbt(await self.nodes.get_block_template())
            current = self._current
            if current is not None and template.prev_hash_le in self._left_tips:
                # Fetched before a new tip whose empty job is already out: not worth a job.
                log.debug("stale_template_ignored", height=template.height)
                return current
            planned = await self._plan(template, window or self._read_window(template))
            if current is not None and template.prev_hash_le == current.template.prev_hash_le:
                kind = "full" if current.kind == "empty" else "refresh"
                job = self._make_job(template, clean=False, kind=kind, tip_seen_s=tip_seen_s,
                                     planned=planned)
            else:
                job = self._make_job(template, clean=True, kind="full",
                                     tip_seen_s=tip_seen_s or template.fetched_s,
                                     planned=planned)
            self._last_full = template
            self._publish(job)
            self._recovered()
            return job

    def network_difficulty(self, template: Template) -> float:
        """The network difficulty behind PPLNS's N (the simulated one on a demo regtest)."""
        if self.simulated_difficulty is not None:
            return self.simulated_difficulty
        return target_to_difficulty(bits_to_target(template.bits))

    def _read_window(self, template: Template | None) -> asyncio.Task[Any] | None:
        """Start (or join) the planner's ledger read of the window, beside the template
        fetch; None without a planner or a template to take the difficulty from."""
        if self.planner is None or template is None:
            return None
        return self.planner.refresh_task(self.network_difficulty(template))

    async def _plan(self, template: Template,
                    window: asyncio.Task[Any] | None) -> PlannedPayout | None:
        if self.planner is None:
            return None
        if window is not None and self.window_read_timeout_s > 0:
            await asyncio.wait({window}, timeout=self.window_read_timeout_s)
        return await self.planner.plan_async(
            template.coinbase_value_sats,
            script_sig_bytes=self.layout.script_sig_bytes(template.height),
            witness_commitment=template.witness_commitment_script is not None)

    def _prepare_next_empty(self, job: Job) -> None:
        """Have the planner compute the next tip's empty-job plan in the background."""
        if self.planner is None or not self.settings.empty_block_first:
            return
        height = job.template.height + 1
        self.planner.prepare(block_subsidy_sats(height, self.chain),
                             script_sig_bytes=self.layout.script_sig_bytes(height),
                             witness_commitment=False)

    async def _on_tip(self, tip_hash_hex: str) -> None:
        tip_seen_s = time.monotonic()
        current = self._current
        if current is not None and current.template.prev_hash_hex == tip_hash_hex:
            return  # already working on it (our own refresh saw it first)
        if self.settings.empty_block_first:
            self._publish_empty(tip_hash_hex, tip_seen_s)
        try:
            await self.refresh(tip_seen_s=tip_seen_s)
        except NodeError as err:
            self._failed(err)  # the refresh loop retries after template_retry_s

    def _publish_empty(self, tip_hash_hex: str, tip_seen_s: float) -> None:
        """The coinbase-only job for the new tip, without asking bitcoind anything: the
        node is busiest right after a block, and every millisecond here is hashrate spent
        on a stale tip. Height is one more than the current job's, or known when a reorg
        comes back to a tip the pool left (wrong only after a multi-block jump or a new
        reorg, until the full template, which follows at once, corrects it); mintime stays
        the previous template's (a lower bound)."""
        base, current = self._last_full, self._current
        if base is None or current is None or self.chain not in EMPTY_FIRST_CHAINS:
            return
        prev_hash_le = bytes.fromhex(tip_hash_hex)[::-1]
        height = self._left_tips.get(prev_hash_le) or current.template.height + 1
        if self.chain != "regtest" and height % RETARGET_INTERVAL_BLOCKS == 0:
            return  # nBits changes here: wait for bitcoind's template
        template = base.empty_successor(
            prev_hash_le=prev_hash_le, height=height, chain=self.chain,
            ntime=max(int(self._clock()), base.curtime), mintime=base.mintime)
        planned = None
        if self.planner is not None:  # prepared in the background: normally a cache hit
            planned = self.planner.plan(
                template.coinbase_value_sats, script_sig_bytes=self.layout.script_sig_bytes(
                    height), witness_commitment=False)
        self._publish(self._make_job(template, clean=True, kind="empty", tip_seen_s=tip_seen_s,
                                     planned=planned))

    def _make_job(self, template: Template, *, clean: bool, kind: str,
                  tip_seen_s: float | None, planned: PlannedPayout | None = None) -> Job:
        current = self._current
        same_tip = current is not None and current.template.prev_hash_le == template.prev_hash_le
        return Job(
            job_id=self._ids.next(), template=template, layout=self.layout, clean=clean,
            kind=kind, ntime=max(template.curtime, int(self._clock())) if kind == "refresh"
            else template.curtime,
            block_target=self._block_target(template.bits),
            seen_hashes=current.seen_hashes if same_tip and current else set(),
            tip_seen_s=tip_seen_s if clean else None,
            policy=self.policy, planned=planned,
        )

    def _block_target(self, bits: int) -> int:
        target = bits_to_target(bits)
        if self.simulated_difficulty is not None:
            target = min(target, difficulty_to_target(self.simulated_difficulty))
        return target

    def _publish(self, job: Job) -> None:
        current = self._current
        if job.clean and current is not None:  # the tip changed (a reorg may come back)
            self._left_tips[current.template.prev_hash_le] = current.template.height
            self._left_tips.pop(job.template.prev_hash_le, None)
            while len(self._left_tips) > LEFT_TIPS_KEPT:
                self._left_tips.popitem(last=False)
        for job_id in self._retiring:  # the grace job after a new tip has come
            self._jobs.pop(job_id, None)
        self._retiring = list(self._jobs) if job.clean else []
        self._jobs[job.job_id] = job
        same_tip = [jid for jid, j in self._jobs.items()
                    if j.template.prev_hash_le == job.template.prev_hash_le]
        for job_id in same_tip[: max(0, len(same_tip) - self.settings.max_jobs_per_tip)]:
            del self._jobs[job_id]
        if current is not None:
            current.retire()
        self._current = job
        metrics.JOBS_BROADCAST.labels(kind=job.kind).inc()
        log.info("new_job", job_id=job.job_id, kind=job.kind, clean=job.clean,
                 height=job.template.height, transactions=job.template.tx_count,
                 prev_hash=job.template.prev_hash_hex)
        for callback in self._callbacks:
            try:
                callback(job)
            except Exception:
                log.exception("job_callback_failed", job_id=job.job_id)
        self._prepare_next_empty(job)

    # ---- refresh loop ------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            delay_s = self._next_refresh_in_s()
            if delay_s > 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay_s):
                        await self._wake.wait()
                continue  # recompute: a tip may have refreshed the template meanwhile
            try:
                await self.refresh()
            except NodeError as err:
                self._failed(err)

    def _next_refresh_in_s(self) -> float:
        now = time.monotonic()
        if self._failing_since is not None or self._current is None:
            if self._last_attempt_s == 0.0:
                return 0.0
            return self._last_attempt_s + self.settings.template_retry_s - now
        return self._current.template.fetched_s + self.settings.refresh_interval_s - now

    def _failed(self, err: NodeError) -> None:
        self._last_error = str(err)
        if self._failing_since is None:
            self._failing_since = time.monotonic()
            log.warning("template_unavailable", error=str(err),
                        retry_s=self.settings.template_retry_s)
        self._wake.set()

    def _recovered(self) -> None:
        if self._failing_since is not None:
            log.info("template_available_again",
                     after_s=round(time.monotonic() - self._failing_since, 1))
        self._failing_since = None
        self._last_error = None
        self._wake.set()
