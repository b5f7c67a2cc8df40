"""skewwatch agrees with the real vLLM (0.32.0, CPU build) about itself.

Each launch starts the real engine on a small generated Llama, runs ``skewwatch facts --pid`` (the
JSON contract) against it, and holds every fact the agent reports against what the engine says
of itself (``/version``, ``/v1/models``, ``vllm:cache_config_info`` and its start-up log: the
arguments it parsed, the config it resolved, the KV cache it sized). Where the agent predicts an
effective value by its own rule (``--dtype auto``, ``--kv-cache-dtype auto``), the prediction is
checked against the engine. The engine wins: a disagreement is a bug in the agent's tables.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent.engines.vllm import CACHE_CONFIG_LABELS, VLLM, VLLM_METRICS
from demo.harness import Processes
from demo.realvllm import VllmServer
from skewwatch.core.fingerprint import is_fingerprinted
from tests.support.realvllm import RealVllm, facts_json
from tests.support.vllm_report import (
    EngineReport,
    cache_config_labels,
    metric_types,
    read_report,
    typed_label,
)

pytestmark = [pytest.mark.e2e, pytest.mark.real_engine, pytest.mark.timeout(900)]

# The canonical facts a label of vllm:cache_config_info becomes (agent/engines/vllm.py).
CANONICAL_LABELS = {
    "block_size": "runtime.block_size",
    "gpu_memory_utilization": "runtime.gpu_memory_utilization",
    "num_gpu_blocks": "runtime.num_gpu_blocks",
    "enable_prefix_caching": "runtime.enable_prefix_caching",
    "kv_cache_memory_bytes": "runtime.kv_cache_memory_bytes",
    "kv_cache_size_tokens": "runtime.kv_cache_tokens",
    "kv_cache_max_concurrency": "runtime.kv_cache_max_concurrency",
}
# Labels that name which engine core reported, not how it is configured.
IDENTITY_LABELS = {"engine"}


def same(ours: Any, engine: Any) -> bool:
    """An argument's value as the agent keeps it (text, as given) and as the engine parsed it."""
    if isinstance(engine, list) and not isinstance(ours, list):
        engine = engine[0] if len(engine) == 1 else engine
    if isinstance(ours, list) and isinstance(engine, list):
        return [str(v) for v in ours] == [str(v) for v in engine]
    return str(ours).lower() == str(engine).lower()


