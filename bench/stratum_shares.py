"""Shares validated per second by one pool process (one asyncio loop = one core) over
loopback TCP, with load from the load generator in a second process. Prints `name: value
unit` lines.

    .venv/bin/python bench/stratum_shares.py [--sessions 1000] [--seconds 10] [--window 4]
    .venv/bin/python bench/stratum_shares.py --sessions 10000 --rate 1 [--seconds 10]

Bench mode (DESIGN §12): the pool's minimum difficulty is so low that every hash is a
share, so each submit costs exactly what a real share costs (JSON, coinbase + merkle
branch hashing, native header check, duplicate set, response) and the load generator
needs no hashing. Blocks are switched off with a huge simulated difficulty. Without
`--rate` every connection keeps `--window` submits in flight (peak throughput); with
`--rate R` every connection submits R shares/s (a set load: its latency).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform

from stratum_common import cpu_seconds, devnet_and_pool, spawn_load

from pool import hashing


async def main(args: argparse.Namespace) -> None:
    async with devnet_and_pool(args.sessions) as (_devnet, app):
        branch = len(app.jobs.current.template.branch)
        process = await spawn_load(app, "--json", "--connections", str(args.sessions),
                                   "--rate", str(args.rate), "--window", str(args.window),
                                   "--seconds", str(args.seconds), "--warmup", "0")
        # The generator measures from the moment every session has its job; so do we.
        cpu_start = None
        assert process.stdout is not None
        while cpu_start is None:
            await asyncio.sleep(0.01)
            if app.shares_accepted > 0:
                cpu_start, shares_start = cpu_seconds(), app.shares_accepted
        line = await process.stdout.readline()
        cpu_used = cpu_seconds() - cpu_start
        shares = app.shares_accepted - shares_start
        await process.wait()
    report = json.loads(line)
    latency = report["latency_ms"]
    print(f"python: {platform.python_version()}")
    print(f"hash_backend: {hashing.get_backend().name}")
    print(f"sessions: {report['connections']}")
    if report["target_shares_per_s"]:
        print(f"set_rate: {report['rate_per_connection']:g} shares/s per session, "
              f"{report['target_shares_per_s']:.0f} shares/s in all")
    else:
        print(f"window: {report['window']} submits in flight per session")
    print(f"merkle_branch_levels: {branch}")
    print(f"accepted_shares_per_s: {report['shares_per_s']:.0f} shares/s")
    print(f"rejected: {report['rejected']}  skipped: {report['skipped']}")
    print("response_latency: " + "  ".join(f"{k} {v:.2f} ms" for k, v in latency.items()))
    print(f"pool_cpu_utilisation: {cpu_used / report['seconds']:.2f} cores")
    print(f"shares_per_pool_cpu_second: {shares / cpu_used:.0f} shares/s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--window", type=int, default=4)
    parser.add_argument("--rate", type=float, default=0.0,
                        help="shares/s per session (0 = closed loop with --window)")
    asyncio.run(main(parser.parse_args()))
