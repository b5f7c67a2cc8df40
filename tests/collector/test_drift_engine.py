"""The pure drift engine: the mapping table row by row, the five categories, baselines, peers and
the finding lifecycle (debounce, update, resolve) — no servers, no store."""

# ruff: noqa: E501  (case tables: one case per line)

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from collector.baseline.model import PERF_METRICS, compare_performance, observed, record
from collector.domain.model import ChangeKind, FindingRecord, Reference, Replica, Status
from collector.drift.engine import Debounce, WorkloadInput, _same, evaluate, reconcile
from collector.intent.mapping import MODELSPEC_ROWS, POLICY_ROWS
from collector.intent.model import ModelSpec, SkewPolicy, parse_documents
from skewwatch.core.errors import FactError
from skewwatch.core.facts import Observation, SourceState, SourceStatus
from skewwatch.core.fingerprint import fingerprint_values
from tests.support.collector import agent_provenance

WL = "ml/Deployment/llama"
BASE: dict[str, Any] = {
    "model.id": "meta-llama/Llama-3-8B",
    "model.weights.digest": "sha256:" + "a" * 64,
    "model.tokenizer.digest": "sha256:" + "b" * 64,
    "runtime.engine": "vllm",
    "runtime.served_model_name": "llama-3-8b",
    "runtime.dtype": "float16",
    "runtime.max_model_len": 8192,
    "runtime.max_num_seqs": 256,
    "hardware.gpu.product": "h100-80gb",
    "hardware.gpu.count": 1,
    "serving.port": 8000,
    "orchestration.image_digest": "sha256:" + "c" * 64,
}


def replica(pod: str, facts: dict[str, Any] | None = None, obs: list[dict[str, float]] | None = None,
            sources: dict[str, SourceState] | None = None, **changes: Any) -> Replica:  # fmt: skip
    f = dict(BASE if facts is None else facts)
    f.update({k.replace("__", "."): v for k, v in changes.items()})
    f["orchestration.pod"] = pod
    srcs = {n: SourceStatus(n, s) for n, s in (sources or {"process": SourceState.OK}).items()}
    return Replica(
        pod=pod,
        facts=f,
        provenance={k: agent_provenance(k) for k in f},  # what the agent's sources give each key
        sources=srcs,
        fingerprint=fingerprint_values(f).overall,
        first_seen=100.0,
        last_seen=200.0,
        observations=tuple({n: Observation(n, v) for n, v in w.items()} for w in (obs or [])),
    )


def spec(**fields: Any) -> ModelSpec:
    doc: dict[str, Any] = {
        "apiVersion": "piqc.ai/v1alpha1",
        "kind": "ModelSpec",
        "metadata": {"name": "s"},
        "spec": {
            "identity": {
                "model": {"id": "llama-3-8b", "family": "llama", "task": "chat", "framework": "vllm"}
            },
            "runtime": {"accelerator": {"vendor": "nvidia", "type": "h100-80gb", "count": 1}},
        },
    }
    for path, value in fields.items():
        node = doc
        parts = path.split("__")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    import json

    (out,) = parse_documents(json.dumps(doc), "spec.json")
    assert isinstance(out, ModelSpec)
    return out


def policy(pins: dict[str, Any], **extra: Any) -> SkewPolicy:
    import json

    doc = {"apiVersion": "skewwatch.io/v1alpha1", "kind": "SkewPolicy", "metadata": {"name": "p"},
           "spec": {"modelSpec": "s", "pins": pins, **extra}}  # fmt: skip
    (out,) = parse_documents(json.dumps(doc), "policy.json")
    assert isinstance(out, SkewPolicy)
    return out


def drifts(inp: WorkloadInput) -> dict[tuple[str, str], Any]:
    """Each finding under every (reference, key) it breaks: one finding can break several."""
    return {(r.value, d.key): d for d in evaluate(inp).drifts for r in (d.references or (d.reference,))}


