"""docs/metrics.md against the code and against a running pool's /metrics.

The catalogue must list exactly the metrics the code defines (same type, same labels),
follow Prometheus naming, keep label cardinality bounded, and a real pool scraped over
HTTP must expose every `pool` metric and nothing that is not catalogued.
"""

from __future__ import annotations

import asyncio
import importlib
import re
from pathlib import Path

import aiohttp
import pytest
from ops.catalogue import (
    COMPONENTS,
    PROMETHEUS_TYPES,
    CodeMetric,
    DocMetric,
    code_metrics,
    component_of,
    exposed_name,
    read_catalogue,
)
from ops.running import mine_a_little
from prometheus_client.parser import text_string_to_metric_families

from pool.app import PoolApp

# Labels whose values grow with shares, jobs, connections or miners: never allowed.
UNBOUNDED_LABELS = {"nonce", "share", "share_id", "job", "job_id", "session", "session_id",
                    "ip", "peer", "address", "extranonce", "extranonce1", "hash", "block_hash",
                    "user_agent", "username", "user"}
# Per-worker / per-miner labels: only as an operator opt-in, marked so in the catalogue.
OPT_IN_LABELS = {"worker", "account", "miner", "miner_id"}
# Units that are not base units (Prometheus naming: seconds, watts, bytes, …).
NON_BASE_UNITS = {"milliseconds", "microseconds", "ms", "us", "minutes", "hours", "days",
                  "kw", "mw", "kilowatts", "megawatts", "kwh", "mwh", "kilobytes",
                  "megabytes", "percent", "ths", "ghs", "mhs", "khs"}
SCRAPE_IGNORED_LABELS = {"le", "quantile"}


@pytest.fixture(scope="module")
def catalogue() -> dict[str, DocMetric]:
    rows = read_catalogue()
    assert len(rows) >= 10, "docs/metrics.md lost its catalogue table"
    return rows


@pytest.fixture(scope="module")
def in_code() -> list[CodeMetric]:
    found = code_metrics()
    assert found, "no prometheus_client metric found under pool/ and miners/"
    return found


def test_catalogue_follows_prometheus_naming(catalogue: dict[str, DocMetric]):
    for name, metric in catalogue.items():
        assert re.fullmatch(r"gridpool_[a-z][a-z0-9_]*[a-z0-9]", name), name
        assert metric.type in PROMETHEUS_TYPES.values(), f"{name}: unknown type {metric.type}"
        assert metric.component in COMPONENTS, f"{name}: exported by {metric.component!r}"
        assert metric.meaning, f"{name}: the meaning column is empty"
        assert (metric.type == "counter") == name.endswith("_total"), (
            f"{name}: counters and only counters end in _total")
        assert not NON_BASE_UNITS & set(name.split("_")), f"{name}: use a base unit"
        if metric.type in ("histogram", "summary"):
            # A distribution of counts names what it counts (shares per batch) as its unit.
            assert re.search(r"_(seconds|bytes|watts|joules|shares)$", name), (
                f"{name}: a distribution needs its unit in the name")


def test_label_cardinality_is_bounded(catalogue: dict[str, DocMetric]):
    for name, metric in catalogue.items():
        labels = set(metric.labels)
        assert not labels & UNBOUNDED_LABELS, f"{name}: unbounded label {labels & UNBOUNDED_LABELS}"
        if labels & OPT_IN_LABELS:
            assert "opt-in" in metric.meaning, (
                f"{name}: per-worker/miner labels only behind an operator opt-in setting")


def test_every_metric_in_the_code_is_catalogued_and_nothing_else(
    catalogue: dict[str, DocMetric], in_code: list[CodeMetric]
):
    by_name: dict[str, CodeMetric] = {}
    for metric in in_code:
        assert metric.name not in by_name, (
            f"{metric.name} defined twice: {by_name.get(metric.name)} and {metric}")
        by_name[metric.name] = metric
    missing = sorted(set(by_name) - set(catalogue))
    assert not missing, f"defined in the code but not in docs/metrics.md: {missing}"
    stale = sorted(set(catalogue) - set(by_name))
    assert not stale, f"in docs/metrics.md but defined nowhere in pool/ or miners/: {stale}"
    for name, metric in by_name.items():
        doc = catalogue[name]
        where = f"{name} ({metric.module}:{metric.line})"
        assert doc.type == metric.type, f"{where}: code says {metric.type}, doc {doc.type}"
        assert doc.labels == metric.labels, f"{where}: labels {metric.labels} vs doc {doc.labels}"
        assert doc.component == component_of(metric.module), f"{where}: exported by"


