"""The pool side of the fleet controller's last-resort enforcement (docs/fleet.md).

`PoolWorkGate` implements `miners.compliance.WorkGate`: ``starve(worker, reason)`` and
``release(worker)``. A *worker* here is the full Stratum username a miner authorizes
with, ``account.site.miner`` (`pool.stratum.usernames.Identity.username`), matched
exactly: a session with a starved username gets no new ``mining.notify`` until it is
released, so its work goes stale when the tip moves. The gate is pure state (a bounded
map of starved names); the Stratum server subscribes to changes to act on its sessions.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import structlog

from pool.errors import WorkGateError
from pool.stratum.usernames import MAX_USERNAME_CHARS

log = structlog.get_logger(__name__)

MAX_STARVED_WORKERS = 100_000  # starved names kept; more is refused (a runaway controller)
MAX_REASON_CHARS = 200  # a longer reason is cut (it is shown to the miner and logged)
STATUS_LISTED = 100  # starved workers listed by status()

# What pool.stratum.usernames accepts: an account name or address, then `.worker`.
USERNAME_RE = re.compile(r"[A-Za-z0-9_-]{1,90}(?:\.[A-Za-z0-9_.:@+-]{0,64})?")
GateListener = Callable[[str, bool, str], None]  # (worker, starved, reason)


@dataclass(frozen=True, slots=True)
class Starved:
    worker: str
    reason: str
    since: float  # unix s


def check_worker_name(worker_name: object) -> str:
    """The name, if it can be a Stratum username; WorkGateError otherwise."""
    if not isinstance(worker_name, str) or not 0 < len(worker_name) <= MAX_USERNAME_CHARS:
        raise WorkGateError(f"worker must be a username of 1-{MAX_USERNAME_CHARS} characters")
    if not USERNAME_RE.fullmatch(worker_name):
        raise WorkGateError("worker must be a full username: account.site.miner "
                            "(A-Z a-z 0-9 _ - in the account; _ . : @ + - also after it)")
    return worker_name


def clean_reason(reason: object) -> str:
    text = str(reason) if reason is not None else ""
    text = "".join(c if c.isprintable() else " " for c in text)
    return text[:MAX_REASON_CHARS]


class PoolWorkGate:
    """Starved workers by full username, with why and since when."""

    def __init__(self, max_workers: int = MAX_STARVED_WORKERS) -> None:
        self.max_workers = max_workers
        self._starved: dict[str, Starved] = {}
        self._listeners: list[GateListener] = []

    def subscribe(self, listener: GateListener) -> None:
        """Call `listener(worker, starved, reason)` after every change."""
        self._listeners.append(listener)

    def starve(self, worker_name: str, reason: str) -> None:
        """Stop feeding `worker_name` jobs (idempotent; a new reason replaces the old one).
        WorkGateError for a name that is no username or when the gate is full."""
        worker = check_worker_name(worker_name)
        reason = clean_reason(reason)
        if worker not in self._starved and len(self._starved) >= self.max_workers:
            raise WorkGateError(f"at most {self.max_workers} workers can be starved")
        old = self._starved.get(worker)
        self._starved[worker] = Starved(worker, reason, old.since if old else time.time())
        log.warning("worker_starved", worker=worker, reason=reason, again=old is not None)
        self._changed(worker, True, reason)

    def release(self, worker_name: str) -> None:
        """Feed `worker_name` again (a no-op when it is not starved)."""
        worker = check_worker_name(worker_name)
        if self._starved.pop(worker, None) is None:
            return
        log.info("worker_released", worker=worker)
        self._changed(worker, False, "")

    def _changed(self, worker: str, starved: bool, reason: str) -> None:
        for listener in self._listeners:
            try:
                listener(worker, starved, reason)
            except Exception:  # a listener's bug must not undo the gate's decision
                log.exception("work_gate_listener_failed", worker=worker)

    def is_starved(self, worker_name: str) -> bool:
        return worker_name in self._starved

    def blocks(self, usernames: Iterable[str]) -> bool:
        """Is any of these usernames starved (one starved worker starves its connection)?"""
        starved = self._starved
        return bool(starved) and any(name in starved for name in usernames)

    def get(self, worker_name: str) -> Starved | None:
        return self._starved.get(worker_name)

    def __len__(self) -> int:
        return len(self._starved)

    def status(self) -> dict[str, Any]:
        listed = list(self._starved.values())[:STATUS_LISTED]
        return {"starved": len(self._starved),
                "workers": [{"worker": s.worker, "reason": s.reason, "since": s.since}
                            for s in listed]}
