"""Schema migrations, in code, applied in order at start (`Ledger.migrate()`).

Each migration has the same meaning on both backends and its own SQL for each. Applied
versions are recorded in `schema_migrations`; a migration and its record commit together,
so a crash mid-way leaves the schema at the previous version. Append new migrations; never
edit one that has shipped.

Big integers (work units, see pool.ledger.store) are `numeric` on PostgreSQL. SQLite has
only 64-bit integers, so it keeps each as a (hi, lo) pair: value = hi * 2**32 + lo, where
sums add the halves separately (exact) and stored running totals keep lo < 2**32 so that
(hi, lo) compares like the value.
"""

from __future__ import annotations

from dataclasses import dataclass

from pool.errors import LedgerError


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sqlite: tuple[str, ...]
    postgres: tuple[str, ...]


SQLITE_BOOKKEEPING = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_time REAL NOT NULL
)"""

POSTGRES_BOOKKEEPING = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_time double precision NOT NULL
)"""

_V1_SQLITE = (
    """CREATE TABLE ledger_state (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        last_seq INTEGER NOT NULL,
        cum_hi INTEGER NOT NULL,
        cum_lo INTEGER NOT NULL
    )""",
    "INSERT INTO ledger_state (id, last_seq, cum_hi, cum_lo) VALUES (1, 0, 0, 0)",
    """CREATE TABLE shares (
        seq INTEGER PRIMARY KEY,
        share_id TEXT NOT NULL UNIQUE,
        account TEXT NOT NULL,
        worker TEXT NOT NULL,
        site TEXT NOT NULL,
        difficulty REAL NOT NULL,
        network_difficulty REAL NOT NULL,
        pplns_hi INTEGER NOT NULL,
        pplns_lo INTEGER NOT NULL,
        cum_hi INTEGER NOT NULL,
        cum_lo INTEGER NOT NULL,
        acum_hi INTEGER NOT NULL,
        acum_lo INTEGER NOT NULL,
        time REAL NOT NULL,
        job_id TEXT NOT NULL,
        hash_hex TEXT NOT NULL,
        is_block INTEGER NOT NULL,
        solo INTEGER NOT NULL
    )""",
    "CREATE INDEX shares_cum ON shares (cum_hi, cum_lo)",
    "CREATE INDEX shares_account ON shares (account)",  # + the rowid: (account, seq)
    """CREATE TABLE account_work (
        account TEXT PRIMARY KEY,
        cum_hi INTEGER NOT NULL,
        cum_lo INTEGER NOT NULL
    )""",
    """CREATE TABLE share_minutes (
        account TEXT NOT NULL,
        worker TEXT NOT NULL,
        site TEXT NOT NULL,
        minute INTEGER NOT NULL,
        shares INTEGER NOT NULL,
        work_hi INTEGER NOT NULL,
        work_lo INTEGER NOT NULL,
        last_time REAL NOT NULL,
        PRIMARY KEY (account, worker, site, minute)
    ) WITHOUT ROWID""",
    "CREATE INDEX share_minutes_minute ON share_minutes (minute)",
    """CREATE TABLE accounts (
        account TEXT PRIMARY KEY,
        payout_address TEXT,
        balance_sats INTEGER NOT NULL DEFAULT 0,
        updated_time REAL NOT NULL
    )""",
    "CREATE INDEX accounts_balance ON accounts (balance_sats) WHERE balance_sats <> 0",
    """CREATE TABLE blocks (
        hash_hex TEXT PRIMARY KEY,
        height INTEGER NOT NULL,
        status TEXT NOT NULL,
        confirmations INTEGER NOT NULL DEFAULT 0,
        account TEXT NOT NULL,
        worker TEXT NOT NULL,
        site TEXT NOT NULL,
        reward_sats INTEGER NOT NULL,
        fees_sats INTEGER NOT NULL,
        pool_fee_sats INTEGER NOT NULL,
        found_time REAL NOT NULL,
        updated_time REAL NOT NULL,
        share_id TEXT NOT NULL,
        job_id TEXT NOT NULL
    )""",
    "CREATE INDEX blocks_found ON blocks (found_time)",
    "CREATE INDEX blocks_status ON blocks (status, height)",
    """CREATE TABLE block_submits (
        hash_hex TEXT NOT NULL REFERENCES blocks (hash_hex),
        node TEXT NOT NULL,
        result TEXT,
        time REAL NOT NULL,
        PRIMARY KEY (hash_hex, node)
    )""",
    """CREATE TABLE payouts (
        hash_hex TEXT NOT NULL REFERENCES blocks (hash_hex),
        account TEXT NOT NULL,
        address TEXT NOT NULL,
        credited_sats INTEGER NOT NULL,
        paid_sats INTEGER NOT NULL,
        PRIMARY KEY (hash_hex, account)
    )""",
)

