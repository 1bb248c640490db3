"""The energy audit: per-site hash-chained rows (intervals, events, compliance) in the
ledger's database, their verification and export. docs/audit.md is the auditor's guide.

`chain` is pure (canonical bytes, hashing, verification); `store` keeps the rows on SQLite
or PostgreSQL; `export` writes CSV and JSON and reads a JSON export back for verification.
"""

from miners.audit.chain import (
    GENESIS_HASH,
    KINDS,
    AuditRecord,
    ChainCheck,
    canonical_bytes,
    make_record,
    verify_chain,
)
from miners.audit.errors import AuditError, AuditFileError, AuditStoreError

__all__ = [
    "GENESIS_HASH",
    "KINDS",
    "AuditError",
    "AuditFileError",
    "AuditRecord",
    "AuditStoreError",
    "ChainCheck",
    "canonical_bytes",
    "make_record",
    "verify_chain",
]