def check_agreement(
    snapshot: dict[str, Any], report: EngineReport, defaults: dict[str, Any], *, predicted: set[str]
) -> None:
    """Every fact the agent reports about the engine equals what the engine reports itself."""
    facts, prov = snapshot["facts"], snapshot["provenance"]
    assert facts["runtime.engine"] == "vllm"
    assert facts["runtime.version"] == report.version == report.logged_version == "0.32.0"
    (model,) = report.models
    assert facts["runtime.max_model_len"] == model["max_model_len"] == int(report.config["max_seq_len"])
    assert facts["runtime.served_model_name"] == model["id"]
    assert facts["runtime.dtype"] == report.dtype, prov["runtime.dtype"]
    assert facts["runtime.kv_cache_dtype"] == report.kv_cache_dtype, prov["runtime.kv_cache_dtype"]
    assert facts["runtime.enforce_eager"] is (report.config["enforce_eager"] == "True")
    assert facts["runtime.enable_prefix_caching"] is (report.config["enable_prefix_caching"] == "True")
    assert facts["runtime.enable_chunked_prefill"] is (report.config["enable_chunked_prefill"] == "True")
    assert facts["runtime.tensor_parallel_size"] == int(report.config["tensor_parallel_size"])
    assert facts["runtime.pipeline_parallel_size"] == int(report.config["pipeline_parallel_size"])
    assert facts["runtime.trust_remote_code"] is (report.config["trust_remote_code"] == "True")
    # The KV cache the engine sized, three ways: its metric labels, its log, and our facts.
    labels = report.cache_config
    assert facts["runtime.kv_cache_tokens"] == report.kv_cache_tokens
    assert facts["runtime.num_gpu_blocks"] * facts["runtime.block_size"] == report.kv_cache_tokens
    for label, raw in labels.items():
        if label in IDENTITY_LABELS or label == "cache_dtype":
            continue
        key = CANONICAL_LABELS.get(label, f"runtime.cache_config.{label}")
        assert key in facts, f"label {label}={raw!r} is not a fact"
        assert facts[key] == typed_label(raw), (label, raw, facts[key])
    # Every setting the agent read from the command line (or --config) is one the engine parsed,
    # with the same value: its non-default arguments, or else EngineArgs' default for it.
    for key, value in facts.items():
        if key.startswith("runtime.args.") and prov[key]["method"] in ("arg", "file"):
            name = key.removeprefix("runtime.args.")
            if name == "config":
                continue  # the file itself: its settings are the engine's arguments, checked here
            assert name in report.args or name in defaults, f"{key}: the engine has no such argument"
            engine_value = report.args.get(name, defaults.get(name))
            assert same(value, engine_value), (key, value, engine_value)
    # The agent's defaults (provenance "default") are the engine's where EngineArgs has a plain one.
    for key, value in facts.items():
        name = key.removeprefix("runtime.")
        if prov[key]["method"] == "default" and defaults.get(name) is not None:
            assert value == defaults[name], (key, value, defaults[name], prov[key])
    if "max_num_seqs" in report.args:
        assert facts["runtime.max_num_seqs"] == report.args["max_num_seqs"]
    # The agent's own rules were exercised where the test expects a prediction.
    for key in predicted:
        assert prov[key]["method"] == "derived", (key, prov[key])
    # The model files the engine loaded are the ones hashed.
    assert facts["model.config.architectures"] == ["LlamaForCausalLM"]
    assert facts["model.integrity"] == "ok"


LAUNCHES: dict[str, tuple[str, tuple[str, ...], set[str]]] = {
    # an explicit dtype, sizes and switches on the command line
    "explicit": (
        "bf16",
        ("--dtype", "bfloat16", "--max-model-len", "512", "--block-size", "64", "--enable-prefix-caching",
         "--max-num-seqs", "8", "--served-model-name", "tiny-llama", "--enforce-eager"),
        set(),
    ),
    # --dtype auto on a bfloat16 checkpoint; a quantized KV cache; prefix caching off; compiled
    # (no --enforce-eager: the one launch that checks enforce_eager=False against the engine)
    "auto-bf16-fp8-kv": (
        "bf16",
        ("--dtype", "auto", "--kv-cache-dtype", "fp8", "--no-enable-prefix-caching",
         "--max-model-len", "256"),
        {"runtime.dtype"},
    ),
    # a --config YAML file; --dtype auto on a float32 checkpoint (served as bfloat16 since 0.9.1)
    "config-auto-fp32": ("fp32", ("--config", "{config}"), {"runtime.dtype", "runtime.kv_cache_dtype"}),
}  # fmt: skip
# vLLM's CPU build refuses an FP8 KV cache without AVX-512 or AMX ("FP8 KV cache on CPU requires x86
# with AVX-512 or AMX", cpu_attn.py); on such a machine the launch keeps everything else.
_CPU_FLAGS = set(Path("/proc/cpuinfo").read_text().split()) if Path("/proc/cpuinfo").exists() else set()
CPU_FP8_KV = bool(_CPU_FLAGS & {"avx512f", "amx_tile"})
# What the CPU build resolves by the machine it runs on, not by its arguments: left out of the golden.
MACHINE_DEPENDENT = ("runtime.cache_config.mamba_ssm_cache_dtype",)


def launch_args(args: tuple[str, ...]) -> tuple[str, ...]:
    if CPU_FP8_KV or "--kv-cache-dtype" not in args:
        return args
    i = args.index("--kv-cache-dtype")
    return args[:i] + args[i + 2 :]


