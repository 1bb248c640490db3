"""Stratum load generator: many raw Stratum V1 connections from one process, each submitting
shares at a set rate, for benchmarks and capacity tests.

    gridpool sim loadgen --pool stratum+tcp://127.0.0.1:3333 --connections 10000 --rate 1 \\
        --seconds 30 [--processes 2]

Each connection subscribes, authorizes as ``<user>.p<process>w<index>`` and suggests
difficulty `BENCH_DIFFICULTY` (1e-12), so every hash is a share: the generator does no
hashing, and the pool's work per share (JSON, coinbase and merkle-branch hashing, header
check, duplicate set, answer) is unchanged (DESIGN §12). The pool must therefore run with
``stratum.min_difficulty`` at or below 1e-12 and vardiff held still
(`bench_stratum_settings` gives the settings).

Modes:

- ``--rate R`` (shares/s per connection): open loop. A pacer ticks every `TICK_S` and sends
  ``connections x R x elapsed`` submits round-robin over the connections, so each one
  submits at R on average however late the loop wakes; a connection with `max_in_flight`
  unanswered submits skips its turn (counted as ``skipped``).
- ``--rate 0``: closed loop for peak throughput; each connection keeps ``--window`` submits
  in flight and sends the next one when an answer arrives.
- ``--listen``: connections only listen and timestamp every clean mining.notify (the
  broadcast benchmark; a line-based stdin/stdout protocol, see `run_listen`).

The report (one JSON object with ``--json``) counts answers received during the measured
``--seconds`` after ``--warmup`` seconds: accepted, rejected (by Stratum error code),
shares/s, and the response latency (submit written → answer read) percentiles from a
log-bucket histogram, which merges exactly across ``--processes``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import resource
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

CONNECT_BATCH = 200  # connections opened concurrently
CONNECT_TIMEOUT_S = 120.0  # opening every connection and receiving every first job
BENCH_DIFFICULTY = 1e-12  # every hash meets it (the target is capped at 2**256 - 1)
TICK_S = 0.01  # the rate pacer's period
MAX_CATCHUP_S = 0.5  # the pacer never sends more than this much missed time at once
DEFAULT_MAX_IN_FLIGHT = 64  # unanswered submits per connection before it skips its turn
FD_HEADROOM = 64  # file descriptors kept free beyond one per connection
EXIT_GRACE_S = 30.0  # child generators: start-up and report, beyond their load time
FIRST_SUBMIT_ID = 100  # ids below are the handshake's
LATENCY_MIN_S = 1e-6  # the histogram's first bucket edge
LATENCY_BUCKETS_PER_DECADE = 50  # bucket width ~4.7 %
LATENCY_DECADES = 8  # 1 µs .. 100 s


def bench_stratum_settings(connections: int) -> dict[str, Any]:
    """The `[stratum]` table of a pool under load: every hash a share, vardiff still, no
    abuse limit tripped by purpose-built load."""
    return {
        "listen": ["127.0.0.1:0"],
        "min_difficulty": BENCH_DIFFICULTY,
        "start_difficulty": BENCH_DIFFICULTY,
        "vardiff_retarget_interval_s": 86400.0,
        "vardiff_retarget_shares": 10**6,
        "max_messages_per_s": 1e6,
        "max_connections_per_ip": connections + 10,
        "pre_auth_timeout_s": 600.0,
    }


class LatencyHistogram:
    """Response times in log-spaced buckets: constant memory, exact merges, percentiles to
    within one bucket (the reported value is the bucket's upper edge)."""

    SIZE = LATENCY_BUCKETS_PER_DECADE * LATENCY_DECADES + 1

    def __init__(self, counts: Sequence[int] | None = None, max_s: float = 0.0) -> None:
        self.counts = list(counts) if counts is not None else [0] * self.SIZE
        self.max_s = max_s

    @property
    def total(self) -> int:
        return sum(self.counts)

    def record(self, seconds: float) -> None:
        if seconds > self.max_s:
            self.max_s = seconds
        if seconds <= LATENCY_MIN_S:
            self.counts[0] += 1
            return
        index = 1 + int(math.log10(seconds / LATENCY_MIN_S) * LATENCY_BUCKETS_PER_DECADE)
        self.counts[min(index, self.SIZE - 1)] += 1

    def merge(self, other: LatencyHistogram) -> None:
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        self.max_s = max(self.max_s, other.max_s)

    def percentile(self, fraction: float) -> float:
        """Seconds below which `fraction` of the responses fall (0.0 when empty)."""
        rank = math.ceil(fraction * self.total)
        seen = 0
        for index, count in enumerate(self.counts):
            seen += count
            if count and seen >= rank:
                edge = LATENCY_MIN_S * 10 ** (index / LATENCY_BUCKETS_PER_DECADE)
                return min(edge, self.max_s)
        return 0.0

    def summary_ms(self) -> dict[str, float]:
        return {
            f"p{round(q * 100)}": round(1000 * self.percentile(q), 3) for q in (0.5, 0.9, 0.99)
        } | {"max": round(1000 * self.max_s, 3)}


@dataclass(slots=True)
class Counts:
    """Answers to submits, for every connection of one generator."""

    submitted: int = 0
    accepted: int = 0
    rejected: int = 0
    skipped: int = 0
    errors: dict[int, int] = field(default_factory=dict)  # Stratum error code -> answers

    def reject(self, code: int) -> None:
        self.rejected += 1
        self.errors[code] = self.errors.get(code, 0) + 1


class LoadSession(asyncio.Protocol):
    """One connection: handshake, then submit on demand (or just listen). Reads answers with
    byte searches, not a JSON parser, so one process keeps up with tens of thousands."""

    def __init__(self, gen: LoadGenerator, index: int, worker: str) -> None:
        self.gen, self.index, self.worker = gen, index, worker
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.job: list[Any] | None = None
        self.nonce = 0
        self.next_id = FIRST_SUBMIT_ID
        self.in_flight: dict[int, float] = {}  # submit id -> monotonic time written
        self.closed_loop = False  # --rate 0: answer -> next submit
        self.clean_jobs: list[tuple[str, float]] = []  # (job id, unix time received)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(
            b'{"id":1,"method":"mining.subscribe","params":["gridpool-loadgen"]}\n'
            + b'{"id":2,"method":"mining.authorize","params":["%s","x"]}\n' % self.worker.encode()
            + b'{"id":3,"method":"mining.suggest_difficulty","params":[%r]}\n'
            % BENCH_DIFFICULTY
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.gen.lost += 1

    def data_received(self, data: bytes) -> None:
        lines = (self.buffer + data).split(b"\n")
        self.buffer = lines.pop()
        for line in lines:
            if line.startswith(b'{"id":') and not line.startswith(b'{"id":null'):
                self.on_answer(line)
            elif b'"mining.notify"' in line:
                self.on_notify(line)

    def on_answer(self, line: bytes) -> None:
        msg_id = int(line[6 : line.index(b",", 6)])
        sent = self.in_flight.pop(msg_id, None)
        if sent is None:
            return  # a handshake answer
        gen = self.gen
        if gen.measuring:
            gen.latency.record(time.monotonic() - sent)
            if b'"result":true' in line:
                gen.counts.accepted += 1
            else:
                start = line.find(b'"error":[') + 9
                gen.counts.reject(int(line[start : line.index(b",", start)]) if start > 8 else 0)
        if self.closed_loop:
            self.submit()

    def on_notify(self, line: bytes) -> None:
        now = time.time()
        if line.rstrip().endswith(b"true]}"):  # a clean job: timestamp first, parse later
            start = line.index(b'"params":["') + 11
            self.clean_jobs.append((line[start : line.index(b'"', start)].decode(), now))
        first = self.job is None
        if first or not self.gen.listen_only:
            self.job = json.loads(line)["params"]
        if first:
            self.gen.session_ready()

    def submit(self) -> None:
        """One mining.submit with a fresh (extranonce2, nonce) on the current job."""
        job, transport = self.job, self.transport
        if job is None or transport is None:
            return
        if len(self.in_flight) >= self.gen.max_in_flight:
            self.gen.counts.skipped += 1
            return
        self.nonce += 1
        msg_id, self.next_id = self.next_id, self.next_id + 1
        transport.write(
            b'{"id":%d,"method":"mining.submit","params":["%s","%s","%016x","%s","%08x"]}\n'
            % (msg_id, self.worker.encode(), job[0].encode(), self.nonce >> 32,
               job[7].encode(), self.nonce & 0xFFFFFFFF)
        )
        self.in_flight[msg_id] = time.monotonic()
        self.gen.counts.submitted += 1


@dataclass(frozen=True, slots=True)
class LoadSettings:
    host: str
    port: int
    connections: int = 1000
    rate: float = 1.0  # shares/s per connection; 0 = closed loop with `window` in flight
    window: int = 4
    seconds: float = 10.0  # measured
    warmup_s: float = 2.0  # load before the measurement starts
    user: str = "load"
    process: int = 0  # this generator's number when several run (worker names stay unique)
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT

    def __post_init__(self) -> None:
        if self.connections < 1 or self.rate < 0 or self.window < 1 or self.seconds <= 0:
            raise ValueError("need connections >= 1, rate >= 0, window >= 1, seconds > 0")


class LoadGenerator:
    """Opens the connections of a LoadSettings and drives them (see the module docstring)."""

    def __init__(self, settings: LoadSettings, *, listen_only: bool = False) -> None:
        self.settings = settings
        self.listen_only = listen_only
        self.max_in_flight = settings.max_in_flight
        self.sessions: list[LoadSession] = []
        self.counts = Counts()
        self.latency = LatencyHistogram()
        self.measuring = False
        self.lost = 0
        self._ready = 0
        self._all_ready = asyncio.Event()

    def session_ready(self) -> None:
        self._ready += 1
        if self._ready == self.settings.connections:
            self._all_ready.set()

    async def open(self) -> float:
        """Open every connection and wait for every first job; returns the seconds taken."""
        s = self.settings
        raise_fd_limit(s.connections + FD_HEADROOM)
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            for first in range(0, s.connections, CONNECT_BATCH):
                batch = [
                    LoadSession(self, i, f"{s.user}.p{s.process}w{i}")
                    for i in range(first, min(s.connections, first + CONNECT_BATCH))
                ]
                await asyncio.gather(
                    *(loop.create_connection(lambda c=c: c, s.host, s.port) for c in batch)
                )
                self.sessions += batch
            await self._all_ready.wait()
        return time.monotonic() - started

    def close(self) -> None:
        for session in self.sessions:
            if session.transport is not None:
                session.transport.abort()

    async def run(self) -> dict[str, Any]:
        """Load for warmup + seconds; the report covers the measured seconds."""
        s = self.settings
        connect_s = await self.open()
        pacer = None
        if s.rate > 0:
            pacer = asyncio.create_task(self._pace(s.rate * s.connections))
        else:
            for session in self.sessions:
                session.closed_loop = True
                for _ in range(s.window):
                    session.submit()
        try:
            await asyncio.sleep(s.warmup_s)
            self.counts, self.latency, self.measuring = Counts(), LatencyHistogram(), True
            started = time.monotonic()
            await asyncio.sleep(s.seconds)
            elapsed = time.monotonic() - started
            self.measuring = False
        finally:
            if pacer is not None:
                pacer.cancel()
            self.close()
        return self.report(elapsed, connect_s)

    async def _pace(self, total_rate: float) -> None:
        budget, last, cursor = 0.0, time.monotonic(), 0
        sessions = self.sessions
        while True:
            await asyncio.sleep(TICK_S)
            now = time.monotonic()
            budget += total_rate * min(now - last, MAX_CATCHUP_S)
            last = now
            for _ in range(int(budget)):
                sessions[cursor].submit()
                cursor = (cursor + 1) % len(sessions)
            budget -= int(budget)

    def report(self, elapsed_s: float, connect_s: float) -> dict[str, Any]:
        s, c = self.settings, self.counts
        return {
            "connections": s.connections,
            "rate_per_connection": s.rate,
            "target_shares_per_s": s.rate * s.connections if s.rate > 0 else None,
            "window": None if s.rate > 0 else s.window,
            "seconds": round(elapsed_s, 3),
            **{k: v for k, v in asdict(c).items() if k != "errors"},
            "errors": {str(k): v for k, v in sorted(c.errors.items())},
            "shares_per_s": round(c.accepted / elapsed_s, 1),
            "latency_ms": self.latency.summary_ms(),
            "latency_histogram": {"counts": self.latency.counts, "max_s": self.latency.max_s},
            "connections_lost": self.lost,
            "connect_s": round(connect_s, 3),
        }


def raise_fd_limit(needed: int) -> None:
    """Lift the soft open-files limit towards the hard one (10,000+ sockets)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        top = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (top, hard))
        if top < needed:
            raise OSError(f"open-files limit {hard} is below the {needed} needed; raise it")


def merge_reports(reports: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One report for several generator processes: counts and rates add up, the latency
    histograms merge."""
    histogram = LatencyHistogram()
    errors: dict[str, int] = {}
    for report in reports:
        raw = report["latency_histogram"]
        histogram.merge(LatencyHistogram(raw["counts"], raw["max_s"]))
        for code, n in report["errors"].items():
            errors[code] = errors.get(code, 0) + n
    summed = ("connections", "submitted", "accepted", "rejected", "skipped", "shares_per_s",
              "connections_lost")
    merged = dict(reports[0]) | {k: sum(r[k] for r in reports) for k in summed}
    if merged["target_shares_per_s"] is not None:
        merged["target_shares_per_s"] = sum(r["target_shares_per_s"] for r in reports)
    merged["shares_per_s"] = round(merged["shares_per_s"], 1)
    merged["seconds"] = max(r["seconds"] for r in reports)
    merged["connect_s"] = max(r["connect_s"] for r in reports)
    merged |= {"errors": errors, "latency_ms": histogram.summary_ms(), "processes": len(reports),
               "latency_histogram": {"counts": histogram.counts, "max_s": histogram.max_s}}
    return merged


# ---- command line ------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pool", required=True, help="stratum+tcp://HOST:PORT")
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=1.0,
                        help="shares/s per connection (0 = closed loop, --window in flight)")
    parser.add_argument("--window", type=int, default=4, help="submits in flight at --rate 0")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured duration")
    parser.add_argument("--warmup", type=float, default=2.0, help="load before measuring, s")
    parser.add_argument("--processes", type=int, default=1,
                        help="generator processes, connections split among them")
    parser.add_argument("--user", default="load", help="account of the worker names")
    parser.add_argument("--process-index", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--max-in-flight", type=int, default=DEFAULT_MAX_IN_FLIGHT)
    parser.add_argument("--listen", action="store_true",
                        help="only listen; timestamp clean jobs (broadcast benchmark)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def parse_pool_url(url: str) -> tuple[str, int]:
    rest = url.split("://", 1)[-1].rstrip("/")
    host, _, port = rest.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"pool URL {url!r} must look like stratum+tcp://HOST:PORT")
    return host, int(port)


def settings_from_args(args: argparse.Namespace, *, connections: int | None = None,
                       process: int | None = None) -> LoadSettings:
    host, port = parse_pool_url(args.pool)
    return LoadSettings(
        host, port, connections=connections or args.connections, rate=args.rate,
        window=args.window, seconds=args.seconds, warmup_s=args.warmup, user=args.user,
        process=args.process_index if process is None else process,
        max_in_flight=args.max_in_flight,
    )


async def run_processes(args: argparse.Namespace) -> dict[str, Any]:
    """Split the connections over `--processes` child generators and merge their reports."""
    shares = [args.connections // args.processes] * args.processes
    shares[0] += args.connections - sum(shares)
    children = []
    for index, connections in enumerate(shares):
        argv = [sys.executable, "-m", "miners.sim.loadgen", "--json", "--pool", args.pool,
                "--connections", str(connections), "--rate", str(args.rate),
                "--window", str(args.window), "--seconds", str(args.seconds),
                "--warmup", str(args.warmup), "--user", args.user,
                "--max-in-flight", str(args.max_in_flight), "--process-index", str(index)]
        children.append(await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE))
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_S + args.warmup + args.seconds + EXIT_GRACE_S):
            outputs = await asyncio.gather(*(child.communicate() for child in children))
    finally:
        for child in children:
            if child.returncode is None:
                child.kill()
                await child.wait()
    failed = [i for i, child in enumerate(children) if child.returncode != 0]
    if failed:
        raise RuntimeError(f"load generator processes {failed} failed")
    return merge_reports([json.loads(out.splitlines()[-1]) for out, _ in outputs])


