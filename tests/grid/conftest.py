"""Fixtures for the grid tests. `store_url` runs a test on both backends: SQLite in a
temporary file and PostgreSQL (GRIDPOOL_TEST_PG) in a fresh schema — never skipped."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from grid.grid_helpers import GridHarness, RecordingSink, start_harness
from ledger.ledger_helpers import pg_schema  # a fresh schema per test; fails, never skips


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite://{tmp_path}/ledger.db"
    else:
        async with pg_schema() as url:
            yield url


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[GridHarness]:
    h = await start_harness(tmp_path, f"sqlite://{tmp_path}/ledger.db", RecordingSink())
    try:
        yield h
    finally:
        await h.close()
