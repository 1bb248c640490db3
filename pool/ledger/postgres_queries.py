"""Statements and row conversions for the PostgreSQL backend.

A batch goes in as one `INSERT … SELECT FROM unnest(arrays)` per table: one round trip
whatever the batch size, and `ON CONFLICT DO NOTHING` on share_id as a last guard (the
writer already skipped known ids under the ledger_state row lock).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pool.ledger.rows import MinuteAgg, ShareRow, minute_of

INSERT_SHARES = (
    "INSERT INTO shares (seq, share_id, account, worker, site, difficulty, network_difficulty,"
    " pplns_work, cum_work, account_cum, time, job_id, hash_hex, is_block, solo)"
    " SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[],"
    " $6::float8[], $7::float8[], $8::numeric[], $9::numeric[], $10::numeric[], $11::float8[],"
    " $12::text[], $13::text[], $14::boolean[], $15::boolean[])"
    " ON CONFLICT (share_id) DO NOTHING"
)

UPSERT_MINUTES = (
    "INSERT INTO share_minutes AS m (account, worker, site, minute, shares, work, last_time)"
    " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[],"
    " $6::numeric[], $7::float8[])"
    " ON CONFLICT (account, worker, site, minute) DO UPDATE SET"
    " shares = m.shares + excluded.shares, work = m.work + excluded.work,"
    " last_time = greatest(m.last_time, excluded.last_time)"
)


UPSERT_ACCOUNT_WORK = (
    "INSERT INTO account_work (account, cum_work) SELECT * FROM unnest($1::text[], $2::numeric[])"
    " ON CONFLICT (account) DO UPDATE SET cum_work = excluded.cum_work"
)


def share_columns(rows: Sequence[ShareRow]) -> list[list[Any]]:
    """The 15 column arrays of INSERT_SHARES."""
    cols: list[list[Any]] = [[] for _ in range(15)]
    for r in rows:
        s = r.share
        for col, value in zip(
            cols,
            (r.seq, s.share_id, s.account, s.worker, s.site, s.difficulty,
             s.network_difficulty, r.pplns_work, r.cum_work, r.account_cum, s.time, s.job_id,
             s.hash_hex, s.is_block, s.solo),
            strict=True,
        ):
            col.append(value)
    return cols


def minute_columns(minutes: Sequence[MinuteAgg]) -> list[list[Any]]:
    return [
        [m.account for m in minutes],
        [m.worker for m in minutes],
        [m.site for m in minutes],
        [m.minute for m in minutes],
        [m.shares for m in minutes],
        [m.work for m in minutes],
        [m.last_time for m in minutes],
    ]


def share_filters(
    since: float, until: float | None, account: str | None, worker: str | None, site: str | None
) -> tuple[str, list[Any]]:
    """WHERE clause over share_minutes (see the SQLite twin for the minute rule)."""
    clauses = ["minute >= $1"]
    params: list[Any] = [minute_of(since)]
    if until is not None:
        params.append(minute_of(until))
        clauses.append(f"minute < ${len(params)}")
    for col, value in (("account", account), ("worker", worker), ("site", site)):
        if value is not None:
            params.append(value)
            clauses.append(f"{col} = ${len(params)}")
    return " WHERE " + " AND ".join(clauses), params
