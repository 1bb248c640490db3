"""A real Prometheus (Debian's `prometheus` package) scrapes a running pool with the alert
rules of deploy/prometheus loaded: the target is up, every rule evaluates without error,
and every dashboard query runs against the scraped data; the hash rate panel shows the
shares a miner submitted."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from ops.catalogue import REPO
from ops.running import mine_a_little

from pool.app import PoolApp

PROMETHEUS = shutil.which("prometheus")
RULES = REPO / "deploy" / "prometheus" / "alerts.yml"
DASHBOARDS = sorted((REPO / "deploy" / "grafana" / "dashboards").glob("*.json"))
SCRAPE_INTERVAL = "1s"
# Grafana's variables, filled in the way Grafana would for a short range.
VARIABLES = {"$__rate_interval": "1m", "$__interval": "1s", "$__range": "1m",
             "$instance": ".*", "$site": ".*"}
HASH_RATE_PANEL = "Hash rate (from shares)"

pytestmark = pytest.mark.skipif(
    PROMETHEUS is None,
    reason="prometheus not installed (apt-get install -y --no-install-recommends prometheus)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def prometheus(tmp_path: Path, target_port: int):
    config = {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "rule_files": [str(RULES)],
        "scrape_configs": [{"job_name": "gridpool",
                            "static_configs": [{"targets": [f"127.0.0.1:{target_port}"]}]}],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    process = subprocess.Popen(
        [PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}",
         "--log.level=warn"],
        stdout=subprocess.DEVNULL, stderr=(tmp_path / "prometheus.log").open("wb"))
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def api(http: aiohttp.ClientSession, url: str, **params: str) -> Any:
    async with asyncio.timeout(10), http.get(url, params=params) as resp:
        body = await resp.json()
        assert body["status"] == "success", body
        return body["data"]


async def wait_for(http: aiohttp.ClientSession, base: str, query: str, timeout_s: float = 30):
    """Poll an instant query until it returns a sample."""
    async with asyncio.timeout(timeout_s):
        while True:
            with contextlib.suppress(aiohttp.ClientError, AssertionError):
                result = (await api(http, f"{base}/api/v1/query", query=query))["result"]
                if result:
                    return result
            await asyncio.sleep(0.5)


def dashboard_queries() -> dict[str, str]:
    queries = {}
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                expr = target["expr"]
                for variable, value in VARIABLES.items():
                    expr = expr.replace(variable, value)
                queries[f"{path.stem} / {panel['title']} / {target['refId']}"] = expr
    return queries


async def test_prometheus_scrapes_the_pool_and_runs_every_rule_and_panel(
    running_pool: PoolApp, tmp_path: Path
):
    with prometheus(tmp_path, running_pool.http_port) as base:
        async with aiohttp.ClientSession() as http:
            await wait_for(http, base, 'up{job="gridpool"} == 1')
            await mine_a_little(running_pool)  # shares land between two scrapes
            await wait_for(http, base, 'gridpool_shares_total{result="duplicate"} > 0')
            await wait_for(http, base, "count_over_time(up[1m]) >= 4")

            groups = (await api(http, f"{base}/api/v1/rules"))["groups"]
            rules = [rule for group in groups for rule in group["rules"]]
            assert len(rules) == len([r for g in yaml.safe_load(RULES.read_text())["groups"]
                                      for r in g["rules"]])
            for rule in rules:
                assert rule["health"] == "ok", (rule["name"], rule.get("lastError"))

            queries = dashboard_queries()
            assert len(queries) > 30
            for name, expr in queries.items():
                data = await api(http, f"{base}/api/v1/query", query=expr)
                assert data["resultType"] in ("vector", "scalar"), name
            hash_rate = next(expr for name, expr in queries.items() if HASH_RATE_PANEL in name)
            (sample,) = (await api(http, f"{base}/api/v1/query", query=hash_rate))["result"]
            assert float(sample["value"][1]) > 0
