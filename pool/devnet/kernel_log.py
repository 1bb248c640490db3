"""Capture the kernel's own reject reasons from its log.

libbitcoinkernel's `BlockValidationState` (as py-bitcoinkernel exposes it) carries the
mode and a coarse `BlockValidationResult`, but not the reject-reason string that
bitcoind's submitblock returns ("bad-txnmrklroot", "bad-cb-amount", ...). The kernel
does log that string: the validation signals print
`BlockChecked: block hash=<hex> state=<reason>[, <debug>]` in the VALIDATION category,
synchronously, on the thread that called process_block. This module keeps ONE
process-wide logging connection (kernel logging is global) and hands each such line
to whoever registered interest in that block hash.
"""

import re
import threading
from collections.abc import Callable

import pbk
import structlog

log = structlog.get_logger(__name__)

_BLOCK_CHECKED = re.compile(r"BlockChecked: block hash=([0-9a-f]{64}) state=(.*?)\s*$")

_lock = threading.Lock()
_connection: pbk.LoggingConnection | None = None
_watchers: dict[str, Callable[[str], None]] = {}  # block hash hex -> receives the state string


def _on_kernel_log(message: str) -> None:
    match = _BLOCK_CHECKED.search(message)
    if match is None:
        return
    with _lock:
        watcher = _watchers.get(match.group(1))
    if watcher is not None:
        watcher(match.group(2))


def ensure_connected() -> None:
    """Open the process-wide kernel log connection once (idempotent, thread-safe)."""
    global _connection
    with _lock:
        if _connection is not None:
            return
        pbk.set_log_level_category(pbk.LogCategory.VALIDATION, pbk.LogLevel.DEBUG)
        pbk.enable_log_category(pbk.LogCategory.VALIDATION)
        _connection = pbk.LoggingConnection(_on_kernel_log)
        log.debug("kernel_log_connected")


def reject_reason(state: str) -> str | None:
    """`state=` text → BIP22 reason: None for "Valid", else the text before the first
    ", " (Core's ValidationState::ToString is reason[, debug])."""
    if state == "Valid":
        return None
    return state.split(", ", 1)[0] or "rejected"


class StateWatch:
    """Collects the `BlockChecked` state strings logged for one block hash while active."""

    def __init__(self, block_hash_hex: str) -> None:
        self.block_hash_hex = block_hash_hex
        self.states: list[str] = []

    def __enter__(self) -> "StateWatch":
        ensure_connected()
        with _lock:
            _watchers[self.block_hash_hex] = self.states.append
        return self

    def __exit__(self, *exc_info: object) -> None:
        with _lock:
            if _watchers.get(self.block_hash_hex) == self.states.append:
                del _watchers[self.block_hash_hex]

    @property
    def last_state(self) -> str | None:
        return self.states[-1] if self.states else None
