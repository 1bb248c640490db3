"""The SQLite backend's synchronous operations on accounts, blocks and statistics, and its
statement helpers (each runs whole in the connection's thread)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from pool.errors import LedgerError
from pool.ledger.rows import (
    MinuteAgg,
    ShareRow,
    account_info,
    block_info,
    join_hi_lo,
    minute_of,
    split_hi_lo,
)
from pool.ledger.store import (
    BALANCE_APPLIED,
    SUBMITTED,
    Account,
    BlockInfo,
    FoundBlock,
    MinuteStats,
    PayoutRow,
    ShareStats,
)

Conn = sqlite3.Connection
IN_CHUNK = 500  # ids per `IN (...)` list, under SQLite's bound-parameter limit

_INSERT_SHARE = (
    "INSERT INTO shares (seq, share_id, account, worker, site, difficulty, network_difficulty,"
    " pplns_hi, pplns_lo, cum_hi, cum_lo, acum_hi, acum_lo, time, job_id, hash_hex, is_block,"
    " solo) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (share_id) DO NOTHING"
)

_UPSERT_MINUTE = (
    "INSERT INTO share_minutes (account, worker, site, minute, shares, work_hi, work_lo,"
    " last_time) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (account, worker, site, minute) DO UPDATE SET"
    " shares = shares + excluded.shares, work_hi = work_hi + excluded.work_hi,"
    " work_lo = work_lo + excluded.work_lo, last_time = max(last_time, excluded.last_time)"
)


def insert_rows(conn: sqlite3.Connection, rows: Sequence[ShareRow]) -> None:
    conn.executemany(
        _INSERT_SHARE,
        [
            (r.seq, s.share_id, s.account, s.worker, s.site, s.difficulty, s.network_difficulty,
             *split_hi_lo(r.pplns_work), *split_hi_lo(r.cum_work), *split_hi_lo(r.account_cum),
             s.time, s.job_id, s.hash_hex, int(s.is_block), int(s.solo))
            for r in rows
            for s in (r.share,)
        ],
    )


def upsert_minutes(conn: sqlite3.Connection, minutes: Sequence[MinuteAgg]) -> None:
    conn.executemany(
        _UPSERT_MINUTE,
        [(m.account, m.worker, m.site, m.minute, m.shares, *split_hi_lo(m.work), m.last_time)
         for m in minutes],
    )


def upsert_account_work(conn: sqlite3.Connection, totals: dict[str, int]) -> None:
    conn.executemany(
        "INSERT INTO account_work (account, cum_hi, cum_lo) VALUES (?, ?, ?)"
        " ON CONFLICT (account) DO UPDATE SET cum_hi = excluded.cum_hi, cum_lo = excluded.cum_lo",
        [(account, *split_hi_lo(total)) for account, total in totals.items()],
    )


def share_filters(
    since: float, until: float | None, account: str | None, worker: str | None, site: str | None
) -> tuple[str, list[Any]]:
    """WHERE clause over share_minutes: whole minutes from the one holding `since` up to
    (not including) the one holding `until`."""
    clauses = ["minute >= ?"]
    params: list[Any] = [minute_of(since)]
    if until is not None:
        clauses.append("minute < ?")
        params.append(minute_of(until))
    for col, value in (("account", account), ("worker", worker), ("site", site)):
        if value is not None:
            clauses.append(f"{col} = ?")
            params.append(value)
    return " WHERE " + " AND ".join(clauses), params


@contextmanager
def transaction(conn: Conn, mode: str = "IMMEDIATE") -> Iterator[Conn]:
    conn.execute(f"BEGIN {mode}")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def chunks(items: Sequence[str], size: int = IN_CHUNK) -> Iterator[Sequence[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def set_address(conn: Conn, account: str, address: str | None, now: float) -> None:
    with transaction(conn):
        conn.execute(
            "INSERT INTO accounts (account, payout_address, balance_sats, updated_time)"
            " VALUES (?, ?, 0, ?) ON CONFLICT (account) DO UPDATE SET"
            " payout_address = excluded.payout_address, updated_time = excluded.updated_time",
            (account, address, now),
        )


def read_accounts(conn: Conn, names: list[str], with_balances: bool) -> dict[str, Account]:
    cols = "account, payout_address, balance_sats, updated_time"
    found: dict[str, Account] = {}
    with transaction(conn, "DEFERRED"):
        for chunk in chunks(names):
            marks = ",".join("?" * len(chunk))
            for row in conn.execute(f"SELECT {cols} FROM accounts WHERE account IN ({marks})",
                                    chunk):
                found[row[0]] = account_info(row)
        if with_balances:
            for row in conn.execute(f"SELECT {cols} FROM accounts WHERE balance_sats <> 0"):
                found[row[0]] = account_info(row)
    return found


def _apply_balances(conn: Conn, hash_hex: str, sign: int, now: float) -> None:
    rows = conn.execute(
        "SELECT account, credited_sats - paid_sats FROM payouts WHERE hash_hex = ?", (hash_hex,)
    ).fetchall()
    conn.executemany(
        "INSERT INTO accounts (account, payout_address, balance_sats, updated_time)"
        " VALUES (?, NULL, ?, ?) ON CONFLICT (account) DO UPDATE SET"
        " balance_sats = balance_sats + excluded.balance_sats,"
        " updated_time = excluded.updated_time",
        [(account, sign * delta, now) for account, delta in rows if delta],
    )


def record_block(conn: Conn, block: FoundBlock, payouts: list[PayoutRow], now: float) -> bool:
    with transaction(conn):
        inserted = conn.execute(
            "INSERT INTO blocks (hash_hex, height, status, confirmations, account, worker, site,"
            " reward_sats, fees_sats, pool_fee_sats, found_time, updated_time, share_id, job_id)"
            " VALUES (?, ?, 'found', 0, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (block.hash_hex, block.height, block.account, block.worker, block.site,
             block.reward_sats, block.fees_sats, block.pool_fee_sats, block.found_time, now,
             block.share_id, block.job_id),
        ).rowcount
        if not inserted:
            return False
        conn.executemany(
            "INSERT INTO payouts (hash_hex, account, address, credited_sats, paid_sats)"
            " VALUES (?, ?, ?, ?, ?)",
            [(block.hash_hex, p.account, p.address, p.credited_sats, p.paid_sats)
             for p in payouts],
        )
        _apply_balances(conn, block.hash_hex, +1, now)
    return True


def submit_result(conn: Conn, hash_hex: str, node: str, result: str | None, now: float) -> None:
    with transaction(conn):
        if conn.execute("SELECT 1 FROM blocks WHERE hash_hex = ?", (hash_hex,)).fetchone() is None:
            raise LedgerError(f"unknown block {hash_hex}")
        conn.execute(
            "INSERT INTO block_submits (hash_hex, node, result, time) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (hash_hex, node) DO UPDATE SET result = excluded.result,"
            " time = excluded.time",
            (hash_hex, node, result, now),
        )
        conn.execute(
            "UPDATE blocks SET status = ?, updated_time = ?"
            " WHERE hash_hex = ? AND status = 'found'",
            (SUBMITTED, now, hash_hex),
        )


def set_status(conn: Conn, hash_hex: str, status: str, confirmations: int, now: float) -> None:
    with transaction(conn):
        row = conn.execute("SELECT status FROM blocks WHERE hash_hex = ?", (hash_hex,)).fetchone()
        if row is None:
            raise LedgerError(f"unknown block {hash_hex}")
        was_applied, applied = row[0] in BALANCE_APPLIED, status in BALANCE_APPLIED
        if was_applied != applied:
            _apply_balances(conn, hash_hex, +1 if applied else -1, now)
        conn.execute(
            "UPDATE blocks SET status = ?, confirmations = ?, updated_time = ? WHERE hash_hex = ?",
            (status, confirmations, now, hash_hex),
        )


def read_blocks(
    conn: Conn, limit: int, statuses: Sequence[str] | None, hash_hex: str | None
) -> list[BlockInfo]:
    sql = "SELECT * FROM blocks"
    params: list[Any] = []
    if hash_hex is not None:
        sql += " WHERE hash_hex = ?"
        params.append(hash_hex)
    elif statuses:
        sql += f" WHERE status IN ({','.join('?' * len(statuses))})"
        params.extend(statuses)
    sql += " ORDER BY found_time DESC, height DESC LIMIT ?"
    params.append(limit)
    with transaction(conn, "DEFERRED"):
        cursor = conn.execute(sql, params)
        names = [d[0] for d in cursor.description]
        rows = [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]
        results: dict[str, dict[str, str | None]] = {r["hash_hex"]: {} for r in rows}
        for chunk in chunks(list(results)):
            marks = ",".join("?" * len(chunk))
            for h, node, result in conn.execute(
                f"SELECT hash_hex, node, result FROM block_submits WHERE hash_hex IN ({marks})",
                chunk,
            ):
                results[h][node] = result
    return [block_info(r, results[r["hash_hex"]]) for r in rows]


def read_payouts(conn: Conn, hash_hex: str) -> list[PayoutRow]:
    rows = conn.execute(
        "SELECT account, credited_sats, paid_sats, address FROM payouts WHERE hash_hex = ?"
        " ORDER BY account",
        (hash_hex,),
    )
    return [PayoutRow(*r) for r in rows]


def share_stats(conn: Conn, cols: tuple[str, ...], where: str, params: list[Any]) -> list[
    ShareStats
]:
    select = ", ".join(cols) + ", " if cols else ""
    group = f" GROUP BY {', '.join(cols)} ORDER BY {', '.join(cols)}" if cols else ""
    rows = conn.execute(
        f"SELECT {select}sum(shares), sum(work_hi), sum(work_lo), max(last_time)"
        f" FROM share_minutes{where}{group}",
        params,
    ).fetchall()
    out = []
    for row in rows:
        keys = dict(zip(cols, row, strict=False))
        shares, hi, lo, last = row[len(cols) :]
        if shares is None:
            continue  # no rows at all (ungrouped sum over nothing)
        out.append(ShareStats(keys.get("account"), keys.get("worker"), keys.get("site"),
                              shares, join_hi_lo(hi, lo), last))
    return out


def minute_series(conn: Conn, where: str, params: list[Any]) -> list[MinuteStats]:
    rows = conn.execute(
        f"SELECT minute, sum(shares), sum(work_hi), sum(work_lo) FROM share_minutes{where}"
        " GROUP BY minute ORDER BY minute",
        params,
    )
    return [MinuteStats(m, s, join_hi_lo(h, lo)) for m, s, h, lo in rows]
