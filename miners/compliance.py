"""What each miner was told, and whether it did it (used by miners.controller).

An `Intent` is the controller's last command to a miner — sleep, wake, or a power
target — with its delivery attempts. A command is *acknowledged* when the firmware
answers success and *complied* when a later reading shows it carried out: asleep means
drawing no more than its sleep power plus ``sleep_tolerance`` of its tuning range; a
target means the firmware reports that target (or draws no more than it). A reading
taken after the compliance deadline that still does not comply makes the command
*overdue*: it is sent again after a back-off, and after ``max_attempts`` sends the miner
is *flagged* (the allocator then counts it at what it draws and leaves it alone) and, if
it still draws power, its worker is starved of work through the `WorkGate`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from miners.allocate import Action, MinerInput
from miners.errors import (
    MinerCommandError,
    MinerProtocolError,
    MinerTimeoutError,
    MinerUnreachableError,
    UnsupportedCommandError,
)
from miners.fleet import MinerRecord, MinerState
from pool.errors import ConfigError

RUNNING_STATES = (MinerState.MINING, MinerState.RAMPING)
LOCKED_STATES = (MinerState.UNKNOWN, MinerState.UNREACHABLE, MinerState.FAULTED)


@dataclass(frozen=True, slots=True)
class ControlEvent:
    at: float  # wall clock (unix s)
    site: str
    kind: str  # budget, command, complied, overdue, flagged, starved, released, drift, ...
    miner: str = ""
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BudgetAck:
    site: str
    budget_w: float
    under_budget_by: float  # wall clock by which the site should be under the new budget


@dataclass(frozen=True, slots=True)
class PowerSample:
    at: float  # wall clock of the end of a sweep
    power_w: float
    budget_w: float
    hashrate_hs: float


EventSink = Callable[[ControlEvent], None]


@runtime_checkable
class WorkGate(Protocol):
    """The pool side of last-resort enforcement: stop (and resume) feeding a worker jobs."""

    def starve(self, worker_name: str, reason: str) -> None: ...

    def release(self, worker_name: str) -> None: ...


@dataclass(frozen=True, slots=True)
class ControlSettings:
    command_timeout_s: float = 5.0  # deadline of one command, including a session logon
    command_concurrency: int = 512  # commands in flight per site
    comply_grace_s: float = 5.0  # s allowed beyond the model's shutdown time to comply
    readback_margin_s: float = 0.2  # read a commanded miner back this long after it should
    # be done (ack + shutdown time for a sleep, ack for a target or a wake)
    plan_interval_s: float = 1.0  # s between plans, except after a sweep or a budget change
    sweep_yield_commands: int = 32  # with this many commands in flight, telemetry reads wait
    retry_backoff_s: float = 2.0  # s before the first resend; doubles per attempt
    retry_backoff_max_s: float = 60.0  # cap of the resend back-off (flagged miners too)
    max_attempts: int = 3  # sends before a miner is flagged
    sleep_tolerance: float = 0.1  # asleep = sleep_w + this share of (min_w - sleep_w)
    target_tolerance: float = 0.03  # a target is met within this fraction
    events_kept: int = 100_000  # audit events kept in memory per site
    max_budget_w: float = 2e9  # budgets above this are refused (2,000 MW)

    def __post_init__(self) -> None:
        positive = ("command_timeout_s", "retry_backoff_s", "retry_backoff_max_s", "max_budget_w",
                    "plan_interval_s")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ConfigError(name, "must be > 0")
        for name in ("command_concurrency", "max_attempts", "events_kept", "sweep_yield_commands"):
            if getattr(self, name) < 1:
                raise ConfigError(name, "must be >= 1")
        for name in ("comply_grace_s", "readback_margin_s"):
            if getattr(self, name) < 0:
                raise ConfigError(name, "must be >= 0")
        if not 0 <= self.sleep_tolerance < 1 or not 0 <= self.target_tolerance < 1:
            raise ConfigError("sleep_tolerance", "tolerances must be in [0, 1)")

    def backoff_s(self, attempts: int) -> float:
        return min(self.retry_backoff_max_s, self.retry_backoff_s * 2 ** max(0, attempts - 1))


@dataclass(slots=True)
class Intent:
    action: Action
    running: bool
    target_w: float
    decrease: bool  # lowers the miner's power (sleep, lower target)
    created_at: float  # monotonic
    attempts: int = 0
    sent_at: float = -math.inf  # monotonic, last send
    acked: bool = False
    due_by: float = math.inf  # monotonic: readings after this must comply
    next_send_at: float = 0.0  # monotonic: earliest resend
    in_flight: bool = False
    complied: bool = False

    def matches(self, running: bool, target_w: float) -> bool:
        return self.running == running and (not running or abs(self.target_w - target_w) < 1e-6)


@dataclass(slots=True)
class MinerControl:
    """Control state of one miner, beside its MinerRecord."""

    intent: Intent | None = None
    switched_at: float = -math.inf  # monotonic time of the last sleep or wake intent
    last_target_w: float | None = None  # target to count it at when it runs again
    flagged: bool = False
    starved: bool = False


def sleep_threshold_w(record: MinerRecord, settings: ControlSettings) -> float:
    model = record.spec.model
    return model.sleep_w + settings.sleep_tolerance * (model.min_w - model.sleep_w)


def complies(record: MinerRecord, intent: Intent, settings: ControlSettings) -> bool:
    """Does the miner's latest reading show the intent carried out?"""
    t, power = record.telemetry, record.power_w
    if t is None or power is None:
        return False
    if not intent.running:
        return power <= sleep_threshold_w(record, settings)
    if t.sleep_requested or record.state not in RUNNING_STATES:
        return False
    tolerance = settings.target_tolerance * intent.target_w
    if t.power_target_w is not None:
        return abs(t.power_target_w - intent.target_w) <= tolerance
    return power <= intent.target_w + tolerance


