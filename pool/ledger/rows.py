"""Turning a batch of ShareRecords into rows (pure; shared by both backends).

Each stored share gets the next sequence number, the running total of all PPLNS work
*including itself* (`cum_work`) and the running total of its account's PPLNS work
(`account_cum`). The first two only ever grow, in the same order, so the PPLNS window is a
contiguous range of sequence numbers starting at the share found by one index seek on
`cum_work`; an account's work inside it is its current total (table `account_work`) minus
its total just before its first share in the range — one index probe per account, however
many shares the window holds. Writers hold the ledger's state row locked while they
assign these numbers (docs/ledger.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pool.ledger.store import Account, BlockInfo, ShareRecord, WindowEntry, work_units

MINUTE_S = 60
LO_BITS = 32  # SQLite keeps big integers as (hi, lo) pairs of 64-bit columns
LO_MASK = (1 << LO_BITS) - 1


@dataclass(slots=True, frozen=True)
class ShareRow:
    seq: int
    share: ShareRecord
    work: int  # credited work units (stats)
    pplns_work: int  # 0 for solo shares
    cum_work: int  # PPLNS work of every share up to and including this one
    account_cum: int  # PPLNS work of this account's shares up to and including this one
    minute: int


@dataclass(slots=True)
class MinuteAgg:
    account: str
    worker: str
    site: str
    minute: int
    shares: int
    work: int
    last_time: float


@dataclass(slots=True, frozen=True)
class PreparedBatch:
    rows: list[ShareRow]
    minutes: list[MinuteAgg]
    last_seq: int
    cum_work: int
    account_cums: dict[str, int]  # new totals of the accounts with PPLNS work in the batch


def minute_of(time_s: float) -> int:
    return int(time_s // MINUTE_S) * MINUTE_S


def prepare_batch(
    batch: Sequence[ShareRecord],
    existing: set[str],
    last_seq: int,
    cum_work: int,
    account_cums: dict[str, int],
) -> PreparedBatch:
    """Rows for the shares not yet stored (first occurrence wins inside the batch);
    `account_cums`: the stored totals of the batch's accounts (missing ones are 0)."""
    rows: list[ShareRow] = []
    minutes: dict[tuple[str, str, str, int], MinuteAgg] = {}
    totals: dict[str, int] = {}
    seen = set(existing)
    for share in batch:
        if share.share_id in seen:
            continue
        seen.add(share.share_id)
        work = work_units(share.difficulty)
        pplns_work = 0 if share.solo else work
        cum_work += pplns_work
        account_cum = totals.get(share.account, account_cums.get(share.account, 0)) + pplns_work
        if pplns_work:
            totals[share.account] = account_cum
        last_seq += 1
        minute = minute_of(share.time)
        rows.append(ShareRow(last_seq, share, work, pplns_work, cum_work, account_cum, minute))
        key = (share.account, share.worker, share.site, minute)
        agg = minutes.get(key)
        if agg is None:
            minutes[key] = MinuteAgg(*key, shares=1, work=work, last_time=share.time)
        else:
            agg.shares += 1
            agg.work += work
            agg.last_time = max(agg.last_time, share.time)
    return PreparedBatch(rows, list(minutes.values()), last_seq, cum_work, totals)


def window_entries(
    sums: Iterable[tuple[str, int]], boundary: tuple[str, int, int] | None, start: int
) -> list[WindowEntry]:
    """Per-account window work from each account's work in the shares with cum_work >
    start, minus the part of the oldest such share (boundary: account, cum_work,
    pplns_work) that lies before `start`."""
    totals = dict(sums)
    if boundary is not None:
        account, cum, work = boundary
        outside = start - (cum - work)  # the share's work below the window's lower edge
        if outside > 0:
            totals[account] -= outside
    return [WindowEntry(a, w) for a, w in sorted(totals.items()) if w > 0]


def split_hi_lo(value: int) -> tuple[int, int]:
    return value >> LO_BITS, value & LO_MASK


def join_hi_lo(hi: int | None, lo: int | None) -> int:
    return ((hi or 0) << LO_BITS) + (lo or 0)


def account_info(r: Sequence[Any]) -> Account:
    """(account, payout_address, balance_sats, updated_time) → Account."""
    return Account(r[0], r[1], int(r[2]), float(r[3]))


def block_info(r: Mapping[str, Any], results: dict[str, str | None]) -> BlockInfo:
    """A `blocks` row (by column name) and its submit results → BlockInfo."""
    return BlockInfo(
        hash_hex=r["hash_hex"],
        height=int(r["height"]),
        status=r["status"],
        confirmations=int(r["confirmations"]),
        account=r["account"],
        worker=r["worker"],
        site=r["site"],
        reward_sats=int(r["reward_sats"]),
        fees_sats=int(r["fees_sats"]),
        pool_fee_sats=int(r["pool_fee_sats"]),
        found_time=float(r["found_time"]),
        updated_time=float(r["updated_time"]),
        share_id=r["share_id"],
        job_id=r["job_id"],
        submit_results=dict(results),
    )
