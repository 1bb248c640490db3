"""One Stratum V1 connection: an asyncio.Protocol with a handler per protocol method.

Protocol callbacks instead of a task and StreamReader per connection keep an idle
authorized session at about 3 KiB, transport included (BENCHMARKS.md). Everything per
message is synchronous except a block candidate, whose submission runs as a server-owned
task. Timeouts and vardiff retargets of idle sessions are driven by the server's periodic
sweep, not per-session timers."""

from __future__ import annotations

import asyncio
import functools
import json
import math
import time
from typing import TYPE_CHECKING, Any

import structlog

from pool import metrics
from pool.errors import LedgerError
from pool.stratum.framing import OVERSIZED, LineFramer
from pool.stratum.limits import CostMeter, TokenBucket
from pool.stratum.protocol import (
    ErrorCode,
    StratumError,
    error_line,
    notification_line,
    result_line,
)
from pool.stratum.usernames import Identity, UsernameError
from pool.stratum.vardiff import Vardiff

if TYPE_CHECKING:
    from pool.jobs import Job
    from pool.shares import Share
    from pool.stratum.server import StratumServer

log = structlog.get_logger(__name__)

# Share rejections by Stratum code → the gridpool_shares_total result label.
_SHARE_RESULT = {
    ErrorCode.OTHER: "invalid",
    ErrorCode.JOB_NOT_FOUND: "stale",
    ErrorCode.DUPLICATE: "duplicate",
    ErrorCode.LOW_DIFFICULTY: "low_difficulty",
    ErrorCode.UNAUTHORIZED: "unauthorized",
    ErrorCode.NOT_SUBSCRIBED: "unauthorized",
}
_ACCEPTED = metrics.SHARES.labels(result="accepted")  # resolved once: the hot path
NOT_RECORDED_MESSAGE = "temporarily unable to record share, retry"
VERSION_ROLLING_ALL = 0xFFFFFFFF  # a miner that sends no mask accepts any (BIP 310)


def wire_difficulty(difficulty: float) -> float | int:
    """Integral difficulties go out as JSON integers (some firmware parses only those)."""
    return int(difficulty) if difficulty >= 1 and difficulty == int(difficulty) else difficulty


def _number(value: Any, what: str) -> float:
    """A positive, finite number; some firmware quotes numbers, so numeric strings count."""
    try:
        number = float(value) if not isinstance(value, bool) else float("nan")
    except (TypeError, ValueError, OverflowError):
        number = float("nan")
    if not (math.isfinite(number) and number > 0):
        raise StratumError(ErrorCode.OTHER, f"{what} must be a positive number")
    return number


def password_difficulty(password: Any) -> float | None:
    """`d=<diff>` anywhere in the password (`x,d=512`, `d=0.5;foo`), else None."""
    if not isinstance(password, str):
        return None
    for item in password.replace(";", ",").replace(" ", ",").split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip().lower() == "d":
            try:
                return _number(value.strip(), "d=")
            except StratumError:
                return None
    return None