async def run_listen(settings: LoadSettings) -> None:
    """Print ``READY <n>`` once every connection has its first job; on a line ``REPORT`` on
    stdin, print one JSON line {job_id: [unix receipt times]} of the clean jobs and return."""
    gen = LoadGenerator(settings, listen_only=True)
    await gen.open()
    print(f"READY {len(gen.sessions)}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    received: dict[str, list[float]] = {}
    for session in gen.sessions:
        for job_id, at in session.clean_jobs:
            received.setdefault(job_id, []).append(at)
    gen.close()
    print(json.dumps(received), flush=True)


def format_report(report: dict[str, Any]) -> str:
    latency = report["latency_ms"]
    target = report["target_shares_per_s"]
    lines = [
        f"connections: {report['connections']}"
        + (f" x {report['rate_per_connection']:g} shares/s" if target else
           f" (closed loop, window {report['window']})"),
        f"measured: {report['seconds']:.1f} s after the warm-up",
        f"accepted: {report['accepted']}  rejected: {report['rejected']} {report['errors']}"
        f"  skipped: {report['skipped']}",
        f"shares_per_s: {report['shares_per_s']:.0f}"
        + (f" (target {target:.0f})" if target else ""),
        "latency_ms: " + "  ".join(f"{k} {v:.2f}" for k, v in latency.items()),
    ]
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> int:
    if args.listen:
        await run_listen(settings_from_args(args))
        return 0
    if args.processes > 1:
        report = await run_processes(args)
    else:
        report = await LoadGenerator(settings_from_args(args)).run()
    if args.json:
        print(json.dumps(report), flush=True)
    else:
        print(format_report(report), flush=True)
    return 0


def run_cli(args: argparse.Namespace) -> int:
    try:
        settings_from_args(args)
    except ValueError as err:
        print(f"gridpool sim loadgen: {err}", file=sys.stderr)
        return 2
    return asyncio.run(main_async(args))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m miners.sim.loadgen",
                                     description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run_cli(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
