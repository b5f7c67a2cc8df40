"""TensorRT-LLM (``trtllm-serve``): its command lines, its LLM API options file, its defaults,
rules and metrics, read through the same parser and tables as every engine.

The command lines are NVIDIA's own: ``docs/source/commands/trtllm-serve.rst`` ("trtllm-serve
<model> [--backend pytorch --tp_size <tp> --pp_size <pp> --ep_size <ep> --host <host> --port
<port>]") and ``examples/serve/deepseek_r1_reasoning_parser.sh`` (NVIDIA/TensorRT-LLM at
4e69c14f732a6e6afce4f71616db5b5cd2b10530, published as
nvidia.github.io/TensorRT-LLM/1.3.0rc11/examples/deepseek_r1_reasoning_parser.html), whose
``config.yml`` is reproduced below as data.
"""

from __future__ import annotations

import shlex
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from agent.engines import SGLANG, TRTLLM, VLLM, ParsedCommand, config_paths, detect, parse_args
from agent.engines.effective import derive_effective
from agent.engines.parse import MAX_CONFIG_FILE_CHARS, MAX_CONFIG_NESTING, Setting
from agent.observations import ObservationWindow, extract
from agent.promtext import parse_metrics_text
from agent.sources.runtime_metrics import interpret_families, missing_families
from skewwatch.core.facts import Fact, FactValue, make_fact

RST_SYNOPSIS = (
    "trtllm-serve meta-llama/Llama-3.1-8B-Instruct --backend pytorch --tp_size 2 --pp_size 1 --ep_size 1 "
    "--host 0.0.0.0 --port 8001"
)
# examples/serve/deepseek_r1_reasoning_parser.sh @4e69c14f, its heredoc config.yml and command.
DEEPSEEK_CONFIG = """\
cuda_graph_config:
    enable_padding: true
    max_batch_size: 512
enable_attention_dp: true
kv_cache_config:
    dtype: fp8
    free_gpu_memory_fraction: 0.8
stream_interval: 10
moe_config:
    backend: DEEPGEMM
"""
DEEPSEEK_CMD = (
    "trtllm-serve deepseek-ai/DeepSeek-R1 --host localhost --port 8000 --trust_remote_code "
    "--max_batch_size 1024 --max_num_tokens 8192 --tp_size 8 --ep_size 8 --pp_size 1 "
    "--config ./config.yml --reasoning_parser deepseek-r1"
)


def parse(cmd: str, files: dict[str, str] | None = None, env: dict[str, str] | None = None) -> ParsedCommand:
    return parse_args(TRTLLM, shlex.split(cmd), env, config_files=files)


def canonical(parsed: ParsedCommand) -> dict[str, Setting]:
    return {s.key: s for s in parsed.settings if not s.key.startswith(("runtime.args.", "runtime.env."))}


def values(parsed: ParsedCommand) -> dict[str, FactValue]:
    return {s.key: s.value for s in parsed.settings}


# --- recognising it ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cmd",
    [
        RST_SYNOPSIS,
        "trtllm-serve serve meta-llama/Llama-3.1-8B-Instruct --tp_size 2 --port 8001",
        "python3 -m tensorrt_llm.commands.serve meta-llama/Llama-3.1-8B-Instruct --tp_size 2 --port 8001",
        "/usr/local/bin/trtllm-serve meta-llama/Llama-3.1-8B-Instruct --tensor_parallel_size 2 --port 8001",
        "bash -c 'exec trtllm-serve meta-llama/Llama-3.1-8B-Instruct --tp_size 2 --port ${PORT}'",
    ],
)
def test_every_entry_point_is_trtllm_with_the_model_as_positional(cmd: str) -> None:
    argv = shlex.split(cmd)
    spec = detect(argv, env={"PORT": "8001"})
    assert spec is not None and spec.name == "trtllm"
    got = canonical(parse_args(TRTLLM, argv, {"PORT": "8001"}))
    assert got["model.id"].value == "meta-llama/Llama-3.1-8B-Instruct"
    assert got["model.id"].detail.startswith("positional argument of")
    assert got["runtime.tensor_parallel_size"].value == 2
    assert got["serving.port"].value == 8001


