"""Share validation (DESIGN §7) and block submission.

The session checks what it owns (subscribed, worker authorized); `ShareValidator.validate`
does the rest in this order, failing with the Stratum code of the first problem:

    job known (21) → extranonce2 size, ntime in [mintime, ntime + 7200], version bits inside
    the negotiated mask (20) → coinbase txid, merkle root, header → sha256d → duplicate (22)
    → session target (23) → block candidate?

The duplicate key is the header hash, so it can only be checked once the header is hashed;
it covers everything a miner can vary, so a version-rolled resubmission is never a false
duplicate, while the same header under two job ids of one tip is caught.

Per share: one sha256d of the coinbase, one per branch level (hashlib: OpenSSL's SHA-NI code
is faster than a cffi call for inputs this small, measured), and the header through the
native `check_header`, which also compares against the target.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from pool import metrics
from pool.bitcoin.hashes import sha256d
from pool.bitcoin.merkle import fold_coinbase_branch
from pool.bitcoin.target import (
    difficulty_to_target,
    hash_le_to_int,
    target_to_difficulty,
    target_to_le32,
)
from pool.hashing import HashBackend, get_backend
from pool.jobs import Job, JobManager
from pool.stratum.protocol import ErrorCode, StratumError, build_header, parse_hex_field

if TYPE_CHECKING:
    from pool.stratum.usernames import Identity

log = structlog.get_logger(__name__)

SITE_SEPARATOR = "."  # worker "site.miner" belongs to site "site"


def site_of_worker(worker: str) -> str:
    """The site a worker belongs to, by its name (DESIGN §6): the part of the worker name
    before its first dot — `alice.siteA.rig7` is account alice, worker `siteA.rig7`, site
    `siteA` — or "" when the worker name has no dot (no site). The one place this rule
    lives; the fleet's inventory names its sites the same way."""
    site, sep, _ = worker.partition(SITE_SEPARATOR)
    return site if sep else ""


@functools.lru_cache(maxsize=4096)
def share_target(difficulty: float) -> tuple[int, bytes]:
    """(target_int, target32_le) for a share difficulty; sessions share few distinct ones."""
    target = difficulty_to_target(difficulty)
    return target, target_to_le32(target)


def _parse_hex(text: object, size: int, what: str) -> bytes:
    try:
        return parse_hex_field(text, size)
    except ValueError:
        raise StratumError(ErrorCode.OTHER, f"{what} must be {size} bytes of hex") from None


def _parse_u32(text: object, what: str) -> int:
    return int.from_bytes(_parse_hex(text, 4, what), "big")


@dataclass(slots=True, eq=False)
class Share:
    """An accepted share."""

    job: Job
    worker: str
    hash_le: bytes
    difficulty: float  # credited: the difficulty it was judged at
    header: bytes
    coinbase: bytes  # non-witness serialization
    is_block: bool
    received_s: float  # time.time()
    identity: Identity | None = None  # who submitted it (set by the session)

    @property
    def hash_hex(self) -> str:
        return self.hash_le[::-1].hex()

    @property
    def share_id(self) -> str:
        """The ledger's key of this share (unique: a job id never repeats)."""
        return f"{self.job.job_id}:{self.hash_hex}"

    @property
    def hash_difficulty(self) -> float:
        """The difficulty this hash actually reached (for "best share" statistics)."""
        return target_to_difficulty(max(hash_le_to_int(self.hash_le), 1))


class ShareValidator:
    """Validates submissions against the jobs of a JobManager."""

    __slots__ = ("backend", "extranonce2_size", "jobs")

    def __init__(self, jobs: JobManager, *, extranonce2_size: int,
                 backend: HashBackend | None = None) -> None:
        self.jobs = jobs
        self.extranonce2_size = extranonce2_size
        self.backend = backend or get_backend()

    def validate(
        self,
        *,
        worker: str,
        job_id: object,
        extranonce1: bytes,
        extranonce2_hex: object,
        ntime_hex: object,
        nonce_hex: object,
        version_bits_hex: object | None,
        version_mask: int,
        payout_script: bytes,
        difficulty: float,
    ) -> Share:
        """Check one mining.submit; `difficulty` is the lower of the difficulty the job was
        sent with and the session's current one. Raises StratumError with the code."""
        job = self.jobs.get(job_id) if isinstance(job_id, str) else None
        if job is None:
            raise StratumError(ErrorCode.JOB_NOT_FOUND, "job not found (stale)")
        extranonce2 = _parse_hex(extranonce2_hex, self.extranonce2_size, "extranonce2")
        ntime = _parse_u32(ntime_hex, "ntime")
        if not job.mintime <= ntime <= job.max_ntime:
            raise StratumError(ErrorCode.OTHER, "ntime out of range")
        nonce = _parse_u32(nonce_hex, "nonce")
        version = job.template.version
        if version_bits_hex is not None:
            bits = _parse_u32(version_bits_hex, "version bits")
            if bits & ~version_mask:
                raise StratumError(ErrorCode.OTHER, "version bits outside the negotiated mask")
            version = (version & ~version_mask) | bits  # BIP 310
        parts = job.parts_for(payout_script)
        coinbase = parts.coinb1 + extranonce1 + extranonce2 + parts.coinb2
        merkle_root_le = fold_coinbase_branch(sha256d(coinbase), job.template.branch)
        header = build_header(version=version, prev_hash_le=job.template.prev_hash_le,
                              merkle_root_le=merkle_root_le, ntime=ntime,
                              bits=job.template.bits, nonce=nonce)
        hash_le, meets_share = self.backend.check_header(header, share_target(difficulty)[1])
        if hash_le in job.seen_hashes:
            raise StratumError(ErrorCode.DUPLICATE, "duplicate share")
        if not meets_share:
            raise StratumError(ErrorCode.LOW_DIFFICULTY, "low difficulty share")
        job.seen_hashes.add(hash_le)
        is_block = int.from_bytes(hash_le, "little") <= job.block_target
        return Share(job, worker, hash_le, difficulty, header, coinbase, is_block, time.time())


SubmitFn = Callable[[str], Awaitable[dict[str, str | None]]]
BlockCallback = Callable[[Share, dict[str, str | None]], None]
FoundCallback = Callable[[Share], Awaitable[None]]


async def submit_block(share: Share, submit: SubmitFn, *, simulated: bool,
                       on_block: BlockCallback | None = None,
                       on_found: FoundCallback | None = None) -> dict[str, str | None]:
    """Assemble the block of a candidate share and submit it to every node BEFORE anything
    else; `on_found` (the ledger's "found" record) runs while the nodes validate it. Then
    log bitcoind's answers and count the find. `simulated` labels finds under [network]
    simulated_difficulty (regtest demo)."""
    block_hex = share.job.block_bytes(share.header, share.coinbase).hex()
    submission = asyncio.ensure_future(submit(block_hex))
    if on_found is not None:
        try:
            await on_found(share)
        except Exception:
            # The block is out either way; whatever failed logged itself.
            log.exception("block_found_hook_failed", block_hash=share.hash_hex)
    results = await submission
    metrics.BLOCKS_FOUND.inc()
    accepted = [node for node, result in results.items() if result is None]
    log.info(
        "block_found", block_hash=share.hash_hex, height=share.job.template.height,
        worker=share.worker, job_id=share.job.job_id, simulated=simulated,
        accepted_by=accepted, results={n: r or "accepted" for n, r in results.items()},
        transactions=share.job.template.tx_count,
        coinbase_value_sats=share.job.template.coinbase_value_sats,
    )
    if on_block is not None:
        on_block(share, results)
    return results
