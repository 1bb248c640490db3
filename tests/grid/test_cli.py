"""`gridpool grid keygen|curtail|cancel|status` against a running grid API."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest
from grid.grid_helpers import GridHarness

from pool.cli_grid import parse_duration
from pool.errors import ConfigError


async def gridpool(*argv: str) -> tuple[int, str, str]:
    """Run the real CLI in a subprocess (it runs its own event loop)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pool.cli", "grid", *argv, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env={**os.environ, "GRIDPOOL_GRID_URL": ""})
    async with asyncio.timeout(30):
        out, err = await proc.communicate()
    return proc.returncode, out.decode(), err.decode()


async def test_keygen_curtail_status_cancel(harness: GridHarness, tmp_path: Path) -> None:
    key_file = tmp_path / "keys" / "tso.json"  # written by the harness with the same code
    url = ["--url", harness.url, "--key-file", str(key_file)]
    code, out, err = await gridpool("curtail", *url, "--site", "A", "--kw", "500",
                                    "--for", "30m", "--id", "cli-1")
    assert code == 0, err
    ack = json.loads(out[out.index("{"):])
    assert ack["accepted"] and ack["event"]["limit_kw"] == 500
    assert ack["event"]["end"] - ack["event"]["start"] == 1800
    assert harness.service.budget("A").watts == 500_000
    code, out, _ = await gridpool("status", *url, "--site", "A")
    timeline = json.loads(out[out.index("{"):])
    assert code == 0 and timeline["budget_kw"] == 500
    code, out, _ = await gridpool("cancel", *url, "--site", "A", "--id", "cli-1")
    assert code == 0 and harness.service.budget("A").watts == 1_000_000
    # a site operator's key is refused, with the reason
    code, _, err = await gridpool("curtail", "--url", harness.url, "--key-file",
                                  str(tmp_path / "keys" / "siteop.json"), "--site", "A",
                                  "--kw", "1")
    assert code == 1 and "HTTP 403" in err and "cannot change budgets" in err
    # keygen writes a new key and the server stanza; never overwrites one
    new = tmp_path / "tso-2.json"
    code, stanza, _ = await gridpool("keygen", "--id", "tso-2", "--out", str(new),
                                     "--sites", "A,B")
    assert code == 0
    assert 'file = "tso-2.json"' in stanza and 'sites = ["A", "B"]' in stanza
    assert oct(new.stat().st_mode & 0o777) == "0o600"
    assert json.loads(new.read_text())["key_id"] == "tso-2"
    code, _, err = await gridpool("keygen", "--id", "tso-2", "--out", str(new))
    assert code == 2 and "exists" in err


def test_parse_duration() -> None:
    assert parse_duration("30m") == 1800
    assert parse_duration("1h30m") == 5400
    assert parse_duration("90s") == 90
    assert parse_duration("45") == 45
    for bad in ("", "soon", "0", "-5", "m"):
        with pytest.raises(ConfigError):
            parse_duration(bad)
