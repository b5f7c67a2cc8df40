"""A lifecycle people can act on — real collector, agents and stand-in vLLMs: acknowledge and
silence a finding from the CLI, replicas that go away resolve their findings as "gone", stale
pods are marked and can be deleted, and a workload with no replicas says so."""

from __future__ import annotations

import json
import time

import pytest

from demo.harness import get_json
from tests.support.scenario import PORTS_POLICY, Scenario

pytestmark = pytest.mark.e2e
NS, WL = "team-a", "team-a/llama"
GOOD, BAD = "llama-7d9f8b6c5-aaaaa", "llama-7d9f8b6c5-bbbbb"


def test_ack_silence_gone_stale_and_delete(sc: Scenario) -> None:
    (sc.intents / "ports.yaml").write_text(PORTS_POLICY)
    sc.env["SKEWWATCH_REPLICA_STALE"] = "4"
    sc.start_collector()
    sc.start_replica(GOOD, NS)
    sc.start_replica(BAD, NS)
    sc.wait("both collected", lambda: all((sc.pod(NS, p) or {}).get("facts") for p in (GOOD, BAD)))
    sc.cli("baseline", WL, "--record")
    sc.restart_replica(BAD, NS, dtype="float32")
    sc.wait("the dtype finding", lambda: sc.findings(workload=WL, status="open"))
    (f,) = sc.findings(workload=WL, status="open")
    assert f["key"] == "runtime.dtype" and f["pods"] == [BAD]

    acked = json.loads(
        sc.cli("findings", "ack", str(f["id"]), "--reason", "rolling back", "--by", "ops", "--format", "json")
    )
    assert acked["acknowledged"]["reason"] == "rolling back" and acked["acknowledged"]["by"] == "ops"
    silenced = json.loads(
        sc.cli("findings", "silence", str(f["id"]), "--reason", "known", "--for", "1h", "--format", "json")
    )
    assert silenced["silenced"] and silenced["silence"]["until"] > time.time() + 3000
    # Silenced: still listed, counted apart.
    listing = get_json(f"{sc.api}/api/v1/workloads")["workloads"][0]
    assert listing["open_findings"] == {} and listing["silenced_findings"] == 1
    assert "0 root cause(s)" in sc.cli("status", WL) and "1 silenced" in sc.cli("status", WL)
    shown = sc.cli("findings", "show", str(f["id"]))
    assert "acknowledged by ops" in shown and "silenced until" in shown and "silenced" in shown
    # An evaluation updating the finding keeps the admin's notes.
    time.sleep(1.0)
    again = get_json(f"{sc.api}/api/v1/findings/{f['id']}")
    assert again["acknowledged"]["reason"] == "rolling back" and again["silenced"]
    assert [e["event"] for e in again["history"]] == ["opened", "acknowledged", "silenced"]

    # The drifted replica goes away for good: its finding resolves as gone once it is stale.
    sc.procs.stop(f"agent-{BAD}")
    sc.procs.stop(f"vllm-{BAD}")
    url = f"{sc.api}/api/v1/findings/{f['id']}"
    sc.wait("resolved as gone", lambda: get_json(url)["status"] == "resolved", timeout_s=90)
    gone = get_json(f"{sc.api}/api/v1/findings/{f['id']}")
    assert gone["resolution"] == "gone"
    pods = {p["pod"]: p for p in get_json(f"{sc.api}/api/v1/pods")["pods"]}
    assert pods[BAD]["stale"] and not pods[GOOD]["stale"]
    assert "stale" in sc.cli("pods")
    sc.cli("pods", "delete", f"{NS}/{BAD}")
    assert BAD not in {p["pod"] for p in get_json(f"{sc.api}/api/v1/pods")["pods"]}

    # No replica left: the workload says so.
    sc.procs.stop(f"agent-{GOOD}")
    sc.wait(
        "no replicas",
        lambda: get_json(f"{sc.api}/api/v1/workloads")["workloads"][0]["state"] == "no-replicas",
        timeout_s=30,
    )
    assert "no live replicas" in sc.cli("status", WL)
