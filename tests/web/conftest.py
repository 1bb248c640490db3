"""Fixtures for the API tests: a real ledger (SQLite file and PostgreSQL schema, like
tests/ledger) and `make_api`, which serves the API and dashboard on 127.0.0.1 through
pool.api.create_app, exactly as the pool mounts them."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # spec_check, web_data, web_browser

from ledger.ledger_helpers import pg_schema
from spec_check import ApiClient
from web_data import ADMIN_TOKEN

from pool.api import create_app, start_http
from pool.ledger import open_ledger
from pool.ledger.store import Ledger
from pool.web import ApiSettings, PoolSources, WebApi, web_routes
from pool.web.settings import sha256_hex


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Ledger]:
    if request.param == "sqlite":
        store = open_ledger(f"sqlite://{tmp_path}/ledger.db")
        await store.migrate()
        yield store
        await store.close()
        return
    async with pg_schema() as url:
        store = open_ledger(url)
        await store.migrate()
        yield store
        await store.close()


@pytest.fixture
async def make_api(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    """`client, web_api = await make_api(sources, **settings)`; admin token ADMIN_TOKEN
    unless `admin_token_sha256=None` is given."""
    runners = []
    session = aiohttp.ClientSession()

    async def make(sources: PoolSources, **settings: Any) -> tuple[ApiClient, WebApi]:
        settings.setdefault("admin_token_sha256", sha256_hex(ADMIN_TOKEN))
        settings.setdefault("cache_ttl_s", 0.0)
        settings.setdefault("tokens_file", tmp_path / f"tokens{len(runners)}.json")
        web_api = WebApi(sources, ApiSettings(**settings), data_dir=tmp_path)
        web_api.load()
        health = sources.health or (lambda: {"healthy": True})
        app = create_app(health=health, extra_routes=web_routes(web_api))
        runner, port = await start_http(app, "127.0.0.1", 0)
        runners.append(runner)
        return ApiClient(f"http://127.0.0.1:{port}", session), web_api

    yield make
    await session.close()
    for runner in runners:
        await runner.cleanup()
