"""The ledger's one async interface, its records, and the work unit.

Work is kept as exact integers: one *work unit* is 2**-32 difficulty (about one hash), and
a share of difficulty d is credited `work_units(d) = max(1, round(d * 2**32))` units. Any
difficulty of 2**20 or more, and every power-of-two or integer difficulty, converts without
rounding; smaller ones are rounded to 2**-32 (a relative error of about 1e-7 at d = 0.001).
Every sum in the ledger (per-minute aggregates, the PPLNS window, balances) is an exact
integer sum of these credits, so both backends give identical answers.

Backends: `pool.ledger.sqlite.SQLiteLedger` and `pool.ledger.postgres.PostgresLedger`;
`open_ledger(url)` picks one from the URL. docs/ledger.md describes the schema.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit

from pool.errors import LedgerError

WORK_SCALE_BITS = 32  # one work unit = 2**-32 difficulty
HASHES_PER_UNIT = 65536 / 65535  # 2**256 / DIFF1_TARGET / 2**32: expected hashes per unit

# Block statuses. A found block's payouts move balances; an orphaned one's are reverted.
FOUND = "found"  # the pool found it (recorded before any node answered)
SUBMITTED = "submitted"  # at least one node answered submitblock
CONFIRMED = "confirmed"  # in the best chain with COINBASE_MATURITY confirmations
ORPHANED = "orphaned"  # another block holds its height in the best chain
BLOCK_STATUSES = (FOUND, SUBMITTED, CONFIRMED, ORPHANED)
BALANCE_APPLIED = frozenset({FOUND, SUBMITTED, CONFIRMED})

STATS_GROUPS = ("account", "worker", "site")
_SCHEMA_RE = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def work_units(difficulty: float) -> int:
    """Exact integer credit of a share of `difficulty` (see the module docstring)."""
    if not math.isfinite(difficulty) or difficulty <= 0:
        raise LedgerError(f"share difficulty must be finite and positive, got {difficulty!r}")
    return max(1, round(math.ldexp(difficulty, WORK_SCALE_BITS)))


def units_to_difficulty(units: int) -> float:
    return math.ldexp(float(units), -WORK_SCALE_BITS)


def hashrate_hps(units: int, seconds: float) -> float:
    """Average hashes per second that `units` of credited work represent over `seconds`."""
    return units * HASHES_PER_UNIT / seconds if seconds > 0 else 0.0


@dataclass(slots=True, frozen=True)
class ShareRecord:
    """One accepted share, as the ledger stores it."""

    share_id: str  # unique, e.g. "<job_id>:<hash_hex>"; replays with the same id are no-ops
    account: str
    worker: str
    site: str
    difficulty: float  # the difficulty the share was judged at (credited)
    network_difficulty: float
    time: float  # unix seconds (time.time()) when accepted
    job_id: str
    hash_hex: str
    is_block: bool
    solo: bool = False  # solo-mode share: stored and counted in stats, never in PPLNS

    def check(self) -> None:
        """Raise LedgerError for a record no backend should store."""
        if not self.share_id or not isinstance(self.share_id, str):
            raise LedgerError("share_id must be a non-empty string")
        work_units(self.difficulty)
        if not (math.isfinite(self.time) and self.time >= 0):
            raise LedgerError(f"share time must be finite and not negative, got {self.time!r}")
        if not math.isfinite(self.network_difficulty):
            raise LedgerError("network_difficulty must be finite")


@dataclass(slots=True, frozen=True)
class WindowEntry:
    """An account's credited work inside the PPLNS window (work units)."""

    account: str
    work: int


@dataclass(slots=True, frozen=True)
class Account:
    account: str
    payout_address: str | None
    balance_sats: int  # owed to the account (negative: it was overpaid, see docs/ledger.md)
    updated_time: float


@dataclass(slots=True, frozen=True)
class FoundBlock:
    """What the pool knows the moment a share solves a block."""

    hash_hex: str
    height: int
    account: str
    worker: str
    site: str
    reward_sats: int  # the template's coinbasevalue: subsidy + fees
    fees_sats: int  # transaction fees inside reward_sats
    pool_fee_sats: int  # the pool's fee in the coinbase
    found_time: float
    share_id: str = ""
    job_id: str = ""


@dataclass(slots=True, frozen=True)
class PayoutRow:
    """One account's part of a block's coinbase. Balance effect: credited - paid."""

    account: str
    credited_sats: int  # earned from this block's reward
    paid_sats: int  # in a coinbase output of this block (credit plus settled balance)
    address: str = ""


@dataclass(slots=True, frozen=True)
class BlockInfo:
    hash_hex: str
    height: int
    status: str
    confirmations: int
    account: str
    worker: str
    site: str
    reward_sats: int
    fees_sats: int
    pool_fee_sats: int
    found_time: float
    updated_time: float
    share_id: str
    job_id: str
    submit_results: dict[str, str | None] = field(default_factory=dict)  # node -> None = ok


@dataclass(slots=True, frozen=True)
class ShareStats:
    """Aggregated shares of one group (fields not grouped on are None)."""

    account: str | None
    worker: str | None
    site: str | None
    shares: int
    work: int
    last_time: float

    @property
    def difficulty(self) -> float:
        return units_to_difficulty(self.work)


