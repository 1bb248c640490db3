"""Shared by the ops tests: the metrics catalogue in docs/metrics.md, the metric
definitions found in the code, and the metric names a PromQL expression refers to.

The catalogue is the table whose first column holds a back-quoted `gridpool_*` name as it
appears in a scrape (counters with `_total`, info metrics with `_info`).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
METRICS_DOC = REPO / "docs" / "metrics.md"
CODE_ROOTS = ("pool", "miners")
PROMETHEUS_TYPES = {
    "Counter": "counter",
    "Gauge": "gauge",
    "Histogram": "histogram",
    "Summary": "summary",
    "Info": "info",
    "Enum": "stateset",
}
# Series a metric family of each type adds to its name in a scrape.
SERIES_SUFFIXES = {
    "counter": ("", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("",),
    "stateset": ("",),
}
COMPONENTS = ("pool", "fleet")
_ROW_RE = re.compile(r"^\|\s*`(gridpool_[a-z0-9_]+)`\s*\|(.*)\|\s*$")
_NAME_RE = re.compile(r"\bgridpool_[a-z0-9_]+")


@dataclass(frozen=True, slots=True)
class DocMetric:
    name: str  # as scraped: counters end in _total
    type: str
    labels: tuple[str, ...]
    component: str
    meaning: str


@dataclass(frozen=True, slots=True)
class CodeMetric:
    name: str  # as scraped
    type: str
    labels: tuple[str, ...]
    module: str  # dotted module name
    line: int


def read_catalogue(path: Path = METRICS_DOC) -> dict[str, DocMetric]:
    """Rows `| `name` | type | labels | exported by | meaning |`; a repeated name fails."""
    catalogue: dict[str, DocMetric] = {}
    for line in path.read_text().splitlines():
        match = _ROW_RE.match(line.strip())
        if not match:
            continue
        name, rest = match.groups()
        cells = [cell.strip() for cell in rest.split("|")]
        assert len(cells) >= 4, f"catalogue row for {name} needs type|labels|exported by|meaning"
        kind, labels, component, meaning = cells[0], cells[1], cells[2], " | ".join(cells[3:])
        assert name not in catalogue, f"{name} is listed twice in {path.name}"
        catalogue[name] = DocMetric(
            name=name,
            type=kind.strip("`"),
            labels=tuple(sorted(re.findall(r"`([a-z_][a-z0-9_]*)`", labels))),
            component=component.strip("`"),
            meaning=meaning,
        )
    return catalogue


def exposed_name(name: str, kind: str) -> str:
    """prometheus_client's naming: a Counter gets `_total`, an Info `_info`."""
    if kind == "counter":
        return name.removesuffix("_total") + "_total"
    if kind == "info":
        return name.removesuffix("_info") + "_info"
    return name


def _prometheus_aliases(tree: ast.Module) -> tuple[dict[str, str], set[str]]:
    """Names bound to prometheus_client metric classes, and aliases of the module."""
    classes: dict[str, str] = {}
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "prometheus_client":
            for alias in node.names:
                if alias.name in PROMETHEUS_TYPES:
                    classes[alias.asname or alias.name] = alias.name
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "prometheus_client":
                    modules.add(alias.asname or alias.name)
    return classes, modules


def _metric_class(call: ast.Call, classes: dict[str, str], modules: set[str]) -> str | None:
    func = call.func
    if isinstance(func, ast.Name):
        return classes.get(func.id)
    if (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
            and func.value.id in modules and func.attr in PROMETHEUS_TYPES):
        return func.attr
    return None


def _literal_strings(node: ast.AST | None, what: str, where: str) -> tuple[str, ...]:
    if node is None:
        return ()
    try:
        value = ast.literal_eval(node)
    except ValueError:
        value = None
    if isinstance(value, str):
        value = (value,)
    assert isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value), (
        f"{where}: {what} must be a literal so the catalogue can be checked")
    return tuple(value)


def _code_metric(call: ast.Call, cls: str, module: str) -> CodeMetric:
    where = f"{module}:{call.lineno}"
    kwargs = {kw.arg: kw.value for kw in call.keywords}
    for unsupported in ("namespace", "subsystem", "unit"):
        assert unsupported not in kwargs, f"{where}: spell the full metric name, not {unsupported}="
    name_node = call.args[0] if call.args else kwargs.get("name")
    assert isinstance(name_node, ast.Constant) and isinstance(name_node.value, str), (
        f"{where}: the metric name must be a string literal")
    labels_node = call.args[2] if len(call.args) > 2 else kwargs.get("labelnames")
    labels = _literal_strings(labels_node, "labelnames", where)
    if cls == "Enum":
        labels = (*labels, name_node.value)  # a state set's state is a label named after it
    kind = PROMETHEUS_TYPES[cls]
    return CodeMetric(exposed_name(name_node.value, kind), kind, tuple(sorted(labels)),
                      module, call.lineno)


def code_metrics(roots: tuple[str, ...] = CODE_ROOTS, *, repo: Path = REPO) -> list[CodeMetric]:
    """Every prometheus_client metric constructed in the source tree (by reading it)."""
    found: list[CodeMetric] = []
    for root in roots:
        for path in sorted((repo / root).rglob("*.py")):
            source = path.read_text()
            if "prometheus_client" not in source:
                continue
            tree = ast.parse(source, filename=str(path))
            classes, modules = _prometheus_aliases(tree)
            module = ".".join(path.relative_to(repo).with_suffix("").parts)
            for node in ast.walk(tree):
                if isinstance(node, ast.Call):
                    cls = _metric_class(node, classes, modules)
                    if cls is not None:
                        found.append(_code_metric(node, cls, module))
    return found


def component_of(module: str) -> str:
    """The process that exports a module's metrics: the pool or a site's fleet controller."""
    return "fleet" if module.startswith("miners.") else "pool"


def series_to_metric(series: str, catalogue: dict[str, DocMetric]) -> str | None:
    """The catalogued metric a series name belongs to (`x_bucket` → `x`), or None."""
    for metric in catalogue.values():
        for suffix in SERIES_SUFFIXES.get(metric.type, ("",)):
            if series == metric.name + suffix:
                return metric.name
            # A counter's _created series is named after the name without _total.
            if metric.type == "counter" and suffix and series == (
                    metric.name.removesuffix("_total") + suffix):
                return metric.name
    return None


def promql_names(expr: str) -> set[str]:
    """Every `gridpool_*` series name in a PromQL expression or Grafana target."""
    return set(_NAME_RE.findall(expr))


def duration_seconds(text: str) -> float:
    """A Prometheus duration (`90s`, `1m30s`, `2h`) in seconds."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    parts = re.findall(r"(\d+)(ms|s|m|h|d|w|y)", text)
    assert parts and "".join(n + u for n, u in parts) == text, f"not a duration: {text!r}"
    return sum(int(n) * units[u] for n, u in parts)