def test_rst_synopsis_flags_land_on_canonical_keys_typed() -> None:
    got = canonical(parse(RST_SYNOPSIS))
    assert {k: got[k].value for k in ("runtime.backend", "runtime.pipeline_parallel_size")} == {
        "runtime.backend": "pytorch",
        "runtime.pipeline_parallel_size": 1,
    }
    assert (got["runtime.expert_parallel_size"].value, got["runtime.expert_parallel_size"].detail) == (
        1,
        "--ep_size",
    )
    assert got["runtime.tensor_parallel_size"].method == "arg"
    assert got["serving.api_key_required"].value is False  # trtllm-serve has no API-key option


def test_click_resolves_no_abbreviations() -> None:
    # --max_batch would be --max_batch_size under argparse; click rejects it, so it means nothing here.
    got = values(parse("trtllm-serve m --max_batch 64"))
    assert "runtime.max_num_seqs" not in got
    assert got["runtime.args.max_batch"] == "64"


def test_free_memory_fraction_spellings_are_one_setting_and_one_args_key() -> None:
    for flag in ("--kv_cache_free_gpu_memory_fraction", "--free_gpu_memory_fraction"):
        got = values(parse(f"trtllm-serve m {flag} 0.55"))
        assert got["runtime.gpu_memory_utilization"] == 0.55
        assert got["runtime.args.kv_cache_free_gpu_memory_fraction"] == "0.55"


# --- the options file -------------------------------------------------------------------------


def test_deepseek_example_reads_the_nested_file_with_provenance() -> None:
    assert config_paths(TRTLLM, shlex.split(DEEPSEEK_CMD)) == ["./config.yml"]
    parsed = parse(DEEPSEEK_CMD, {"./config.yml": DEEPSEEK_CONFIG})
    got = canonical(parsed)
    in_file = "(in --config ./config.yml)"
    assert (got["runtime.kv_cache_dtype"].value, got["runtime.kv_cache_dtype"].detail) == (
        "fp8",
        f"--kv_cache_config.dtype {in_file}",
    )
    assert (got["runtime.gpu_memory_utilization"].value, got["runtime.gpu_memory_utilization"].detail) == (
        0.8,
        f"--kv_cache_config.free_gpu_memory_fraction {in_file}",
    )
    assert got["runtime.enable_attention_dp"].value is True
    # cuda_graph_config.max_batch_size is another option than max_batch_size: the flag's 1024 stands.
    assert (got["runtime.max_num_seqs"].value, got["runtime.max_num_seqs"].detail) == (
        1024,
        "--max_batch_size",
    )
    assert (got["runtime.expert_parallel_size"].value, got["runtime.trust_remote_code"].value) == (8, True)
    assert got["runtime.reasoning_parser"].value == "deepseek-r1"
    raw = values(parsed)
    assert raw["runtime.args.cuda_graph_config.max_batch_size"] == "512"
    assert raw["runtime.args.moe_config.backend"] == "DEEPGEMM"
    assert raw["runtime.args.stream_interval"] == "10"
    assert got["model.id"].value == "deepseek-ai/DeepSeek-R1"
    assert parsed.problems == []


def test_the_files_scalar_wins_over_the_flag_unlike_vllm() -> None:
    cfg = {"/etc/trtllm/extra.yaml": "max_batch_size: 64\nmax_num_tokens: 4096\n"}
    got = canonical(
        parse("trtllm-serve m --max_batch_size 128 --extra_llm_api_options /etc/trtllm/extra.yaml", cfg)
    )
    assert (got["runtime.max_num_seqs"].value, got["runtime.max_num_seqs"].detail) == (
        64,
        "--max_batch_size (in --extra_llm_api_options /etc/trtllm/extra.yaml)",
    )
    assert got["runtime.max_num_batched_tokens"].value == 4096
    # vLLM's and SGLang's --config are read before the command line, which keeps winning.
    for spec, flag in ((VLLM, "--max-num-seqs"), (SGLANG, "--max-running-requests")):
        other = parse_args(
            spec,
            shlex.split(
                f"{spec.entrypoints[0].name} {'serve ' if spec is VLLM else ''}m {flag} 128 --config c.yaml"
            ),
            config_files={"c.yaml": f"{flag[2:]}: 64\n"},
        )
        assert other.value("runtime.max_num_seqs") == 128, spec.name