# field path -> (intent value, fact key, conforming actual, drifting actual); one per checking row.
MODELSPEC_CASES: dict[str, tuple[Any, str, Any, Any]] = {
    "spec.identity.model.id": ("llama-3-8b", "runtime.served_model_name", "meta/llama-3-8b", "qwen-7b"),
    "spec.identity.model.framework": ("text-generation-inference", "runtime.engine", "tgi", "vllm"),
    "spec.identity.model.precision": ("fp16", "runtime.dtype", "half", "float32"),
    "spec.identity.model.artifacts.modelUri": ("hf://meta-llama/Llama-3-8B@abc", "model.id",
                                               "meta-llama/Llama-3-8B", "meta-llama/Llama-3-70B"),
    "spec.runtime.accelerator.vendor": ("nvidia", "hardware.gpu.product", "NVIDIA H100 80GB HBM3", "AMD Instinct MI300X"),
    "spec.runtime.accelerator.type": ("a100-80gb", "hardware.gpu.product", "NVIDIA A100-SXM4-80GB", "NVIDIA A100-SXM4-40GB"),
    "spec.runtime.accelerator.count": (4, "hardware.gpu.count", 4, 2),
    "spec.runtime.batch.maxBatchSize": (64, "runtime.max_num_seqs", 64, 256),
    "spec.runtime.batch.maxSequenceLengthTokens": (4096, "runtime.max_model_len", 4096, 32768),
    "spec.runtime.resources.cpuCores": (16, "orchestration.resources.requests.cpu", "16000m", "8"),
    "spec.runtime.resources.memoryGb": (128, "orchestration.resources.limits.memory", "128Gi", "64Gi"),
    "spec.runtime.resources.ephemeralStorageGb": (200, "orchestration.resources.limits.ephemeral-storage", "200G", "50Gi"),
    "spec.runtime.environment.variables.*": ({"VLLM_USE_V1": "1"}, "runtime.env.VLLM_USE_V1", "1", "0"),
    "spec.operations.serving.port": (8000, "serving.port", 8000, 8080),
    "spec.operations.serving.protocol": ("grpc", "serving.service.protocol", "grpc", "http"),
    "spec.operations.scaling.strategy": ("manual", "orchestration.autoscaling.kind", "none", "HorizontalPodAutoscaler"),
    "spec.operations.serving.readinessProbe.path": ("/health", "orchestration.probes.readiness.path", "/health", "/"),
    "spec.operations.serving.readinessProbe.timeoutSeconds": (5, "orchestration.probes.readiness.timeout_seconds", 5, 1),
    "spec.operations.serving.livenessProbe.path": ("/health", "orchestration.probes.liveness.path", "/health", "/"),
    "spec.operations.serving.livenessProbe.timeoutSeconds": (5, "orchestration.probes.liveness.timeout_seconds", 5, 30),
    "spec.operations.serving.maxConcurrency": (32, "serving.max_concurrency", 32, 128),
    "spec.operations.serving.timeoutSeconds": (60, "serving.timeout_seconds", 60, 600),
    "spec.operations.observability.metrics.port": (8000, "serving.metrics_port", 8000, 9090),
    "spec.operations.observability.logging.level": ("info", "runtime.log_level", "info", "debug"),
    "spec.operations.observability.tracing.enabled": (True, "runtime.args.otlp_traces_endpoint", "http://otel:4317", None),
    "spec.governance.cost.pricingHints.instanceType": ("p5.48xlarge", "orchestration.node_instance_type",
                                                       "p5.48xlarge", "p4d.24xlarge"),
}  # fmt: skip
OBSERVATION_CASES: dict[str, tuple[Any, str, float, float]] = {
    "spec.operations.scaling.targetLatencyMsP95": (800, "e2e_latency_seconds_p95", 0.6, 1.2),
    "spec.operations.scaling.targetRps": (50, "requests_per_s", 30.0, 80.0),
}


