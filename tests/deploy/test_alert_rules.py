"""The alerting rules: ``promtool check rules`` and ``promtool test rules`` (each alert firing and
not firing) pass; the plain rules file and the PrometheusRule hold the same groups; every alert has
its summary, a description naming the workload and key, and a runbook taken from the playbook."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from collector.drift.playbook import hint_for, play_for
from tests.support.prometheus import promtool

RULES_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
RULES = RULES_DIR / "skewwatch-rules.yaml"
OPERATOR = RULES_DIR / "skewwatch-prometheusrule.yaml"
ALERTS = {
    "SkewwatchCriticalDriftOpen", "SkewwatchThroughputBelowBaseline", "SkewwatchLatencyAboveBaseline",
    "SkewwatchReplicaSkew", "SkewwatchAgentSilent", "SkewwatchWorkloadsWithoutIntent",
    "SkewwatchIngestFailing", "SkewwatchInjectionMissed",
}  # fmt: skip
# Their metrics carry no workload (the injection gauge: a namespace, never pod names).
NO_WORKLOAD_LABEL = {"SkewwatchWorkloadsWithoutIntent", "SkewwatchIngestFailing", "SkewwatchInjectionMissed"}


def _rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [r for g in doc["groups"] for r in g["rules"]]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=120, check=False)


def test_promtool_checks_the_rules() -> None:
    out = _run("check", "rules", str(RULES))
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in out.stdout


def test_promtool_unit_tests_pass_and_cover_every_alert() -> None:
    tests = sorted((RULES_DIR / "tests").glob("*.yaml"))
    assert tests
    out = _run("test", "rules", *map(str, tests))
    assert out.returncode == 0, out.stdout + out.stderr
    fired: set[str] = set()
    quiet: set[str] = set()
    for path in tests:
        for t in yaml.safe_load(path.read_text())["tests"]:
            for case in t["alert_rule_test"]:
                (fired if case["exp_alerts"] else quiet).add(case["alertname"])
    assert fired == ALERTS and quiet == ALERTS, (ALERTS - fired, ALERTS - quiet)


def test_the_prometheusrule_holds_the_same_groups() -> None:
    plain = yaml.safe_load(RULES.read_text())
    operator = yaml.safe_load(OPERATOR.read_text())
    assert (operator["apiVersion"], operator["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    assert operator["metadata"]["name"]
    assert operator["spec"]["groups"] == plain["groups"]


def test_every_alert_has_summary_description_and_a_playbook_runbook() -> None:
    rules = _rules()
    assert {r["alert"] for r in rules} == ALERTS
    for r in rules:
        a = r["annotations"]
        assert a["summary"] and a["runbook"], r["alert"]
        assert "key" in a["description"], r["alert"]
        if r["alert"] not in NO_WORKLOAD_LABEL:
            assert "{{ $labels.namespace }}/{{ $labels.workload }}" in a["description"], r["alert"]
        assert r["labels"]["severity"] in {"critical", "warning", "info"}
    runbooks = {r["alert"]: r["annotations"]["runbook"] for r in rules}
    for key in ("model.weights.digest", "model.tokenizer.digest", "model.chat_template.digest",
                "runtime.dtype", "runtime.quantization", "hardware.gpu.product"):  # fmt: skip
        assert (
            f'eq $labels.key "{key}" }}}}{hint_for(play_for(key), key, None)}'
            in runbooks["SkewwatchCriticalDriftOpen"]
        )
    assert (
        hint_for(play_for("observation.generation_tokens_per_s"), "", None)
        in runbooks["SkewwatchThroughputBelowBaseline"]
    )
    assert (
        hint_for(play_for("observation.ttft_seconds_p95"), "", None)
        in runbooks["SkewwatchLatencyAboveBaseline"]
    )
