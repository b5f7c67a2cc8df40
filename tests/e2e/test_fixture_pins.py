"""Every pin and mapped row of the project's own intent fixtures, against real agent snapshots.

The stand-in vLLM is launched three ways and ``skewwatch facts --match … --format json`` (a real
agent collection: process, model files, runtime metrics) reads each one; then every document in
tests/fixtures/intents/*.yaml is evaluated with the pure intent evaluator on a Replica built from
that JSON, and each checking row must give the verdict its meaning calls for:

- ``planned``: a bfloat16 checkpoint served with ``--dtype``/``--kv-cache-dtype`` left to auto,
  no ``--quantization``, ``--served-model-name llama-3-8b``, ``--max-model-len 8192``.
  ``kvCacheDtype: auto`` and ``quantization: null`` hold.
- ``skewed``: the same with ``--dtype float16 --kv-cache-dtype fp8 --quantization fp8
  --tensor-parallel-size 4 --no-enable-prefix-caching``: the auto and null pins drift.
- ``awq``: the planned command line on a checkpoint whose config.json says AWQ: quantization drifts,
  found in the checkpoint.

No GPU and no Kubernetes are visible to the stand-in, so hardware, pod-spec and image rows are
unverifiable; on a machine where the agent does see NVML or a cluster those rows are left out.
"""

# ruff: noqa: E501  (verdict tables: one row per line)

from __future__ import annotations

import json
import os
import re
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from collector.domain.model import Replica
from collector.intent.binding import Bound
from collector.intent.evaluate import IntentResult, evaluate_intents
from collector.intent.model import Intent, ModelSpec, parse_documents
from demo.harness import Processes, free_port, skewwatch, wait_for
from demo.standin_vllm import install_launcher
from skewwatch.core.facts import Provenance, SourceState, SourceStatus

pytestmark = pytest.mark.e2e

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "intents"
SERVED = "llama-3-8b"
# Variables the fixtures' ModelSpecs set (spec.runtime.environment.variables).
ENGINE_ENV = {
    "VLLM_ATTENTION_BACKEND": "FLASH_ATTN",
    "TOKENIZERS_PARALLELISM": "false",
    "VLLM_LOGGING_LEVEL": "INFO",
}
PLANNED_ARGS = ("--served-model-name", SERVED, "--max-model-len", "8192", "--max-num-seqs", "256")
SKEWED_ARGS = ("--dtype", "float16", "--kv-cache-dtype", "fp8", "--quantization", "fp8",
               "--tensor-parallel-size", "4", "--no-enable-prefix-caching")  # fmt: skip

Key = tuple[str, str, str]  # fixture file, field path, target fact
U, OK, DRIFT = "unverifiable", "ok", "drift"

ACCELERATOR = {
    ("spec.runtime.accelerator.vendor", "hardware.gpu.product"): U,  # no GPU visible
    ("spec.runtime.accelerator.type", "hardware.gpu.product"): U,
    ("spec.runtime.accelerator.count", "hardware.gpu.count"): U,
}
NAMED_LLAMA_3_8B = {
    ("spec.identity.model.id", "runtime.served_model_name"): OK,
    ("spec.identity.model.framework", "runtime.engine"): OK,
}
PROBES = {
    (
        "spec.operations.serving.readinessProbe.path",
        "orchestration.probes.readiness.path",
    ): U,  # not in Kubernetes
    (
        "spec.operations.serving.readinessProbe.timeoutSeconds",
        "orchestration.probes.readiness.timeout_seconds",
    ): U,
    ("spec.operations.serving.livenessProbe.path", "orchestration.probes.liveness.path"): U,
    (
        "spec.operations.serving.livenessProbe.timeoutSeconds",
        "orchestration.probes.liveness.timeout_seconds",
    ): U,
    ("spec.operations.serving.maxConcurrency", "serving.max_concurrency"): U,  # no source reports it yet
    ("spec.operations.serving.timeoutSeconds", "serving.timeout_seconds"): U,
    # The Service in front of the pod is the cluster's to tell (collector/cluster): none here.
    ("spec.operations.serving.protocol", "serving.service.protocol"): U,
}
RESOURCES = {
    ("spec.runtime.resources.cpuCores", "orchestration.resources.requests.cpu"): U,
    ("spec.runtime.resources.memoryGb", "orchestration.resources.limits.memory"): U,
    ("spec.runtime.resources.ephemeralStorageGb", "orchestration.resources.limits.ephemeral-storage"): U,
}
PRECISION_DTYPE = ("spec.identity.model.precision", "runtime.dtype")
PRECISION_QUANT = ("spec.identity.model.precision", "runtime.quantization")