def test_a_section_in_the_file_replaces_the_command_lines_flags_of_that_section() -> None:
    # TensorRT-LLM merges llm_args | extra: the file's kv_cache_config replaces the one the flag built.
    cfg = {"x.yaml": "kv_cache_config:\n  enable_block_reuse: false\n"}
    parsed = parse("trtllm-serve m --kv_cache_free_gpu_memory_fraction 0.7 --config x.yaml", cfg)
    got = canonical(parsed)
    assert (got["runtime.gpu_memory_utilization"].value, got["runtime.gpu_memory_utilization"].method) == (
        0.9,
        "default",
    )
    assert got["runtime.enable_prefix_caching"].value is False
    assert "runtime.args.kv_cache_free_gpu_memory_fraction" not in values(parsed)
    # A valid launch: said in a note (the process source's message), not a problem (an error).
    [note] = parsed.notes
    assert parsed.problems == []
    assert "--kv_cache_free_gpu_memory_fraction" in note and "kv_cache_config" in note
    assert "--config x.yaml" in note
    # An empty mapping replaces the section too; a file without it leaves the flag alone.
    empty = parse(
        "trtllm-serve m --kv_cache_free_gpu_memory_fraction 0.7 --config x.yaml",
        {"x.yaml": "kv_cache_config: {}\n"},
    )
    assert empty.value("runtime.gpu_memory_utilization") == 0.9
    other = parse(
        "trtllm-serve m --kv_cache_free_gpu_memory_fraction 0.7 --config x.yaml",
        {"x.yaml": "max_batch_size: 8\n"},
    )
    assert (other.value("runtime.gpu_memory_utilization"), other.problems, other.notes) == (0.7, [], [])


def test_lists_in_the_file_never_become_the_model() -> None:
    cfg = {
        "c.yaml": "cuda_graph_config:\n  batch_sizes: [1, 2, 4, 8]\n"
        "speculative_config:\n  decoding_type: MTP\n"
    }
    parsed = parse("trtllm-serve --config c.yaml nvidia/DeepSeek-R1-FP4", cfg)
    got = values(parsed)
    assert got["model.id"] == "nvidia/DeepSeek-R1-FP4"
    assert got["runtime.args.cuda_graph_config.batch_sizes"] == "[1, 2, 4, 8]"
    assert got["runtime.speculative_algorithm"] == "MTP"


def test_file_only_options_dtype_and_quantization() -> None:
    cfg = {"c.yaml": "dtype: bfloat16\nquant_config:\n  quant_algo: FP8\n  kv_cache_quant_algo: FP8\n"}
    got = values(parse("trtllm-serve m --config c.yaml", cfg))
    assert (got["runtime.dtype"], got["runtime.quantization"], got["runtime.kv_cache_quant_algo"]) == (
        "bfloat16",
        "FP8",
        "FP8",
    )


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("max_batch_size: 64\n  bad: 1\n", "c.yaml: line 2: not valid YAML"),
        ("- max_batch_size\n- 64\n", "c.yaml: expected a mapping of flag names to values, got list"),
        ("x" * (MAX_CONFIG_FILE_CHARS + 1), f"c.yaml: over {MAX_CONFIG_FILE_CHARS} characters"),
        (
            "a:\n"
            + "".join("  " * i + "  b:\n" for i in range(MAX_CONFIG_NESTING + 1))
            + "  " * 20
            + "  c: 1\n",
            "nested deeper",
        ),
        ("[" * 100_000, "c.yaml: nested deeper than the YAML reader can follow"),
    ],
)
def test_hostile_files_are_typed_problems_naming_the_file(text: str, says: str) -> None:
    parsed = parse("trtllm-serve m --max_batch_size 32 --config c.yaml", {"c.yaml": text})
    assert any(p.startswith("--config: ") and says in p for p in parsed.problems), parsed.problems
    assert parsed.value("runtime.max_num_seqs") == 32  # the command line still counts


