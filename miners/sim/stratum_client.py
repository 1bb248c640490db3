"""A real Stratum V1 mining client, as an ASIC's firmware runs it.

Handshake: mining.configure (BIP 310 version rolling, optional minimum difficulty) →
mining.subscribe → mining.extranonce.subscribe → mining.authorize →
mining.suggest_difficulty. It follows mining.notify, mining.set_difficulty,
mining.set_version_mask, mining.set_extranonce, client.reconnect and client.show_message.

Work is built the way firmware builds it, independently of the pool's code: coinbase =
coinb1 + extranonce1 + extranonce2 + coinb2, merkle root folded up the branch, the notify's
word-swapped prevhash swapped back, version rolled inside the negotiated mask; nonces are
really ground with the native scanner (`pool.hashing`), paced to a hash rate when one is
given. Tests drive it step by step (`connect`, `handshake`, `find_solution`, `submit`);
the simulator runs `start()`, which reconnects on its own.

Pacing: with a hash rate, the mining loop wakes every `PACE_SLICE_S` and grinds
``rate x elapsed`` hashes (at most `MAX_CATCHUP_S` of missed time), carrying the remainder
over, and keeps grinding after a share is found; so the rate ground is the rate asked for
however often shares come and however late the event loop wakes.

Hooks for a firmware model built on top (the simulator's faults use only these):
`on_solution(solution) -> list[Solution]` sees every found share before it is submitted and
returns what to submit instead (nothing, the share, a corrupted copy, two copies...);
`on_share(solution, accepted, reason)` sees the pool's verdict; `on_connect()` runs after
every TCP connection (also counted in `connects`); `retired_job_ids` lists the job ids that
recently stopped being current.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import ssl
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from miners.sim.work import MiningJob, Solution, spread_bits
from pool.bitcoin.hashes import sha256d
from pool.bitcoin.target import difficulty_to_target
from pool.hashing import HashBackend, get_backend

__all__ = [
    "ClientStats",
    "MiningJob",
    "Solution",
    "StratumClient",
    "StratumClientError",
    "spread_bits",
]

log = structlog.get_logger(__name__)

MAX_NONCE = 0xFFFFFFFF
MAX_LINE_BYTES = 1 << 20  # a pool line longer than this is a broken pool
PACE_SLICE_S = 0.1  # a paced miner wakes this often to grind the time that has passed
MAX_CATCHUP_S = 1.0  # pacing: never grind more than this much missed time at once
UNPACED_CHUNK = 1 << 18  # nonces per scan call when grinding flat out
THREAD_THRESHOLD = 1 << 16  # scans at least this large run in a worker thread
NOTIFICATION_LOG = 2000  # server messages kept for inspection
RETIRED_JOBS_KEPT = 8  # job ids that stopped being current, kept for inspection (newest last)


class StratumClientError(Exception):
    """The pool answered a request with an error `[code, message, data]`."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message


@dataclass(slots=True)
class _Grind:
    """Where the search is: one (job, extranonce2, version) header and the next nonce."""

    job: MiningJob | None = None
    extranonce2_counter: int = 0
    version_counter: int = 0
    nonce: int = 0
    merkle_root_le: bytes = b""
    extranonce2: bytes = b""


@dataclass(slots=True)
class ClientStats:
    accepted: int = 0
    rejected: int = 0
    hashes: int = 0
    errors: dict[int, int] = field(default_factory=dict)


ShareCallback = Callable[[Solution, bool, str | None], None]
SolutionFilter = Callable[[Solution], Sequence[Solution]]


