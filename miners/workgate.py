"""Work gates: how the controller asks the pool to stop (and resume) feeding a worker.

`miners.compliance.WorkGate` is the interface (``starve(worker, reason)``,
``release(worker)``). In one process (`gridpool run`) the pool implements it directly.
A site controller on its own LAN (`gridpool fleet run`) reaches the central pool with
`HttpWorkGate`, which posts to the pool's admin API (proposed endpoints, implemented on the
pool side with the lead):

    POST {pool_api}/workers/{worker}/starve   {"reason": "..."}
    POST {pool_api}/workers/{worker}/release

Calls are queued (bounded) and sent by one task with a deadline each and a capped back-off,
so a slow pool never blocks the control loop; the last call per worker wins.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import quote

import aiohttp
import structlog

log = structlog.get_logger(__name__)

QUEUE_SIZE = 10_000  # pending gate calls; beyond this the oldest per worker is superseded
CALL_TIMEOUT_S = 5.0
RETRY_MAX_S = 30.0


class HttpWorkGate:
    """Starve/release through the pool's HTTP admin API."""

    def __init__(self, base_url: str, *, token: str, timeout_s: float = CALL_TIMEOUT_S) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"}
        self.timeout_s = timeout_s
        self._pending: dict[str, tuple[str, str]] = {}  # worker -> (call, reason), newest
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._http: aiohttp.ClientSession | None = None

    def starve(self, worker_name: str, reason: str) -> None:
        self._queue(worker_name, "starve", reason)

    def release(self, worker_name: str) -> None:
        self._queue(worker_name, "release", "")

    def _queue(self, worker: str, call: str, reason: str) -> None:
        if len(self._pending) >= QUEUE_SIZE and worker not in self._pending:
            raise RuntimeError("work gate queue is full; the pool API is not answering")
        self._pending[worker] = (call, reason)
        self._ready.set()

    async def start(self) -> None:
        self._http = aiohttp.ClientSession(headers=self._headers)
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._http is not None:
            await self._http.close()

    async def _run(self) -> None:
        backoff = 1.0
        while True:
            await self._ready.wait()
            self._ready.clear()
            while self._pending:
                worker, (call, reason) = next(iter(self._pending.items()))
                if await self._post(worker, call, reason):
                    if self._pending.get(worker) == (call, reason):
                        del self._pending[worker]
                    backoff = 1.0
                    continue
                await asyncio.sleep(backoff)
                backoff = min(RETRY_MAX_S, backoff * 2)

    async def _post(self, worker: str, call: str, reason: str) -> bool:
        assert self._http is not None
        url = f"{self.base_url}/workers/{quote(worker, safe='')}/{call}"
        try:
            async with asyncio.timeout(self.timeout_s):
                async with self._http.post(url, json={"reason": reason}) as resp:
                    if resp.status < 300:
                        log.info("work_gate_sent", worker=worker, call=call)
                        return True
                    text = (await resp.text())[:200]
                    log.warning("work_gate_refused", worker=worker, call=call,
                                status=resp.status, reason=text)
                    return resp.status < 500  # a 4xx will not get better by retrying
        except (TimeoutError, aiohttp.ClientError) as err:
            log.warning("work_gate_unreachable", worker=worker, call=call, error=repr(err))
            return False
