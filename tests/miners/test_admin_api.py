"""The admin HTTP API (mounted like the pool will mount it) and `gridpool fleet` as real
processes: budgets by HTTP and CLI, token auth, 4xx with reasons, `fleet run` end to end."""

import asyncio
import contextlib
import json
import os
import socket
import sys
from pathlib import Path

import aiohttp
import pytest

from miners.admin_api import create_admin_app
from miners.allocate import AllocationSettings
from miners.compliance import ControlSettings
from miners.controller import FleetController
from miners.fleet import PollSettings
from pool.api import create_app, start_http

TOKEN = "admin-token-0123456789"
PREFIX = "/api/fleet"


@pytest.fixture
async def served(sim_site):
    spec, sims = await sim_site("A", ["s21", "s19jpro", "bitaxe-gamma"])
    fleet = FleetController([spec], poll=PollSettings(interval_s=0.2, request_timeout_s=0.4),
                            control=ControlSettings(comply_grace_s=0.3, plan_interval_s=0.1),
                            allocation=AllocationSettings(min_on_s=0, min_off_s=0))
    await fleet.start()
    task = asyncio.create_task(fleet.run())
    app = create_app(health=lambda: {"healthy": True})
    app.add_subapp(PREFIX, create_admin_app(fleet, token=TOKEN))
    runner, port = await start_http(app, "127.0.0.1", 0)
    async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
        yield fleet, sims, http, port
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await runner.cleanup()
    await fleet.close()


AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def _json(resp):
    return resp.status, await resp.json()


async def test_budget_status_miners_and_events(served):
    fleet, sims, http, _ = served
    async with http.put(f"{PREFIX}/sites/A/budget", json={"kw": 4}, headers=AUTH) as resp:
        status, body = await _json(resp)
    assert status == 200 and body["budget_w"] == 4000 and body["site"] == "A"
    assert body["under_budget_by"] > 0 and fleet.site("A").budget_w == 4000
    await asyncio.sleep(1.0)
    async with http.get(f"{PREFIX}/sites", headers=AUTH) as resp:
        status, body = await _json(resp)
    assert status == 200 and body["A"]["budget_w"] == 4000 and body["A"]["power_w"] <= 4000
    async with http.get(f"{PREFIX}/sites/A/miners", headers=AUTH) as resp:
        status, rows = await _json(resp)
    assert status == 200 and {r["id"] for r in rows} == set(sims)
    assert {"state", "power_w", "intent", "flagged", "worker"} <= set(rows[0])
    async with http.get(f"{PREFIX}/sites/A/events?limit=5", headers=AUTH) as resp:
        status, events = await _json(resp)
    assert status == 200 and 0 < len(events) <= 5
    async with http.get(f"{PREFIX}/sites/A/events", headers=AUTH) as resp:
        status, events = await _json(resp)
    assert events[0]["kind"] == "budget" and events[0]["detail"]["source"].startswith("admin:")


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "reason"),
    [
        ("get", "/sites", {}, 401, "missing Authorization"),
        ("get", "/sites", {"headers": {"Authorization": "Bearer wrong"}}, 401, "invalid"),
        ("get", "/sites/nowhere", {"headers": AUTH}, 404, "unknown site"),
        ("put", "/sites/A/budget", {"headers": AUTH, "data": b"{"}, 400, "not JSON"),
        ("put", "/sites/A/budget", {"headers": AUTH, "json": [1]}, 400, "JSON object"),
        ("put", "/sites/A/budget", {"headers": AUTH, "json": {"kw": "5"}}, 400, "number"),
        ("put", "/sites/A/budget", {"headers": AUTH, "json": {"kw": 1, "watts": 2}}, 400,
         "exactly one"),
        ("put", "/sites/A/budget", {"headers": AUTH, "json": {"kw": -1}}, 400, "between"),
        ("put", "/sites/A/budget", {"headers": AUTH, "data": b'{"kw": NaN}'}, 400, "between"),
        ("put", "/sites/A/budget", {"headers": AUTH, "data": b"x" * 10_000}, 413, "larger"),
        ("get", "/sites/A/events?limit=0", {"headers": AUTH}, 400, "limit"),
        ("get", "/sites/A/events?since=soon", {"headers": AUTH}, 400, "since"),
    ],
)
async def test_errors_are_4xx_with_reasons(served, method, path, kwargs, status, reason):
    _, _, http, _ = served
    async with getattr(http, method)(PREFIX + path, **kwargs) as resp:
        assert resp.status == status
        assert reason in (await resp.json())["error"]


def test_short_tokens_are_refused():
    with pytest.raises(ValueError, match="at least"):
        create_admin_app(None, token="short")  # type: ignore[arg-type]


async def _gridpool(*argv: str, env: dict | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pool.cli", *argv, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env={**os.environ, **(env or {})})
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode, out.decode(), err.decode()


async def test_cli_budget_and_status_talk_to_the_admin_api(served):
    fleet, _, _, port = served
    env = {"GRIDPOOL_ADMIN_TOKEN": TOKEN}
    api = f"http://127.0.0.1:{port}"
    code, out, _ = await _gridpool("fleet", "budget", "--site", "A", "--kw", "2.5", "--api", api,
                                   env=env)
    assert code == 0 and json.loads(out)["budget_w"] == 2500
    assert fleet.site("A").budget_w == 2500
    code, out, _ = await _gridpool("fleet", "status", "--api", api, env=env)
    assert code == 0 and json.loads(out)["A"]["budget_w"] == 2500
    code, _, err = await _gridpool("fleet", "budget", "--site", "Z", "--kw", "1", "--api", api,
                                   env=env)
    assert code == 2 and "HTTP 404" in err and "unknown site" in err
    code, _, err = await _gridpool("fleet", "budget", "--site", "A", "--kw", "1", "--api", api,
                                   env={"GRIDPOOL_ADMIN_TOKEN": ""})
    assert code == 2 and "GRIDPOOL_ADMIN_TOKEN" in err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_fleet_run_controls_a_site_from_its_config(sim, tmp_path: Path):
    s21 = await sim("s21")
    axe = await sim("bitaxe-gamma")
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
[[fleet.site.miner]]
id = "axe1"
model = "bitaxe-gamma"
host = "{axe.api_address[0]}"
port = {axe.api_address[1]}
""")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pool.cli", "fleet", "run", "--config", str(tmp_path / "fleet.toml"),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        api = f"http://127.0.0.1:{port}"
        env = {"GRIDPOOL_ADMIN_TOKEN": TOKEN}
        for _ in range(100):  # wait for the admin API
            code, out, _ = await _gridpool("fleet", "status", "--api", api, env=env)
            if code == 0 and json.loads(out)["A"]["sweep_s"] is not None:
                break
            await asyncio.sleep(0.2)
        code, _, _ = await _gridpool("fleet", "budget", "--site", "A", "--kw", "0.5",
                                     "--api", api, env=env)
        assert code == 0
        for _ in range(50):
            if s21.sleep_requested:
                break
            await asyncio.sleep(0.1)
        assert s21.sleep_requested and not axe.sleep_requested  # the Bitaxe fits in 500 W
        async with aiohttp.ClientSession() as http, http.get(f"{api}/metrics") as resp:
            text = await resp.text()
        assert 'gridpool_site_budget_watts{site="A"} 500.0' in text
    finally:
        proc.terminate()
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()[-2000:]
