"""Fixtures for the grid tests. `ledger_url` (tests/conftest.py) runs a test on both
backends: SQLite in a temporary file and PostgreSQL (GRIDPOOL_TEST_PG) in a fresh schema —
never skipped."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from grid.grid_helpers import GridHarness, RecordingSink, start_harness


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[GridHarness]:
    h = await start_harness(tmp_path, f"sqlite://{tmp_path}/ledger.db", RecordingSink())
    try:
        yield h
    finally:
        await h.close()
