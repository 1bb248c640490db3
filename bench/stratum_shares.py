"""Shares validated per second by one pool process (one asyncio loop = one core) over
loopback TCP, with load from a second process. Prints `name: value unit` lines.

    .venv/bin/python bench/stratum_shares.py [--sessions 1000] [--seconds 10] [--window 4]

Bench mode (DESIGN §12): the pool's minimum difficulty is so low that every hash is a
share, so each submit costs exactly what a real share costs (JSON, coinbase + merkle
branch hashing, native header check, duplicate set, response) and the load generator
needs no hashing. Blocks are switched off with a huge simulated difficulty.
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
        process = await spawn_load("shares", app, "--sessions", str(args.sessions),
                                   "--seconds", str(args.seconds), "--window", str(args.window),
                                   "--warmup", "0")
        # The generator measures from the moment every session submits; so do we.
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
    result = json.loads(line)
    print(f"python: {platform.python_version()}")
    print(f"hash_backend: {hashing.get_backend().name}")
    print(f"sessions: {result['sessions']}")
    print(f"merkle_branch_levels: {branch}")
    print(f"accepted_shares_per_s: {result['accepted'] / result['seconds']:.0f} shares/s")
    print(f"rejected: {result['rejected']}")
    print(f"pool_cpu_utilisation: {cpu_used / result['seconds']:.2f} cores")
    print(f"shares_per_pool_cpu_second: {shares / cpu_used:.0f} shares/s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--window", type=int, default=4)
    asyncio.run(main(parser.parse_args()))
