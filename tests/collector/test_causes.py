"""One root cause, one finding — fed what a real agent sent (tests/fixtures/snapshots, recorded
from the stand-in vLLM by ``python -m tests.fixtures.snapshots.record``)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from collector.baseline.model import record
from collector.domain.model import Reference, Replica
from collector.drift.causes import roots_by_key
from collector.drift.engine import WorkloadInput, evaluate
from collector.intent.model import parse_documents
from skewwatch.core.facts import Observation, Provenance, SourceState, SourceStatus
from skewwatch.core.fingerprint import fingerprint_values

SNAPSHOTS = Path(__file__).parent.parent / "fixtures" / "snapshots"
WL = "ml/Deployment/llama"
MODELSPEC = """
apiVersion: piqc.ai/v1alpha1
kind: ModelSpec
metadata: {name: llama}
spec:
  identity:
    model: {id: llama-3-8b, family: llama-3, task: chat, framework: vllm, precision: fp16}
  runtime:
    accelerator: {vendor: nvidia, type: h100-80gb, count: 1}
"""


def recorded(name: str, pod: str, first_seen: float = 100.0) -> Replica:
    data: dict[str, Any] = json.loads((SNAPSHOTS / f"{name}.json").read_text())
    facts = {**data["facts"], "orchestration.pod": pod}
    prov = {k: Provenance.from_dict(v) for k, v in data["provenance"].items()}
    sources = {n: SourceStatus(n, SourceState(s["status"]), s["message"]) for n, s in data["sources"].items()}
    return Replica(pod, facts, prov, sources, fingerprint_values(facts).overall, first_seen, 200.0)


def test_one_dtype_change_is_one_finding_naming_every_reference_and_consequence() -> None:
    good = [recorded("vllm-float16", "a"), recorded("vllm-float16", "b")]
    baseline = record(WL, good, 50.0, "manual")
    (intent,) = parse_documents(MODELSPEC, "llama.yaml")
    reps = [*good, recorded("vllm-float32", "c")]
    ev = evaluate(WorkloadInput(WL, reps, [intent], baseline))
    config = [d for d in ev.drifts if not d.performance]
    assert [d.key for d in config] == ["runtime.dtype"]
    (d,) = config
    assert set(d.references) == {Reference.INTENT, Reference.BASELINE, Reference.PEERS}
    assert d.pods == {"c": "float32"}
    related = {r["key"]: r["role"] for r in d.evidence["related"]}
    assert related == {
        "runtime.args.dtype": "cause",
        "runtime.kv_cache_dtype": "consequence",
        "runtime.num_gpu_blocks": "consequence",
    }
    assert d.evidence["root"] == "runtime.args.dtype"
    assert d.message.startswith("runtime.dtype differs on 1 of 3 replicas: float32 on c — intent: ")
    assert "baseline: expected float16" in d.message and "peers: expected float16 (as on 2 of 3" in d.message
    assert d.severity == "high" and "--dtype" in d.hint


def test_two_causes_are_two_findings_sharing_their_consequence() -> None:
    good = [recorded("vllm-float16", p) for p in "ab"]
    baseline = record(WL, good, 50.0, "manual")
    reps = [*good, recorded("vllm-float32", "c"), recorded("vllm-float16-gmu", "d")]
    ev = evaluate(WorkloadInput(WL, reps, baseline=baseline))
    by_key = {d.key: d for d in ev.drifts}
    assert sorted(by_key) == ["runtime.dtype", "runtime.gpu_memory_utilization"]
    assert by_key["runtime.dtype"].pods == {"c": "float32"}
    assert by_key["runtime.gpu_memory_utilization"].pods == {"d": 0.8}
    blocks = {r["key"]: r for r in by_key["runtime.gpu_memory_utilization"].evidence["related"]}
    # Each finding lists only its own replicas' consequence values.
    assert blocks["runtime.num_gpu_blocks"]["actual_by_pod"] == {"d": 6472}


def test_a_message_never_states_a_value_a_replica_does_not_have() -> None:
    good = recorded("vllm-float16", "a")
    baseline = record(WL, [good], 50.0, "manual")
    reps = [good, recorded("vllm-float32", "b"), recorded("vllm-auto", "c")]
    ev = evaluate(WorkloadInput(WL, reps, baseline=baseline))
    dtype = next(d for d in ev.drifts if d.key == "runtime.dtype")
    assert dtype.pods == {"b": "float32", "c": "bfloat16"}
    assert "float32 on b; bfloat16 on c" in dtype.message or "bfloat16 on c; float32 on b" in dtype.message


def test_an_even_split_names_no_side_expected() -> None:
    reps = [recorded("vllm-float16", "a"), recorded("vllm-float32", "b")]
    (d,) = evaluate(WorkloadInput(WL, reps)).drifts
    assert d.split and d.expected is None and d.pods == {"a": "float16", "b": "float32"}
    assert d.message.startswith("runtime.dtype is split across 2 replicas with no majority")
    assert "expected" not in d.message


def test_the_intent_breaks_a_tie_and_the_violator_is_never_expected() -> None:
    (intent,) = parse_documents(MODELSPEC, "llama.yaml")
    reps = [recorded("vllm-float32", "a", first_seen=1.0), recorded("vllm-float16", "b", first_seen=2.0)]
    (d,) = evaluate(WorkloadInput(WL, reps, [intent])).drifts
    assert not d.split and d.pods == {"a": "float32"}
    assert "the side that keeps the intent" in d.message


def test_the_baseline_breaks_a_tie() -> None:
    a, b = recorded("vllm-float16", "a"), recorded("vllm-float32", "b", first_seen=1.0)
    baseline = record(WL, [a], 50.0, "manual")
    (d,) = evaluate(WorkloadInput(WL, [a, b], baseline=baseline)).drifts
    assert d.pods == {"b": "float32"} and "the side that matches the baseline" in d.message


def test_carried_facts_are_unknown_not_drifted() -> None:
    good = recorded("vllm-float16", "a")
    baseline = record(WL, [good], 50.0, "manual")
    restarting = recorded("vllm-float16", "b")
    prov = dict(restarting.provenance)
    facts = dict(restarting.facts)
    facts["runtime.num_gpu_blocks"] = 1  # a stale value, carried while the runtime is not ready
    prov["runtime.num_gpu_blocks"] = Provenance("runtime_metrics", "runtime-reported", "", (), 10.0)
    b = Replica("b", facts, prov, restarting.sources, fingerprint_values(facts).overall, 100.0, 200.0)
    assert evaluate(WorkloadInput(WL, [good, b], baseline=baseline)).drifts == []


def test_roots_follow_the_links_and_survive_a_cycle() -> None:
    links = {"b": {"a"}, "c": {"b", "x.*"}, "x.1": {"c"}}
    roots = roots_by_key({"a", "b", "c", "x.1"}, links)
    assert roots["c"] == {"a"} and roots["x.1"] == {"a"}
    cyc = roots_by_key({"p", "q"}, {"p": {"q"}, "q": {"p"}})
    assert cyc == {"p": {"p"}, "q": {"p"}}


def _with_load(r: Replica, tokens_per_s: float) -> Replica:
    window = {
        "generation_tokens_per_s": Observation("generation_tokens_per_s", tokens_per_s),
        "requests_per_s": Observation("requests_per_s", 4.0),
        "requests_running": Observation("requests_running", 8.0),
        "e2e_latency_seconds_count": Observation("e2e_latency_seconds_count", 20.0),
    }
    return replace(r, observations=tuple(window for _ in range(5)))


def test_a_slowdown_on_a_changed_replica_is_a_consequence_of_the_change() -> None:
    good = [_with_load(recorded("vllm-float16", p), 640.0) for p in "ab"]
    baseline = record(WL, good, 50.0, "manual")
    slow = _with_load(recorded("vllm-float32", "c"), 320.0)
    (d,) = [d for d in evaluate(WorkloadInput(WL, [*good, slow], baseline=baseline)).drifts]
    assert d.key == "runtime.dtype"
    rel = {r["key"]: r for r in d.evidence["related"]}
    assert rel["observation.generation_tokens_per_s"]["actual_by_pod"] == {"c": 320.0}
    assert "observation.generation_tokens_per_s" in d.message


def test_a_slowdown_with_only_an_old_intent_violation_stands_alone() -> None:
    (intent,) = parse_documents(MODELSPEC.replace("fp16", "fp32"), "llama.yaml")  # all replicas violate
    good = [_with_load(recorded("vllm-float16", p), 640.0) for p in "ab"]
    baseline = record(WL, good, 50.0, "manual")
    slow = _with_load(recorded("vllm-float16", "c"), 320.0)
    keys = sorted(d.key for d in evaluate(WorkloadInput(WL, [*good, slow], [intent], baseline)).drifts)
    assert keys == ["observation.generation_tokens_per_s", "runtime.dtype"]
