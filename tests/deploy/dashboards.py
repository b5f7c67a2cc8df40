"""The Grafana dashboards under deploy/grafana as data: their panels and queries, the Prometheus
names the collector exports (from collector/telemetry/catalogue.yaml, by the exporter's rule), and
a lint that lists what breaks the dashboards' contract (docs/dashboards-and-alerts.md)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collector.telemetry.catalogue import catalogue

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"
DATASOURCE = "${datasource}"
REQUIRED_VARIABLES = ("datasource", "namespace", "workload")
# opentelemetry-exporter-prometheus (its map_unit): the unit's Prometheus suffix, appended unless
# already there; "1" and annotations in braces ("{finding}") add none.
UNIT_SUFFIX = {"s": "seconds", "ms": "milliseconds", "By": "bytes"}
PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "offset",
    "bool", "inf", "nan", "atan2",
}  # fmt: skip


@dataclass(frozen=True)
class Query:
    dashboard: str
    panel: str
    ref: str
    expr: str


def dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows' nested panels included."""
    for p in dashboard.get("panels", []):
        yield p
        yield from p.get("panels", [])


def queries(name: str, dashboard: dict[str, Any]) -> Iterator[Query]:
    for p in panels(dashboard):
        for t in p.get("targets", []):
            yield Query(name, str(p.get("title", "")), str(t.get("refId", "")), str(t.get("expr", "")))


def prometheus_names() -> set[str]:
    """Every series name ``GET /metrics`` can carry, by the exporter's rule: dots to underscores,
    the unit's suffix (``s``: ``_seconds``, ``By``: ``_bytes``; ``1`` and ``{…}`` none),
    ``_total`` for counters, ``_bucket``/``_sum``/``_count`` for histograms."""
    out: set[str] = set()
    for spec in catalogue().values():
        name = re.sub(r"[^a-zA-Z0-9_:]", "_", spec.name)
        suffix = UNIT_SUFFIX.get(spec.unit)
        if suffix and not name.endswith("_" + suffix):
            name += "_" + suffix
        if spec.kind == "counter":
            out.add(name + "_total")
        elif spec.kind == "histogram":
            out |= {name + "_bucket", name + "_sum", name + "_count"}
        else:
            out.add(name)
    return out


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (strings, label matchers, ranges, grouping
    clauses, functions and Grafana variables removed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"' r"|'(?:[^'\\]|\\.)*'", '""', expr)
    text = re.sub(r"\$\{[^}]*\}|\$\w+", " 0 ", text)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for m in re.finditer(r"(?<![\w.:])([a-zA-Z_:][\w:]*)(?![\w:])(?!\s*\()", text):
        word = m.group(1)
        if word.lower() not in PROMQL_WORDS and not re.fullmatch(r"\d+[smhdwy]", word):
            names.add(word)
    return names


def lint(name: str, d: dict[str, Any]) -> list[str]:
    """What breaks the contract in one dashboard, one line each; empty when it holds."""
    problems = _variables(name, d)
    problems += [f"{name}: {p}" for p in _datasources(d, "dashboard")]
    for p in panels(d):
        title = p.get("title")
        where = f"{name}: panel {p.get('id')} {title!r}"
        if p.get("type") == "row":
            continue
        if not title:
            problems.append(f"{where}: no title")
        if not p.get("fieldConfig", {}).get("defaults", {}).get("unit"):
            problems.append(f"{where}: no unit (fieldConfig.defaults.unit)")
        if not p.get("targets"):
            problems.append(f"{where}: no query")
        if (p.get("datasource") or {}).get("uid") != DATASOURCE:
            problems.append(f"{where}: datasource is not {DATASOURCE}")
        for t in p.get("targets", []):
            expr = str(t.get("expr", ""))
            for call in re.finditer(r"\b(rate|increase|irate|delta|idelta)\s*\(", expr):
                window = re.search(r"\[([^\]]*)\]", expr[call.end() :])
                if window is None or window.group(1) != "$__rate_interval":
                    problems.append(f"{where} {t.get('refId')}: {call.group(1)}() without [$__rate_interval]")
            for metric in sorted(metric_names(expr) - prometheus_names()):
                problems.append(f"{where} {t.get('refId')}: {metric} is not in the catalogue")
    return problems


def _datasources(node: Any, path: str) -> Iterator[str]:
    """Every data source reference that is not the ${datasource} variable (a hard-coded UID)."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "datasource":
                uid = v.get("uid") if isinstance(v, dict) else v
                if uid not in (None, DATASOURCE, "-- Grafana --") and not (
                    isinstance(v, str) and v in ("prometheus", DATASOURCE)
                ):
                    yield f"{path}.datasource: hard-coded data source {uid!r}"
            yield from _datasources(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _datasources(v, f"{path}[{i}]")


def _variables(name: str, d: dict[str, Any]) -> list[str]:
    """The template variables' problems: $datasource, $namespace, $workload missing or wrong."""
    problems = []
    variables = {v.get("name"): v for v in d.get("templating", {}).get("list", [])}
    for var in REQUIRED_VARIABLES:
        if var not in variables:
            problems.append(f"{name}: template variable ${var} missing")
    ds = variables.get("datasource", {})
    if ds and (ds.get("type") != "datasource" or ds.get("query") != "prometheus"):
        problems.append(f"{name}: $datasource is not a prometheus data source variable")
    for var in ("namespace", "workload"):
        q = variables.get(var, {})
        definition = str(q.get("definition", "")) + str((q.get("query") or {}).get("query", ""))
        if q and (q.get("type") != "query" or "label_values(" not in definition):
            problems.append(f"{name}: ${var} is not a label_values query variable")
        selector = re.sub(r"label_values\((.*),\s*\w+\)", r"\1", str(q.get("definition", "")))
        for metric in metric_names(selector):
            if metric not in prometheus_names():
                problems.append(f"{name}: ${var} reads {metric}, not in the catalogue")
    return problems
