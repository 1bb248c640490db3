"""The dashboard in a real headless Chromium against the API on a real ledger: the page
shows the API's numbers, the account panel works with a token, and nothing is logged to
the console as an error. Screenshot: tests/artifacts/dashboard_ledger.png."""

from __future__ import annotations

import time

import aiohttp
from web_browser import open_page, screenshot, wait_until
from web_data import ADMIN_TOKEN, BLOCK_A, BLOCK_B, BLOCK_C, fill

from pool.ledger.store import Ledger
from pool.web import NetworkInfo, PoolSources
from pool.web.dashboard import CSP

WAIT_MS = 10_000


async def test_dashboard_shows_the_api_numbers(ledger: Ledger, make_api) -> None:
    await fill(ledger, time.time())
    sources = PoolSources(ledger, chain="regtest", payout_mode="pplns",
                          simulated_difficulty=0.001,
                          network=lambda: NetworkInfo(height=104, difficulty=4.6e-10))
    client, _ = await make_api(sources, refresh_s=0.5)
    token = (await client.call("POST", "/api/admin/accounts/{account}/token", token=ADMIN_TOKEN,
                               account="alice")).body["token"]
    summary = (await client.call("GET", "/api/summary")).body
    async with aiohttp.ClientSession() as session, session.get(client.base + "/") as resp:
        assert resp.status == 200 and resp.headers["Content-Security-Policy"] == CSP
    async with open_page() as (page, log):
        await page.goto(client.base + "/")
        await wait_until(page, "() => document.querySelectorAll('#blocks tbody tr').length === 3")
        shown = await page.eval_on_selector_all("#blocks tbody tr", "rs => rs.map(r => "
                                                "r.dataset.hash)")
        assert shown == [BLOCK_C, BLOCK_B, BLOCK_A]
        rate = float(await page.get_attribute("#hashrate-24h", "data-value"))
        assert rate > 0 and abs(rate / summary["hashrate_hs"]["24h"] - 1) < 0.01
        assert await page.text_content("#workers-online") == "3"
        assert await page.is_visible("#simulated")  # simulated_difficulty: labelled
        assert "(simulated)" in await page.text_content("#blocks tbody tr")
        sites = await page.eval_on_selector_all("#sites tbody tr", "rs => rs.map(r => "
                                                "r.dataset.site)")
        assert sites == ["site-a", "site-b"]
        assert int(await page.get_attribute("#chart svg", "data-points")) >= 288

        await page.fill("#login-account", "alice")
        await page.fill("#login-token", token)
        await page.click("#login button[type=submit]")
        await page.wait_for_selector("#workers tbody tr", timeout=WAIT_MS)
        states = await page.eval_on_selector_all(
            "#workers tbody tr", "rs => rs.map(r => [r.dataset.worker, r.dataset.online])")
        assert states == [["rig1", "true"], ["rig2", "false"]]
        assert await page.text_content("#account-name") == "alice"

        await page.fill("#login-account", "")
        await page.fill("#login-token", ADMIN_TOKEN)
        await page.click("#login button[type=submit]")
        await page.wait_for_selector("#accounts-table tbody tr", timeout=WAIT_MS)
        await screenshot(page, "dashboard_ledger.png")
        await page.wait_for_timeout(1200)  # a couple of refreshes
        assert log.errors == [], log.errors