def test_an_unreadable_file_makes_its_settings_unknown_not_wrong() -> None:
    parsed = parse("trtllm-serve m --config /cfg/missing.yaml")
    assert parsed.problems == [
        "--config /cfg/missing.yaml: file not readable by the agent, its settings are unknown"
    ]


# --- defaults and rules -----------------------------------------------------------------------


def facts(**items: tuple[FactValue, str]) -> dict[str, Fact]:
    return {
        k.replace("__", "."): make_fact(k.replace("__", "."), v, "test", m, "given")
        for k, (v, m) in items.items()
    }


def test_defaults_say_they_are_trtllm_defaults() -> None:
    got = canonical(parse("trtllm-serve m"))
    assert {
        k: (got[k].value, got[k].method, got[k].detail)
        for k in ("serving.port", "runtime.gpu_memory_utilization")
    } == {
        "serving.port": (8000, "default", "trtllm default"),
        "runtime.gpu_memory_utilization": (0.9, "default", "trtllm default"),
    }
    assert "runtime.max_model_len" not in got  # unset: deduced from the model (a rule, below)


@pytest.mark.parametrize(
    ("version", "backend"),
    [("1.2.0", "pytorch"), ("1.0.0rc4", "pytorch"), ("0.18.2", "tensorrt"), (None, None)],
)
def test_backend_default_follows_the_release(version: str | None, backend: str | None) -> None:
    items: dict[str, tuple[FactValue, str]] = {"runtime__engine": ("trtllm", "arg")}
    if version is not None:
        items["runtime__version"] = (version, "runtime-reported")
    out = {f.key: f for f in derive_effective(facts(**items))}
    if backend is None:
        assert "runtime.backend" not in out  # no version known: no default claimed
    else:
        assert (out["runtime.backend"].value, out["runtime.backend"].provenance.method) == (
            backend,
            "default",
        )


def test_auto_dtype_and_kv_cache_follow_the_checkpoint() -> None:
    out = {
        f.key: f
        for f in derive_effective(
            facts(
                runtime__engine=("trtllm", "arg"),
                runtime__dtype=("auto", "default"),
                runtime__kv_cache_dtype=("auto", "default"),
                model__config__torch_dtype=("bfloat16", "file"),
                model__config__kv_cache_quantization=("fp8", "file"),
                model__config__max_position_embeddings=(131072, "file"),
                model__config__quantization=("nvfp4", "file"),
            )
        )
    }
    assert out["runtime.dtype"].value == "bfloat16"
    assert out["runtime.kv_cache_dtype"].value == "fp8"  # the checkpoint's FP8 KV cache, not the model dtype
    assert "kv_cache_quant_algo" in out["runtime.kv_cache_dtype"].provenance.detail
    assert out["runtime.max_model_len"].value == 131072
    assert out["runtime.quantization"].value == "nvfp4"


def test_without_a_kv_quant_checkpoint_the_kv_cache_is_the_model_dtype() -> None:
    out = {
        f.key: f.value
        for f in derive_effective(
            facts(
                runtime__engine=("trtllm", "arg"),
                runtime__dtype=("auto", "default"),
                runtime__kv_cache_dtype=("auto", "default"),
                model__config__torch_dtype=("float16", "file"),
            )
        )
    }
    assert out["runtime.kv_cache_dtype"] == "float16"


# --- metrics ------------------------------------------------------------------------------------


def _scrape(registry: CollectorRegistry) -> str:
    return generate_latest(registry).decode()