class StratumSession(asyncio.Protocol):
    """State of one miner connection. Handlers are named after the methods they serve."""

    __slots__ = ("_pending", "_resume_timer", "close_reason", "closing", "connected_s", "cost",
                 "extranonce1", "extranonce_subscribed", "framer", "job_difficulty",
                 "last_activity_s", "log", "payout_script", "peer_ip", "rate", "server",
                 "session_id", "subscribed", "suggested_difficulty", "transport", "user_agent",
                 "vardiff", "version_mask", "workers", "working", "write_paused_s")

    def __init__(self, server: StratumServer) -> None:
        self.server = server
        settings = server.settings
        now = time.monotonic()
        self.session_id = server.next_session_id()
        self.transport: asyncio.Transport | None = None
        self.peer_ip = ""
        self.framer = LineFramer(settings.max_line_bytes)
        self.extranonce1: bytes | None = None
        self.subscribed = False
        self.working = False  # subscribed and authorized: jobs flow
        self.extranonce_subscribed = False
        self.user_agent = ""
        self.workers: dict[str, Identity] = {}  # authorized username -> who it is
        self.payout_script: bytes | None = None
        self.version_mask = 0  # negotiated by mining.configure; 0: no version rolling
        self.suggested_difficulty: float | None = None
        self.vardiff = Vardiff(server.vardiff_policy, settings.start_difficulty,
                               settings.min_difficulty, settings.max_difficulty, now)
        self.job_difficulty: dict[str, float] = {}  # job id -> lowest difficulty sent with it
        self.connected_s = now
        self.last_activity_s = now
        self.cost = CostMeter(settings.cost_decay_per_s, updated_s=now)
        self.rate = TokenBucket(settings.max_messages_per_s, settings.max_messages_per_s, now)
        self.write_paused_s: float | None = None
        self._pending: list[bytes] | None = None  # output held while a read is processed
        self._resume_timer: asyncio.TimerHandle | None = None  # set while reading is paused
        self.closing = False
        self.close_reason = "client_closed"
        self.log = log

    # ---- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer_ip = str(peer[0]) if peer else "?"
        self.log = log.bind(session=self.session_id, peer=self.peer_ip)
        transport.set_write_buffer_limits(high=self.server.settings.send_buffer_high_bytes)
        refusal = self.server.admit(self)
        if refusal is not None:
            self.close(refusal)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closing:
            self.closing = True
            self.close_reason = "client_closed" if exc is None else "connection_error"
        self.server.forget(self)

    def pause_writing(self) -> None:
        self.write_paused_s = time.monotonic()

    def resume_writing(self) -> None:
        self.write_paused_s = None

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        self.last_activity_s = time.monotonic()
        if self._pending is None:
            self._pending = []  # answers to pipelined requests leave in one write
        try:
            for line in self.framer.feed(data):
                if self.closing:
                    return
                if line is OVERSIZED:
                    self.send(error_line(None, ErrorCode.OTHER, "line too long"))
                    self.charge(self.server.settings.cost_oversized_line, "oversized_line")
                else:
                    self.handle_line(line)
        finally:
            self._flush()

    # ---- output ------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        if self._pending is not None:
            self._pending.append(data)
        else:
            self._write(data)

    def send_soon(self, data: bytes) -> None:
        """Send from a callback outside a read (a share answer once it is durable): answers
        that become ready together leave in one write, at the end of this loop turn."""
        if self._pending is None:
            self._pending = []
            asyncio.get_running_loop().call_soon(self._flush)
        self._pending.append(data)

    def _flush(self) -> None:
        pending, self._pending = self._pending, None
        if pending:
            self._write(b"".join(pending))

    def _write(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or self.closing:
            return
        transport.write(data)
        if transport.get_write_buffer_size() > self.server.settings.send_buffer_max_bytes:
            self.close("send_buffer_full", abort=True)

    def reply(self, msg_id: Any, result: Any) -> None:
        if msg_id is not None:
            self.send(result_line(msg_id, result))

    def notify(self, method: str, params: list[Any]) -> None:
        self.send(notification_line(method, params))

    def close(self, reason: str, *, abort: bool = False) -> None:
        """Close once, recording why (the disconnect metric's label)."""
        if self.closing:
            return
        self._flush()  # answers already decided go out before the close
        self.closing = True
        self.close_reason = reason
        if self.transport is not None:
            if abort:
                self.transport.abort()
            else:
                self.transport.close()

    # ---- cost model --------------------------------------------------------------------

    def charge(self, amount: float, reason: str) -> None:
        settings = self.server.settings
        cost = self.cost.add(amount, time.monotonic())
        if cost > settings.cost_hard_limit:
            self.log.warning("session_over_cost_limit", reason=reason, cost=round(cost))
            self.server.ban(self.peer_ip)
            self.close("cost_limit")
        elif cost > settings.cost_soft_limit and self.transport is not None:
            # Slow the session down: stop reading until the cost decays under the soft limit.
            if self._resume_timer is None:
                self.transport.pause_reading()
            else:
                self._resume_timer.cancel()
            delay_s = self.cost.seconds_until_below(settings.cost_soft_limit)
            self._resume_timer = asyncio.get_running_loop().call_later(
                delay_s, self._resume_reading)

    def _resume_reading(self) -> None:
        self._resume_timer = None
        if not self.closing and self.transport is not None:
            self.transport.resume_reading()

    # ---- dispatch ----------------------------------------------------------------------

    def handle_line(self, line: bytes) -> None:
        settings = self.server.settings
        if not self.rate.take(time.monotonic()):
            self.charge(settings.cost_excess_message, "message_rate")
            if self.closing:
                return
        try:
            message = json.loads(line)
        except (ValueError, RecursionError):
            self.send(error_line(None, ErrorCode.OTHER, "invalid JSON"))
            self.charge(settings.cost_bad_json, "bad_json")
            return
        if not isinstance(message, dict):
            self.send(error_line(None, ErrorCode.OTHER, "a message must be a JSON object"))
            self.charge(settings.cost_bad_json, "bad_json")
            return
        method = message.get("method")
        msg_id = message.get("id")
        if method is None:
            return  # a response to one of our client.* requests: nothing to do
        params = message.get("params", [])
        handler = self.HANDLERS.get(method) if isinstance(method, str) else None
        try:
            if handler is None:
                raise StratumError(ErrorCode.OTHER, f"unknown method {str(method)[:64]!r}")
            if not isinstance(params, list):
                raise StratumError(ErrorCode.OTHER, "params must be a list")
            handler(self, msg_id, params)
        except StratumError as err:
            self.send(error_line(msg_id, err.code, err.message))
            if method != "mining.submit":
                self.charge(settings.cost_bad_request, "bad_request")
        except Exception:
            # A bug in one handler must not take the connection or the server down.
            self.log.exception("handler_failed", method=method)
            self.send(error_line(msg_id, ErrorCode.OTHER, "internal error"))

    # ---- handlers ----------------------------------------------------------------------

    def mining_subscribe(self, msg_id: Any, params: list[Any]) -> None:
        if params and isinstance(params[0], str):
            self.user_agent = params[0][:128]
        if self.extranonce1 is None:
            self.extranonce1 = self.server.allocate_extranonce1()
        self.subscribed = True
        sub_id = f"{self.session_id:x}"
        self.reply(msg_id, [[["mining.set_difficulty", sub_id], ["mining.notify", sub_id]],
                            self.extranonce1.hex(), self.server.settings.extranonce2_size])
        self._start_work()  # if the miner authorized first

    def mining_configure(self, msg_id: Any, params: list[Any]) -> None:
        extensions = params[0] if params else None
        options = params[1] if len(params) > 1 else {}
        if not isinstance(extensions, list) or not isinstance(options, dict):
            raise StratumError(ErrorCode.OTHER, "params: [[extension, ...], {options}]")
        result: dict[str, Any] = {}
        for name in extensions:
            if name == "version-rolling":
                result.update(self._configure_version_rolling(options))
            elif name == "minimum-difficulty":
                result["minimum-difficulty"] = self._configure_minimum_difficulty(options)
            elif name == "subscribe-extranonce":
                self.extranonce_subscribed = True
                result["subscribe-extranonce"] = True
            elif isinstance(name, str):
                result[name[:64]] = False  # unknown extensions are declined, not errors
        self.reply(msg_id, result)

    def _configure_version_rolling(self, options: dict[str, Any]) -> dict[str, Any]:
        miner_mask = VERSION_ROLLING_ALL
        raw = options.get("version-rolling.mask")
        if raw is not None:
            try:
                miner_mask = int(raw, 16) & VERSION_ROLLING_ALL
            except (TypeError, ValueError):
                raise StratumError(ErrorCode.OTHER, "version-rolling.mask must be hex") from None
        # min-bit-count is advisory (BIP 310): the answer is the mask either way.
        self.version_mask = self.server.settings.version_mask & miner_mask
        return {"version-rolling": True, "version-rolling.mask": f"{self.version_mask:08x}"}

    def _configure_minimum_difficulty(self, options: dict[str, Any]) -> bool:
        value = options.get("minimum-difficulty.value")
        if value is None:
            return False
        minimum = self.vardiff.clamp(_number(value, "minimum-difficulty.value"))
        self.vardiff.min_difficulty = minimum
        if self.vardiff.difficulty < minimum:
            self._set_difficulty(minimum)
        return True

    def mining_authorize(self, msg_id: Any, params: list[Any]) -> None:
        username = params[0] if params else None
        password = params[1] if len(params) > 1 else None
        try:
            identity = self.server.payout.identify(username)
        except UsernameError as err:
            raise StratumError(ErrorCode.UNAUTHORIZED, str(err)) from None
        if self.payout_script not in (None, identity.payout_script):
            raise StratumError(ErrorCode.UNAUTHORIZED,
                               "one payout address per connection: open another connection")
        if identity.username not in self.workers and (
            len(self.workers) >= self.server.settings.max_workers_per_session
        ):
            raise StratumError(ErrorCode.UNAUTHORIZED, "too many workers on this connection")
        first = not self.workers
        self.workers[identity.username] = identity
        self.payout_script = identity.payout_script
        self.reply(msg_id, True)
        if first:
            self.log = self.log.bind(worker=identity.username)
            self.log.info("authorized", solo=identity.solo, user_agent=self.user_agent)
            if self.suggested_difficulty is None:  # mining.suggest_difficulty wins over d=
                self.suggested_difficulty = password_difficulty(password)
            self._start_work()

    def _start_work(self) -> None:
        """Once subscribed and authorized (either order): version mask, difficulty, then the
        current job. Nothing is pushed to a miner before that."""
        if self.working or not self.subscribed or not self.workers:
            return
        self.working = True
        if self.version_mask:
            self.notify("mining.set_version_mask", [f"{self.version_mask:08x}"])
        if self.suggested_difficulty is not None:
            self.vardiff.set(self.suggested_difficulty, time.monotonic())
        self.notify("mining.set_difficulty", [wire_difficulty(self.vardiff.difficulty)])
        job = self.server.jobs.current
        if job is not None:
            self.send_job(job, clean=True)

    def mining_suggest_difficulty(self, msg_id: Any, params: list[Any]) -> None:
        difficulty = _number(params[0] if params else None, "difficulty")
        if self.working:
            self._set_difficulty(difficulty)
        else:
            self.suggested_difficulty = difficulty  # the start difficulty
        self.reply(msg_id, True)

    def mining_extranonce_subscribe(self, msg_id: Any, params: list[Any]) -> None:
        self.extranonce_subscribed = True
        self.reply(msg_id, True)

    def mining_get_transactions(self, msg_id: Any, params: list[Any]) -> None:
        self.reply(msg_id, [])

    def mining_submit(self, msg_id: Any, params: list[Any]) -> None:
        try:
            share = self._check_submit(params)
        except StratumError as err:
            metrics.SHARES.labels(result=_SHARE_RESULT[err.code]).inc()
            if err.code != ErrorCode.JOB_NOT_FOUND:  # stale shares are normal after a block
                self.charge(self.server.settings.cost_invalid_share, "invalid_share")
            raise
        if share.is_block:
            self.server.spawn(self._block_then_reply(msg_id, share))
        else:
            self._record_then_reply(msg_id, share)
        new_difficulty = self.vardiff.on_share(time.monotonic())
        if new_difficulty is not None:
            self._announce_difficulty()

    def _check_submit(self, params: list[Any]) -> Share:
        if len(params) not in (5, 6):
            raise StratumError(ErrorCode.OTHER, "mining.submit takes 5 or 6 params")
        if not self.subscribed or self.extranonce1 is None:
            raise StratumError(ErrorCode.NOT_SUBSCRIBED, "not subscribed")
        worker, job_id = params[0], params[1]
        identity = self.workers.get(worker) if isinstance(worker, str) else None
        if identity is None:
            raise StratumError(ErrorCode.UNAUTHORIZED, "unauthorized worker")
        current = self.vardiff.difficulty
        sent_with = self.job_difficulty.get(job_id, current) if isinstance(job_id, str) else 0
        share = self.server.validator.validate(
            worker=worker, job_id=job_id, extranonce1=self.extranonce1,
            extranonce2_hex=params[2], ntime_hex=params[3], nonce_hex=params[4],
            version_bits_hex=params[5] if len(params) == 6 else None,
            version_mask=self.version_mask, payout_script=identity.payout_script,
            difficulty=min(sent_with, current) or current,
        )
        share.identity = identity
        return share

    async def _block_then_reply(self, msg_id: Any, share: Share) -> None:
        await self.server.submit_block(share)  # first: nothing may delay a block
        self._record_then_reply(msg_id, share)

    # ---- acknowledged ⇒ durable ---------------------------------------------------------

    def _record_then_reply(self, msg_id: Any, share: Share) -> None:
        """Answer `true` only once the ledger holds the share (docs/ledger.md); error 20
        when it cannot, so the miner keeps (and may resubmit) the work."""
        try:
            durable = self.server.record_share(share)
        except LedgerError as err:
            self._not_recorded(msg_id, share, err)
            return
        if durable is None:  # no ledger (tests, benchmarks)
            self._accepted(msg_id, share)
        else:
            durable.add_done_callback(functools.partial(self._recorded, msg_id, share))

    def _recorded(self, msg_id: Any, share: Share, durable: asyncio.Future[None]) -> None:
        error = durable.exception() if not durable.cancelled() else LedgerError("cancelled")
        if error is None:
            self._accepted(msg_id, share)
        else:
            self._not_recorded(msg_id, share, error)

    def _accepted(self, msg_id: Any, share: Share) -> None:
        _ACCEPTED.inc()
        metrics.SHARE_DIFFICULTY.inc(share.difficulty)
        self.server.share_accepted(share)
        if msg_id is not None:
            self.send_soon(result_line(msg_id, True))

    def _not_recorded(self, msg_id: Any, share: Share, error: BaseException) -> None:
        metrics.SHARES_NOT_RECORDED.inc()
        share.job.seen_hashes.discard(share.hash_le)  # a resubmission is not a duplicate
        self.log.debug("share_not_recorded", error=str(error))
        self.send_soon(error_line(msg_id, ErrorCode.OTHER, NOT_RECORDED_MESSAGE))

    # ---- difficulty, jobs and extranonce ----------------------------------------------

    def _set_difficulty(self, difficulty: float) -> None:
        self.vardiff.set(difficulty, time.monotonic())
        if self.working:
            self._announce_difficulty()

    def _announce_difficulty(self) -> None:
        """set_difficulty, then the current job again (never clean) for firmware that
        applies a new difficulty only from the next job."""
        self.notify("mining.set_difficulty", [wire_difficulty(self.vardiff.difficulty)])
        job = self.server.jobs.current
        if job is not None:
            self.send_job(job, clean=False)

    def retarget(self, now_s: float) -> None:
        """Periodic vardiff check (the server's sweep), for miners that stopped sharing."""
        if self.working and self.vardiff.maybe_retarget(now_s) is not None:
            self._announce_difficulty()

    def send_job(self, job: Job, *, clean: bool | None = None) -> None:
        """mining.notify for an authorized session that is not starved; remembers the
        difficulty it went with."""
        if not self.working or self.payout_script is None or self.closing:
            return
        gate = self.server.workgate
        if gate is not None and gate.blocks(self.workers):
            return  # starved (pool.workgate): its old work goes stale with the tip
        difficulty = self.vardiff.difficulty
        known = self.job_difficulty
        previous = known.get(job.job_id)
        known[job.job_id] = difficulty if previous is None else min(previous, difficulty)
        if previous is None and len(known) > self.server.max_remembered_jobs:
            del known[next(iter(known))]
        self.send(job.notify_line(self.payout_script, clean=clean))

    def set_extranonce1(self, extranonce1: bytes) -> bool:
        """Move the session to a new extranonce1 (mining.set_extranonce); False (nothing
        sent) when the miner did not subscribe to extranonce changes."""
        if not self.extranonce_subscribed or self.extranonce1 is None:
            return False
        self.extranonce1 = extranonce1
        self.notify("mining.set_extranonce",
                    [extranonce1.hex(), self.server.settings.extranonce2_size])
        job = self.server.jobs.current
        if job is not None:
            self.send_job(job, clean=True)  # old jobs' coinbases no longer match
        return True

    HANDLERS: dict[str, Any] = {
        "mining.subscribe": mining_subscribe,
        "mining.configure": mining_configure,
        "mining.authorize": mining_authorize,
        "mining.suggest_difficulty": mining_suggest_difficulty,
        "mining.extranonce.subscribe": mining_extranonce_subscribe,
        "mining.get_transactions": mining_get_transactions,
        "mining.submit": mining_submit,
    }
