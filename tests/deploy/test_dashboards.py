"""The Grafana dashboards hold their contract: titled panels with units, the ${datasource}
variable instead of any data source UID, $__rate_interval in every rate/increase, only metrics the
collector exports (collector/telemetry/catalogue.yaml), the namespace/workload variables; and the
lint itself catches each of those breaks."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.dashboards import (
    DASHBOARDS,
    ROOT,
    dashboards,
    lint,
    metric_names,
    prometheus_names,
    queries,
)

EXPECTED = {"skewwatch-fleet.json", "skewwatch-workload.json", "skewwatch-performance.json"}


def test_the_dashboards_are_there_and_lint_clean() -> None:
    found = dashboards()
    assert set(found) >= EXPECTED, set(found)
    problems = [p for name, d in found.items() for p in lint(name, d)]
    assert problems == []
    uids = [d["uid"] for d in found.values()]
    assert len(set(uids)) == len(uids)
    for d in found.values():
        ids = [p["id"] for p in d["panels"]]
        assert len(set(ids)) == len(ids), d["uid"]


def test_every_catalogued_family_is_on_some_dashboard() -> None:
    used = {m for name, d in dashboards().items() for q in queries(name, d) for m in metric_names(q.expr)}
    families = {
        n.removesuffix("_bucket").removesuffix("_sum").removesuffix("_count") for n in prometheus_names()
    }
    missing = {f for f in families if not any(u.startswith(f) for u in used)}
    assert missing == set()


def test_provisioning_points_grafana_at_the_dashboards() -> None:
    doc = yaml.safe_load((ROOT / "deploy" / "grafana" / "provisioning-dashboards.yaml").read_text())
    assert doc["apiVersion"] == 1
    (provider,) = doc["providers"]
    assert provider["type"] == "file" and provider["folder"] == "skewwatch" and provider["options"]["path"]


def _fleet() -> dict[str, Any]:
    return copy.deepcopy(dashboards()["skewwatch-fleet.json"])


def _break(change: str, d: dict[str, Any]) -> None:
    panel = d["panels"][0]
    if change == "title":
        panel["title"] = ""
    elif change == "unit":
        del panel["fieldConfig"]["defaults"]["unit"]
    elif change == "uid":
        panel["targets"][0]["datasource"] = {"type": "prometheus", "uid": "P1809F7CD0C75ACF3"}
    elif change == "rate":
        panel["targets"][0]["expr"] = "sum(rate(skewwatch_snapshots_received_total[5m]))"
    elif change == "increase":
        panel["targets"][0]["expr"] = "increase(skewwatch_findings_opened_total)"
    elif change == "metric":
        panel["targets"][0]["expr"] = 'sum(skewwatch_findings_opened{namespace=~"$namespace"})'
    elif change == "variable":
        d["templating"]["list"] = [v for v in d["templating"]["list"] if v["name"] != "workload"]
    elif change == "datasource-variable":
        d["templating"]["list"][0]["query"] = "loki"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("title", "no title"),
        ("unit", "no unit"),
        ("uid", "hard-coded data source 'P1809F7CD0C75ACF3'"),
        ("rate", "rate() without [$__rate_interval]"),
        ("increase", "increase() without [$__rate_interval]"),
        ("metric", "skewwatch_findings_opened is not in the catalogue"),
        ("variable", "template variable $workload missing"),
        ("datasource-variable", "$datasource is not a prometheus data source variable"),
    ],
)
def test_the_lint_catches(change: str, message: str) -> None:
    d = _fleet()
    _break(change, d)
    problems = lint("fleet", d)
    assert any(message in p for p in problems), problems


def test_metric_names_of_an_expression() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le) (rate(skewwatch_ingest_duration_seconds_bucket{message="hello"}'
        "[$__rate_interval]))) / on (namespace) group_left (dtype) skewwatch_workload_replicas"
        " > bool 1 or vector(0)"
    )
    assert metric_names(expr) == {"skewwatch_ingest_duration_seconds_bucket", "skewwatch_workload_replicas"}
    assert metric_names('label_replace(up, "state", "x", "", "")') == {"up"}


def test_dashboards_are_formatted_json(tmp_path: Path) -> None:
    for path in DASHBOARDS.glob("*.json"):
        assert path.read_text() == json.dumps(json.loads(path.read_text()), indent=2) + "\n", path.name
