"""deploy/prometheus: alert rules and the Prometheus config.

Always: the YAML structure, every alert has a severity, summary and description, every
metric in an expression is in docs/metrics.md, and each alert the operations issue asks
for exists. With promtool (Debian's `prometheus` package): `promtool check config`,
`promtool check rules` and the unit tests in alerts.test.yml.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from ops.catalogue import REPO, duration_seconds, promql_names, read_catalogue, series_to_metric

PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
RULES = PROMETHEUS_DIR / "alerts.yml"
RULE_TESTS = PROMETHEUS_DIR / "alerts.test.yml"
CONFIG = PROMETHEUS_DIR / "prometheus.yml"
SEVERITIES = {"critical", "warning"}
# The conditions the operations issue lists, by alert name.
REQUIRED_ALERTS = {
    "GridpoolNoNewTemplate",
    "GridpoolNodeDown",
    "GridpoolStaleRejectRatioHigh",
    "GridpoolBlockSubmitFailed",
    "GridpoolSiteOverBudget",
    "GridpoolGridLinkSilent",
    "GridpoolMinerUnreachableRatioHigh",
}
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not installed (apt-get install -y --no-install-recommends prometheus)",
)


def load_rules() -> list[dict]:
    document = yaml.safe_load(RULES.read_text())
    assert set(document) == {"groups"}
    rules = []
    for group in document["groups"]:
        assert group["name"] and group["rules"], group
        rules += group["rules"]
    return rules


def test_every_alert_is_complete():
    names = []
    for rule in load_rules():
        assert "record" not in rule, "recording rules belong in their own file"
        name = rule["alert"]
        names.append(name)
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations",
                             "keep_firing_for"}, name
        assert rule["labels"]["severity"] in SEVERITIES, name
        assert {"summary", "description"} <= set(rule["annotations"]), name
        if "for" in rule:
            assert duration_seconds(rule["for"]) <= 15 * 60, f"{name}: too slow to fire"
    assert len(names) == len(set(names)), "alert names must be unique"
    missing = REQUIRED_ALERTS - set(names)
    assert not missing, f"alerts the operations issue asks for are missing: {missing}"


def test_alerts_use_only_catalogued_metrics():
    catalogue = read_catalogue()
    for rule in load_rules():
        names = promql_names(rule["expr"])
        assert names or "up{" in rule["expr"], f"{rule['alert']} uses no gridpool metric"
        unknown = {n for n in names if series_to_metric(n, catalogue) is None}
        assert not unknown, f"{rule['alert']}: not in docs/metrics.md: {unknown}"


def test_config_loads_the_rules_and_scrapes_gridpool():
    config = yaml.safe_load(CONFIG.read_text())
    assert [PROMETHEUS_DIR / f for f in config["rule_files"]] == [RULES]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["gridpool"]["static_configs"][0]["targets"] == ["gridpool:8080"]
    assert "gridpool-fleet" in jobs
    # The alert on a dead target must cover every gridpool job.
    up_rule = next(r for r in load_rules() if r["alert"] == "GridpoolTargetDown")
    assert 'job=~"gridpool.*"' in up_rule["expr"]


def promtool(*args: str, cwd: Path = PROMETHEUS_DIR) -> str:
    result = subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, f"promtool {' '.join(args)}:\n{result.stdout}{result.stderr}"
    return result.stdout


@needs_promtool
def test_promtool_checks_config_and_rules():
    assert "SUCCESS" in promtool("check", "config", CONFIG.name)
    assert "SUCCESS" in promtool("check", "rules", RULES.name)


@needs_promtool
def test_promtool_unit_tests_pass():
    assert "SUCCESS" in promtool("test", "rules", RULE_TESTS.name)


@needs_promtool
def test_promtool_unit_tests_catch_a_broken_rule(tmp_path: Path):
    """The unit tests can fail: with the over-budget margin raised they must."""
    broken = RULES.read_text().replace("> 1.02 * gridpool_site_budget_watts",
                                       "> 1.50 * gridpool_site_budget_watts")
    assert broken != RULES.read_text()
    (tmp_path / RULES.name).write_text(broken)
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    result = subprocess.run([PROMTOOL, "test", "rules", RULE_TESTS.name], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "GridpoolSiteOverBudget" in result.stdout + result.stderr