def _set(path: str, value: Any) -> ModelSpec:
    base = path.removesuffix(".*").removeprefix("spec.")
    if base.startswith("runtime.accelerator."):
        acc = {"vendor": "nvidia", "type": "h100-80gb", "count": 1}
        acc[base.rsplit(".", 1)[1]] = value
        return spec(spec__runtime__accelerator=acc)
    if base.startswith("identity.model."):
        model = {"id": "llama-3-8b", "family": "llama", "task": "chat", "framework": "vllm"}
        rest = base.removeprefix("identity.model.").split(".")
        node: dict[str, Any] = model
        for p in rest[:-1]:
            node = node.setdefault(p, {})
        node[rest[-1]] = value
        return spec(spec__identity__model=model)
    return spec(**{"spec__" + base.replace(".", "__"): value})


def test_every_checking_row_has_a_case() -> None:
    checking = {r.field for r in MODELSPEC_ROWS if r.target is not None}
    covered = set(MODELSPEC_CASES) | set(OBSERVATION_CASES) | {
        "spec.operations.scaling.minReplicas", "spec.operations.scaling.maxReplicas",
        "spec.operations.observability.metrics.enabled",
    }  # fmt: skip
    assert checking == covered


@pytest.mark.parametrize("field", sorted(MODELSPEC_CASES))
def test_modelspec_row_conforms_and_drifts(field: str) -> None:
    value, key, good, bad = MODELSPEC_CASES[field]
    s = _set(field, value)
    facts = {**BASE, "runtime.served_model_name": "llama-3-8b"}
    good_r = replica("a", facts, **{key.replace(".", "__"): good})
    bad_facts = dict(facts)
    if bad is None:
        bad_facts.pop(key, None)
        bad_r = replica("a", bad_facts)
    else:
        bad_r = replica("a", facts, **{key.replace(".", "__"): bad})
    if field == "spec.identity.model.id":  # binding by annotation, so a wrong name still binds
        ann = "orchestration.annotations.skewwatch.io/modelspec"
        good_r = replica("a", {**good_r.facts, ann: "s"})
        bad_r = replica("a", {**bad_r.facts, ann: "s"})
    assert (Reference.INTENT.value, key) not in drifts(WorkloadInput(WL, [good_r], [s]))
    found = drifts(WorkloadInput(WL, [bad_r], [s]))[(Reference.INTENT.value, key)]
    assert found.pods == {"a": False if bad is None else bad}
    assert "ModelSpec/s " + field.removesuffix(".*") in found.source


def test_precision_int8_is_checked_as_quantization_not_dtype() -> None:
    s = spec(spec__identity__model={"id": "llama-3-8b", "family": "l", "task": "c", "framework": "vllm",
                                    "precision": "int8"})  # fmt: skip
    assert set(drifts(WorkloadInput(WL, [replica("a", runtime__quantization="w8a8")], [s]))) == set()
    found = drifts(WorkloadInput(WL, [replica("a", runtime__quantization=None)], [s]))
    assert set(found) == {("intent", "runtime.quantization")}


@pytest.mark.parametrize("field", sorted(OBSERVATION_CASES))
def test_observation_row_conforms_and_drifts(field: str) -> None:
    value, name, good, bad = OBSERVATION_CASES[field]
    s = _set(field, value)
    key = ("intent", f"observation.{name}")
    assert key not in drifts(WorkloadInput(WL, [replica("a", obs=[{name: good}])], [s]))
    found = drifts(WorkloadInput(WL, [replica("a", obs=[{name: bad}] * 3)], [s]))[key]
    assert found.performance and found.category == "performance"


def test_replica_count_rows_check_live_replicas() -> None:
    s = spec(spec__operations={"scaling": {"minReplicas": 2, "maxReplicas": 3}})
    assert ("intent", "orchestration.replicas") in drifts(WorkloadInput(WL, [replica("a")], [s]))
    assert ("intent", "orchestration.replicas") not in drifts(
        WorkloadInput(WL, [replica("a"), replica("b")], [s])
    )


def test_metrics_enabled_row_checks_the_runtime_metrics_source() -> None:
    s = spec(spec__operations={"observability": {"metrics": {"enabled": True}}})
    down = replica("a", sources={"process": SourceState.OK, "runtime_metrics": SourceState.ERROR})
    assert ("intent", "serving.metrics_endpoint") in drifts(WorkloadInput(WL, [down], [s]))


