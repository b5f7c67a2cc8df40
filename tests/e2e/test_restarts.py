"""Restarts are not drift, and one change is one finding — real collector, agents and stand-in
vLLM processes over loopback. The stand-in waits before it listens, as vLLM does while it loads
weights, so every restart has a window in which the runtime's sources are not ready."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from demo.harness import get_json
from demo.standin_vllm import LOAD_SECONDS_ENV
from tests.support.scenario import MODELSPEC, PORTS_POLICY, Scenario

pytestmark = pytest.mark.e2e
NS, WL = "team-a", "team-a/llama"
PODS = ("llama-7d9f8b6c5-aaaaa", "llama-7d9f8b6c5-bbbbb")


def history(sc: Scenario, pod: str) -> dict[str, Any]:
    data = get_json(f"{sc.api}/api/v1/pods/{NS}/{pod}/history?limit=100")
    assert data is not None
    return dict(data)


def ready(sc: Scenario, pod: str) -> bool:
    p = sc.pod(NS, pod)
    return bool(
        p and "runtime.num_gpu_blocks" in p["facts"] and (p.get("engine") or {}).get("state") == "running"
    )


def start(sc: Scenario) -> None:
    (sc.intents / "llama.yaml").write_text(MODELSPEC)
    (sc.intents / "ports.yaml").write_text(PORTS_POLICY)
    sc.env[LOAD_SECONDS_ENV] = "1.5"
    sc.start_collector()
    for pod in PODS:
        sc.start_replica(pod, NS)
    for pod in PODS:
        sc.wait(f"{pod} collected", lambda pod=pod: ready(sc, pod))  # type: ignore[misc]
    sc.cli("baseline", WL, "--record")
    time.sleep(1.0)
    assert sc.findings() == [], json.dumps(sc.findings(), indent=1)


def restart(sc: Scenario, pod: str, restarts_before: int, dtype: str = "float16") -> None:
    sc.restart_replica(pod, NS, dtype=dtype)
    sc.wait(
        f"{pod} restarted and running again",
        lambda: len(history(sc, pod)["events"]) == restarts_before + 1 and ready(sc, pod),
        timeout_s=45,
    )
    # The stand-in listens only after loading: the agent saw the engine starting before it served.
    log = (sc.tmp / f"agent-{pod}.log").read_text()
    assert log.count("engine starting: waiting for runtime_metrics") >= restarts_before + 1, log[-3000:]


def test_five_restarts_with_the_same_args_store_nothing_and_open_nothing(sc: Scenario) -> None:
    start(sc)
    pod = PODS[0]
    before = history(sc, pod)
    assert len(before["snapshots"]) == 1
    for i in range(5):
        restart(sc, pod, i)
    time.sleep(1.5)  # a few more agent cycles after the last restart
    after = history(sc, pod)
    full = get_json(f"{sc.api}/api/v1/pods/{NS}/{pod}/history?limit=100&facts=true")
    assert [s["id"] for s in after["snapshots"]] == [s["id"] for s in before["snapshots"]], (
        json.dumps([(s["sources"], [c["key"] for c in s["changes"]]) for s in full["snapshots"]])
        + (sc.tmp / f"agent-{pod}.log").read_text()[-4000:]
    )
    events = after["events"]
    assert [e["kind"] for e in events] == ["restart"] * 5
    assert len({e["new_pid"] for e in events}) == 5
    assert all(e["new_start_time"] and e["new_start_time"] >= (e["old_start_time"] or 0) for e in events)
    # Not even a transient one: a finding opened and resolved would still be listed.
    assert sc.findings() == [], json.dumps(sc.findings(), indent=1)
    out = sc.cli("history", f"{NS}/{pod}", "--format", "table")
    assert out.count(" restart  pid ") == 5 and "1 stored snapshot(s), 5 restart(s)" in out


def test_a_restart_with_one_changed_arg_is_one_row_and_one_finding(sc: Scenario) -> None:
    start(sc)
    pod = PODS[1]
    restart(sc, pod, 0, dtype="float32")
    sc.wait("the dtype finding", lambda: [f for f in sc.findings(workload=WL, status="open")])
    time.sleep(1.5)
    snaps = history(sc, pod)["snapshots"]
    assert len(snaps) == 2
    changed = {c["key"]: (c["before"], c["after"]) for c in snaps[0]["changes"]}
    assert changed == {
        "runtime.args.dtype": ("float16", "float32"),
        "runtime.dtype": ("float16", "float32"),
        "runtime.kv_cache_dtype": ("float16", "float32"),
        "runtime.num_gpu_blocks": (7281, 3640),
    }
    findings = sc.findings(workload=WL)
    assert [f["key"] for f in findings] == ["runtime.dtype"], json.dumps(findings, indent=1)
    (f,) = findings
    assert f["status"] == "open" and set(f["references"]) == {"intent", "baseline", "peers"}
    assert f["pods"] == [pod] and f["actual_by_pod"] == {pod: "float32"}
    assert {r["key"] for r in f["related"]} == {
        "runtime.args.dtype",
        "runtime.kv_cache_dtype",
        "runtime.num_gpu_blocks",
    }
    assert f"float32 on {pod}" in f["message"] and "float16" in f["message"]
    status = sc.cli("status", WL)
    assert "open findings: 1 root cause(s)" in status, status
