"""Harness for Stratum tests against a real pool on loopback: `pool_factory` starts a
PoolApp (NodeSet + JobManager + StratumServer) on given devnets, `client_factory` connects
the real Stratum client to it. tests/stratum/conftest.py and tests/e2e/conftest.py
register these fixtures (tests/ is on sys.path)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from miners.sim.stratum_client import StratumClient
from pool.app import PoolApp
from pool.config import parse_config

# Regtest addresses from Bitcoin Core's key_io_valid.json (shared/testdata).
SOLO_ADDRESS = "bcrt1qdavt4j2sd7dlhqsavtnfxvzppw6k7qy97tmnu9"
SOLO_SCRIPT_HEX = "00146f58bac9506f9bfb821d62e69330410bb56f0085"
POOL_ADDRESS = "bcrt1p39a4s4vdcw9kqa8w2t0rp7aj8kfxyw7mce5sk5d70x6wnnmpvt7skf2kxy"
POOL_SCRIPT_HEX = "5120897b58558dc38b6074ee52de30fbb23d92623bdbc6690b51be79b4e9cf6162fd"
TEST_DIFFICULTY = 1e-4  # ~430k hashes a share: milliseconds with the native scanner

# Vardiff held still (tests set difficulties themselves), tiny minimum difficulty.
BASE_STRATUM = {
    "listen": ["127.0.0.1:0"],
    "min_difficulty": 1e-9,
    "start_difficulty": TEST_DIFFICULTY,
    "vardiff_retarget_interval_s": 3600.0,
    "vardiff_retarget_shares": 1_000_000,
}


def node_table(devnet: Any, name: str = "devnet") -> dict[str, Any]:
    return {
        "name": name,
        "rpc_url": devnet.rpc_url,
        "rpc_cookie": str(devnet.cookie_path),
        "zmq_hashblock": devnet.zmq_endpoint,
    }


@pytest.fixture
async def pool_factory(tmp_path) -> AsyncIterator[Callable[..., Any]]:
    """`await pool_factory(devnets, stratum={...}, jobs={...}, network={...}, payout={...},
    ledger={...})` → a started PoolApp (SQLite ledger in its data dir unless `ledger` says
    otherwise) paying POOL_ADDRESS for account usernames; stopped at teardown."""
    apps: list[PoolApp] = []

    async def make(
        devnets: list[Any],
        *,
        stratum: dict | None = None,
        jobs: dict | None = None,
        network: dict | None = None,
        payout: dict | None = None,
        ledger: dict | None = None,
    ) -> PoolApp:
        raw = {
            "network": {"chain": "regtest", **(network or {})},
            "node": [node_table(d, f"devnet{i}") for i, d in enumerate(devnets)],
            "stratum": {**BASE_STRATUM, **(stratum or {})},
            "jobs": {"refresh_interval_s": 30.0, **(jobs or {})},
            "payout": payout if payout is not None else {"address": POOL_ADDRESS},
            "data_dir": str(tmp_path / f"pool{len(apps)}"),
            "ledger": ledger or {},
        }
        app = PoolApp(parse_config(raw), http=False)
        await app.start()
        apps.append(app)
        return app

    yield make
    for app in apps:
        await app.stop(drain=False)


@pytest.fixture
async def client_factory() -> AsyncIterator[Callable[..., Any]]:
    """`await client_factory(app, username, handshake=True, listener=0, **client_kwargs)` → a
    StratumClient connected to the pool's listener number `listener` (handshake done unless
    handshake=False); closed at teardown."""
    clients: list[StratumClient] = []

    async def make(
        app: PoolApp,
        username: str = "acct.rig1",
        *,
        handshake: bool = True,
        listener: int = 0,
        **kwargs: Any,
    ) -> StratumClient:
        host, port = app.stratum.addresses[listener]
        kwargs.setdefault("suggest_difficulty", TEST_DIFFICULTY)
        client = StratumClient(host, port, username, **kwargs)
        clients.append(client)
        await client.connect()
        if handshake:
            await client.handshake()
            await client.wait_for(lambda: client.job is not None and client.difficulty)
        return client

    yield make
    for client in clients:
        with contextlib.suppress(Exception):
            await client.stop()
