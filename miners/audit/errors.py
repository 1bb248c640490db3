"""Errors of the energy audit, under `miners.errors.MinerError`.

A broken chain is not an error: `verify` reports it as a `ChainCheck`. These are raised
for input no chain should hold (a body that is not JSON, an unknown kind) and for a store
or export file that cannot be read.
"""

from miners.errors import MinerError


class AuditError(MinerError):
    """Base of every error the audit package raises on purpose."""


class AuditStoreError(AuditError):
    """The audit store failed or could not be reached within its deadline."""


class AuditFileError(AuditError):
    """An export file is unreadable, too big, or not a gridpool-audit/1 document."""
