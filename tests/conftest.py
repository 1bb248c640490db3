"""Fixtures shared by every test package.

`devnet`: a running embedded regtest node (pool.devnet.Devnet) on ephemeral RPC and ZMQ
ports in a temporary data dir, with 110 blocks mined (10 mature coinbases) and a mempool
of 200 real transactions. It speaks bitcoind's JSON-RPC (`devnet.rpc_url`, cookie at
`devnet.cookie_path`) and ZMQ (`devnet.zmq_endpoint`: hashblock, rawblock). Helpers:
`await devnet.generate(n, address=None)` mines n blocks (with the mempool, like
generatetoaddress); `await devnet.wait_for_mempool(count)`; `devnet.block_template()`.

`make_devnet`: a factory for other settings, e.g. `await make_devnet(mempool_target=3000)`
or a fixed `datadir`; every devnet it makes is stopped at teardown.
"""

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from pool.devnet import Devnet


@pytest.fixture
async def make_devnet(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Devnet]]]:
    started: list[Devnet] = []

    async def make(**kwargs: Any) -> Devnet:
        kwargs.setdefault("datadir", tmp_path / f"devnet{len(started)}")
        kwargs.setdefault("rpc_port", 0)
        kwargs.setdefault("zmq_port", 0)
        devnet = Devnet(kwargs.pop("datadir"), **kwargs)
        await devnet.start()
        started.append(devnet)
        return devnet

    yield make
    for devnet in started:
        await devnet.stop()


@pytest.fixture
async def devnet(make_devnet: Callable[..., Awaitable[Devnet]]) -> Devnet:
    return await make_devnet()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A ledger database URL, once per backend: SQLite in a temporary file and PostgreSQL
    (GRIDPOOL_TEST_PG) in a fresh schema dropped afterwards — never skipped: when the server
    is down the test fails saying how to start it. The ledger and the grid store use it."""
    from ledger.ledger_helpers import pg_schema

    if request.param == "sqlite":
        yield f"sqlite://{tmp_path}/ledger.db"
    else:
        async with pg_schema() as url:
            yield url