CONFIG_YAML = """\
dtype: auto
max-model-len: 384
block_size: 32
max-num-seqs: 4
enforce-eager: true
served-model-name: tiny-llama-fp32
"""


def label_roles(labels: dict[str, str]) -> dict[str, str]:
    """How the agent's vLLM table treats each cache_config_info label of the real engine."""
    roles = {}
    for label in sorted(labels):
        if label in VLLM_METRICS.identity_labels:
            roles[label] = "identity: left out"
            continue
        key = CACHE_CONFIG_LABELS.get(label, (f"runtime.cache_config.{label}", "str"))[0]
        if not is_fingerprinted(key):
            role = "per-run size or bookkeeping: stored, not fingerprinted"
        elif key in VLLM.consequences:
            role = "sized at start-up from its inputs: fingerprinted, a consequence"
        else:
            role = "configuration: fingerprinted"
        roles[label] = f"{key}: {role}"
    return roles


def capture_goldens(
    server: VllmServer, snapshot: dict[str, Any], golden: Callable[[str, object], None]
) -> None:
    """vLLM 0.32's own page and answers, as the harness captured them: families, label roles, the
    /v1/models shape and the facts the agent made of them (run-dependent values normalised)."""
    for _ in range(3):
        server.complete(max_tokens=8)
    text = server.metrics()
    families = metric_types(text)
    golden("real-vllm/0.32.0-cpu/metrics-families.json", families)
    golden("real-vllm/0.32.0-cpu/cache-config-labels.json", label_roles(cache_config_labels(text)))
    (model,) = server.get_json("/v1/models")["data"]
    shape = {k: type(v).__name__ for k, v in sorted(model.items())}
    shape["permission[0]"] = {k: type(v).__name__ for k, v in sorted(model["permission"][0].items())}  # type: ignore[assignment]
    golden("real-vllm/0.32.0-cpu/v1-models-shape.json", shape)
    facts = snapshot["facts"]
    run_dependent = ("runtime.args.port", "serving.port", "runtime.args.model", "model.path", "model.id")
    golden(
        "real-vllm/0.32.0-cpu/facts.json",
        {
            k: {
                "value": "<run>"
                if k in run_dependent or str(facts[k]).startswith("sha256:")
                else "<machine>"
                if k in MACHINE_DEPENDENT
                else facts[k],
                "source": snapshot["provenance"][k]["source"],
                "method": snapshot["provenance"][k]["method"],
            }
            for k in sorted(facts)
            if k.startswith(("runtime.", "model.config.", "serving."))
        },
    )


@pytest.mark.parametrize("launch", sorted(LAUNCHES))
def test_every_fact_agrees_with_what_the_real_engine_reports(
    launch: str, real_vllm: RealVllm, procs: Processes, tmp_path: Path, golden: Callable[[str, object], None]
) -> None:
    which, args, predicted = LAUNCHES[launch]
    config = tmp_path / "vllm.yaml"
    config.write_text(CONFIG_YAML)
    model = real_vllm.bf16 if which == "bf16" else real_vllm.fp32
    argv = launch_args(tuple(a.replace("{config}", str(config)) for a in args))
    server = VllmServer.launch(procs, real_vllm.python, model, *argv).start()
    report = read_report(server)
    snapshot = facts_json("--pid", str(server.pid))
    assert snapshot["sources"]["process"]["status"] == "ok", snapshot["sources"]
    assert snapshot["sources"]["runtime_metrics"]["status"] == "ok", snapshot["sources"]
    check_agreement(snapshot, report, real_vllm.defaults, predicted=predicted)
    if launch == "explicit":
        capture_goldens(server, snapshot, golden)
    if which == "fp32":
        assert snapshot["facts"]["model.config.torch_dtype"] == "float32"
        assert snapshot["facts"]["runtime.dtype"] == "bfloat16"  # the engine's, checked above