def test_code_scan_sees_through_names_and_aliases(tmp_path: Path):
    """The scanner must not miss a metric spelled another way (so the test above can fail)."""
    root = tmp_path / "pkg"
    root.mkdir()
    (root / "m.py").write_text(
        "import prometheus_client as pc\n"
        "from prometheus_client import Counter as C, Info\n"
        "A = C('gridpool_a', 'x', ['site'])\n"
        "B = pc.Histogram('gridpool_b_seconds', 'x', labelnames=('command',))\n"
        "I = Info(name='gridpool_build', documentation='x')\n"
        "import collections\nD = collections.Counter('abc')\n"
    )
    found = code_metrics(("pkg",), repo=tmp_path)
    assert {(m.name, m.type, m.labels, m.module) for m in found} == {
        ("gridpool_a_total", "counter", ("site",), "pkg.m"),
        ("gridpool_b_seconds", "histogram", ("command",), "pkg.m"),
        ("gridpool_build_info", "info", (), "pkg.m"),
    }
    (root / "bad.py").write_text("from prometheus_client import Gauge\nG = Gauge(NAME, 'x')\n")
    with pytest.raises(AssertionError, match="string literal"):
        code_metrics(("pkg",), repo=tmp_path)


# ---- a running pool ---------------------------------------------------------------------


def scraped_metrics(text: str) -> dict[str, tuple[str, set[str]]]:
    """`gridpool_*` families in a scrape: exposed name → (type, label names seen)."""
    families: dict[str, tuple[str, set[str]]] = {}
    for family in text_string_to_metric_families(text):
        if not family.name.startswith("gridpool_"):
            continue
        name = exposed_name(family.name, family.type)
        labels = {key for sample in family.samples for key in sample.labels}
        families[name] = (family.type, labels - SCRAPE_IGNORED_LABELS)
    return families


def undocumented(scraped: dict[str, tuple[str, set[str]]],
                 catalogue: dict[str, DocMetric]) -> list[str]:
    """Scraped families not in the catalogue; a counter's or histogram's `_created`
    companion gauge counts as documented with it."""
    created_of = {exposed_name(n, d.type).removesuffix("_total") + "_created"
                  for n, d in catalogue.items() if d.type in ("counter", "histogram", "summary")}
    return sorted(name for name in scraped if name not in catalogue and name not in created_of)


async def scrape(port: int) -> str:
    async with aiohttp.ClientSession() as http:
        async with asyncio.timeout(10), http.get(f"http://127.0.0.1:{port}/metrics") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain")
            return await resp.text()


async def test_running_pool_exposes_every_pool_metric_and_nothing_undocumented(
    running_pool: PoolApp, catalogue: dict[str, DocMetric]
):
    await mine_a_little(running_pool)
    scraped = scraped_metrics(await scrape(running_pool.http_port))
    assert not undocumented(scraped, catalogue), (
        f"exposed but not in docs/metrics.md: {undocumented(scraped, catalogue)}")
    pool_rows = {n for n, d in catalogue.items() if d.component == "pool"}
    assert not pool_rows - set(scraped), f"documented but not exposed: {pool_rows - set(scraped)}"
    for name, (kind, labels) in scraped.items():
        if name in catalogue:
            doc = catalogue[name]
            assert kind == ("gauge" if doc.type in ("info", "stateset") else doc.type), name
            if labels:  # a labelled family has no samples until its first label value
                assert labels == set(doc.labels), f"{name}: scraped labels {labels}"
    assert scraped["gridpool_shares_total"][1] == {"result"}  # the shares above are counted


async def test_every_module_with_metrics_exposes_its_catalogue_rows(
    running_pool: PoolApp, catalogue: dict[str, DocMetric], in_code: list[CodeMetric]
):
    """With every metric-defining module loaded (as when one process hosts pool and fleet),
    the scrape matches the catalogue exactly."""
    for module in {m.module for m in in_code}:
        importlib.import_module(module)
    scraped = scraped_metrics(await scrape(running_pool.http_port))
    assert not undocumented(scraped, catalogue)
    assert set(catalogue) <= set(scraped), f"not exposed: {set(catalogue) - set(scraped)}"