_V1_POSTGRES = (
    """CREATE TABLE ledger_state (
        id integer PRIMARY KEY CHECK (id = 1),
        last_seq bigint NOT NULL,
        cum_work numeric NOT NULL
    )""",
    "INSERT INTO ledger_state (id, last_seq, cum_work) VALUES (1, 0, 0)",
    """CREATE TABLE shares (
        seq bigint PRIMARY KEY,
        share_id text NOT NULL UNIQUE,
        account text NOT NULL,
        worker text NOT NULL,
        site text NOT NULL,
        difficulty double precision NOT NULL,
        network_difficulty double precision NOT NULL,
        pplns_work numeric NOT NULL,
        cum_work numeric NOT NULL,
        account_cum numeric NOT NULL,
        time double precision NOT NULL,
        job_id text NOT NULL,
        hash_hex text NOT NULL,
        is_block boolean NOT NULL,
        solo boolean NOT NULL
    )""",
    "CREATE INDEX shares_cum ON shares (cum_work)",
    "CREATE INDEX shares_account ON shares (account, seq)",
    """CREATE TABLE account_work (
        account text PRIMARY KEY,
        cum_work numeric NOT NULL
    )""",
    """CREATE TABLE share_minutes (
        account text NOT NULL,
        worker text NOT NULL,
        site text NOT NULL,
        minute bigint NOT NULL,
        shares bigint NOT NULL,
        work numeric NOT NULL,
        last_time double precision NOT NULL,
        PRIMARY KEY (account, worker, site, minute)
    )""",
    "CREATE INDEX share_minutes_minute ON share_minutes (minute)",
    """CREATE TABLE accounts (
        account text PRIMARY KEY,
        payout_address text,
        balance_sats bigint NOT NULL DEFAULT 0,
        updated_time double precision NOT NULL
    )""",
    "CREATE INDEX accounts_balance ON accounts (balance_sats) WHERE balance_sats <> 0",
    """CREATE TABLE blocks (
        hash_hex text PRIMARY KEY,
        height bigint NOT NULL,
        status text NOT NULL,
        confirmations bigint NOT NULL DEFAULT 0,
        account text NOT NULL,
        worker text NOT NULL,
        site text NOT NULL,
        reward_sats bigint NOT NULL,
        fees_sats bigint NOT NULL,
        pool_fee_sats bigint NOT NULL,
        found_time double precision NOT NULL,
        updated_time double precision NOT NULL,
        share_id text NOT NULL,
        job_id text NOT NULL
    )""",
    "CREATE INDEX blocks_found ON blocks (found_time)",
    "CREATE INDEX blocks_status ON blocks (status, height)",
    """CREATE TABLE block_submits (
        hash_hex text NOT NULL REFERENCES blocks (hash_hex),
        node text NOT NULL,
        result text,
        time double precision NOT NULL,
        PRIMARY KEY (hash_hex, node)
    )""",
    """CREATE TABLE payouts (
        hash_hex text NOT NULL REFERENCES blocks (hash_hex),
        account text NOT NULL,
        address text NOT NULL,
        credited_sats bigint NOT NULL,
        paid_sats bigint NOT NULL,
        PRIMARY KEY (hash_hex, account)
    )""",
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "shares, per-minute aggregates, accounts, blocks, payouts",
              _V1_SQLITE, _V1_POSTGRES),
)


def pending(applied: set[int]) -> list[Migration]:
    """Migrations not yet applied, in order; refuses a database from a newer gridpool."""
    newest = MIGRATIONS[-1].version
    if applied and max(applied) > newest:
        raise LedgerError(
            f"ledger schema is at version {max(applied)}, newer than this gridpool "
            f"knows ({newest}); upgrade gridpool"
        )
    return [m for m in MIGRATIONS if m.version not in applied]