def test_unreported_fact_is_unverifiable_not_a_drift() -> None:
    s = spec(spec__runtime__batch={"maxBatchSize": 64})
    facts = {k: v for k, v in BASE.items() if k != "runtime.max_num_seqs"}
    ev = evaluate(WorkloadInput(WL, [replica("a", facts)], [s]))
    assert not ev.drifts
    (check,) = [c for c in ev.checks if c.field == "spec.runtime.batch.maxBatchSize"]
    assert check.status == "unverifiable" and ("intent", "runtime.max_num_seqs") in ev.undecided


def test_redacted_environment_value_cannot_be_compared() -> None:
    s = spec(spec__runtime__environment={"variables": {"HF_TOKEN": "x"}})
    ev = evaluate(WorkloadInput(WL, [replica("a", runtime__env__HF_TOKEN="redacted:sha256:abc")], [s]))
    assert not ev.drifts and "redacted" in ev.checks[-1].detail if ev.checks else False


POLICY_CASES: dict[str, tuple[dict[str, Any], str, Any, Any]] = {
    "spec.pins.model.revision": ({"model": {"revision": "abc"}}, "model.revision", "abc", "def"),
    "spec.pins.model.tokenizerRevision": ({"model": {"tokenizerRevision": "t1"}}, "model.tokenizer.revision", "t1", "t2"),
    "spec.pins.model.weightsDigest": ({"model": {"weightsDigest": "a" * 64}}, "model.weights.digest",
                                      "sha256:" + "a" * 64, "sha256:" + "f" * 64),
    "spec.pins.model.configDigest": ({"model": {"configDigest": "sha256:" + "1" * 16}}, "model.config.digest",
                                     "sha256:" + "1" * 64, "sha256:" + "2" * 64),
    "spec.pins.model.tokenizerDigest": ({"model": {"tokenizerDigest": "b" * 64}}, "model.tokenizer.digest",
                                        "sha256:" + "b" * 64, "sha256:" + "e" * 64),
    "spec.pins.model.chatTemplateDigest": ({"model": {"chatTemplateDigest": "c" * 64}}, "model.chat_template.digest",
                                           "c" * 64, "d" * 64),
    "spec.pins.model.generationConfigDigest": ({"model": {"generationConfigDigest": "9" * 64}},
                                               "model.generation_config.digest", "9" * 64, "8" * 64),
    "spec.pins.model.files.*": ({"model": {"files": {"tokenizer.json": "7" * 64}}}, "model.files.tokenizer.json",
                                {"sha256": "7" * 64, "bytes": 10}, {"sha256": "6" * 64, "bytes": 10}),
    "spec.pins.image.reference": ({"image": {"reference": "vllm/vllm-openai:v0.6.3"}}, "orchestration.image",
                                  "vllm/vllm-openai:v0.6.3", "vllm/vllm-openai:latest"),
    "spec.pins.image.digest": ({"image": {"digest": "sha256:" + "c" * 64}}, "orchestration.image_digest",
                               "sha256:" + "c" * 64, "sha256:" + "0" * 64),
    "spec.pins.runtime.version": ({"runtime": {"version": ">=0.6.3,<0.7"}}, "runtime.version", "0.6.4", "0.7.1"),
    "spec.pins.runtime.dtype": ({"runtime": {"dtype": "bf16"}}, "runtime.dtype", "bfloat16", "float16"),
    "spec.pins.runtime.quantization": ({"runtime": {"quantization": None}}, "runtime.quantization", None, "fp8"),
    "spec.pins.runtime.kvCacheDtype": ({"runtime": {"kvCacheDtype": "fp8"}}, "runtime.kv_cache_dtype", "fp8_e4m3", "auto"),
    "spec.pins.runtime.tensorParallelSize": ({"runtime": {"tensorParallelSize": 4}}, "runtime.tensor_parallel_size", 4, 2),
    "spec.pins.runtime.pipelineParallelSize": ({"runtime": {"pipelineParallelSize": 1}},
                                               "runtime.pipeline_parallel_size", 1, 2),
    "spec.pins.hardware.driverVersion": ({"hardware": {"driverVersion": ">=550.54"}}, "hardware.driver_version",
                                         "550.90.07", "535.104.05"),
    "spec.pins.hardware.cudaVersion": ({"hardware": {"cudaVersion": "12.4"}}, "hardware.cuda_driver_version", "12.4", "12.2"),
    "spec.pins.hardware.migProfile": ({"hardware": {"migProfile": "3g.40gb"}}, "hardware.gpu.mig_profiles",
                                      ["3g.40gb"], ["1g.10gb", "3g.40gb"]),
    "spec.pins.facts.*": ({"facts": {"runtime.enforce_eager": False}}, "runtime.enforce_eager", False, True),
}  # fmt: skip


