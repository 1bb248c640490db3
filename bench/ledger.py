"""Ledger benchmarks. Prints `name: value unit` lines.

1. Accepted shares per second sustained into each backend with the ack guarantee on:
   `--sessions` concurrent producers (as Stratum sessions would) each await
   `ShareRecorder.record()` — which returns only after the batch's COMMIT — in a loop for
   `--seconds`. SQLite: a file with WAL + synchronous=FULL; PostgreSQL: GRIDPOOL_TEST_PG
   (default postgresql://postgres@127.0.0.1:5432/test) in a fresh schema, dropped after.
2. The PPLNS window over `--window-shares` (1,000,000) stored shares of `--accounts`
   accounts: the time of `pplns_window()` for a window holding all of them and one holding
   half (median of `--rounds`), plus the bulk load rate and the bytes stored per share.

    .venv/bin/python bench/ledger.py [--backends sqlite,postgres] [--seconds 10]
        [--sessions 500] [--window-shares 1000000 (0: skip part 2)] [--accounts 1000]
        [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg

from pool.ledger import ShareRecord, open_ledger
from pool.ledger.recorder import ShareRecorder
from pool.ledger.store import Ledger
from pool.logs import configure_logging

PG_DSN = os.environ.get("GRIDPOOL_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
LOAD_BATCH = 20_000  # shares per transaction while loading the window benchmark
SHARE_DIFFICULTY = 65536.0


def share(n: int, accounts: int, prefix: str, at: float) -> ShareRecord:
    account = n % accounts
    return ShareRecord(
        share_id=f"{prefix}:{n:016x}", account=f"acct{account:05}", worker=f"w{n % 7}",
        site=f"site{account % 4}", difficulty=SHARE_DIFFICULTY, network_difficulty=1e14,
        time=at, job_id=prefix, hash_hex=f"{n:064x}", is_block=False,
    )


@contextlib.asynccontextmanager
async def backend_url(name: str, tmp: Path) -> AsyncIterator[str]:
    if name == "sqlite":
        yield f"sqlite://{tmp}/{secrets.token_hex(4)}.db"
        return
    conn = await asyncpg.connect(PG_DSN, timeout=5)
    schema = "bench_" + secrets.token_hex(4)
    await conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{PG_DSN}?schema={schema}"
    finally:
        await conn.execute(f"DROP SCHEMA {schema} CASCADE")
        await conn.close()


async def bench_acks(name: str, url: str, seconds: float, sessions: int) -> None:
    ledger = open_ledger(url)
    await ledger.migrate()
    recorder = ShareRecorder(ledger)
    await recorder.start()
    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds

    async def session(s: int) -> None:
        n = 0
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            await recorder.record(share(s * 10**9 + n, 1000, "ack", time.time()))
            latencies.append(time.perf_counter() - started)
            n += 1

    started = time.perf_counter()
    await asyncio.gather(*(session(s) for s in range(sessions)))
    elapsed = time.perf_counter() - started
    await recorder.stop()
    stored = (await ledger.totals()).shares_retained
    await ledger.close()
    assert stored == len(latencies), (stored, len(latencies))
    latencies.sort()
    print(f"{name}_acked_shares_per_s: {len(latencies) / elapsed:.0f} shares/s")
    print(f"{name}_commits_per_s: {recorder.batches / elapsed:.0f} /s")
    print(f"{name}_mean_batch: {len(latencies) / max(recorder.batches, 1):.0f} shares")
    print(f"{name}_ack_latency_p50: {latencies[len(latencies) // 2] * 1e3:.1f} ms")
    print(f"{name}_ack_latency_p99: {latencies[int(len(latencies) * 0.99)] * 1e3:.1f} ms")


async def load(ledger: Ledger, count: int, accounts: int) -> float:
    now = time.time()
    started = time.perf_counter()
    for start in range(0, count, LOAD_BATCH):
        batch = [share(n, accounts, "win", now) for n in range(start, min(start + LOAD_BATCH,
                                                                            count))]
        await ledger.record_shares(batch)
    return count / (time.perf_counter() - started)


async def timed_window(ledger: Ledger, difficulty: float, rounds: int) -> tuple[float, int]:
    times = []
    entries = []
    for _ in range(rounds):
        started = time.perf_counter()
        entries = await ledger.pplns_window(difficulty)
        times.append(time.perf_counter() - started)
    return statistics.median(times), len(entries)


async def stored_bytes(name: str, url: str) -> int:
    if name == "sqlite":
        path = Path(url.removeprefix("sqlite://"))
        return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    schema = url.rsplit("schema=", 1)[1]
    conn = await asyncpg.connect(PG_DSN)
    try:
        return int(await conn.fetchval(
            "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n"
            " ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind = 'r'", schema))
    finally:
        await conn.close()


async def bench_window(name: str, url: str, count: int, accounts: int, rounds: int) -> None:
    ledger = open_ledger(url, op_timeout_s=600.0)
    await ledger.migrate()
    rate = await load(ledger, count, accounts)
    print(f"{name}_bulk_load: {rate:.0f} shares/s")
    print(f"{name}_bytes_per_share: {await stored_bytes(name, url) / count:.0f} B")
    everything = count * SHARE_DIFFICULTY
    for label, difficulty in (("all", everything), ("half", everything / 2)):
        seconds, n = await timed_window(ledger, difficulty, rounds)
        print(f"{name}_pplns_window_{count}_{label}: {seconds * 1e3:.0f} ms ({n} accounts)")
    await ledger.close()


async def main(args: argparse.Namespace) -> None:
    print(f"python: {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.backends.split(","):
            async with backend_url(name, Path(tmp)) as url:
                await bench_acks(name, url, args.seconds, args.sessions)
            if args.window_shares:
                async with backend_url(name, Path(tmp)) as url:
                    await bench_window(name, url, args.window_shares, args.accounts, args.rounds)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--sessions", type=int, default=500)
    parser.add_argument("--window-shares", type=int, default=1_000_000)
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    configure_logging(level="warning")
    asyncio.run(main(parser.parse_args()))