def _trtllm_registry() -> tuple[CollectorRegistry, dict[str, object]]:
    """The families tensorrt_llm/metrics/collector.py registers (prefixed), with its labels."""
    reg = CollectorRegistry()
    labels = ["model_name", "engine_type"]
    m: dict[str, object] = {
        "success": Counter("trtllm_request_success_total", "", [*labels, "finished_reason"], registry=reg),
        "e2e": Histogram(
            "trtllm_e2e_request_latency_seconds", "", labels, registry=reg, buckets=[0.3, 0.5, 1.0, 2.5]
        ),
        "ttft": Histogram(
            "trtllm_time_to_first_token_seconds", "", labels, registry=reg, buckets=[0.01, 0.05, 0.1]
        ),
        "tpot": Histogram(
            "trtllm_time_per_output_token_seconds", "", labels, registry=reg, buckets=[0.01, 0.025, 0.05]
        ),
        "queue": Histogram("trtllm_request_queue_time_seconds", "", labels, registry=reg, buckets=[0.3, 0.5]),
        "prompt": Counter("trtllm_prompt_tokens_total", "", labels, registry=reg),
        "gen": Counter("trtllm_generation_tokens_total", "", labels, registry=reg),
        "hit": Gauge("trtllm_kv_cache_hit_rate", "", labels, registry=reg),
        "util": Gauge("trtllm_kv_cache_utilization", "", labels, registry=reg),
        "running": Gauge("trtllm_num_requests_running", "", labels, registry=reg),
        "waiting": Gauge("trtllm_num_requests_waiting", "", labels, registry=reg),
        "blocks": Gauge("trtllm_kv_cache_max_blocks", "", labels, registry=reg),
        "tpb": Gauge("trtllm_kv_cache_tokens_per_block", "", labels, registry=reg),
        "mbs": Gauge("trtllm_max_batch_size_static", "", labels, registry=reg),
    }
    return reg, m


def _traffic(m: dict[str, object], requests: int) -> None:
    lab = {"model_name": "deepseek-ai/DeepSeek-R1", "engine_type": "pytorch"}
    for _ in range(requests):
        m["success"].labels(**lab, finished_reason="stop").inc()  # type: ignore[attr-defined]
        m["e2e"].labels(**lab).observe(0.8)  # type: ignore[attr-defined]
        m["ttft"].labels(**lab).observe(0.04)  # type: ignore[attr-defined]
        m["tpot"].labels(**lab).observe(0.02)  # type: ignore[attr-defined]
        m["prompt"].labels(**lab).inc(100)  # type: ignore[attr-defined]
        m["gen"].labels(**lab).inc(20)  # type: ignore[attr-defined]
    m["util"].labels(**lab).set(0.25)  # type: ignore[attr-defined]
    m["running"].labels(**lab).set(3)  # type: ignore[attr-defined]
    m["waiting"].labels(**lab).set(1)  # type: ignore[attr-defined]
    m["blocks"].labels(**lab).set(8192)  # type: ignore[attr-defined]
    m["tpb"].labels(**lab).set(32)  # type: ignore[attr-defined]
    m["mbs"].labels(**lab).set(1024)  # type: ignore[attr-defined]


def test_a_trtllm_page_is_trtllm_with_its_sizing_and_model_name() -> None:
    reg, m = _trtllm_registry()
    _traffic(m, 4)
    result = interpret_families(parse_metrics_text(_scrape(reg)))
    assert result.engine is TRTLLM and result.prefix == "trtllm_"
    got = {f.key: f.value for f in result.facts.facts}
    assert got["runtime.engine"] == "trtllm"
    assert (got["runtime.num_gpu_blocks"], got["runtime.block_size"], got["runtime.max_num_seqs"]) == (
        8192,
        32,
        1024,
    )
    assert got["runtime.served_model_name"] == "deepseek-ai/DeepSeek-R1"


