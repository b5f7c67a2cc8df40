"""Launchers: NVIDIA Dynamo workers and NIM LLM containers, read through to the engine under them.

Command lines are the real ones, recorded with their source (command + args of the container as
the kubelet starts it, or the launch script's line):

- D1 ai-dynamo/dynamo examples/backends/vllm/deploy/disagg.yaml @ 0044eb903566e0632bdf7bb7388c967d946643af
  (VllmDecodeWorker / VllmPrefillWorker)
- D2 … examples/backends/sglang/deploy/agg.yaml @ 0044eb90… (decode)
- D3 … examples/backends/trtllm/deploy/agg.yaml @ 0044eb90… (TRTLLMWorker)
- D4 … examples/backends/vllm/launch/agg.sh @ 0c8d0101cb36db5801b087a7a19ed8dccc8e3d5c (the worker line)
- N1 a NIM 1.1.2 ``docker run`` (nvcr.io/nim/meta/llama-3.1-8b-instruct:1.1.2 … ``python3 -m
  vllm_nvext.entrypoints.openai.api_server --max-model-len 16000 --gpu-memory-utilization 0.95``),
  and NIM's documented variables (docs.nvidia.com/nim/large-language-models/…/environment-variables).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from agent.engines import (
    DYNAMO_SGLANG,
    DYNAMO_TRTLLM,
    DYNAMO_VLLM,
    ENGINES,
    GENERIC,
    NIM_SDK,
    NIM_VLLM,
    SGLANG,
    TRTLLM,
    VLLM,
    engine_named,
    launched_engine,
    launcher_for,
    locate,
)
from agent.engines.launchers import (
    DYNAMO_METRICS,
    LAUNCHERS,
    metrics_port,
    nim_backend,
)
from agent.engines.links import inputs_for
from agent.settings import AgentSettings
from agent.sources.base import SourceResult
from agent.sources.process import Found, ProcFS, build_result, find_process, launcher_metrics_url
from skewwatch.core.facts import Fact, SourceState
from tests.support.fake_processes import SECRET_FROM_REF, fake_process, fake_procfs

D1_DECODE = ["python3", "-m", "dynamo.vllm", "--model", "Qwen/Qwen3-0.6B", "--is-decode-worker"]
D1_PREFILL = ["python3", "-m", "dynamo.vllm", "--model", "Qwen/Qwen3-0.6B", "--is-prefill-worker"]
D2 = [
    "python3", "-m", "dynamo.sglang", "--model-path", "Qwen/Qwen3-0.6B", "--served-model-name",
    "Qwen/Qwen3-0.6B", "--page-size", "16", "--tp", "1", "--trust-remote-code", "--skip-tokenizer-init",
]  # fmt: skip
D3 = [
    "python3", "-m", "dynamo.trtllm", "--model-path", "Qwen/Qwen3-0.6B", "--served-model-name",
    "Qwen/Qwen3-0.6B", "--extra-engine-args", "./examples/backends/trtllm/engine_configs/qwen3/agg.yaml",
]  # fmt: skip
# D4, as bash runs it with MAX_MODEL_LEN=4096 MAX_CONCURRENT_SEQS=2 (the script's defaults).
D4_SCRIPT = (
    'DYN_SYSTEM_PORT=${DYN_SYSTEM_PORT:-8081} python -m dynamo.vllm --model "$MODEL" --enforce-eager '
    '--max-model-len "$MAX_MODEL_LEN" --max-num-seqs "$MAX_CONCURRENT_SEQS"'
)
N1 = [
    "python3", "-m", "vllm_nvext.entrypoints.openai.api_server", "--max-model-len", "16000",
    "--gpu-memory-utilization", "0.95",
]  # fmt: skip
# What the Dynamo operator puts into a worker's environment (deploy/operator tests).
OPERATOR_ENV = {"DYN_SYSTEM_ENABLED": "true", "DYN_SYSTEM_PORT": "9090", "HF_TOKEN": SECRET_FROM_REF}


def collect(argv: list[str], env: Mapping[str, str] | None = None, **kw: object) -> SourceResult:
    return build_result(
        AgentSettings(),
        found=Found(4242, argv, "--pid"),
        env=dict(env or {}),
        cwd=None,
        process_root=None,
        problems=[],
        **kw,  # type: ignore[arg-type]
    )


def by_key(result: SourceResult) -> dict[str, Fact]:
    return {f.key: f for f in result.facts}


def values(result: SourceResult) -> dict[str, object]:
    return {f.key: f.value for f in result.facts}


# --- recognising the launcher -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "engine", "spec"),
    [(D1_DECODE, "vllm", DYNAMO_VLLM), (D2, "sglang", DYNAMO_SGLANG), (D3, "trtllm", DYNAMO_TRTLLM)],
)
def test_dynamo_workers_of_the_real_manifests_report_the_engine_under_them(
    argv: list[str], engine: str, spec: object
) -> None:
    inv = locate(argv)
    assert inv is not None and inv.spec is spec
    result = collect(argv, OPERATOR_ENV)
    facts = by_key(result)
    assert facts["runtime.engine"].value == engine
    assert facts["runtime.engine"].provenance.method == "arg"
    assert facts["runtime.engine"].provenance.detail == f"python -m dynamo.{engine}"
    assert facts["runtime.launcher"].value == "dynamo"
    assert facts["runtime.launcher"].provenance.detail == f"python -m dynamo.{engine}: NVIDIA Dynamo worker"
    assert facts["model.id"].value == "Qwen/Qwen3-0.6B"
    assert result.process is not None and result.process.engine == engine
    # The worker's system status server, where Dynamo passes the engine's metrics through.
    assert result.process.metrics_url == "http://127.0.0.1:9090/metrics"
    assert SECRET_FROM_REF not in repr(result.facts) + repr(result.process)


def test_the_plain_engines_stay_what_a_name_stands_for() -> None:
    assert (
        engine_named("vllm") is VLLM and engine_named("sglang") is SGLANG and engine_named("trtllm") is TRTLLM
    )
    assert engine_named("unknown") is GENERIC  # not NIM's placeholder
    assert ENGINES[:4] == (VLLM, SGLANG, engine_named("tgi"), TRTLLM)
    # Dynamo's flags are Dynamo's: a plain vLLM's table does not know them.
    assert "is-prefill-worker" in DYNAMO_VLLM.switch_names()
    assert "is-prefill-worker" not in VLLM.switch_names()
    assert {e.name for e in VLLM.entrypoints}.isdisjoint(
        {"dynamo.vllm", "vllm_nvext.entrypoints.openai.api_server"}
    )


def test_every_launcher_entry_point_is_found_and_names_its_launcher() -> None:
    for launcher in LAUNCHERS:
        for ep in launcher.entrypoints:
            inv = locate(["/usr/bin/python3", "-m", ep.name])
            assert inv is not None, ep.name
            assert launcher_for(inv.entrypoint) is launcher
            assert inv.spec.name == launcher.engine


def test_disaggregated_roles_and_identity_flags_are_args_like_any_flag() -> None:
    decode = values(collect(D1_DECODE, OPERATOR_ENV))
    prefill = values(collect(D1_PREFILL, OPERATOR_ENV))
    assert decode["runtime.args.is_decode_worker"] is True and "runtime.args.is_prefill_worker" not in decode
    assert prefill["runtime.args.is_prefill_worker"] is True
    endpoint = [*D1_PREFILL, "--namespace", "llm", "--endpoint", "dyn://llm.prefill.generate"]
    f = by_key(collect(endpoint, {**OPERATOR_ENV, "DYN_NAMESPACE": "ignored-by-the-flag"}))
    assert f["runtime.args.namespace"].value == "llm"
    assert f["runtime.args.endpoint"].value == "dyn://llm.prefill.generate"
    assert f["runtime.args.endpoint"].provenance.detail == "--endpoint"
    assert f["runtime.env.DYN_NAMESPACE"].value == "ignored-by-the-flag"
    assert f["runtime.env.DYN_SYSTEM_PORT"].value == "9090"


def test_a_dynamo_worker_serves_no_http_port_of_its_own() -> None:
    # vLLM's --port default (8000) is the OpenAI server's; a Dynamo worker starts none.
    assert "serving.port" not in values(collect(D1_DECODE, OPERATOR_ENV))
    assert values(collect(["vllm", "serve", "Qwen/Qwen3-0.6B"]))["serving.port"] == 8000


def test_vllm_flags_pass_through_a_dynamo_worker_as_vllm_reads_them() -> None:
    argv = [
        *D1_DECODE, "--block-size", "32", "--max-num-seqs", "128", "--max-model-len", "32k",
        "--max-num-batched-tokens", "8192", "--kv-cache-dtype", "fp8", "--gpu-memory-utilization", "0.85",
        "--no-enable-prefix-caching", "--tensor-parallel-size", "2",
    ]  # fmt: skip
    v = values(collect(argv, OPERATOR_ENV))
    assert v["runtime.block_size"] == 32
    assert v["runtime.max_num_seqs"] == 128
    assert v["runtime.max_model_len"] == 32000
    assert v["runtime.max_num_batched_tokens"] == 8192
    assert v["runtime.kv_cache_dtype"] == "fp8"
    assert v["runtime.gpu_memory_utilization"] == 0.85
    assert v["runtime.enable_prefix_caching"] is False
    assert v["runtime.tensor_parallel_size"] == 2


def test_dynamo_sglang_reads_sglang_spellings() -> None:
    v = values(collect(D2, OPERATOR_ENV))
    assert v["runtime.block_size"] == 16  # --page-size
    assert v["runtime.tensor_parallel_size"] == 1  # --tp, a unique prefix of --tp-size
    assert v["runtime.trust_remote_code"] is True
    assert v["runtime.served_model_name"] == "Qwen/Qwen3-0.6B"


def test_dynamo_trtllm_spellings_map_onto_the_canonical_keys() -> None:
    argv = [
        "python3", "-m", "dynamo.trtllm", "--model", "Qwen/Qwen3-0.6B", "--tensor-parallel-size", "2",
        "--pipeline-parallel-size", "1", "--kv-block-size", "64", "--max-batch-size", "32",
        "--max-num-tokens", "8192", "--max-seq-len", "4096", "--free-gpu-memory-fraction", "0.8",
        "--publish-events-and-metrics", "--disaggregation-mode", "prefill",
    ]  # fmt: skip
    f = by_key(collect(argv, OPERATOR_ENV))
    assert f["runtime.tensor_parallel_size"].value == 2
    assert f["runtime.block_size"].value == 64
    assert f["runtime.block_size"].provenance.detail == "--kv-block-size"
    assert f["runtime.max_num_seqs"].value == 32
    assert f["runtime.max_num_batched_tokens"].value == 8192
    assert f["runtime.max_model_len"].value == 4096
    assert f["runtime.gpu_memory_utilization"].value == 0.8
    assert f["runtime.args.publish_events_and_metrics"].value is True  # a switch: it takes nothing
    assert f["runtime.args.disaggregation_mode"].value == "prefill"


def test_dynamo_trtllm_variables_and_its_block_size_default() -> None:
    env = {**OPERATOR_ENV, "DYN_TRTLLM_MAX_BATCH_SIZE": "48"}
    f = by_key(collect(["python3", "-m", "dynamo.trtllm", "--model", "Qwen/Qwen3-0.6B"], env))
    assert f["runtime.max_num_seqs"].value == 48
    assert (f["runtime.max_num_seqs"].provenance.method, f["runtime.max_num_seqs"].provenance.detail) == (
        "env",
        "DYN_TRTLLM_MAX_BATCH_SIZE",
    )
    assert f["runtime.block_size"].value == 32
    assert f["runtime.block_size"].provenance.method == "default"


def test_dynamo_trtllm_extra_engine_args_file_is_read_as_the_engine_options() -> None:
    path = "./examples/backends/trtllm/engine_configs/qwen3/agg.yaml"
    text = "kv_cache_config:\n  free_gpu_memory_fraction: 0.7\nmax_batch_size: 16\n"
    f = by_key(collect(D3, OPERATOR_ENV, config_files={path: text}))
    assert f["runtime.gpu_memory_utilization"].value == 0.7
    assert f["runtime.max_num_seqs"].value == 16
    assert path in f["runtime.max_num_seqs"].provenance.detail
    unread = collect(D3, OPERATOR_ENV)
    assert unread.state is SourceState.ERROR and "--extra-engine-args" in unread.message


# --- wrappers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["tini", "--", *D1_PREFILL],
        ["/usr/bin/env", "DYN_SYSTEM_PORT=9090", *D1_PREFILL],
        ["dumb-init", "--", "timeout", "-s", "INT", "900", *D1_PREFILL],
        ["/bin/sh", "-c", "exec " + " ".join(D1_PREFILL)],
        ["/bin/bash", "-c", "cd /workspace/examples/backends/vllm && " + " ".join(D1_PREFILL)],
    ],
)
def test_a_dynamo_worker_behind_wrappers_is_still_the_worker(argv: list[str]) -> None:
    inv = locate(argv)
    assert inv is not None and inv.spec is DYNAMO_VLLM
    v = values(collect(argv, OPERATOR_ENV))
    assert (v["runtime.engine"], v["runtime.launcher"], v["runtime.args.is_prefill_worker"]) == (
        "vllm",
        "dynamo",
        True,
    )


def test_the_launch_scripts_worker_line_in_a_shell() -> None:
    env = {
        "MODEL": "Qwen/Qwen3-0.6B",
        "MAX_MODEL_LEN": "4096",
        "MAX_CONCURRENT_SEQS": "2",
        "DYN_SYSTEM_PORT": "8081",
    }
    result = collect(["bash", "-c", D4_SCRIPT], env)
    v = values(result)
    assert (v["runtime.engine"], v["runtime.launcher"]) == ("vllm", "dynamo")
    assert (v["runtime.max_model_len"], v["runtime.max_num_seqs"], v["runtime.enforce_eager"]) == (
        4096,
        2,
        True,
    )
    assert result.process is not None and result.process.metrics_url == "http://127.0.0.1:8081/metrics"


def test_detection_picks_the_worker_not_the_dynamo_frontend(tmp_path: Path) -> None:
    procfs = fake_procfs(tmp_path)
    fake_process(procfs, 20, ["python", "-m", "dynamo.frontend"], env={"DYN_HTTP_PORT": "8000"})
    fake_process(procfs, 21, ["python", "-m", "dynamo.vllm", "--model", "Qwen/Qwen3-0.6B"], env=OPERATOR_ENV)
    found = find_process(ProcFS(procfs), AgentSettings())
    assert (found.pid, found.how) == (21, "engine detection")


# --- the metrics URL --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "url", "why"),
    [
        ({"DYN_SYSTEM_PORT": "9090"}, "http://127.0.0.1:9090/metrics", "DYN_SYSTEM_PORT"),
        (
            {"DYN_SYSTEM_PORT": "8081", "DYN_SYSTEM_HOST": "0.0.0.0"},
            "http://127.0.0.1:8081/metrics",
            "DYN_SYSTEM_PORT",
        ),
        (
            {"DYN_SYSTEM_PORT": "8081", "DYN_SYSTEM_HOST": "fd00::7"},
            "http://[fd00::7]:8081/metrics",
            "DYN_SYSTEM_PORT",
        ),
        ({"DYN_SYSTEM_PORT": "-1"}, None, "DYN_SYSTEM_PORT=-1: the system status server is disabled"),
        (
            {"DYN_SYSTEM_PORT": "9090", "DYN_SYSTEM_ENABLED": "false"},
            None,
            "DYN_SYSTEM_ENABLED=false: the system",
        ),
        ({"DYN_SYSTEM_PORT": "http"}, None, "DYN_SYSTEM_PORT='http' is not a port"),
        ({}, None, "no DYN_SYSTEM_PORT: the system status server (and its /metrics) is not served"),
    ],
)
def test_dynamo_metrics_url_comes_from_the_system_port(
    env: dict[str, str], url: str | None, why: str
) -> None:
    got, said = launcher_metrics_url(launcher_for(DYNAMO_VLLM.entrypoints[0]), env)  # type: ignore[arg-type]
    assert got == url
    assert said.startswith(why)


def test_a_worker_without_a_system_port_has_no_metrics_url_and_says_why() -> None:
    result = collect(D1_DECODE, {})
    assert result.process is not None and result.process.metrics_url is None
    assert result.state is SourceState.OK
    assert "no metrics URL: no DYN_SYSTEM_PORT" in result.message
    # --metrics-url still wins.
    forced = build_result(
        AgentSettings(metrics_url="http://10.0.0.7:9090/metrics"),
        found=Found(1, D1_DECODE, "--pid"),
        env={},
        cwd=None,
        process_root=None,
        problems=[],
    )
    assert forced.process is not None and forced.process.metrics_url == "http://10.0.0.7:9090/metrics"


def test_metrics_port_never_guesses() -> None:
    assert metrics_port(DYNAMO_METRICS, {"DYN_SYSTEM_PORT": "70000"}) == (
        None,
        "DYN_SYSTEM_PORT='70000' is not a port",
    )
    assert metrics_port(DYNAMO_METRICS, {"DYN_SYSTEM_PORT": " 9090 "}) == (9090, "DYN_SYSTEM_PORT")


# --- NIM --------------------------------------------------------------------------------------


def test_a_nim_vllm_nvext_server_is_vllm_under_nim_with_nims_variables() -> None:
    env = {
        "NIM_SERVED_MODEL_NAME": "meta/llama-3.1-8b-instruct",
        "NIM_MAX_MODEL_LEN": "8192",  # the flag (16000) wins, as a flag beats its variable
        "NIM_TENSOR_PARALLEL_SIZE": "2",
        "NGC_API_KEY": "nvapi-" + "x" * 40,
    }
    inv = locate(N1)
    assert inv is not None and inv.spec is NIM_VLLM
    result = collect(N1, env)
    f = by_key(result)
    assert (f["runtime.engine"].value, f["runtime.launcher"].value) == ("vllm", "nim")
    assert f["runtime.max_model_len"].value == 16000
    assert f["runtime.max_model_len"].provenance.detail == "--max-model-len"
    assert f["runtime.gpu_memory_utilization"].value == 0.95
    assert f["runtime.served_model_name"].value == "meta/llama-3.1-8b-instruct"
    assert f["runtime.served_model_name"].provenance.detail == "NIM_SERVED_MODEL_NAME"
    assert f["runtime.tensor_parallel_size"].value == 2
    assert f["serving.port"].value == 8000
    assert result.process is not None and result.process.metrics_url == "http://127.0.0.1:8000/metrics"
    assert "nvapi-" not in repr(result.facts) + repr(result.process)


def test_nim_server_port_moves_the_metrics_url() -> None:
    result = collect(N1, {"NIM_SERVER_PORT": "8001"})
    assert by_key(result)["serving.port"].provenance.detail == "NIM_SERVER_PORT"
    assert result.process is not None and result.process.metrics_url == "http://127.0.0.1:8001/metrics"


SDK = ["python3", "-m", "nim_llm_sdk.entrypoints.openai.api_server"]


@pytest.mark.parametrize(
    ("profile", "engine"),
    [
        ("vllm-bf16-tp1-pp1", "vllm"),
        ("sglang-fp8-tp2-pp1-lora", "sglang"),
        ("tensorrt_llm-h100-fp8-tp1-throughput", "trtllm"),
    ],
)
def test_a_nim_sdk_server_takes_its_engine_from_the_profile_name(profile: str, engine: str) -> None:
    f = by_key(collect(SDK, {"NIM_MODEL_PROFILE": profile, "NIM_MAX_MODEL_LEN": "8192"}))
    assert f["runtime.engine"].value == engine
    assert f["runtime.engine"].provenance.method == "env"
    assert f["runtime.engine"].provenance.detail.startswith("NIM_MODEL_PROFILE (")
    assert f["runtime.launcher"].value == "nim"
    assert f["runtime.max_model_len"].value == 8192


@pytest.mark.parametrize(
    ("env", "why"),
    [
        (
            {"NIM_MODEL_PROFILE": "07cd4f2bddd7a14ca84bab0a32602889fd0ae0eb76dc2eb0fc32594d065011a4"},
            "is a profile id",
        ),
        ({}, "no NIM_MODEL_PROFILE"),
        ({"NIM_MODEL_PROFILE": "local_build-fp16"}, "names no backend"),
    ],
)
def test_a_nim_whose_backend_cannot_be_told_stays_unknown_and_says_why(env: dict[str, str], why: str) -> None:
    inv = locate(SDK)
    assert inv is not None and inv.spec is NIM_SDK
    result = collect(SDK, env)
    f = by_key(result)
    assert f["runtime.engine"].value == "unknown"
    assert f["runtime.engine"].provenance.method == "derived"
    assert why in f["runtime.engine"].provenance.detail
    assert f["runtime.launcher"].value == "nim"
    assert (
        result.state is SourceState.OK and "NIM backend unknown" in result.message and why in result.message
    )


def test_nim_backend_reads_only_profile_names() -> None:
    assert nim_backend({"NIM_MODEL_PROFILE": "VLLM-BF16-TP4-PP1-LORA"})[0] == "vllm"
    assert (
        nim_backend(
            {"NIM_MODEL_PROFILE": "454ab496734eabc2a40e03076f85a9691a1487a9fd987580a55421aaad2684ce"}
        )[0]
        is None
    )
    assert nim_backend({"NIM_MODEL_PROFILE": "  "})[0] is None


def test_a_snapshot_reader_gets_the_launched_table_from_engine_and_launcher() -> None:
    assert launched_engine("trtllm", "dynamo") is DYNAMO_TRTLLM
    assert launched_engine("vllm", "nim") is NIM_VLLM
    assert launched_engine("vllm", None) is VLLM
    assert launched_engine("unknown", "nim") is GENERIC
    # Dynamo's own spelling links to the key it sets; the plain trtllm-serve table has no such flag.
    assert "runtime.args.kv_block_size" in inputs_for("runtime.block_size", DYNAMO_TRTLLM)
    assert "runtime.args.kv_block_size" not in inputs_for("runtime.block_size", TRTLLM)


def test_a_snapshot_links_a_dynamo_workers_own_spelling_to_the_key_it_sets() -> None:
    """dynamo.trtllm's --kv-block-size sets runtime.block_size; the snapshot's links read the
    launcher's table (launched_engine), so a block-size change is one finding with its flag."""
    from agent.snapshot import Collected, assemble_snapshot
    from agent.sources.base import CollectContext

    argv = [
        "python3", "-m", "dynamo.trtllm", "--model-path", "Qwen/Qwen3-0.6B", "--kv-block-size", "64",
    ]  # fmt: skip
    result = collect(argv)
    snapshot = assemble_snapshot(
        Collected(results={"process": result}), CollectContext(settings=AgentSettings()), 0.0
    )
    block = snapshot.facts["runtime.block_size"]
    assert block.value == 64 and snapshot.facts["runtime.launcher"].value == "dynamo"
    assert "runtime.args.kv_block_size" in block.provenance.inputs
