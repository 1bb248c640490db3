"""The share ledger: shares, per-minute aggregates, accounts, blocks and payouts, behind one
async interface (`pool.ledger.store.Ledger`) with SQLite and PostgreSQL backends."""

from pool.ledger.store import (
    Account,
    BlockInfo,
    FoundBlock,
    Ledger,
    LedgerTotals,
    MinuteStats,
    PayoutRow,
    ShareRecord,
    ShareStats,
    WindowEntry,
    open_ledger,
    units_to_difficulty,
    work_units,
)

__all__ = [
    "Account",
    "BlockInfo",
    "FoundBlock",
    "Ledger",
    "LedgerTotals",
    "MinuteStats",
    "PayoutRow",
    "ShareRecord",
    "ShareStats",
    "WindowEntry",
    "open_ledger",
    "units_to_difficulty",
    "work_units",
]