def test_every_policy_row_has_a_case() -> None:
    assert {r.field for r in POLICY_ROWS} == set(POLICY_CASES)


@pytest.mark.parametrize("field", sorted(POLICY_CASES))
def test_policy_pin_conforms_and_drifts(field: str) -> None:
    pins, key, good, bad = POLICY_CASES[field]
    p = policy(pins, bindings=[{"namespaces": ["ml"]}])
    ident = (Reference.INTENT.value, key)
    assert ident not in drifts(WorkloadInput(WL, [replica("a", **{key.replace(".", "__"): good})], [p]))
    f = dict(BASE)
    f[key] = bad
    found = drifts(WorkloadInput(WL, [replica("a", f)], [p]))[ident]
    assert found.pods == {"a": bad} and "SkewPolicy/p" in found.source


@pytest.mark.parametrize(
    ("key", "value", "category"),
    [
        ("model.tokenizer.digest", "sha256:" + "9" * 64, "model"),
        ("runtime.dtype", "float32", "runtime"),
        ("hardware.gpu.product", "a100-40gb", "hardware"),
        ("serving.port", 9000, "serving"),
        ("orchestration.image_digest", "sha256:" + "1" * 64, "orchestration"),
    ],
)
def test_each_category_drifts_against_the_baseline_with_its_hint(key: str, value: Any, category: str) -> None:
    base = record(WL, [replica("a"), replica("b")], 1000.0, "manual")
    found = drifts(
        WorkloadInput(WL, [replica("a", **{key.replace(".", "__"): value}), replica("b")], baseline=base)
    )
    d = found[("baseline", key)]
    assert d.category == category and d.pods == {"a": value} and d.expected == BASE[key]
    assert d.hint and d.severity in {"critical", "high", "medium", "low", "info"}


def test_peers_name_the_minority_pods_and_the_majority_value() -> None:
    reps = [replica(f"p{i}") for i in range(6)] + [replica("p6", hardware__gpu__product="a100-40gb"),
                                                   replica("p7", hardware__gpu__product="a100-40gb")]  # fmt: skip
    d = drifts(WorkloadInput(WL, reps))[("peers", "hardware.gpu.product")]
    assert d.message.startswith(
        "hardware.gpu.product differs on 2 of 8 replicas: a100-40gb on p6, p7 — peers: expected h100-80gb"
        " (as on 6 of 8 replicas)"
    )
    assert set(d.pods) == {"p6", "p7"}
    assert "pod template" not in d.message


def test_peers_call_a_different_pod_template_a_rollout() -> None:
    old = {**BASE, "orchestration.labels.pod-template-hash": "aaa"}
    new = {**BASE, "orchestration.labels.pod-template-hash": "bbb", "runtime.dtype": "bfloat16"}
    d = drifts(WorkloadInput(WL, [replica("a", old), replica("b", old), replica("c", new)]))[
        ("peers", "runtime.dtype")
    ]
    assert "rollout is in progress" in d.message and d.severity == "info"


def test_missing_fact_from_a_failed_source_is_not_a_peer_drift() -> None:
    facts = {k: v for k, v in BASE.items() if not k.startswith("hardware.")}
    down = replica("c", facts, sources={"process": SourceState.OK, "nvml": SourceState.UNAVAILABLE})
    ok = [replica("a"), replica("b")]
    assert ok[0].provenance["hardware.gpu.product"].source == "nvml"  # the source that is down on c
    assert not [d for d in evaluate(WorkloadInput(WL, [*ok, down])).drifts if d.reference is Reference.PEERS]


