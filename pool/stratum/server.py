"""The Stratum V1 server: listeners, the session registry, job broadcast, limits, drain.

The server owns everything sessions share: settings, the extranonce1 allocator, per-IP
accounting and bans, the share validator, block submission, and one periodic sweep that
enforces timeouts and retargets idle sessions (cheaper than a timer per session at 10k+).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import ssl
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

import structlog

from pool import metrics
from pool.config import parse_host_port
from pool.jobs import Job, JobManager
from pool.shares import Share, ShareValidator, submit_block
from pool.stratum.extranonce import ExtranonceAllocator
from pool.stratum.limits import IPLimits
from pool.stratum.session import StratumSession
from pool.stratum.settings import StratumSettings
from pool.stratum.usernames import PayoutPolicy
from pool.stratum.vardiff import VardiffPolicy
from pool.workgate import PoolWorkGate

log = structlog.get_logger(__name__)

SWEEP_INTERVAL_S = 1.0  # how often timeouts, stalls and idle retargets are checked
LISTEN_BACKLOG = 4096  # pending TCP connections; a site reboot reconnects thousands at once

SubmitFn = Callable[[str], Awaitable[dict[str, str | None]]]
ShareCallback = Callable[[Share], None]
BlockCallback = Callable[[Share, dict[str, str | None]], None]


class ShareLedger(Protocol):
    """Where accepted shares and found blocks go (pool.ledger.service.LedgerService)."""

    def record_share(self, share: Share) -> asyncio.Future[None]:
        """Resolves once the share is durable; may raise LedgerError at once."""
        ...

    async def block_found(self, share: Share) -> None: ...

    async def block_submitted(self, share: Share, results: dict[str, str | None]) -> None: ...


class StratumServer:
    """Serve Stratum V1 on the configured listeners with jobs from `jobs`."""

    def __init__(
        self,
        settings: StratumSettings,
        jobs: JobManager,
        *,
        payout: PayoutPolicy,
        submit: SubmitFn,
        validator: ShareValidator | None = None,
        simulated: bool = False,
        on_share: ShareCallback | None = None,
        on_block: BlockCallback | None = None,
        extranonce1_prefix: bytes = b"",
        ledger: ShareLedger | None = None,
        workgate: PoolWorkGate | None = None,
    ) -> None:
        self.settings = settings
        self.jobs = jobs
        self.payout = payout
        self.validator = validator or ShareValidator(
            jobs, extranonce2_size=settings.extranonce2_size)
        self.simulated = simulated
        self.vardiff_policy = VardiffPolicy(
            target_interval_s=settings.vardiff_target_share_interval_s,
            retarget_interval_s=settings.vardiff_retarget_interval_s,
            retarget_shares=settings.vardiff_retarget_shares,
            hysteresis=settings.vardiff_hysteresis,
            max_step_factor=settings.vardiff_max_step_factor,
        )
        # A session remembers the difficulty of this many recent jobs (all a tip keeps).
        self.max_remembered_jobs = jobs.settings.max_jobs_per_tip + 4
        self.sessions: set[StratumSession] = set()
        self.ip_limits = IPLimits(settings.max_connections_per_ip)
        self._submit = submit
        self._on_share = on_share
        self._on_block = on_block
        # Without a ledger a valid share is answered at once (tests, benchmarks); with one,
        # only once the ledger holds it.
        self._ledger = ledger
        # Starved workers' sessions get no jobs (pool.workgate, docs/fleet.md).
        self.workgate = workgate
        if workgate is not None:
            workgate.subscribe(self.worker_gated)
        self._extranonces = ExtranonceAllocator(4, prefix=extranonce1_prefix)
        self._session_ids = itertools.count(1)
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._accepting = False
        self._all_gone: asyncio.Event | None = None  # set when draining and the last one left

    # ---- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Bind every listener (TLS too), log the settings, start the sweep."""
        self.settings.log_settings(log)
        self._accepting = True
        for index, listen in enumerate(self.settings.listen):
            await self._listen(parse_host_port(f"stratum.listen[{index}]", listen), None)
        tls = self._tls_context() if self.settings.tls_listen else None
        for index, listen in enumerate(self.settings.tls_listen):
            await self._listen(parse_host_port(f"stratum.tls_listen[{index}]", listen), tls)
        self.jobs.on_job(self.broadcast)
        self._sweeper = asyncio.create_task(self._sweep(), name="stratum-sweep")

    async def _listen(self, address: tuple[str, int], tls: ssl.SSLContext | None) -> None:
        server = await asyncio.get_running_loop().create_server(
            lambda: StratumSession(self), address[0], address[1],
            ssl=tls, backlog=LISTEN_BACKLOG, reuse_address=True,
        )
        self._servers.append(server)
        for sock in server.sockets:
            log.info("stratum_listening", address=sock.getsockname()[:2], tls=tls is not None)

    def _tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        assert self.settings.tls_cert_file and self.settings.tls_key_file
        context.load_cert_chain(self.settings.tls_cert_file, self.settings.tls_key_file)
        return context

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """Bound (host, port) of every listener, in configuration order (plain, then TLS)."""
        return [sock.getsockname()[:2] for srv in self._servers for sock in srv.sockets]

    async def drain(self, *, message: str = "pool restarting, reconnect shortly") -> None:
        """Graceful shutdown: stop accepting, ask every miner to reconnect (client.reconnect),
        give them `drain_grace_s` to go, then close what is left."""
        await self._close_listeners()
        for session in list(self.sessions):
            session.notify("client.show_message", [message])
            session.notify("client.reconnect", [])
        if self.sessions:
            log.info("stratum_draining", sessions=len(self.sessions),
                     grace_s=self.settings.drain_grace_s)
            self._all_gone = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.drain_grace_s):
                    await self._all_gone.wait()
        await self.stop()

    async def stop(self) -> None:
        """Close listeners and sessions, cancel the sweep and pending block tasks' waits."""
        await self._close_listeners()
        for session in list(self.sessions):
            session.close("shutdown")
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        if self._tasks:  # block submissions: let them finish, they matter most
            await asyncio.wait(self._tasks, timeout=10.0)
        await asyncio.sleep(0)  # let transports deliver connection_lost

    async def _close_listeners(self) -> None:
        self._accepting = False
        servers, self._servers = self._servers, []
        for server in servers:
            server.close()
        for server in servers:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await server.wait_closed()

    # ---- sessions ----------------------------------------------------------------------

    def next_session_id(self) -> int:
        return next(self._session_ids)

    def admit(self, session: StratumSession) -> str | None:
        """Register a new connection, or return why it is refused."""
        if not self._accepting:
            return "shutting_down"
        if len(self.sessions) >= self.settings.max_sessions:
            return "max_sessions"
        refusal = self.ip_limits.admit(session.peer_ip, time.monotonic())
        if refusal is not None:
            return refusal
        self.sessions.add(session)
        metrics.CONNECTIONS.set(len(self.sessions))
        return None

    def forget(self, session: StratumSession) -> None:
        """Connection gone: free its extranonce1 and per-IP slot, count the reason."""
        metrics.SESSIONS_DISCONNECTED.labels(reason=session.close_reason).inc()
        if session not in self.sessions:
            return  # refused at admission
        self.sessions.discard(session)
        self.ip_limits.release(session.peer_ip)
        if session.extranonce1 is not None:
            self._extranonces.release(session.extranonce1)
        metrics.CONNECTIONS.set(len(self.sessions))
        if not self.sessions and self._all_gone is not None:
            self._all_gone.set()
        if session.close_reason not in ("client_closed", "shutdown"):
            session.log.info("session_closed", reason=session.close_reason)

    def allocate_extranonce1(self) -> bytes:
        return self._extranonces.allocate()

    def change_extranonce1(self, session: StratumSession) -> bool:
        """Give a session a fresh extranonce1 (mining.set_extranonce) if it subscribed to
        extranonce changes; the old value is released only once the new one is out."""
        old = session.extranonce1
        new = self._extranonces.allocate()
        if not session.set_extranonce1(new):
            self._extranonces.release(new)
            return False
        if old is not None:
            self._extranonces.release(old)
        return True

    def ban(self, ip: str) -> None:
        if self.settings.ban_s > 0:
            self.ip_limits.ban(ip, time.monotonic() + self.settings.ban_s)

    # ---- jobs, shares, blocks ----------------------------------------------------------

    def broadcast(self, job: Job) -> None:
        """Send a new job to every authorized session (the JobManager's on_job callback)."""
        for session in self.sessions:
            session.send_job(job)
        if job.clean and job.tip_seen_s is not None:
            metrics.JOB_BROADCAST_SECONDS.observe(time.monotonic() - job.tip_seen_s)

    def worker_gated(self, worker: str, starved: bool, reason: str) -> None:
        """The work gate changed: tell a starved worker's sessions why (send_job then skips
        them); give a released worker's sessions the current job at once, clean."""
        job = self.jobs.current
        for session in list(self.sessions):
            if worker not in session.workers or not session.working or session.closing:
                continue
            if starved:
                session.notify("client.show_message", [f"work paused by the pool: {reason}"])
            elif job is not None:
                session.send_job(job, clean=True)  # unless another of its workers is starved

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run a coroutine owned by the server (block submissions)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("server_task_failed", error=repr(task.exception()))

    async def submit_block(self, share: Share) -> dict[str, str | None]:
        """Submit to every node; the ledger records the block meanwhile, then the answers."""
        ledger = self._ledger
        results = await submit_block(share, self._submit, simulated=self.simulated,
                                     on_block=self._on_block,
                                     on_found=ledger.block_found if ledger else None)
        if ledger is not None:
            await ledger.block_submitted(share, results)
        return results

    def record_share(self, share: Share) -> asyncio.Future[None] | None:
        """Hand an accepted share to the ledger: a future that resolves once it is durable
        (None without a ledger). LedgerError when it cannot take it now."""
        return self._ledger.record_share(share) if self._ledger is not None else None

    def share_accepted(self, share: Share) -> None:
        """A share was answered `true`."""
        if self._on_share is not None:
            self._on_share(share)

    # ---- periodic sweep ----------------------------------------------------------------

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_S)
            self.sweep(time.monotonic())

    def sweep(self, now_s: float) -> None:
        """Enforce pre-authorize, idle and send-stall timeouts; retarget quiet sessions."""
        settings = self.settings
        for session in list(self.sessions):
            if session.closing:
                continue
            if not session.workers and now_s - session.connected_s > settings.pre_auth_timeout_s:
                session.close("pre_auth_timeout")
            elif now_s - session.last_activity_s > settings.idle_timeout_s:
                session.close("idle_timeout")
            elif (session.write_paused_s is not None
                  and now_s - session.write_paused_s > settings.send_stall_timeout_s):
                session.close("send_stall", abort=True)
            else:
                session.retarget(now_s)
        self.ip_limits.purge(now_s)

    def status(self) -> dict[str, Any]:
        return {
            "sessions": len(self.sessions),
            "authorized": sum(1 for s in self.sessions if s.workers),
            "listen": [f"{h}:{p}" for h, p in self.addresses],
            "simulated_blocks": self.simulated,
        }