def test_observations_use_vllms_names() -> None:
    reg, m = _trtllm_registry()
    _traffic(m, 2)
    first = parse_metrics_text(_scrape(reg))
    _traffic(m, 10)
    second = parse_metrics_text(_scrape(reg))
    window = ObservationWindow()
    window.update(("e", "p"), extract(first, "trtllm_", TRTLLM.metrics, 0.0), TRTLLM.metrics)
    obs, _ = window.update(("e", "p"), extract(second, "trtllm_", TRTLLM.metrics, 10.0), TRTLLM.metrics)
    got = {o.name: o.value for o in obs}
    assert got["requests_per_s"] == pytest.approx(1.0)  # 10 requests in 10 s
    assert got["prompt_tokens_per_s"] == pytest.approx(100.0)
    assert got["generation_tokens_per_s"] == pytest.approx(20.0)
    assert 0.01 < got["ttft_seconds_p50"] <= 0.05
    assert 0.5 < got["e2e_latency_seconds_p50"] <= 1.0
    assert 0.01 < got["itl_seconds_p50"] <= 0.025
    assert got["kv_cache_usage_ratio"] == pytest.approx(0.25)
    assert (got["requests_running"], got["requests_waiting"]) == (3, 1)
    vllm_names = {o.name for o in VLLM.metrics.observations}
    assert {o.name for o in TRTLLM.metrics.observations} <= vllm_names


def test_expected_families_by_release() -> None:
    reg, m = _trtllm_registry()
    _traffic(m, 1)
    fams = parse_metrics_text(_scrape(reg))
    assert missing_families(TRTLLM, "trtllm_", fams, "1.3.0")[0] == []
    lacking = [f for f in fams if f.name != "trtllm_kv_cache_hit_rate"]
    names, messages, _ = missing_families(TRTLLM, "trtllm_", lacking, "1.3.0")
    assert names == ["trtllm_kv_cache_hit_rate"] and "trtllm 1.3.0" in messages[0]
    # 1.1 had no prefix (Dynamo added it): nothing is claimed missing for it, nor with no version.
    assert missing_families(TRTLLM, "trtllm_", lacking, "1.1.0")[0] == []
    assert missing_families(TRTLLM, "trtllm_", lacking, None)[0] == []


def test_the_process_source_says_a_cancelled_flag_and_stays_ok() -> None:
    """The launch is valid (the engine runs with the file's section): OK, and the message says
    which flag does not hold, so a user who set 0.7 learns the engine runs 0.9."""
    from agent.settings import AgentSettings
    from agent.sources.process import Found, build_result
    from skewwatch.core.facts import SourceState

    argv = shlex.split("trtllm-serve m --kv_cache_free_gpu_memory_fraction 0.7 --config x.yaml")
    result = build_result(
        AgentSettings(),
        found=Found(4242, argv, "--pid"),
        env={},
        cwd=None,
        process_root=None,
        problems=[],
        config_files={"x.yaml": "kv_cache_config:\n  enable_block_reuse: false\n"},
    )
    assert result.state is SourceState.OK, result.message
    assert "'--kv_cache_free_gpu_memory_fraction': not in effect" in result.message
    assert {f.key: f.value for f in result.facts}["runtime.gpu_memory_utilization"] == 0.9


def _unprefixed() -> tuple[CollectorRegistry, dict[str, Any]]:
    """The five request families as 1.1.0rc5's collector names them: without a prefix (S3)."""
    reg = CollectorRegistry()
    labels = ["model_name", "engine_type"]
    m: dict[str, Any] = {
        "success": Counter("request_success_total", "", [*labels, "finished_reason"], registry=reg),
        "e2e": Histogram("e2e_request_latency_seconds", "", labels, registry=reg, buckets=[0.3, 0.5, 1.0]),
        "ttft": Histogram("time_to_first_token_seconds", "", labels, registry=reg, buckets=[0.01, 0.05]),
        "tpot": Histogram("time_per_output_token_seconds", "", labels, registry=reg, buckets=[0.01, 0.025]),
        "queue": Histogram("request_queue_time_seconds", "", labels, registry=reg, buckets=[0.3, 0.5]),
    }
    return reg, m