def test_ignore_globs_silence_keys_for_bound_workloads() -> None:
    p = policy({}, bindings=[{"namespaces": ["ml"]}], ignore=["runtime.dtype"])
    reps = [replica("a"), replica("b"), replica("c", runtime__dtype="float32")]
    assert not evaluate(WorkloadInput(WL, reps, [p])).drifts


def test_severity_overrides_apply_by_glob() -> None:
    p = policy({}, bindings=[{"namespaces": ["ml"]}], severity={"runtime.*": "critical"})
    reps = [replica("a"), replica("b"), replica("c", runtime__dtype="float32")]
    (d,) = evaluate(WorkloadInput(WL, reps, [p])).drifts
    assert d.severity == "critical"


LOAD = {"requests_per_s": 4.0, "requests_running": 8.0}


def test_performance_drift_needs_comparable_load() -> None:
    base = record(WL, [replica("a", obs=[{**LOAD, "generation_tokens_per_s": 1000.0}] * 5)], 0.0, "manual")
    slow = replica("a", obs=[{**LOAD, "generation_tokens_per_s": 500.0}] * 3)
    found, undecided = compare_performance(base, [slow])
    (d,) = found
    assert d.key == "observation.generation_tokens_per_s" and "-50%" in d.message and d.performance
    quiet = replica(
        "a", obs=[{"requests_per_s": 0.5, "requests_running": 1.0, "generation_tokens_per_s": 500.0}] * 3
    )
    found, undecided = compare_performance(base, [quiet])
    assert not found and ("baseline", "observation.generation_tokens_per_s") in undecided


def _windows(completions: list[int]) -> list[dict[str, float]]:
    """1 s windows of one steady engine: 75 tokens/s, requests of 30 tokens finishing 2 or 3 a
    window as they happen to straddle its edges (the real vLLM CPU build at max_tokens 32)."""
    return [{"requests_per_s": float(c), "requests_running": 1.0, "e2e_latency_seconds_count": float(c),
             "generation_tokens_per_s": 75.0} for c in completions]  # fmt: skip


def test_throughput_per_request_is_total_tokens_over_total_requests_not_a_median_of_windows() -> None:
    # 2.4 requests/s: 3 of 5 windows hold 2 completions, 2 hold 3. The recorded load is their
    # median, 2, so the baseline's throughput is what the engine serves per request at that load
    # (31.25 tokens a request x 2), not the median 75 tokens/s, which would read any later
    # window of the same engine as a sixth slower.
    base = record(WL, [replica("a", obs=_windows([2, 3, 2, 2, 3] * 4))], 0.0, "manual")
    assert base.load["requests_per_s"] == 2.0
    assert base.performance["generation_tokens_per_s"] == pytest.approx(75.0 / 2.4 * 2.0)
    (m,) = [m for m in PERF_METRICS if m.name == "generation_tokens_per_s"]
    assert compare_performance(base, [replica("a", obs=_windows([3, 2, 2, 3, 2] * 3))])[0] == []
    base = record(WL, [replica("a", obs=_windows([2, 3] * 10))], 0.0, "manual")
    assert base.performance["generation_tokens_per_s"] == 75.0 and base.load["requests_per_s"] == 2.5
    # The same engine, 12 windows later: 7 of them caught a third completion, 5 did not. Window
    # by window it is 25 or 37.5 tokens per request, and their median (25) would read -17 %.
    same = replica("a", obs=_windows([3, 2, 3, 2, 3, 2, 3, 3, 2, 3, 2, 3]))
    assert observed(same, m, per_load=2.5) == pytest.approx(75.0 * 12 / 31 * 2.5)  # 72.6: -3 %
    assert compare_performance(base, [same])[0] == []
    # A real drop in tokens per request is still one: the same windows at 40 tokens/s.
    slow = replica("a", obs=[{**w, "generation_tokens_per_s": 40.0} for w in _windows([3, 2] * 6)])
    (d,) = compare_performance(base, [slow])[0]
    assert d.key == "observation.generation_tokens_per_s"


