"""Devnet benchmarks: getblocktemplate and submitblock with 3,000 transactions, and the
mempool refill after a block. Prints `name: value unit` lines.

The devnet runs as `gridpool devnet` in a subprocess (as a pool would meet it) and this
process is the client, so client-side JSON work does not slow the server. Times are
wall-clock round trips over loopback HTTP, up to the last byte of the answer.

    .venv/bin/python bench/devnet.py [--txs 3000] [--rounds 5]
"""

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from pool.devnet.auth import basic_auth_header
from pool.devnet.miner import block_from_template

PAYOUT_SCRIPT = bytes.fromhex("0014751e76e8199196d454941c45d1b3a323f1433bd6")  # P2WPKH
READY_DEADLINE = 120.0  # s; devnet start-up, including filling the mempool
REFILL_POLL = 0.005  # s
CACHED_CALLS = 20


class Client:
    def __init__(self, session: aiohttp.ClientSession, url: str, auth: str) -> None:
        self.session, self.url, self.auth = session, url, auth

    async def timed(self, method: str, *params: object) -> tuple[float, object]:
        """(seconds until the whole answer arrived, result)."""
        body = {"jsonrpc": "1.0", "id": 1, "method": method, "params": list(params)}
        started = time.perf_counter()
        headers = {"Authorization": self.auth}
        async with self.session.post(self.url, json=body, headers=headers) as resp:
            data = await resp.read()
        elapsed = time.perf_counter() - started
        reply = json.loads(data)
        if reply["error"] is not None:
            raise RuntimeError(f"{method}: {reply['error']}")
        return elapsed, reply["result"]

    async def call(self, method: str, *params: object) -> object:
        return (await self.timed(method, *params))[1]


def start_devnet(datadir: Path, txs: int) -> tuple[subprocess.Popen, str, str, float]:
    cmd = [sys.executable, "-m", "pool.cli", "devnet", "--datadir", str(datadir),
           "--rpc-port", "0", "--no-zmq", "--txs", str(txs), "--log-level", "warning"]  # fmt: skip
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    lines: dict[str, str] = {}
    assert proc.stdout is not None
    while len(lines) < 3:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("devnet exited before printing its endpoints")
        key, _, value = line.strip().partition(": ")
        lines[key] = value
    return proc, lines["rpc_url"], lines["cookie"], time.perf_counter() - started


async def wait_mempool(client: Client, txs: int) -> float:
    started = time.perf_counter()
    async with asyncio.timeout(READY_DEADLINE):
        while True:
            info = await client.call("getmempoolinfo")
            if info["size"] >= txs:  # type: ignore[index]
                break
            await asyncio.sleep(REFILL_POLL)
    return time.perf_counter() - started


def startup_time(txs: int) -> float:
    """Seconds from spawning `gridpool devnet` to its endpoints being printed (process
    start, imports, 110 blocks mined, mempool filled, RPC listening)."""
    with tempfile.TemporaryDirectory() as tmp:
        proc, _, _, startup = start_devnet(Path(tmp) / "devnet", txs)
        proc.terminate()
        proc.wait(timeout=30)
    return startup


async def run(txs: int, rounds: int) -> dict[str, float]:
    startup_default = startup_time(200)
    with tempfile.TemporaryDirectory() as tmp:
        proc, url, cookie, startup = start_devnet(Path(tmp) / "devnet", txs)
        auth = basic_auth_header(Path(cookie).read_text())  # noqa: ASYNC240 (once, at start)
        try:
            async with aiohttp.ClientSession() as session:
                client = Client(session, url, auth)
                figures = {"startup_200_txs_s": startup_default, "startup_s": startup}
                return figures | await measure(client, txs, rounds)
        finally:
            proc.terminate()
            proc.wait(timeout=30)


async def measure(client: Client, txs: int, rounds: int) -> dict[str, float]:
    await wait_mempool(client, txs)
    fresh, cached, submit, refill = [], [], [], []
    for _ in range(rounds):
        elapsed, template = await client.timed("getblocktemplate", {"rules": ["segwit"]})
        fresh.append(elapsed)
        assert len(template["transactions"]) == txs  # type: ignore[index]
        for _ in range(CACHED_CALLS):
            cached.append((await client.timed("getblocktemplate", {"rules": ["segwit"]}))[0])
        raw = block_from_template(template, PAYOUT_SCRIPT)  # type: ignore[arg-type]
        elapsed, result = await client.timed("submitblock", raw.hex())
        if result is not None:
            raise RuntimeError(f"block rejected: {result}")
        submit.append(elapsed)
        refill.append(await wait_mempool(client, txs))
    return {
        "gbt_first_after_block_ms": statistics.median(fresh) * 1e3,
        "gbt_repeat_ms": statistics.median(cached) * 1e3,
        "gbt_repeat_p95_ms": statistics.quantiles(cached, n=20)[-1] * 1e3,
        "submitblock_ms": statistics.median(submit) * 1e3,
        "submitblock_max_ms": max(submit) * 1e3,
        "refill_after_block_s": statistics.median(refill),
        "refill_after_block_max_s": max(refill),
        "refill_rate_tx_per_s": txs / statistics.median(refill),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--txs", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    figures = asyncio.run(run(args.txs, args.rounds))
    print(f"devnet_txs: {args.txs} tx")
    for name, value in figures.items():
        if name.endswith("_tx_per_s"):
            print(f"devnet_{name.removesuffix('_tx_per_s')}: {value:.0f} tx/s")
        elif name.endswith("_ms"):
            print(f"devnet_{name.removesuffix('_ms')}: {value:.1f} ms")
        else:
            print(f"devnet_{name.removesuffix('_s')}: {value:.3f} s")


if __name__ == "__main__":
    main()