def _unprefixed_traffic(m: dict[str, Any], requests: int) -> None:
    lab = {"model_name": "Qwen/Qwen3-8B", "engine_type": "pytorch"}
    for _ in range(requests):
        m["success"].labels(**lab, finished_reason="stop").inc()
        m["e2e"].labels(**lab).observe(0.8)
        m["ttft"].labels(**lab).observe(0.04)
        m["tpot"].labels(**lab).observe(0.02)


def test_an_unprefixed_page_is_trtllms_only_when_the_process_says_trtllm() -> None:
    """TensorRT-LLM 1.1 serves its request families without a prefix: the page alone names no
    engine (those names are generic), the process source's trtllm does; vLLM's never reads so."""
    reg, m = _unprefixed()
    _unprefixed_traffic(m, 2)
    fams = parse_metrics_text(_scrape(reg))
    assert interpret_families(fams).engine is None
    assert interpret_families(fams, process_engine=VLLM).engine is None
    result = interpret_families(fams, process_engine=TRTLLM)
    assert (result.engine, result.prefix) == (TRTLLM, "")
    got = {f.key: f for f in result.facts.facts}
    assert got["runtime.engine"].value == "trtllm"
    assert "without a prefix" in got["runtime.engine"].provenance.detail
    assert got["runtime.served_model_name"].value == "Qwen/Qwen3-8B"
    _unprefixed_traffic(m, 10)
    second = parse_metrics_text(_scrape(reg))
    window = ObservationWindow()
    window.update(("e", ""), extract(fams, "", TRTLLM.metrics, 0.0), TRTLLM.metrics)
    obs, _ = window.update(("e", ""), extract(second, "", TRTLLM.metrics, 10.0), TRTLLM.metrics)
    values = {o.name: o.value for o in obs}
    assert values["requests_per_s"] == pytest.approx(1.0)
    assert 0.01 < values["ttft_seconds_p50"] <= 0.05 and 0.01 < values["itl_seconds_p50"] <= 0.025
    # As a 1.1 page nothing is said missing (the prefixed families are expected from 1.3).
    assert missing_families(TRTLLM, "", fams, "1.1.0")[0] == []


async def test_the_source_reads_an_unprefixed_page_of_the_trtllm_process_it_was_given() -> None:
    """Over real HTTP: the process source's trtllm reaches the page's reading, so a 1.1 server's
    request families give observations from the second scrape on."""
    from aiohttp import web

    from agent.settings import AgentSettings
    from agent.sources.base import CollectContext, ProcessInfo
    from agent.sources.runtime_metrics import RuntimeMetricsSource

    reg, m = _unprefixed()

    async def page(_: web.Request) -> web.Response:
        _unprefixed_traffic(m, 5)
        return web.Response(text=_scrape(reg), content_type="text/plain")

    app = web.Application()
    app.router.add_get("/prometheus/metrics", page)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/prometheus/metrics"
        process = ProcessInfo(pid=7, engine="trtllm", argv=(), env={}, metrics_url=url)
        ctx = CollectContext(settings=AgentSettings(source_timeout_s=10.0), process=process)
        source = RuntimeMetricsSource()
        first = await source.collect(ctx)
        second = await source.collect(ctx)
    finally:
        await runner.cleanup()
    assert {f.key: f.value for f in first.facts}["runtime.engine"] == "trtllm"
    assert "requests_per_s" in {o.name for o in second.observations}, second.message


def test_the_servers_undefined_model_name_label_is_no_served_model_name() -> None:
    """openai_server.py labels every family model_name="undefined": that names no model."""
    page = (
        "# TYPE trtllm_request_success_total counter\n"
        'trtllm_request_success_total{engine_type="undefined",finished_reason="stop",'
        'model_name="undefined"} 3.0\n'
    )
    result = interpret_families(parse_metrics_text(page))
    assert result.engine is TRTLLM
    assert "runtime.served_model_name" not in {f.key for f in result.facts.facts}