def _latency(p95: float, lower: float | None, upper: float | None, n: int) -> list[dict[str, Observation]]:
    """Windows of 20 requests whose e2e p95 was read from buckets: ``p95`` in [lower, upper]."""
    w = {
        "requests_per_s": Observation("requests_per_s", 4.0),
        "requests_running": Observation("requests_running", 1.0),
        "e2e_latency_seconds_count": Observation("e2e_latency_seconds_count", 20.0),
        "e2e_latency_seconds_p95": Observation("e2e_latency_seconds_p95", p95, "s", lower, upper),
    }
    return [w] * n


def test_a_latency_quantile_is_judged_at_its_bucket_resolution() -> None:
    # The real vLLM in CI: every request of the baseline under 0.3 s (vLLM's first e2e bucket),
    # a few of a later window over it. Interpolated, p95 reads 0.285 then 0.428, "+50 %"; the
    # buckets say the true p95 went from somewhere under 0.3 to somewhere in 0.3-0.5.
    key = "observation.e2e_latency_seconds_p95"
    base = record(
        WL, [replace(replica("a"), observations=tuple(_latency(0.285, 0.0, 0.3, 20)))], 0.0, "manual"
    )
    assert base.bounds["e2e_latency_seconds_p95"] == (0.0, 0.3)
    assert base.as_dict()["performance_bounds"] == {"e2e_latency_seconds_p95": [0.0, 0.3]}
    near = replace(replica("a"), observations=tuple(_latency(0.428, 0.3, 0.5, 3)))
    found, undecided = compare_performance(base, [near])
    assert found == [] and (Reference.BASELINE.value, key) not in undecided  # judged: not a regression
    # Inside one bucket the estimate moves with how the requests fall, not by how much: no verdict.
    mid = record(WL, [replace(replica("a"), observations=tuple(_latency(0.32, 0.3, 0.5, 20)))], 0.0, "manual")
    same = replace(replica("a"), observations=tuple(_latency(0.48, 0.3, 0.5, 3)))
    assert compare_performance(mid, [same])[0] == []
    # A bucket wholly above the baseline's (a whole bucket between them) is a regression, and the
    # finding says what it was judged on.
    slow = replace(replica("a"), observations=tuple(_latency(0.62, 0.5, 0.8, 3)))
    (d,) = compare_performance(base, [slow])[0]
    assert d.key == key and d.actual == 0.62 and "the baseline lies in [0, 0.3]" in d.expected_text
    # Agents that send no bounds are judged on the value, as before.
    old = record(WL, [replace(replica("a"), observations=tuple(_latency(0.285, None, None, 20)))], 0.0, "m")
    assert old.bounds == {}
    bare = replace(replica("a"), observations=tuple(_latency(0.428, None, None, 3)))
    assert [d.key for d in compare_performance(old, [bare])[0]] == [key]


def test_performance_within_tolerance_is_no_drift_and_tolerance_can_be_tightened() -> None:
    base = record(WL, [replica("a", obs=[{**LOAD, "generation_tokens_per_s": 1000.0}] * 5)], 0.0, "manual")
    r = replica("a", obs=[{**LOAD, "generation_tokens_per_s": 850.0}] * 3)
    assert compare_performance(base, [r])[0] == []
    p = policy({}, tolerances={"generation_tokens_per_s": {"maxDecreasePercent": 10}})
    assert len(compare_performance(base, [r], p.tolerances)[0]) == 1


def _lifecycle(debounce: Debounce, rounds: list[list[Replica]], times: list[float]) -> list[list[ChangeKind]]:
    stored: dict[str, FindingRecord] = {}
    out = []
    next_id = 1
    for reps, now in zip(rounds, times, strict=True):
        ev = evaluate(WorkloadInput(WL, reps))
        changes = reconcile(WL, list(stored.values()), ev, now, debounce)
        out.append([c.kind for c in changes])
        for c in changes:
            f = c.finding
            if f.id == 0:
                f = FindingRecord(**{**f.__dict__, "id": next_id})
                next_id += 1
            if c.kind in (ChangeKind.RESOLVED, ChangeKind.DROPPED):
                stored.pop(f.identity, None)
            else:
                stored[f.identity] = f
    return out


