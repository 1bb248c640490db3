"""A pool wired as `gridpool run` wires it with no [[node]] (the embedded devnet), HTTP on
an ephemeral port, and a miner that submits a share and its duplicate. tests/ops/conftest.py
registers the fixture."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from miners.sim.stratum_client import StratumClient, StratumClientError
from pool.app import PoolApp
from pool.config import parse_config

CLIENT_DIFFICULTY = 1e-4  # ~430k hashes a share: milliseconds with the native scanner


@pytest.fixture
async def running_pool(tmp_path: Path) -> AsyncIterator[PoolApp]:
    config = parse_config({
        # A share is a block only at this (simulated) difficulty, so the share and its resubmission
        # stay on one job and the second is a duplicate, not stale after a new tip.
        "network": {"chain": "regtest", "simulated_difficulty": 1e9},
        "stratum": {"listen": ["127.0.0.1:0"], "min_difficulty": 1e-9,
                    "start_difficulty": CLIENT_DIFFICULTY},
        "http": {"listen": "127.0.0.1:0"},
        "data_dir": str(tmp_path / "data"),
    })
    app = PoolApp(config)
    await app.start()
    try:
        yield app
    finally:
        await app.stop(drain=False)


async def mine_a_little(app: PoolApp) -> None:
    """One accepted and one duplicate share, so labelled series have children."""
    host, port = app.stratum.addresses[0]
    client = StratumClient(host, port, "acct.rig1", suggest_difficulty=CLIENT_DIFFICULTY)
    await client.connect()
    try:
        await client.handshake()
        await client.wait_for(lambda: client.job is not None and client.difficulty)
        solution = client.find_solution()
        assert await client.submit(solution)
        with pytest.raises(StratumClientError):
            await client.submit(solution)
    finally:
        await client.close()
