"""deploy/grafana: provisioning YAML and dashboard JSON.

Each dashboard is valid Grafana JSON with unique panel ids and a grid layout, every query
uses the provisioned datasource and only metrics from docs/metrics.md, and (with promtool)
every query parses as PromQL once Grafana's variables are filled in.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from ops.catalogue import REPO, promql_names, read_catalogue, series_to_metric

GRAFANA = REPO / "deploy" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
DATASOURCE_UID = "gridpool-prometheus"
# What the operations issue asks for: pool overview, sites and power, audit/compliance.
REQUIRED_TITLES = ("Pool overview", "Sites and power", "Audit and compliance")
# Grafana's variables, replaced by something PromQL accepts.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h"}
PROMTOOL = shutil.which("promtool")


def panels(dashboard: dict) -> list[dict]:
    """Every panel, including those inside rows."""
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found += panel.get("panels", [])
    return found


def queries(dashboard: dict) -> list[str]:
    exprs = [t["expr"] for p in panels(dashboard) for t in p.get("targets", [])]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return exprs


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def test_the_three_dashboards_exist():
    titles = [load(path)["title"] for path in DASHBOARDS]
    for required in REQUIRED_TITLES:
        assert any(required in title for title in titles), f"no {required!r} dashboard"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_dashboard_is_valid_grafana_json(path: Path):
    dashboard = load(path)
    assert dashboard["schemaVersion"] >= 36 and re.fullmatch(r"[a-z0-9-]{1,40}", dashboard["uid"])
    assert dashboard["title"].startswith("gridpool / ")
    ids = [panel["id"] for panel in panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels(dashboard):
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["title"] and panel["targets"], panel
        assert panel["datasource"]["uid"] == DATASOURCE_UID, panel["title"]
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == DATASOURCE_UID and target["expr"].strip()
    cells: set[tuple[int, int]] = set()
    for panel in panels(dashboard):
        grid = panel["gridPos"]
        area = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"])
                for y in range(grid["y"], grid["y"] + grid["h"])}
        assert not area & cells, f"panel {panel['title']!r} overlaps another"
        cells |= area
    for variable in dashboard["templating"]["list"]:
        assert variable["datasource"]["uid"] == DATASOURCE_UID
        used = any(f"${variable['name']}" in expr for expr in queries(dashboard))
        assert used, f"variable ${variable['name']} is used by no panel"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_dashboard_queries_use_only_catalogued_metrics(path: Path):
    catalogue = read_catalogue()
    for expr in queries(load(path)):
        names = promql_names(expr)
        assert names, f"query uses no gridpool metric: {expr}"
        unknown = {n for n in names if series_to_metric(n, catalogue) is None}
        assert not unknown, f"{path.name}: not in docs/metrics.md: {unknown} in {expr}"


def promql(expr: str) -> str:
    """A dashboard query with Grafana's variables filled in."""
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    expr = re.sub(r"\$\{?[a-z_]+\}?", "x", expr)  # $site, $instance
    match = re.fullmatch(r"label_values\((.+),\s*[a-z_]+\)", expr.strip())
    return match.group(1) if match else expr


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed "
                    "(apt-get install -y --no-install-recommends prometheus)")
def test_dashboard_queries_parse_as_promql(tmp_path: Path):
    exprs = sorted({promql(e) for path in DASHBOARDS for e in queries(load(path))})
    rules = {"groups": [{"name": "dashboards", "rules": [
        {"record": f"dashboard:query{i}", "expr": expr} for i, expr in enumerate(exprs)]}]}
    rules_file = tmp_path / "queries.yml"
    rules_file.write_text(yaml.safe_dump(rules))
    result = subprocess.run([PROMTOOL, "check", "rules", str(rules_file)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_provisioning_points_at_the_dashboards_and_prometheus():
    datasources = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (source,) = datasources["datasources"]
    assert source["uid"] == DATASOURCE_UID and source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    providers = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "gridpool.yml").read_text())
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    # docker-compose mounts deploy/grafana/dashboards where the provider reads.
    compose = yaml.safe_load((REPO / "deploy" / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./grafana/dashboards:{provider['options']['path']}:ro" in mounts
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in mounts