def test_lifecycle_opens_at_once_by_default_then_confirms_updates_and_resolves() -> None:
    same = [replica("a"), replica("b"), replica("c", runtime__dtype="float32")]
    moved = [replica("a"), replica("b"), replica("c", runtime__dtype="bfloat16")]
    fixed = [replica("a"), replica("b"), replica("c")]
    kinds = _lifecycle(Debounce(), [same, same, moved, fixed], [1, 2, 3, 4])
    assert kinds == [[ChangeKind.OPENED], [ChangeKind.CONFIRMED], [ChangeKind.UPDATED], [ChangeKind.RESOLVED]]


def test_debounce_keeps_a_flapping_drift_from_opening() -> None:
    bad = [replica("a"), replica("b"), replica("c", runtime__dtype="float32")]
    good = [replica("a"), replica("b"), replica("c")]
    kinds = _lifecycle(Debounce(snapshots=2), [bad, good, bad, bad], [1, 2, 3, 4])
    assert kinds == [[ChangeKind.PENDING], [ChangeKind.DROPPED], [ChangeKind.PENDING], [ChangeKind.OPENED]]


def test_debounce_in_seconds_waits_for_the_drift_to_age() -> None:
    bad = [replica("a"), replica("b"), replica("c", runtime__dtype="float32")]
    kinds = _lifecycle(Debounce(seconds=10), [bad, bad, bad], [0, 5, 11])
    assert kinds == [[ChangeKind.PENDING], [ChangeKind.SEEN], [ChangeKind.OPENED]]


def test_one_finding_per_identity_records_first_and_last_seen() -> None:
    bad = [replica("a"), replica("b"), replica("c", runtime__dtype="float32")]
    ev = evaluate(WorkloadInput(WL, bad))
    (first,) = reconcile(WL, [], ev, 10.0, Debounce())
    opened = FindingRecord(**{**first.finding.__dict__, "id": 7})
    (again,) = reconcile(WL, [opened], ev, 20.0, Debounce())
    assert again.finding.id == 7 and again.finding.first_seen == 10.0 and again.finding.last_seen == 20.0
    assert again.finding.status is Status.OPEN and again.finding.hits == 2
    (gone,) = reconcile(WL, [again.finding], evaluate(WorkloadInput(WL, bad[:2])), 30.0, Debounce())
    assert gone.kind is ChangeKind.RESOLVED and gone.finding.resolved_at == 30.0


def test_undecided_identities_neither_resolve_nor_drop() -> None:
    base = record(WL, [replica("a", obs=[{**LOAD, "generation_tokens_per_s": 1000.0}] * 5)], 0.0, "manual")
    slow = replica("a", obs=[{**LOAD, "generation_tokens_per_s": 500.0}] * 3)
    ev = evaluate(WorkloadInput(WL, [slow], baseline=base))
    (c,) = reconcile(WL, [], ev, 1.0, Debounce(performance_snapshots=1))
    open_f = FindingRecord(**{**c.finding.__dict__, "id": 1})
    quiet = replica(
        "a", obs=[{"requests_per_s": 0.1, "requests_running": 0.0, "generation_tokens_per_s": 10.0}] * 3
    )
    assert reconcile(WL, [open_f], evaluate(WorkloadInput(WL, [quiet], baseline=base)), 2.0, Debounce()) == []


def test_same_compares_stored_shapes_and_never_swallows_a_bug() -> None:
    """Finding values read back from the store are lists where the engine made tuples; that is
    not a change. A value no finding can hold is a bug and must raise, not count as different."""
    assert _same((1, "a"), [1, "a"])
    assert _same({"p": [0.5, None]}, {"p": (0.5, None)})
    assert not _same(True, 1)
    assert _same(float("nan"), float("nan"))
    with pytest.raises(FactError):
        _same(object(), object())