# The planned launch: every checking row of every fixture and its meaningful verdict.
PLANNED: dict[str, dict[tuple[str, str], str]] = {
    "00-minimal.modelspec.yaml": {**NAMED_LLAMA_3_8B, **ACCELERATOR},
    "01-artifacts.modelspec.yaml": {
        ("spec.identity.model.id", "runtime.served_model_name"): DRIFT,  # Qwen2.5-7B-Instruct, served as llama-3-8b
        ("spec.identity.model.framework", "runtime.engine"): OK,
        PRECISION_DTYPE: OK,  # bf16: --dtype auto on a bfloat16 checkpoint
        PRECISION_QUANT: OK,  # a float precision: neither --quantization nor a quantization_config
        # hf://Qwen/… against model.id: the model is served from a directory (model.path), not a hub id.
        ("spec.identity.model.artifacts.modelUri", "model.id"): U,
        **ACCELERATOR,
    },
    "02-serving.modelspec.yaml": {
        ("spec.identity.model.id", "runtime.served_model_name"): DRIFT,
        ("spec.identity.model.framework", "runtime.engine"): OK,
        PRECISION_DTYPE: DRIFT,  # fp16 planned, the checkpoint's bfloat16 runs
        PRECISION_QUANT: OK,
        ("spec.operations.serving.port", "serving.port"): DRIFT,  # 8000 planned, a free port used
        **ACCELERATOR, **PROBES,
    },
    "03-batching.modelspec.yaml": {
        **NAMED_LLAMA_3_8B,
        PRECISION_DTYPE: DRIFT,  # float16 planned
        PRECISION_QUANT: OK,
        ("spec.runtime.batch.maxBatchSize", "runtime.max_num_seqs"): OK,
        ("spec.runtime.batch.maxSequenceLengthTokens", "runtime.max_model_len"): OK,
        ("spec.runtime.environment.variables.VLLM_ATTENTION_BACKEND", "runtime.env.VLLM_ATTENTION_BACKEND"): OK,
        ("spec.runtime.environment.variables.TOKENIZERS_PARALLELISM", "runtime.env.TOKENIZERS_PARALLELISM"): OK,
        **ACCELERATOR, **RESOURCES,
    },
    "04-scaling.modelspec.yaml": {
        **NAMED_LLAMA_3_8B, **ACCELERATOR,
        ("spec.operations.scaling.minReplicas", "replicas"): DRIFT,  # one replica, 2 planned
        ("spec.operations.scaling.maxReplicas", "replicas"): OK,
        ("spec.operations.scaling.strategy", "orchestration.autoscaling.kind"): U,  # no cluster: no autoscaler known
        # One collection has no observation window yet.
        ("spec.operations.scaling.targetLatencyMsP95", "observation:e2e_latency_seconds_p95"): U,
        ("spec.operations.scaling.targetRps", "observation:requests_per_s"): U,
    },
    "05-observability.modelspec.yaml": {
        **NAMED_LLAMA_3_8B, **ACCELERATOR,
        ("spec.operations.observability.metrics.enabled", "source:runtime_metrics"): OK,
        ("spec.operations.observability.metrics.port", "serving.metrics_port"): DRIFT,  # /metrics on the free API port
        ("spec.operations.observability.logging.level", "runtime.log_level"): U,
        ("spec.operations.observability.tracing.enabled", "runtime.args.otlp_traces_endpoint"): OK,  # false: no tracing flag
    },
    "06-dependencies.modelspec.yaml": {
        ("spec.identity.model.id", "runtime.served_model_name"): DRIFT,
        ("spec.identity.model.framework", "runtime.engine"): OK,
        **ACCELERATOR,
    },
    "07-governance.modelspec.yaml": {
        **NAMED_LLAMA_3_8B, **ACCELERATOR,
        ("spec.governance.cost.pricingHints.instanceType", "orchestration.node_instance_type"): U,
    },
    "08-full-production.modelspec.yaml": {
        ("spec.identity.model.id", "runtime.served_model_name"): DRIFT,  # llama-3-70b-instruct
        ("spec.identity.model.framework", "runtime.engine"): OK,
        PRECISION_DTYPE: OK,
        PRECISION_QUANT: OK,
        ("spec.identity.model.artifacts.modelUri", "model.id"): U,  # s3:// cannot be checked in the pod
        ("spec.runtime.batch.maxBatchSize", "runtime.max_num_seqs"): DRIFT,  # 64 planned, 256 given
        ("spec.runtime.batch.maxSequenceLengthTokens", "runtime.max_model_len"): OK,
        ("spec.runtime.environment.variables.VLLM_LOGGING_LEVEL", "runtime.env.VLLM_LOGGING_LEVEL"): OK,
        ("spec.runtime.environment.variables.TOKENIZERS_PARALLELISM", "runtime.env.TOKENIZERS_PARALLELISM"): OK,
        ("spec.operations.serving.port", "serving.port"): DRIFT,
        ("spec.operations.scaling.minReplicas", "replicas"): DRIFT,
        ("spec.operations.scaling.maxReplicas", "replicas"): OK,
        ("spec.operations.scaling.strategy", "orchestration.autoscaling.kind"): U,  # no cluster: no autoscaler known
        ("spec.operations.scaling.targetLatencyMsP95", "observation:e2e_latency_seconds_p95"): U,
        ("spec.operations.scaling.targetRps", "observation:requests_per_s"): U,
        ("spec.operations.observability.metrics.enabled", "source:runtime_metrics"): OK,
        ("spec.operations.observability.logging.level", "runtime.log_level"): U,
        ("spec.operations.observability.tracing.enabled", "runtime.args.otlp_traces_endpoint"): DRIFT,  # true: no tracing flag
        **ACCELERATOR, **RESOURCES, **PROBES,
    },
    "10-policy.skewpolicy.yaml": {
        ("spec.pins.model.revision", "model.revision"): U,  # served from a directory, no --revision
        ("spec.pins.model.weightsDigest", "model.weights.digest"): DRIFT,  # not the pinned weights
        ("spec.pins.model.tokenizerDigest", "model.tokenizer.digest"): DRIFT,
        ("spec.pins.model.files.generation_config.json", "model.files.generation_config.json"): DRIFT,
        ("spec.pins.image.digest", "orchestration.image_digest"): U,  # not in a container the agent can see
        ("spec.pins.runtime.version", "runtime.version"): DRIFT,  # the stand-in is 0.0.0.dev0
        ("spec.pins.runtime.quantization", "runtime.quantization"): OK,  # null: nothing quantized
        ("spec.pins.runtime.kvCacheDtype", "runtime.kv_cache_dtype"): OK,  # auto: left to auto
        ("spec.pins.runtime.tensorParallelSize", "runtime.tensor_parallel_size"): DRIFT,  # 4 pinned, vLLM's default 1
        ("spec.pins.runtime.pipelineParallelSize", "runtime.pipeline_parallel_size"): OK,
        ("spec.pins.hardware.driverVersion", "hardware.driver_version"): U,
        ("spec.pins.hardware.cudaVersion", "hardware.cuda_driver_version"): U,
        ("spec.pins.hardware.migProfile", "hardware.gpu.mig_profiles"): U,
        ("spec.pins.facts.runtime.enable_prefix_caching", "runtime.enable_prefix_caching"): OK,
    },
}  # fmt: skip

