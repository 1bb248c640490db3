"""Test helper: Debian's Chromium driven by Playwright (`executable_path`, no downloaded
browser), with every console error, uncaught page error and failed request collected."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, async_playwright

CHROMIUM = os.environ.get("GRIDPOOL_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
LAUNCH_TIMEOUT_MS = 20_000
POLL_S = 0.1  # wait_until's polling interval (s)
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"  # tests/artifacts (gitignored)


@dataclass
class PageLog:
    errors: list[str] = field(default_factory=list)  # console errors, page errors, failures
    messages: list[str] = field(default_factory=list)  # every console line, for debugging


def chromium() -> str:
    """The browser binary; without it the test skips saying how to install it."""
    if not Path(CHROMIUM).exists():
        # A system package pip cannot install: .ci/run installs it, so CI always runs this test;
        # a fresh machine running only README's command skips it and says how to enable it.
        pytest.skip(f"Chromium not found at {CHROMIUM}: install Debian's package with "
                    "`apt-get install -y chromium` (or set GRIDPOOL_CHROMIUM)")
    return CHROMIUM


@contextlib.asynccontextmanager
async def open_page(width: int = 1280, height: int = 1000) -> AsyncIterator[tuple[Page, PageLog]]:
    log = PageLog()
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS,
                                           timeout=LAUNCH_TIMEOUT_MS)
        try:
            page = await browser.new_page(viewport={"width": width, "height": height})
            page.on("console", lambda m: _console(log, m.type, m.text))
            page.on("pageerror", lambda err: log.errors.append(f"page error: {err}"))
            page.on("requestfailed",
                    lambda r: log.errors.append(f"request failed: {r.url} {r.failure}"))
            yield page, log
        finally:
            await browser.close()


def _console(log: PageLog, kind: str, text: str) -> None:
    log.messages.append(f"{kind}: {text}")
    if kind == "error":
        log.errors.append(f"console error: {text}")


async def wait_until(page: Page, expression: str, arg: Any = None, timeout_s: float = 15.0) -> None:
    """Poll a JS function (`arg => bool`) with page.evaluate until it returns true.
    (Playwright's wait_for_function evaluates its predicate with eval(), which the
    dashboard's Content-Security-Policy rightly forbids; page.evaluate is not subject
    to it.)"""
    deadline = time.monotonic() + timeout_s
    while not await page.evaluate(expression, arg):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for: {expression}")
        await asyncio.sleep(POLL_S)


async def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    await page.screenshot(path=str(path), full_page=True)
    return path
