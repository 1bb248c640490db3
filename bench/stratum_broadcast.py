"""New-tip latency and session memory. Prints `name: value unit` lines.

    .venv/bin/python bench/stratum_broadcast.py [--sessions 1000 10000] [--blocks 20]

For each session count: the load generator (`gridpool sim loadgen --listen`) opens that
many authorized Stratum sessions in a second process and timestamps every clean
mining.notify it receives. The devnet (a third process, as bitcoind would be) then mines
`--blocks` blocks; for each, latency = the moment the last session received the clean job
for the new tip minus the moment ZMQ hashblock reached the pool's process (taken by a
thread, so the pool's own handler cannot delay it; the clean job is the empty-block-first
job). Reported: p50/p99 of that latency over the blocks, and memory per idle authorized
session (pool RSS growth / sessions). Receipt times include the load generator's own
reading delay.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import threading
import time

import zmq
from stratum_common import devnet_and_pool, percentile, rss_bytes, spawn_load

BLOCK_SPACING_S = 1.0  # between blocks: the full template and its broadcast settle
POLL_MS = 100  # the clock thread checks for its stop this often


class HashblockClock:
    """A second ZMQ subscriber in the pool's process, in its own thread: when each hashblock
    arrived. A thread, not a task: a task would only run after the pool's own hashblock
    handler (and its whole broadcast) had finished, which hides the latency."""

    def __init__(self, endpoint: str) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"hashblock")
        self.sock.connect(endpoint)
        self.arrived: dict[str, float] = {}
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="hashblock-clock", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping.is_set():
            if self.sock.poll(POLL_MS):
                frames = self.sock.recv_multipart()
                self.arrived[frames[1].hex()] = time.time()

    def close(self) -> None:
        self.stopping.set()
        self.thread.join()
        self.ctx.destroy(linger=0)


async def measure(sessions: int, blocks: int) -> dict[str, float]:
    async with devnet_and_pool(sessions) as (devnet, app):
        gc.collect()
        rss_before = rss_bytes()
        process = await spawn_load(app, "--listen", "--connections", str(sessions))
        assert process.stdout is not None and process.stdin is not None
        ready = await process.stdout.readline()
        assert ready.startswith(b"READY"), ready
        await asyncio.sleep(1.0)
        gc.collect()
        per_session = (rss_bytes() - rss_before) / sessions
        assert sum(1 for s in app.stratum.sessions if s.workers) == sessions
        clock = HashblockClock(devnet.zmq_endpoint)
        await asyncio.sleep(0.5)  # ZMQ slow joiner
        clean_job: dict[str, str] = {}  # tip hash -> the first (empty) clean job's id
        app.jobs.on_job(lambda job: job.clean and clean_job.setdefault(
            job.template.prev_hash_hex, job.job_id))
        tips = []
        for _ in range(blocks):
            (tip,) = await devnet.generate(1)
            tips.append(tip)
            await asyncio.sleep(BLOCK_SPACING_S)
        clock.close()
        process.stdin.write(b"REPORT\n")
        await process.stdin.drain()
        received = json.loads(await process.stdout.readline())
        await process.wait()
    latencies = []
    for tip in tips:
        times = received.get(clean_job[tip], [])
        assert len(times) == sessions, f"tip {tip}: {len(times)} of {sessions} sessions"
        latencies.append(max(times) - clock.arrived[tip])
    return {
        "tip_to_last_notify_p50_ms": 1000 * percentile(latencies, 0.5),
        "tip_to_last_notify_p99_ms": 1000 * percentile(latencies, 0.99),
        "memory_per_idle_session_bytes": per_session,
    }


async def main(args: argparse.Namespace) -> None:
    for sessions in args.sessions:
        figures = await measure(sessions, args.blocks)
        print(f"sessions: {sessions} (blocks: {args.blocks})")
        print(f"  tip_to_last_notify_p50: {figures['tip_to_last_notify_p50_ms']:.1f} ms")
        print(f"  tip_to_last_notify_p99: {figures['tip_to_last_notify_p99_ms']:.1f} ms")
        print(f"  memory_per_idle_authorized_session: "
              f"{figures['memory_per_idle_session_bytes'] / 1024:.1f} KiB")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--blocks", type=int, default=20)
    asyncio.run(main(parser.parse_args()))