# What changes against the planned verdicts in the other launches.
CHANGES: dict[str, dict[Key, str]] = {
    "planned": {},
    "skewed": {
        ("01-artifacts.modelspec.yaml", *PRECISION_DTYPE): DRIFT,  # float16 forced
        ("01-artifacts.modelspec.yaml", *PRECISION_QUANT): DRIFT,  # --quantization fp8
        ("02-serving.modelspec.yaml", *PRECISION_DTYPE): OK,  # fp16 = float16
        ("02-serving.modelspec.yaml", *PRECISION_QUANT): DRIFT,
        ("03-batching.modelspec.yaml", *PRECISION_DTYPE): OK,
        ("03-batching.modelspec.yaml", *PRECISION_QUANT): DRIFT,
        ("08-full-production.modelspec.yaml", *PRECISION_DTYPE): DRIFT,
        ("08-full-production.modelspec.yaml", *PRECISION_QUANT): DRIFT,
        ("10-policy.skewpolicy.yaml", "spec.pins.runtime.quantization", "runtime.quantization"): DRIFT,
        ("10-policy.skewpolicy.yaml", "spec.pins.runtime.kvCacheDtype", "runtime.kv_cache_dtype"): DRIFT,
        ("10-policy.skewpolicy.yaml", "spec.pins.runtime.tensorParallelSize", "runtime.tensor_parallel_size"): OK,
        ("10-policy.skewpolicy.yaml", "spec.pins.facts.runtime.enable_prefix_caching", "runtime.enable_prefix_caching"): DRIFT,
    },
    "awq": {
        ("01-artifacts.modelspec.yaml", *PRECISION_QUANT): DRIFT,  # bf16 planned, an AWQ checkpoint
        ("02-serving.modelspec.yaml", *PRECISION_QUANT): DRIFT,
        ("03-batching.modelspec.yaml", *PRECISION_QUANT): DRIFT,
        ("08-full-production.modelspec.yaml", *PRECISION_QUANT): DRIFT,
        ("10-policy.skewpolicy.yaml", "spec.pins.runtime.quantization", "runtime.quantization"): DRIFT,
    },
}  # fmt: skip