class StratumClient:
    """One miner's connection to a pool. See the module docstring for the flow."""

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        password: str = "x",
        *,
        user_agent: str = "gridpool-sim/1.0",
        version_rolling: bool = True,
        requested_version_mask: int = 0x1FFFE000,
        suggest_difficulty: float | None = None,
        minimum_difficulty: float | None = None,
        extranonce_subscribe: bool = True,
        hashrate_hs: Callable[[], float] | None = None,
        backend: HashBackend | None = None,
        request_timeout_s: float = 10.0,
        reconnect_delay_s: float = 1.0,
        on_share: ShareCallback | None = None,
        on_solution: SolutionFilter | None = None,
        on_connect: Callable[[], None] | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.tls = tls  # stratum+ssl:// when set
        self.username, self.password = username, password
        self.user_agent = user_agent
        self.version_rolling = version_rolling
        self.requested_version_mask = requested_version_mask
        self.suggested_difficulty = suggest_difficulty
        self.minimum_difficulty = minimum_difficulty
        self.extranonce_subscribe = extranonce_subscribe
        self.hashrate_hs = hashrate_hs
        self.backend = backend or get_backend()
        self.request_timeout_s = request_timeout_s
        self.reconnect_delay_s = reconnect_delay_s
        self.on_share = on_share
        self.on_solution = on_solution
        self.on_connect = on_connect
        self.connects = 0  # successful TCP connections to the pool so far
        # State learned from the pool.
        self.extranonce1 = b""
        self.extranonce2_size = 0
        self.version_mask = 0
        self.difficulty: float | None = None
        self.job: MiningJob | None = None
        self.jobs: dict[str, MiningJob] = {}
        self._retired_job_ids: deque[str] = deque(maxlen=RETIRED_JOBS_KEPT)
        self.messages: deque[dict[str, Any]] = deque(maxlen=NOTIFICATION_LOG)
        self.stats = ClientStats()
        self.connected = False
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._changed = asyncio.Event()
        self._read_task: asyncio.Task[None] | None = None
        self._run_task: asyncio.Task[None] | None = None
        self._submits: set[asyncio.Task[Any]] = set()
        self._reconnect_to: tuple[str, int, float] | None = None
        self._grind = _Grind()

    # ---- connection --------------------------------------------------------------------

    async def connect(self) -> None:
        async with asyncio.timeout(self.request_timeout_s):
            self._reader, self._writer = await asyncio.open_connection(
                self.host, self.port, limit=MAX_LINE_BYTES, ssl=self.tls
            )
        self.connected = True
        self.connects += 1
        self._read_task = asyncio.create_task(self._read_loop(), name="stratum-client-read")
        if self.on_connect is not None:
            self.on_connect()

    async def close(self) -> None:
        self.connected = False
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
        if self._read_task is not None:
            self._read_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._read_task
        self._fail_pending(ConnectionError("connection closed"))

    async def __aenter__(self) -> StratumClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def handshake(self) -> None:
        """configure → subscribe → extranonce.subscribe → authorize → suggest_difficulty."""
        if self.version_rolling or self.minimum_difficulty is not None:
            await self.configure()
        await self.subscribe()
        if self.extranonce_subscribe:
            await self.request("mining.extranonce.subscribe", [])
        await self.authorize()
        if self.suggested_difficulty is not None:
            await self.request("mining.suggest_difficulty", [self.suggested_difficulty])

    async def configure(self) -> dict[str, Any]:
        extensions: list[str] = []
        options: dict[str, Any] = {}
        if self.version_rolling:
            extensions.append("version-rolling")
            options["version-rolling.mask"] = f"{self.requested_version_mask:08x}"
            options["version-rolling.min-bit-count"] = 2
        if self.minimum_difficulty is not None:
            extensions.append("minimum-difficulty")
            options["minimum-difficulty.value"] = self.minimum_difficulty
        result = await self.request("mining.configure", [extensions, options])
        if isinstance(result, dict) and result.get("version-rolling") is True:
            self.version_mask = int(result["version-rolling.mask"], 16)
        return result

    async def subscribe(self) -> list[Any]:
        result = await self.request("mining.subscribe", [self.user_agent])
        self.extranonce1 = bytes.fromhex(result[1])
        self.extranonce2_size = int(result[2])
        return result

    async def authorize(self, username: str | None = None) -> bool:
        return bool(
            await self.request("mining.authorize", [username or self.username, self.password])
        )

    async def request(self, method: str, params: list[Any]) -> Any:
        """Send one request and wait for its answer; StratumClientError on an error."""
        msg_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = future
        try:
            await self.send_raw(
                json.dumps({"id": msg_id, "method": method, "params": params}).encode() + b"\n"
            )
            async with asyncio.timeout(self.request_timeout_s):
                return await future
        finally:
            self._pending.pop(msg_id, None)

    async def send_raw(self, data: bytes) -> None:
        if self._writer is None or not self.connected:
            raise ConnectionError("not connected")
        self._writer.write(data)
        async with asyncio.timeout(self.request_timeout_s):
            await self._writer.drain()

    def _fail_pending(self, err: Exception) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(err)
        self._pending.clear()

    # ---- incoming ----------------------------------------------------------------------

    async def _read_loop(self) -> None:
        assert self._reader is not None
        try:
            while True:
                line = await self._reader.readline()
                if not line:
                    break
                self._handle(json.loads(line))
        except (ConnectionError, ValueError, asyncio.LimitOverrunError) as err:
            log.info("stratum_client_read_failed", error=repr(err))
        finally:
            self.connected = False
            self._fail_pending(ConnectionError("connection closed by the pool"))
            self._pulse()

    def _handle(self, message: dict[str, Any]) -> None:
        method = message.get("method")
        if method is None:
            future = self._pending.get(message.get("id"))  # type: ignore[arg-type]
            if future is not None and not future.done():
                error = message.get("error")
                if error:
                    future.set_exception(StratumClientError(int(error[0]), str(error[1])))
                else:
                    future.set_result(message.get("result"))
            return
        self.messages.append(message)
        handler = self._NOTIFICATIONS.get(method)
        if handler is not None:
            handler(self, message.get("params") or [])
        self._pulse()

    def _on_notify(self, params: list[Any]) -> None:
        job = MiningJob.from_params(params)
        if job.clean:
            self.jobs.clear()
        self.jobs[job.job_id] = job
        previous, self.job = self.job, job
        if previous is not None and previous.job_id != job.job_id:
            self._retired_job_ids.append(previous.job_id)

    @property
    def retired_job_ids(self) -> tuple[str, ...]:
        """Ids of the jobs that recently stopped being the current one, newest last."""
        return tuple(self._retired_job_ids)

    def _on_set_difficulty(self, params: list[Any]) -> None:
        self.difficulty = float(params[0])

    def _on_set_version_mask(self, params: list[Any]) -> None:
        self.version_mask = int(params[0], 16)

    def _on_set_extranonce(self, params: list[Any]) -> None:
        self.extranonce1 = bytes.fromhex(params[0])
        if len(params) > 1:
            self.extranonce2_size = int(params[1])
        self._grind = _Grind()

    def _on_reconnect(self, params: list[Any]) -> None:
        host = params[0] if params and params[0] else self.host
        port = int(params[1]) if len(params) > 1 and params[1] else self.port
        wait_s = float(params[2]) if len(params) > 2 else 0.0
        self._reconnect_to = (str(host), port, wait_s)
        if self._writer is not None:
            self._writer.close()

    def _on_show_message(self, params: list[Any]) -> None:
        log.info("pool_message", message=str(params[0])[:200] if params else "")

    _NOTIFICATIONS: dict[str, Callable[[StratumClient, list[Any]], None]] = {
        "mining.notify": _on_notify,
        "mining.set_difficulty": _on_set_difficulty,
        "mining.set_version_mask": _on_set_version_mask,
        "mining.set_extranonce": _on_set_extranonce,
        "client.reconnect": _on_reconnect,
        "client.show_message": _on_show_message,
    }

    def _pulse(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for(self, predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
        """Wait until predicate() holds, re-checking after every message from the pool."""
        async with asyncio.timeout(timeout_s):
            while not predicate():
                if not self.connected and not predicate():
                    raise ConnectionError("connection closed while waiting")
                await self._changed.wait()

    def methods_received(self) -> list[str]:
        return [m["method"] for m in self.messages]

    # ---- work --------------------------------------------------------------------------

    def _next_header(self, grind: _Grind, job: MiningJob) -> None:
        """Move the search to a fresh header. With version rolling every new header (new
        job or nonces exhausted) takes the next version bits, and extranonce2 moves only
        when they wrap, as ASICs roll versions across their cores; without it, extranonce2
        moves."""
        if self.version_mask:
            grind.version_counter += 1
            if spread_bits(grind.version_counter, self.version_mask) == 0:  # wrapped
                grind.version_counter = 0
                grind.extranonce2_counter += 1
        elif grind.job is not None:
            grind.extranonce2_counter += 1
        grind.job = job
        grind.nonce = 0
        grind.extranonce2 = (
            grind.extranonce2_counter % (1 << (8 * self.extranonce2_size))
        ).to_bytes(self.extranonce2_size, "little")
        grind.merkle_root_le = job.merkle_root_le(self.extranonce1, grind.extranonce2)

    def roll_version(self) -> None:
        """Move the search to the next version bits, same extranonce2 (as firmware rolls
        versions before extranonce2)."""
        grind = self._grind
        if grind.job is not None and self.version_mask:
            grind.version_counter += 1
            grind.nonce = 0

    def _version_for(self, grind: _Grind, job: MiningJob) -> tuple[int, int | None]:
        if not self.version_mask:
            return job.version, None
        bits = spread_bits(grind.version_counter, self.version_mask)
        return (job.version & ~self.version_mask) | bits, bits

    def grind(
        self, max_hashes: int, *, job: MiningJob | None = None, difficulty: float | None = None
    ) -> Solution | None:
        """Search up to max_hashes nonces for a share at `difficulty` (default: the pool's);
        continues where the previous call stopped. Blocking: CPU work."""
        job = job or self.job
        difficulty = difficulty or self.difficulty
        if job is None or difficulty is None:
            raise RuntimeError("no job or difficulty from the pool yet")
        target32_le = difficulty_to_target(difficulty).to_bytes(32, "little")
        grind = self._grind
        done = 0
        while done < max_hashes:
            if grind.job is not job or grind.nonce > MAX_NONCE:
                self._next_header(grind, job)
            version, version_bits = self._version_for(grind, job)
            count = min(max_hashes - done, MAX_NONCE + 1 - grind.nonce)
            header = job.header(grind.merkle_root_le, ntime=job.ntime, nonce=0, version=version)
            found = self.backend.scan(header, grind.nonce, count, target32_le)
            if found is None:
                done += count
                grind.nonce += count
                continue
            done += found - grind.nonce + 1
            grind.nonce = found + 1
            self.stats.hashes += done
            final = job.header(grind.merkle_root_le, ntime=job.ntime, nonce=found, version=version)
            return Solution(
                job,
                grind.extranonce2,
                job.ntime,
                found,
                version,
                version_bits,
                difficulty,
                sha256d(final),
            )
        self.stats.hashes += done
        return None

    def find_solution(
        self,
        *,
        max_hashes: int = 1 << 26,
        job: MiningJob | None = None,
        difficulty: float | None = None,
    ) -> Solution:
        """Grind until a share is found (RuntimeError after max_hashes)."""
        solution = self.grind(max_hashes, job=job, difficulty=difficulty)
        if solution is None:
            raise RuntimeError(f"no share in {max_hashes} hashes")
        return solution

    async def submit(self, solution: Solution, *, worker: str | None = None) -> bool:
        """mining.submit; True when accepted, StratumClientError with the pool's code if not."""
        try:
            result = await self.request(
                "mining.submit", solution.submit_params(worker or self.username)
            )
        except StratumClientError as err:
            self.stats.rejected += 1
            self.stats.errors[err.code] = self.stats.errors.get(err.code, 0) + 1
            if self.on_share is not None:
                self.on_share(solution, False, err.message)
            raise
        self.stats.accepted += 1
        if self.on_share is not None:
            self.on_share(solution, True, None)
        return bool(result)

    # ---- autonomous mining (the simulator) ---------------------------------------------

    def start(self) -> None:
        """Connect, handshake and mine in the background, reconnecting when dropped."""
        if self._run_task is None:
            self._run_task = asyncio.create_task(self._run(), name="stratum-client")

    async def stop(self) -> None:
        task, self._run_task = self._run_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for submit in list(self._submits):
            submit.cancel()
        await self.close()

    async def _run(self) -> None:
        while True:
            try:
                await self.connect()
                await self.handshake()
                await self._mine()
            except (OSError, TimeoutError, StratumClientError) as err:
                log.info("stratum_client_disconnected", error=repr(err), host=self.host)
            await self.close()
            delay_s = self.reconnect_delay_s
            if self._reconnect_to is not None:
                self.host, self.port, delay_s = self._reconnect_to
                self._reconnect_to = None
            await asyncio.sleep(delay_s)

    async def _mine(self) -> None:
        """Grind and submit until the connection drops: flat out without a hash rate, else
        paced by elapsed time (see the module docstring)."""
        budget, last = 0.0, time.monotonic()
        while self.connected:
            if self.job is None or self.difficulty is None:
                await self.wait_for(
                    lambda: self.job is not None and self.difficulty is not None, timeout_s=3600
                )
                budget, last = 0.0, time.monotonic()
                continue
            if self.hashrate_hs is None:
                await self._grind_and_submit(UNPACED_CHUNK)
                await asyncio.sleep(0)
                continue
            now = time.monotonic()
            budget += max(0.0, self.hashrate_hs()) * min(now - last, MAX_CATCHUP_S)
            last = now
            while budget >= 1 and self.connected and self.job is not None:
                budget -= await self._grind_and_submit(int(budget))
            await asyncio.sleep(PACE_SLICE_S)

    async def _grind_and_submit(self, count: int) -> int:
        """Grind up to `count` hashes (in a worker thread when large), submit what
        `on_solution` makes of a find; returns the hashes done."""
        before = self.stats.hashes
        if count >= THREAD_THRESHOLD:
            solution = await asyncio.to_thread(self.grind, count)
        else:
            solution = self.grind(count)
        if solution is not None:
            shares = self.on_solution(solution) if self.on_solution else (solution,)
            for share in shares:
                self._spawn_submit(share)
        return max(1, self.stats.hashes - before)

    def _spawn_submit(self, solution: Solution) -> None:
        async def submit() -> None:
            with contextlib.suppress(StratumClientError, ConnectionError, TimeoutError):
                await self.submit(solution)

        task = asyncio.create_task(submit())
        self._submits.add(task)
        task.add_done_callback(self._submits.discard)
