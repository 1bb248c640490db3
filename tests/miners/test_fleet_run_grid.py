"""`gridpool fleet run` with a [grid] table hosts the grid operator's signed command API:
a `gridpool grid curtail` from the operator's key reaches the controller and the simulated
miner is put to sleep; a site operator's key is refused and changes nothing."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from pathlib import Path

from grid.grid_helpers import write_keys

TOKEN = "admin-token-0123456789"


async def _gridpool(*argv: str, env: dict | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pool.cli", *argv, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env={**os.environ, "GRIDPOOL_GRID_URL": "", **(env or {})})
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode, out.decode(), err.decode()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_fleet_run_serves_the_grid_api(sim, tmp_path: Path) -> None:
    s21 = await sim("s21")
    write_keys(tmp_path)
    port = _free_port()
    (tmp_path / "token").write_text(TOKEN + "\n")
    (tmp_path / "fleet.toml").write_text(f"""
[fleet.poll]
interval_s = 0.2
request_timeout_s = 0.5
[fleet.allocation]
min_on_s = 0.0
min_off_s = 0.0
[fleet.admin]
listen = "127.0.0.1:{port}"
token_file = "token"
[[fleet.site]]
id = "A"
[[fleet.site.miner]]
id = "rig1"
model = "s21"
host = "{s21.api_address[0]}"
port = {s21.api_address[1]}

[grid]
tick_s = 0.2
[[grid.site]]
id = "A"
base_kw = 10
[grid.http]
keys_file = "keys.toml"
""")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pool.cli", "fleet", "run", "--config", str(tmp_path / "fleet.toml"),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    grid_url = f"http://127.0.0.1:{port}/grid"
    admin = ["--api", f"http://127.0.0.1:{port}"]
    env = {"GRIDPOOL_ADMIN_TOKEN": TOKEN}
    try:
        for _ in range(100):  # wait until the controller has swept once
            code, out, _ = await _gridpool("fleet", "status", *admin, env=env)
            if code == 0 and json.loads(out)["A"]["sweep_s"] is not None:
                break
            await asyncio.sleep(0.2)
        # A site operator's key never changes a budget.
        code, _, err = await _gridpool("grid", "curtail", "--url", grid_url, "--key-file",
                                       str(tmp_path / "siteop.json"), "--site", "A", "--kw", "0.5")
        assert code == 1 and "HTTP 403" in err
        assert not s21.sleep_requested
        # The grid operator's curtailment reaches the controller: 0.5 kW cannot run an S21.
        code, out, err = await _gridpool("grid", "curtail", "--url", grid_url, "--key-file",
                                         str(tmp_path / "tso.json"), "--site", "A", "--kw", "0.5",
                                         "--for", "10m")
        assert code == 0, err
        assert json.loads(out[out.index("{"):])["accepted"]
        for _ in range(50):
            if s21.sleep_requested:
                break
            await asyncio.sleep(0.1)
        assert s21.sleep_requested
        code, out, _ = await _gridpool("fleet", "status", *admin, env=env)
        assert code == 0 and json.loads(out)["A"]["budget_w"] == 500
    finally:
        proc.terminate()
        _, err_bytes = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err_bytes.decode()[-2000:]