def expected_verdicts(launch: str) -> dict[Key, str]:
    out = {(f, field, target): v for f, rows in PLANNED.items() for (field, target), v in rows.items()}
    assert set(CHANGES[launch]) <= set(out), "a change names a row no fixture has"
    out.update(CHANGES[launch])
    return out


def write_model(d: Path, quantization: dict[str, Any] | None = None) -> Path:
    d.mkdir()
    config: dict[str, Any] = {"architectures": ["LlamaForCausalLM"], "torch_dtype": "bfloat16",
                              "max_position_embeddings": 8192}  # fmt: skip
    if quantization is not None:
        config["quantization_config"] = quantization
    (d / "config.json").write_text(json.dumps(config))
    (d / "tokenizer.json").write_text('{"version": "1.0", "model": {"type": "BPE", "vocab": {"a": 0}}}')
    (d / "generation_config.json").write_text('{"temperature": 0.6, "top_p": 0.9}')
    (d / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    return d


def serving_metrics(port: int) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
        return bool(r.status == 200)


@pytest.fixture(scope="module")
def snapshots(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[str, Any]]]:
    """launch -> the ``skewwatch facts`` JSON of a stand-in vLLM launched that way."""
    tmp = tmp_path_factory.mktemp("fixture-pins")
    procs = Processes(tmp)
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("SKEWWATCH_", "VLLM_")) and k != "KUBECONFIG"
    }
    env["PYTHONUNBUFFERED"] = "1"
    vllm = install_launcher(tmp / "bin")
    bf16 = write_model(tmp / "model-bf16")
    awq = write_model(tmp / "model-awq", {"quant_method": "awq", "bits": 4, "group_size": 128})
    launches = {
        "planned": (bf16, PLANNED_ARGS),
        "skewed": (bf16, PLANNED_ARGS + SKEWED_ARGS),
        "awq": (awq, PLANNED_ARGS),
    }
    ports = {name: free_port() for name in launches}
    try:
        for name, (model, args) in launches.items():
            argv = [str(vllm), "serve", str(model), "--port", str(ports[name]), *args]
            procs.start(f"vllm-{name}", argv, {**env, **ENGINE_ENV})
        for name, port in ports.items():
            wait_for(f"vllm {name}", lambda: serving_metrics(port), procs)  # noqa: B023 - used at once
        out = {}
        for name, port in ports.items():
            match = f"{re.escape(str(vllm))} serve .*--port {port}( |$)"
            done = subprocess.run(skewwatch("facts", "--match", match, "--format", "json"), env=env,
                                  capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
            out[name] = json.loads(done.stdout)
        yield out
    finally:
        procs.stop_all()


def replica_of(snapshot: dict[str, Any], pod: str = "stand-in") -> Replica:
    """The Replica the collector would build from this snapshot (facts, provenance, sources)."""
    prov = {
        k: Provenance(
            p["source"], p["method"], p.get("detail", ""), tuple(p.get("inputs", ())), p.get("last_seen")
        )
        for k, p in snapshot["provenance"].items()
    }
    sources = {
        n: SourceStatus(n, SourceState(s["status"]), s.get("message", ""))
        for n, s in snapshot["sources"].items()
    }
    return Replica(pod=pod, facts=snapshot["facts"], provenance=prov, sources=sources)


def fixture_intents() -> list[tuple[str, Intent]]:
    files = sorted(FIXTURES.glob("*.yaml"))
    assert files and not any(f.parent.name == "bad" for f in files)
    return [(f.name, intent) for f in files for intent in parse_documents(f.read_bytes(), f.name)]


def evaluate_one(intent: Intent, rep: Replica) -> IntentResult:
    bound = Bound(model_specs=(intent,)) if isinstance(intent, ModelSpec) else Bound(policies=(intent,))
    return evaluate_intents(bound, [rep])


def left_out(snapshot: dict[str, Any]) -> tuple[str, ...]:
    """Target prefixes whose verdict depends on the machine: a visible GPU or a cluster."""
    out: list[str] = []
    if snapshot["sources"]["nvml"]["status"] == "ok":
        out.append("hardware.")
    if "not in Kubernetes" not in snapshot["sources"]["pod"]["message"]:
        out.append("orchestration.")
    return tuple(out)


@pytest.mark.parametrize("launch", sorted(CHANGES))
def test_every_fixture_row_gives_its_meaningful_verdict_on_a_real_snapshot(
    snapshots: dict[str, dict[str, Any]], launch: str
) -> None:
    snapshot = snapshots[launch]
    assert {s for s, v in snapshot["sources"].items() if v["status"] == "ok"} >= {
        "process",
        "model_files",
        "runtime_metrics",
    }
    rep = replica_of(snapshot)
    got: dict[Key, str] = {}
    for name, intent in fixture_intents():
        for c in evaluate_one(intent, rep).checks:
            if c.status == "documentary":
                assert c.target is None, (
                    f"{name} {c.field} is a checking row shown as documentary: {c.detail}"
                )
                continue
            key = (name, c.field, c.target or "")
            assert key not in got, f"{key} checked twice"
            got[key] = c.status
    expected = expected_verdicts(launch)
    skip = left_out(snapshot)
    # The accelerator rows fall back to the node's GPU product (a cluster fact): both kinds depend.
    machine = {
        k
        for k in expected
        if k[2].startswith(skip) or (skip and k[1].startswith("spec.runtime.accelerator."))
    }
    assert set(got) == set(expected), "rows of the fixtures without an expected verdict (or gone)"
    wrong = {k: (got[k], v) for k, v in expected.items() if k not in machine and got[k] != v}
    assert not wrong, "\n".join(f"{k}: got {g}, meant {w}" for k, (g, w) in sorted(wrong.items()))


def _check(snapshot: dict[str, Any], fixture: str, field: str) -> Any:
    rep = replica_of(snapshot)
    for name, intent in fixture_intents():
        if name == fixture:
            (c,) = [c for c in evaluate_one(intent, rep).checks if c.field == field]
            return c
    raise AssertionError(f"{fixture} not found")


def test_kv_cache_dtype_auto_pin_reads_the_request_not_the_resolved_dtype(
    snapshots: dict[str, dict[str, Any]],
) -> None:
    planned, skewed = snapshots["planned"], snapshots["skewed"]
    # What the agent reports for an auto KV-cache dtype: the model dtype, derived by vLLM's rule.
    assert planned["facts"]["runtime.kv_cache_dtype"] == "bfloat16"
    assert planned["provenance"]["runtime.kv_cache_dtype"]["method"] == "derived"
    assert "runtime.args.kv_cache_dtype" not in planned["facts"]
    c = _check(planned, "10-policy.skewpolicy.yaml", "spec.pins.runtime.kvCacheDtype")
    assert (c.status, c.expected) == ("ok", "auto") and "auto requested" in c.detail
    c = _check(skewed, "10-policy.skewpolicy.yaml", "spec.pins.runtime.kvCacheDtype")
    assert (c.status, dict(c.pods)) == ("drift", {"stand-in": "fp8"})
    assert "runtime.args.kv_cache_dtype" in c.detail


def test_quantization_null_is_checked_against_the_checkpoint_and_the_args(
    snapshots: dict[str, dict[str, Any]],
) -> None:
    planned, skewed, awq = snapshots["planned"], snapshots["skewed"], snapshots["awq"]
    # An unquantized stand-in: no runtime.quantization fact at all, the checkpoint says null.
    assert (
        "runtime.quantization" not in planned["facts"]
        and planned["facts"]["model.config.quantization"] is None
    )
    c = _check(planned, "10-policy.skewpolicy.yaml", "spec.pins.runtime.quantization")
    assert c.status == "ok" and "model.config.quantization = None" in c.detail
    c = _check(skewed, "10-policy.skewpolicy.yaml", "spec.pins.runtime.quantization")
    assert (c.status, dict(c.pods)) == ("drift", {"stand-in": "fp8"}) and "--quantization" in c.detail
    assert awq["facts"]["model.config.quantization"] == "awq"
    c = _check(awq, "10-policy.skewpolicy.yaml", "spec.pins.runtime.quantization")
    assert (c.status, dict(c.pods)) == ("drift", {"stand-in": "awq"})
    assert "quantization_config" in c.detail or "model.config.quantization" in c.detail