@dataclass(slots=True, frozen=True)
class MinuteStats:
    minute: int  # unix seconds at the start of the minute
    shares: int
    work: int


@dataclass(slots=True, frozen=True)
class LedgerTotals:
    shares_retained: int  # raw share rows kept for PPLNS
    last_seq: int
    cum_work: int  # all PPLNS work ever recorded (units)


class Ledger(Protocol):
    """The storage interface; both backends implement it and pass the same tests."""

    async def migrate(self) -> None: ...

    async def close(self) -> None: ...

    async def record_shares(self, batch: Sequence[ShareRecord]) -> int:
        """Store a batch in ONE transaction (raw rows + per-minute aggregates); shares whose
        share_id is already stored are skipped. Returns the number newly stored."""
        ...

    async def known_share_ids(self, share_ids: Collection[str]) -> set[str]: ...

    async def pplns_window(self, window_difficulty: float) -> list[WindowEntry]:
        """Newest PPLNS shares back until their work reaches the window; the oldest share
        inside is counted partially so the total is exactly the window (or everything kept,
        when less). Sorted by account."""
        ...

    async def prune_shares(
        self, keep_difficulty: float, *, max_age_s: float | None = None, now: float | None = None
    ) -> int:
        """Delete raw shares older than the newest `keep_difficulty` of PPLNS work (and, with
        `max_age_s`, older than that); at most a bounded number per call. Returns how many."""
        ...

    async def totals(self) -> LedgerTotals: ...

    async def set_payout_address(self, account: str, address: str | None) -> None: ...

    async def get_account(self, account: str) -> Account | None: ...

    async def accounts_for_payout(self, accounts: Collection[str]) -> dict[str, Account]:
        """The named accounts that exist, plus every account with a nonzero balance."""
        ...

    async def record_block_found(self, block: FoundBlock, payouts: Sequence[PayoutRow]) -> bool:
        """Insert the block, its payout rows and their balance effects in one transaction;
        False (and no change) when the block hash is already recorded."""
        ...

    async def set_block_submit_result(self, hash_hex: str, node: str, result: str | None) -> None:
        ...

    async def set_block_status(self, hash_hex: str, status: str, confirmations: int) -> None:
        """Move a block to `status`; reverts (or re-applies) its balance effects when it
        leaves (or returns to) the best chain."""
        ...

    async def get_block(self, hash_hex: str) -> BlockInfo | None: ...

    async def blocks(
        self, limit: int = 50, status: str | Sequence[str] | None = None
    ) -> list[BlockInfo]: ...

    async def block_payouts(self, hash_hex: str) -> list[PayoutRow]: ...

    async def share_stats(
        self,
        *,
        since: float,
        until: float | None = None,
        group_by: Sequence[str] = ("account",),
        account: str | None = None,
        worker: str | None = None,
        site: str | None = None,
    ) -> list[ShareStats]: ...

    async def minute_series(
        self,
        *,
        since: float,
        until: float | None = None,
        account: str | None = None,
        worker: str | None = None,
        site: str | None = None,
    ) -> list[MinuteStats]: ...


def check_group_by(group_by: Sequence[str]) -> tuple[str, ...]:
    """Validated group-by columns (they are interpolated into SQL, so only known names)."""
    cols = tuple(dict.fromkeys(group_by))
    for col in cols:
        if col not in STATS_GROUPS:
            raise LedgerError(f"cannot group share stats by {col!r}; use {STATS_GROUPS}")
    return cols


def check_status(status: str) -> str:
    if status not in BLOCK_STATUSES:
        raise LedgerError(f"unknown block status {status!r}; one of {BLOCK_STATUSES}")
    return status


def check_schema(schema: str) -> str:
    if not _SCHEMA_RE.fullmatch(schema):
        raise LedgerError(f"schema name {schema!r} must match {_SCHEMA_RE.pattern}")
    return schema


def window_units(window_difficulty: float) -> int:
    if not math.isfinite(window_difficulty) or window_difficulty <= 0:
        raise LedgerError(f"PPLNS window must be a positive difficulty, got {window_difficulty}")
    return work_units(window_difficulty)


def open_ledger(url: str, **options: Any) -> Ledger:
    """`sqlite:///path/to/file.db` (or `sqlite:///:memory:`) or `postgresql://…` (an optional
    `schema=NAME` query parameter puts every table in that schema). `options` go to the
    backend's constructor (timeouts, pool size). Call `migrate()` next."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        from pool.ledger.sqlite import SQLiteLedger

        path = parts.path
        if parts.netloc:
            raise LedgerError(f"sqlite URL takes no host: use sqlite:///path, got {url!r}")
        if not path or path == "/":
            raise LedgerError(f"sqlite URL needs a file path: sqlite:///path/to.db, got {url!r}")
        path = path[1:] if path == "/:memory:" else path
        return SQLiteLedger(path, **options)
    if parts.scheme in ("postgresql", "postgres"):
        from pool.ledger.postgres import PostgresLedger

        query = dict(parse_qsl(parts.query))
        schema = query.pop("schema", None)
        dsn = parts._replace(query=urlencode(query)).geturl()
        return PostgresLedger(dsn, schema=schema, **options)
    raise LedgerError(f"ledger URL must start with sqlite:/// or postgresql://, got {url!r}")
