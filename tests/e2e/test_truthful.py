"""Truthful findings and a useful last-good — real collector, agents and stand-in vLLMs.

- An even 1:1 split with nothing to break the tie names no side as expected and says "split".
- With an intent, the replica that violates it is never the expected side.
- A persistent intent violation (all along, on every replica) does not hide the last-good
  configuration: after a dtype change, `diff --last-good` shows exactly that change and why.
"""

from __future__ import annotations

import json

import pytest

from demo.harness import get_json
from tests.support.scenario import MODELSPEC, PORTS_POLICY, Scenario

pytestmark = pytest.mark.e2e
NS, WL = "team-a", "team-a/llama"
A, B = "llama-7d9f8b6c5-aaaaa", "llama-7d9f8b6c5-bbbbb"


def test_an_even_split_is_a_split_until_the_intent_breaks_the_tie(sc: Scenario) -> None:
    (sc.intents / "ports.yaml").write_text(PORTS_POLICY)
    sc.start_collector()
    sc.start_replica(A, NS)
    sc.start_replica(B, NS, dtype="float32")
    sc.wait("the split", lambda: sc.findings(workload=WL, status="open"))
    (f,) = sc.findings(workload=WL, status="open")
    assert f["key"] == "runtime.dtype" and f["references"] == ["peers"]
    assert f["actual_by_pod"] == {A: "float16", B: "float32"} and f["expected"] is None
    assert f["message"].startswith("runtime.dtype is split across 2 replicas with no majority")
    assert f"float16 on {A}" in f["message"] and f"float32 on {B}" in f["message"]
    assert "expected" not in f["message"]

    # The ModelSpec asks for fp16: B breaks it, so A is the expected side of the tie.
    (sc.intents / "llama.yaml").write_text(MODELSPEC)

    def tie_broken() -> bool:
        open_ = sc.findings(workload=WL, status="open")
        return len(open_) == 1 and set(open_[0]["references"]) == {"intent", "peers"}

    sc.wait("the intent breaks the tie", tie_broken)
    (g,) = sc.findings(workload=WL, status="open")
    assert g["pods"] == [B] and g["actual_by_pod"] == {B: "float32"}
    assert "the side that keeps the intent" in g["message"] and f"on {A}" not in g["message"]


def test_last_good_survives_an_intent_violation_that_persisted_all_along(sc: Scenario) -> None:
    (sc.intents / "ports.yaml").write_text(PORTS_POLICY)
    (sc.intents / "llama.yaml").write_text(MODELSPEC)  # maxSequenceLengthTokens 2048
    sc.start_collector()
    sc.start_replica(A, NS, "--max-model-len", "4096")  # breaks the intent from its start on
    sc.wait("intent finding", lambda: sc.findings(workload=WL, status="open"))
    sc.cli("baseline", WL, "--record")
    sc.restart_replica(A, NS, "--max-model-len", "4096", dtype="float32")
    sc.wait("dtype seen", lambda: sc.pod(NS, A)["facts"].get("runtime.dtype") == "float32")
    out = get_json(f"{sc.api}/api/v1/diff?workload={WL}&last_good")
    changed = {c["key"] for c in out["changes"]}
    expected = {"runtime.args.dtype", "runtime.dtype", "runtime.kv_cache_dtype", "runtime.num_gpu_blocks"}
    assert changed == expected, json.dumps(out)
    assert out["from"]["snapshot_id"] is not None and "matches baseline" in out["from"]["why"]
    assert "1 newer stored configuration(s) broke a check" in out["from"]["why"]
    assert "matches baseline" in sc.cli("diff", WL, "--last-good")
