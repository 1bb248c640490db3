"""Acknowledged ⇒ durable, for the whole pool: `gridpool run` as a real process, several
Stratum connections submitting shares with many in flight, SIGKILL mid-stream, a restart on
the same data dir, and then every share any client was answered `true` for is in the ledger
(by share id), and so is every found block whose share was answered `true`. Once with the
default SQLite ledger, once with PostgreSQL (GRIDPOOL_TEST_PG; fails when it is down)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from ledger.ledger_helpers import pg_schema
from stratum.harness import POOL_ADDRESS, SOLO_ADDRESS

from miners.sim.stratum_client import Solution, StratumClient, StratumClientError
from pool.bitcoin.target import difficulty_to_target, hash_le_to_int
from pool.ledger import open_ledger

SIM = 2e-4  # simulated network difficulty: about one share in 200 is a block
SHARE_DIFFICULTY = 1e-6  # ~4,300 hashes: shares are cheap, the pool is the bottleneck
CLIENTS = 4
IN_FLIGHT = 16  # submits each client keeps outstanding (firmware pipelines them)
ACKS_BEFORE_KILL = 1500
TIMEOUT_S = 60.0
POLL_S = 0.05

CONFIG = """
data_dir = "{data_dir}"
[network]
chain = "regtest"
simulated_difficulty = {sim}
[[node]]
name = "devnet"
rpc_url = "{rpc_url}"
rpc_cookie = "{cookie}"
zmq_hashblock = "{zmq}"
[stratum]
listen = ["127.0.0.1:0"]
min_difficulty = 1e-9
start_difficulty = {share_difficulty}
vardiff_retarget_interval_s = 3600.0
vardiff_retarget_shares = 1000000
max_messages_per_s = 100000.0
[payout]
mode = "pplns"
address = "{pool_address}"
[[payout.account]]
name = "acct0"
address = "{solo_address}"
[ledger]
url = "{url}"
[http]
listen = "127.0.0.1:0"
[log]
level = "warning"
"""


def tail(log: Path) -> str:
    return log.read_text()[-3000:]


@contextlib.asynccontextmanager
async def gridpool_run(config: Path, log: Path) -> AsyncIterator[tuple[Any, int]]:
    """`gridpool run --config` as a child process; yields (process, stratum port)."""
    with log.open("ab") as stderr:
        process = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "gridpool"), "run", "--config", str(config),
            stdout=asyncio.subprocess.PIPE, stderr=stderr,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        async with asyncio.timeout(TIMEOUT_S):
            banner = b""
            while b"Ctrl-C" not in banner:
                line = await process.stdout.readline()
                assert line, f"gridpool run exited: {tail(log)}"
                banner += line
        yield process, int(re.search(rb"stratum\+tcp://[\d.]+:(\d+)", banner).group(1))
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


class Miner:
    """One connection submitting shares with IN_FLIGHT outstanding, remembering each share
    the pool answered `true` (its ledger id) and each such share that was a block."""

    def __init__(self, port: int, index: int) -> None:
        self.client = StratumClient("127.0.0.1", port, f"acct{index}.site{index % 2}.rig",
                                    suggest_difficulty=SHARE_DIFFICULTY, request_timeout_s=30)
        self.acked: list[str] = []
        self.blocks: list[str] = []

    async def run(self) -> None:
        client = self.client
        await client.connect()
        await client.handshake()
        await client.wait_for(lambda: client.job is not None and client.difficulty)
        in_flight: set[asyncio.Task[None]] = set()
        while client.connected:
            in_flight.add(asyncio.create_task(self._submit(client.find_solution())))
            if len(in_flight) >= IN_FLIGHT:
                _, in_flight = await asyncio.wait(in_flight, return_when="FIRST_COMPLETED")
            await asyncio.sleep(0)

    async def _submit(self, solution: Solution) -> None:
        try:
            accepted = await self.client.submit(solution)
        except (StratumClientError, ConnectionError, TimeoutError):
            return  # stale after a block, or the pool is gone: not acknowledged
        if accepted:
            hash_hex = solution.hash_le[::-1].hex()
            self.acked.append(f"{solution.job.job_id}:{hash_hex}")
            if hash_le_to_int(solution.hash_le) <= difficulty_to_target(SIM):
                self.blocks.append(hash_hex)


async def crash_and_check(devnet: Any, tmp_path: Path, url: str) -> None:
    config = tmp_path / "gridpool.toml"
    config.write_text(CONFIG.format(
        data_dir=tmp_path / "data", sim=SIM, rpc_url=devnet.rpc_url, cookie=devnet.cookie_path,
        zmq=devnet.zmq_endpoint, share_difficulty=SHARE_DIFFICULTY, pool_address=POOL_ADDRESS,
        solo_address=SOLO_ADDRESS, url=url))
    log = tmp_path / "gridpool.log"
    async with gridpool_run(config, log) as (process, port):
        miners = [Miner(port, i) for i in range(CLIENTS)]
        tasks = [asyncio.create_task(m.run()) for m in miners]
        for _ in range(int(TIMEOUT_S / POLL_S)):
            if sum(len(m.acked) for m in miners) >= ACKS_BEFORE_KILL:
                break
            await asyncio.sleep(POLL_S)
        process.send_signal(signal.SIGKILL)  # mid-stream: submits are in flight
        assert await process.wait() == -signal.SIGKILL
        await asyncio.gather(*tasks, return_exceptions=True)
        for miner in miners:
            await miner.client.close()
    acked = [share_id for m in miners for share_id in m.acked]
    blocks = [hash_hex for m in miners for hash_hex in m.blocks]
    assert len(acked) >= ACKS_BEFORE_KILL and blocks, "no block found: raise the load or SIM"

    async with gridpool_run(config, log) as (process, port):  # the restart (replays a journal)
        async with StratumClient("127.0.0.1", port, "acct0.after",
                                 suggest_difficulty=SHARE_DIFFICULTY) as client:
            await client.handshake()
            await client.wait_for(lambda: client.job is not None and client.difficulty)
            solution = client.find_solution()
            assert await client.submit(solution)  # it serves again (and records)
            acked.append(f"{solution.job.job_id}:{solution.hash_le[::-1].hex()}")
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(TIMEOUT_S):
            assert await process.wait() == 0
    ledger = open_ledger(url)
    try:
        missing = set(acked) - await ledger.known_share_ids(acked)
        assert not missing, f"{len(missing)} acknowledged shares lost, e.g. {sorted(missing)[:3]}"
        for hash_hex in blocks:
            block = await ledger.get_block(hash_hex)
            assert block is not None and block.account.startswith("acct"), hash_hex
    finally:
        await ledger.close()


async def test_sigkill_loses_no_acknowledged_share_sqlite(devnet, tmp_path: Path) -> None:
    await crash_and_check(devnet, tmp_path, f"sqlite://{tmp_path}/data/ledger.db")


@pytest.mark.postgres
async def test_sigkill_loses_no_acknowledged_share_postgres(devnet, tmp_path: Path) -> None:
    async with pg_schema() as url:
        await crash_and_check(devnet, tmp_path, url)
