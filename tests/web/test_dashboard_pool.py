"""The whole pool on the devnet with a simulated miner, its dashboard in a real headless
Chromium: the page shows nonzero hash rate and the same blocks as the API's JSON (labelled
simulated), the account panel shows the miner's worker, no console error is logged, and
the running app serves exactly the routes of the OpenAPI document.
Screenshot: tests/artifacts/dashboard.png."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import Page
from spec_check import app_routes, spec_routes
from stratum.harness import BASE_STRATUM, POOL_ADDRESS, TEST_DIFFICULTY, node_table
from web_browser import open_page, screenshot, wait_until
from web_data import ADMIN_TOKEN

from miners.sim.stratum_client import StratumClient
from pool.app import PoolApp
from pool.config import parse_config
from pool.web.openapi import build_spec

MINER_HS = 2e6  # the simulated miner's pace: ~4.7 shares/s at TEST_DIFFICULTY
SIMULATED_DIFFICULTY = 1e-3  # a block every ~2 s at MINER_HS
BLOCKS_WANTED = 2
USERNAME = "alice.site1.rig1"  # account alice, worker site1.rig1, site site1
WAIT_S = 15.0
WAIT_MS = int(WAIT_S * 1000)


@pytest.fixture
async def pool(devnet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[PoolApp]:
    monkeypatch.setenv("GRIDPOOL_ADMIN_TOKEN", ADMIN_TOKEN)
    app = PoolApp(parse_config({
        "network": {"chain": "regtest", "simulated_difficulty": SIMULATED_DIFFICULTY},
        "node": [node_table(devnet)],
        "stratum": BASE_STRATUM,
        "payout": {"mode": "pplns", "address": POOL_ADDRESS},
        "http": {"listen": "127.0.0.1:0"},
        "data_dir": str(tmp_path / "pool"),
    }))
    await app.start()
    yield app
    await app.stop(drain=False)


async def get_json(session: aiohttp.ClientSession, url: str, token: str | None = None) -> dict:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with session.get(url, headers=headers) as resp:
        assert resp.status == 200, (url, resp.status, await resp.text())
        return await resp.json()


async def until(predicate, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not await predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


async def mine_until_the_page_is_live(pool: PoolApp, page: Page, base: str) -> None:
    """Mine until the ledger holds BLOCKS_WANTED blocks and the page shows hash rate and
    blocks; the miner is stopped on return."""
    host, port = pool.stratum.addresses[0]
    miner = StratumClient(host, port, USERNAME, suggest_difficulty=TEST_DIFFICULTY,
                          hashrate_hs=lambda: MINER_HS)
    miner.start()
    try:
        async def enough_blocks() -> bool:
            return len(await pool.ledger.blocks(limit=10)) >= BLOCKS_WANTED

        await until(enough_blocks, f"{BLOCKS_WANTED} blocks in the ledger")
        await page.goto(base + "/?refresh=1")
        await wait_until(
            page, "() => Number(document.getElementById('hashrate-1m').dataset.value) > 0 "
            "&& document.querySelectorAll('#blocks tbody tr').length > 0", timeout_s=WAIT_S)
    finally:
        await miner.stop()


async def settled_summary(pool: PoolApp, session: aiohttp.ClientSession, base: str) -> dict:
    """/api/summary once its (cached) answer holds every block of the ledger."""
    truth = [b.hash_hex for b in await pool.ledger.blocks(limit=10)]
    summary: dict = {}

    async def caught_up() -> bool:
        summary.update(await get_json(session, base + "/api/summary"))
        return [b["hash"] for b in summary["blocks"]] == truth

    await until(caught_up, "the API to show every block")
    return summary


async def log_in(page: Page, session: aiohttp.ClientSession, base: str, account: str) -> str:
    """Issue `account` a token through the admin API and sign in with it on the page."""
    async with session.post(f"{base}/api/admin/accounts/{account}/token",
                            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as resp:
        assert resp.status == 201
        token = (await resp.json())["token"]
    await page.fill("#login-account", account)
    await page.fill("#login-token", token)
    await page.click("#login button[type=submit]")
    return token


@pytest.mark.slow
async def test_dashboard_on_a_mining_pool(pool: PoolApp) -> None:
    assert app_routes(pool.web_app) == spec_routes(build_spec())
    base = f"http://127.0.0.1:{pool.http_port}"
    async with aiohttp.ClientSession() as session, open_page() as (page, log):
        await mine_until_the_page_is_live(pool, page, base)
        summary = await settled_summary(pool, session, base)
        await wait_until(
            page, "want => JSON.stringify([...document.querySelectorAll('#blocks tbody tr')]"
            ".map(r => r.dataset.hash)) === JSON.stringify(want)",
            [b["hash"] for b in summary["blocks"]], timeout_s=WAIT_S)
        heights = await page.eval_on_selector_all(
            "#blocks tbody tr", "rs => rs.map(r => Number(r.cells[0].textContent))")
        assert heights == [b["height"] for b in summary["blocks"]]
        assert all(b["simulated"] for b in summary["blocks"])
        assert await page.is_visible("#simulated")
        assert "(simulated)" in await page.text_content("#blocks tbody tr")
        assert summary["hashrate_hs"]["1m"] > 0
        assert float(await page.get_attribute("#hashrate-1m", "data-value")) > 0
        sites = await page.eval_on_selector_all("#sites tbody tr", "rs => rs.map(r => "
                                                "r.dataset.site)")
        assert sites == ["site1"]

        token = await log_in(page, session, base, "alice")
        await page.wait_for_selector("#workers tbody tr[data-worker='site1.rig1']",
                                     timeout=WAIT_MS)
        assert await page.get_attribute("#workers tbody tr", "data-online") == "true"
        account = await get_json(session, base + "/api/accounts/alice", token)
        assert account["shares"]["24h"] > 0 and account["best_share"] is not None
        await screenshot(page, "dashboard.png")
        assert log.errors == [], log.errors
