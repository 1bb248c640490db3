"""Stratum load generator for the benchmarks: thousands of raw Stratum V1 connections from
one process (asyncio Protocols, no per-connection task), run as a subprocess so its CPU is
not the pool's.

    python bench/stratum_load.py shares HOST PORT --sessions 1000 --seconds 10
        Each session authorizes at difficulty 1e-12 (every hash is a share: the pool's
        validation work per share is unchanged) and keeps `--window` submits in flight,
        each with a fresh nonce. Prints one JSON line: accepted, rejected, seconds.

    python bench/stratum_load.py listen HOST PORT --sessions 10000
        Sessions authorize and timestamp every mining.notify they receive. Prints READY
        once all have their first job; on a line "REPORT" on stdin prints one JSON line
        {job_id: [receipt unix times]} for the clean jobs and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

CONNECT_BATCH = 200  # connections opened concurrently
BENCH_DIFFICULTY = 1e-12  # every hash meets it (the target is capped at 2**256 - 1)


class LoadSession(asyncio.Protocol):
    """One miner connection: handshake, then either submit or just listen."""

    def __init__(self, index: int, window: int, ready: asyncio.Event, counts: dict) -> None:
        self.index, self.window, self.ready, self.counts = index, window, ready, counts
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.job: list[Any] | None = None
        self.nonce = 0
        self.submitting = False
        self.clean_jobs: list[tuple[str, float]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        worker = f"bench.w{self.index}"
        self.transport.write(
            b'{"id":1,"method":"mining.subscribe","params":["bench"]}\n'
            + f'{{"id":2,"method":"mining.authorize","params":["{worker}","x"]}}\n'.encode()
            + f'{{"id":3,"method":"mining.suggest_difficulty","params":[{BENCH_DIFFICULTY}]}}\n'
            .encode())

    def data_received(self, data: bytes) -> None:
        now = time.time()
        lines = (self.buffer + data).split(b"\n")
        self.buffer = lines.pop()
        for line in lines:
            if b'"method":"mining.notify"' in line:
                self.on_notify(line, now)
            elif b'"result":true' in line and self.submitting:
                self.counts["accepted"] += 1
                self.submit(1)
            elif b'"error":[' in line and self.submitting:
                self.counts["rejected"] += 1
                self.submit(1)

    def on_notify(self, line: bytes, now: float) -> None:
        # Timestamps first; only the first job is decoded (submits need its fields), so
        # reading 10,000 notifies does not delay the receipt times much.
        if line.rstrip().endswith(b"true]}"):
            start = line.index(b'"params":["') + 11
            self.clean_jobs.append((line[start : line.index(b'"', start)].decode(), now))
        first = self.job is None
        if first or self.submitting:
            self.job = json.loads(line)["params"]
        if first:
            self.counts["ready"] += 1
            if self.counts["ready"] == self.counts["sessions"]:
                self.ready.set()

    def start_submitting(self) -> None:
        self.submitting = True
        self.submit(self.window)

    def submit(self, count: int) -> None:
        job = self.job
        assert job is not None and self.transport is not None
        lines = []
        for _ in range(count):
            self.nonce += 1
            lines.append(
                f'{{"id":9,"method":"mining.submit","params":["bench.w{self.index}","{job[0]}",'
                f'"{self.nonce >> 32:016x}","{job[7]}","{self.nonce & 0xFFFFFFFF:08x}"]}}\n')
        self.transport.write("".join(lines).encode())


async def open_sessions(host: str, port: int, n: int, window: int) -> list[LoadSession]:
    loop = asyncio.get_running_loop()
    ready = asyncio.Event()
    counts = {"ready": 0, "sessions": n, "accepted": 0, "rejected": 0}
    sessions: list[LoadSession] = []
    for start in range(0, n, CONNECT_BATCH):
        stop = min(n, start + CONNECT_BATCH)
        batch = [LoadSession(i, window, ready, counts) for i in range(start, stop)]
        await asyncio.gather(*(loop.create_connection(lambda s=s: s, host, port) for s in batch))
        sessions += batch
    async with asyncio.timeout(120):
        await ready.wait()
    return sessions


async def run_shares(args: argparse.Namespace) -> None:
    sessions = await open_sessions(args.host, args.port, args.sessions, args.window)
    counts = sessions[0].counts
    for session in sessions:
        session.start_submitting()
    await asyncio.sleep(args.warmup)
    base_accepted, base_rejected, started = counts["accepted"], counts["rejected"], time.monotonic()
    await asyncio.sleep(args.seconds)
    elapsed = time.monotonic() - started
    print(json.dumps({"accepted": counts["accepted"] - base_accepted,
                      "rejected": counts["rejected"] - base_rejected, "seconds": elapsed,
                      "sessions": len(sessions)}), flush=True)


async def run_listen(args: argparse.Namespace) -> None:
    sessions = await open_sessions(args.host, args.port, args.sessions, 0)
    print(f"READY {len(sessions)}", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.readline)  # "REPORT"
    received: dict[str, list[float]] = {}
    for session in sessions:
        for job_id, at in session.clean_jobs:
            received.setdefault(job_id, []).append(at)
    print(json.dumps(received), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("shares", "listen"))
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--window", type=int, default=4, help="submits in flight per session")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    args = parser.parse_args()
    asyncio.run(run_shares(args) if args.mode == "shares" else run_listen(args))


if __name__ == "__main__":
    main()
