"""The signing examples in docs/grid-api.md work against a running API, as written."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import time
from pathlib import Path

import pytest
from grid.grid_helpers import GridHarness

DOC = (Path(__file__).parents[2] / "docs" / "grid-api.md").read_text()


def snippet(title: str, lang: str) -> str:
    match = re.search(rf"{re.escape(title)}\n\n```{lang}\n(.*?)```", DOC, re.S)
    assert match, f"docs/grid-api.md lost its {title!r} example"
    return match.group(1)


async def test_python_example(harness: GridHarness, tmp_path: Path) -> None:
    namespace: dict = {}
    exec(snippet("Python:", "python"), namespace)  # the operator's code, verbatim
    secret = json.loads((tmp_path / "keys" / "tso.json").read_text())["secret_hex"]
    base = harness.url.rsplit("/grid", 1)[0]
    loop = asyncio.get_running_loop()
    ack = await loop.run_in_executor(None, namespace["signed_request"], base,
                                     "/grid/v1/sites/A/curtailments", "POST",
                                     {"limit_kw": 300}, "tso", secret)
    assert ack["accepted"] and harness.service.budget("A").watts == 300_000
    timeline = await loop.run_in_executor(None, namespace["signed_request"], base,
                                          "/grid/v1/sites/A/timeline", "GET", None, "tso",
                                          secret)
    assert timeline["budget_kw"] == 300


@pytest.mark.skipif(not (shutil.which("curl") and shutil.which("openssl")),
                    reason="the shell example needs curl and openssl")
async def test_shell_example(harness: GridHarness, tmp_path: Path) -> None:
    shutil.copy(tmp_path / "keys" / "tso.json", tmp_path / "tso-1.json")
    script = snippet("Shell (curl + openssl):", "sh").replace("KEY_ID=tso-1", "KEY_ID=tso")
    script = script.replace("URL=https://gridpool.example:8443",
                            "URL=" + harness.url.rsplit("/grid", 1)[0])
    # `date +%s` truncates to the second: not before the second after the server started
    await asyncio.sleep(max(0.0, harness.service.started_at + 1.05 - time.time()))
    proc = await asyncio.create_subprocess_exec(
        "bash", "-e", "-c", script, cwd=tmp_path, stdout=asyncio.subprocess.PIPE)
    async with asyncio.timeout(30):
        out, _ = await proc.communicate()
    ack = json.loads(out)
    assert ack["accepted"], ack
    assert ack["event"]["limit_kw"] == 500 and ack["event"]["ramp_down_kw_per_min"] == 1000
    assert harness.service.timeline("A").get(ack["event"]["id"]) is not None