def draws_power(record: MinerRecord, intent: Intent, settings: ControlSettings) -> bool:
    """Is the miner drawing more than its intent allows (the starving condition)?"""
    power = record.power_w
    if power is None:
        return False
    if not intent.running:
        return power > sleep_threshold_w(record, settings)
    return power > intent.target_w * (1 + settings.target_tolerance)


def comply_window_s(record: MinerRecord, intent: Intent, settings: ControlSettings) -> float:
    """Time a miner gets, after acknowledging, to show the intent carried out."""
    shutdown = record.spec.model.shutdown_s if not intent.running else 0.0
    return shutdown + settings.comply_grace_s


async def apply_intent(record: MinerRecord, intent: Intent) -> float | None:
    """Carry out an intent with the miner's driver; returns the applied target, if any."""
    driver = record.driver
    if intent.action is Action.SLEEP:
        await driver.sleep()
        return None
    applied = None
    if driver.capabilities.can_tune:
        applied = await driver.set_power_target(intent.target_w)
    if intent.action is Action.WAKE:
        await driver.wake()
    return applied


def result_label(err: BaseException) -> str:
    """The bounded metric label of a failed command."""
    if isinstance(err, TimeoutError | MinerTimeoutError):
        return "timeout"
    if isinstance(err, MinerUnreachableError):
        return "unreachable"
    if isinstance(err, UnsupportedCommandError):
        return "unsupported"
    if isinstance(err, MinerProtocolError):
        return "protocol"
    if isinstance(err, MinerCommandError):
        return "refused"
    return "error"


def allocation_input(record: MinerRecord, ctl: MinerControl, settings: ControlSettings
                     ) -> MinerInput:
    """The allocator's view of one miner: what it was told, and the power to count for it
    (conservatively: at its measured draw until a reduction is confirmed, at its target
    while it runs or ramps, at what it draws when it cannot be commanded)."""
    caps, curve, intent = record.driver.capabilities, record.curve, ctl.intent
    t, measured = record.telemetry, record.power_w
    if intent is not None:
        running = intent.running
    else:
        running = record.state in RUNNING_STATES or record.state is MinerState.FAULTED
    target = ctl.last_target_w
    if target is None:
        reported = t.power_target_w if t is not None else None
        target = reported if reported is not None else curve.max_w
    locked = ctl.flagged or record.state in LOCKED_STATES or not (caps.can_sleep or caps.can_tune)
    after = target if running else curve.sleep_w
    if locked:
        draw = measured if measured is not None else max(after, curve.max_w)
    elif intent is not None and not intent.complied and intent.decrease:
        draw = max(measured or 0.0, after)
    elif not running and measured is not None:
        draw = after if measured <= sleep_threshold_w(record, settings) else measured
    else:
        draw = after
    return MinerInput(record.miner_id, curve, running, target, draw, caps.can_sleep,
                      caps.can_tune, not locked, ctl.switched_at)
