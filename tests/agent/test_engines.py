"""The engine tables and the pure command-line parser, on literal command lines and real manifests."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from agent.engines import (
    ENGINES,
    GENERIC,
    SGLANG,
    TGI,
    TRTLLM,
    VLLM,
    ParsedCommand,
    config_paths,
    detect,
    expand_shell_vars,
    locate,
    parse_args,
    parse_size,
    redact_with,
    shell_commands,
)
from skewwatch.redact import REDACTED_PREFIX, Redactor
from tests.support.fake_processes import SECRET_FROM_REF, container_command

REDACT = redact_with(Redactor("test-salt"))
SK = "sk-ThisIsARawApiKey0123456789"
HF = "hf_ThisIsARawHubToken0123456789abc"


def parse(cmd: str, env: dict[str, str] | None = None) -> ParsedCommand:
    argv = shlex.split(cmd)
    spec = detect(argv) or GENERIC
    return parse_args(spec, argv, env, REDACT)


def facts(parsed: ParsedCommand) -> dict[str, object]:
    return {s.key: s.value for s in parsed.settings}


# --- detection --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cmd", "engine"),
    [
        ("vllm serve meta-llama/Llama-3.1-8B", "vllm"),
        ("/usr/local/bin/vllm serve /models/llama", "vllm"),
        ("/usr/bin/python3 /usr/local/bin/vllm serve /models/llama --dtype bf16", "vllm"),
        ("python3 -m vllm.entrypoints.openai.api_server --model x/y", "vllm"),
        ("python -u -X faulthandler -m vllm.entrypoints.openai.api_server", "vllm"),
        ("python3.12 -m vllm.entrypoints.cli.main serve x/y", "vllm"),
        ("python3 -m sglang.launch_server --model-path /m", "sglang"),
        ("text-generation-launcher --model-id bigscience/bloom-560m", "tgi"),
        ("/usr/local/bin/text-generation-launcher", "tgi"),
        ("env CUDA_VISIBLE_DEVICES=0 exec nohup vllm serve x/y", "vllm"),
        ("tini -s -- python3 -m sglang.launch_server --model-path /m", "sglang"),
        ("bash -c 'set -e; pip list; exec python -m vllm.entrypoints.openai.api_server --model x/y'", "vllm"),
    ],
)
def test_detect_recognises_engine_entrypoints(cmd: str, engine: str) -> None:
    spec = detect(shlex.split(cmd))
    assert spec is not None and spec.name == engine


@pytest.mark.parametrize(
    "cmd",
    [
        "vllm bench serve --model x/y",  # a client, not a server
        "python -c 'import vllm'",
        "sleep 30",
        "text-generation-server serve bigscience/bloom-560m",  # a TGI shard, child of the launcher
        "skewwatch agent --match vllm",
        "",
    ],
)
def test_detect_ignores_processes_that_are_no_engine_server(cmd: str) -> None:
    assert detect(shlex.split(cmd)) is None


def test_engine_found_inside_a_shell_script_is_marked_as_such() -> None:
    inv = locate(["/bin/sh", "-c", "echo starting && vllm serve x/y --port 9000"])
    assert inv is not None and inv.via_shell and inv.args == ("x/y", "--port", "9000")


def test_shell_commands_split_at_separators_and_join_continuations() -> None:
    script = (
        "set -x\napt-get update; pip install vllm && \\\n"
        "  python -m vllm.entrypoints.openai.api_server \\\n  --port 1 # comment"
    )
    assert shell_commands(script) == [
        ["set", "-x"],
        ["apt-get", "update"],
        ["pip", "install", "vllm"],
        ["python", "-m", "vllm.entrypoints.openai.api_server", "--port", "1"],
    ]


def test_every_engine_table_covers_the_canonical_design_keys() -> None:
    required = {
        "runtime.dtype",
        "runtime.quantization",
        "runtime.kv_cache_dtype",
        "runtime.max_model_len",
        "runtime.max_num_seqs",
        "runtime.max_num_batched_tokens",
        "runtime.tensor_parallel_size",
        "runtime.gpu_memory_utilization",
        "runtime.trust_remote_code",
        "runtime.served_model_name",
        "model",
        "model.revision",
        "serving.port",
    }
    for spec in (VLLM, SGLANG):
        keys = {s.key for s in spec.settings}
        assert (
            required
            | {
                "runtime.pipeline_parallel_size",
                "runtime.data_parallel_size",
                "runtime.enforce_eager",
                "runtime.enable_prefix_caching",
                "runtime.block_size",
            }
            <= keys
        ), spec.name
    assert required <= {s.key for s in TGI.settings}
    # TensorRT-LLM: the same meanings (max_batch_size, max_num_tokens, max_seq_len, the share of
    # FREE memory), pipeline and expert parallelism, and the options only its file sets.
    assert required | {
        "runtime.pipeline_parallel_size",
        "runtime.expert_parallel_size",
        "runtime.enable_prefix_caching",
        "runtime.enable_chunked_prefill",
        "runtime.block_size",
        "runtime.backend",
    } <= {s.key for s in TRTLLM.settings}
    for spec in ENGINES:
        # TensorRT-LLM serves Prometheus text under /prometheus/metrics (its /metrics is JSON).
        assert spec.metrics_path == ("/prometheus/metrics" if spec.name == "trtllm" else "/metrics")


# --- flags --------------------------------------------------------------------------------------


def test_vllm_serve_positional_model_and_typed_canonical_flags() -> None:
    p = parse(
        "vllm serve meta-llama/Llama-3.1-8B-Instruct --dtype half --max-model-len 8192 "
        "--max-num-seqs 256 --tensor-parallel-size 2 --gpu-memory-utilization 0.85 --enforce-eager "
        "--block-size 16 --kv-cache-dtype fp8 --quantization fp8 --max-num-batched-tokens 4096"
    )
    f = facts(p)
    assert f["model.id"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert f["runtime.args.model"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert f["runtime.dtype"] == "float16"
    assert f["runtime.args.dtype"] == "half"  # args stay raw, canonical keys are normalised
    assert f["runtime.max_model_len"] == 8192
    assert f["runtime.max_num_seqs"] == 256
    assert f["runtime.tensor_parallel_size"] == 2
    assert f["runtime.gpu_memory_utilization"] == 0.85
    assert f["runtime.enforce_eager"] is True
    assert f["runtime.block_size"] == 16
    assert f["runtime.kv_cache_dtype"] == "fp8"
    assert f["runtime.quantization"] == "fp8"
    assert f["runtime.max_num_batched_tokens"] == 4096
    assert p.problems == []
    dtype = p.get("runtime.dtype")
    assert dtype is not None and (dtype.method, dtype.detail) == ("arg", "--dtype")


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("half", "float16"),
        ("fp16", "float16"),
        ("float16", "float16"),
        ("bf16", "bfloat16"),
        ("BFloat16", "bfloat16"),
        ("float", "float32"),
        ("fp32", "float32"),
        ("auto", "auto"),
    ],
)
def test_dtype_spellings_normalise_to_torch_names(given: str, canonical: str) -> None:
    assert facts(parse(f"vllm serve m --dtype {given}"))["runtime.dtype"] == canonical


def test_equals_form_and_underscore_spelling_mean_the_same_flag() -> None:
    a = facts(parse("vllm serve m --max-model-len 4096 --tensor-parallel-size 2"))
    b = facts(parse("vllm serve m --max_model_len=4096 --tensor_parallel_size=2"))
    for key in ("runtime.max_model_len", "runtime.tensor_parallel_size"):
        assert a[key] == b[key]
    assert a["runtime.args.max_model_len"] == b["runtime.args.max_model_len"] == "4096"


def test_short_and_long_spellings_report_under_one_args_key() -> None:
    f = facts(parse("vllm serve m -tp 4 -q awq"))
    assert f["runtime.args.tensor_parallel_size"] == "4"
    assert f["runtime.tensor_parallel_size"] == 4
    assert f["runtime.quantization"] == "awq"


def test_unique_prefix_of_a_flag_is_read_as_the_flag_for_argparse_engines() -> None:
    f = facts(parse("vllm serve m --max-num-seq 1024"))
    assert f["runtime.max_num_seqs"] == 1024
    assert "runtime.args.max_num_seqs" in f


def test_tgi_does_not_expand_abbreviations() -> None:
    f = facts(parse("text-generation-launcher --max-total 10"))
    assert "runtime.max_model_len" not in f
    assert f["runtime.args.max_total"] == "10"


def test_no_form_of_a_boolean_flag_turns_it_off() -> None:
    f = facts(parse("vllm serve m --no-enable-prefix-caching --enable-chunked-prefill"))
    assert f["runtime.enable_prefix_caching"] is False
    assert f["runtime.args.enable_prefix_caching"] is False
    assert f["runtime.enable_chunked_prefill"] is True


def test_boolean_flag_with_explicit_value_is_typed() -> None:
    f = facts(parse("vllm serve m --trust-remote-code=false --enforce-eager=True"))
    assert f["runtime.trust_remote_code"] is False
    assert f["runtime.enforce_eager"] is True


def test_switch_does_not_swallow_the_following_positional_model() -> None:
    f = facts(
        parse("python3 -m sglang.launch_server --enable-metrics --model-path /m --log-level-http warning")
    )
    assert f["runtime.args.enable_metrics"] is True
    assert f["model.path"] == "/m"
    assert f["runtime.args.log_level_http"] == "warning"


def test_unknown_flag_followed_by_a_flag_is_a_switch_and_with_a_value_keeps_it() -> None:
    f = facts(parse("vllm serve m --enable-foo --compilation-config 3 --bar-ratio -0.5"))
    assert f["runtime.args.enable_foo"] is True
    assert f["runtime.args.compilation_config"] == "3"
    assert f["runtime.args.bar_ratio"] == "-0.5"  # a negative number is a value, not a flag


def test_served_model_name_takes_several_names() -> None:
    f = facts(parse("vllm serve m --served-model-name llama chat-llama --port 9000"))
    assert f["runtime.served_model_name"] == ["llama", "chat-llama"]
    assert f["serving.port"] == 9000


def test_last_occurrence_of_a_flag_wins() -> None:
    assert (
        facts(parse("vllm serve m --max-model-len 1024 --max-model-len 2048"))["runtime.max_model_len"]
        == 2048
    )


@pytest.mark.parametrize(
    ("text", "value"),
    [("4096", 4096), ("32k", 32000), ("32K", 32768), ("1m", 1_000_000), ("1M", 1 << 20), ("25.6k", 25600)],
)
def test_human_readable_sizes_follow_vllm_decimal_and_binary_suffixes(text: str, value: int) -> None:
    assert parse_size(text) == value


def test_malformed_value_is_a_problem_naming_the_flag_and_no_default_stands_in() -> None:
    p = parse("vllm serve m --port ${PORT} --max-model-len lots")
    assert any(pr.startswith("--port:") for pr in p.problems)
    assert any(pr.startswith("--max-model-len:") and "'lots'" in pr for pr in p.problems)
    assert p.get("serving.port") is None  # not the 8000 default: the flag was set, to something unreadable
    assert p.value("runtime.args.port") == "${PORT}"


def test_defaults_are_reported_with_default_provenance() -> None:
    p = parse("vllm serve m")
    port = p.get("serving.port")
    assert port is not None and (port.value, port.method) == (8000, "default")
    assert p.value("runtime.tensor_parallel_size") == 1
    sgl = parse("python -m sglang.launch_server --model-path /m")
    assert sgl.value("serving.port") == 30000


def test_sglang_flags_map_onto_canonical_meanings() -> None:
    f = facts(
        parse(
            "python -m sglang.launch_server --model-path Qwen/Qwen2-7B --context-length 8192 "
            "--max-running-requests 64 --tp-size 2 --mem-fraction-static 0.8 --disable-radix-cache "
            "--disable-cuda-graph --page-size 32 --dtype bfloat16"
        )
    )
    assert f["model.id"] == "Qwen/Qwen2-7B"
    assert f["runtime.max_model_len"] == 8192
    assert f["runtime.max_num_seqs"] == 64
    assert f["runtime.tensor_parallel_size"] == 2
    assert f["runtime.gpu_memory_utilization"] == 0.8
    assert f["runtime.enable_prefix_caching"] is False  # --disable-radix-cache inverts
    assert f["runtime.enforce_eager"] is True
    assert f["runtime.block_size"] == 32


# --- env ----------------------------------------------------------------------------------------


def test_tgi_is_configured_by_env_alone() -> None:
    env = {
        "MODEL_ID": "mistralai/Mistral-7B-Instruct-v0.3",
        "DTYPE": "bfloat16",
        "QUANTIZE": "awq",
        "NUM_SHARD": "2",
        "MAX_TOTAL_TOKENS": "8192",
        "TRUST_REMOTE_CODE": "true",
        "PORT": "8080",
        "HOSTNAME": "tgi-7d9f8b6c5-x2x9z",
    }
    p = parse("text-generation-launcher", env)
    f = facts(p)
    assert f["model.id"] == "mistralai/Mistral-7B-Instruct-v0.3"
    assert f["runtime.dtype"] == "bfloat16"
    assert f["runtime.quantization"] == "awq"
    assert f["runtime.tensor_parallel_size"] == 2
    assert f["runtime.max_model_len"] == 8192
    assert f["runtime.trust_remote_code"] is True
    assert f["serving.port"] == 8080
    num_shard = p.get("runtime.tensor_parallel_size")
    assert num_shard is not None and (num_shard.method, num_shard.detail) == ("env", "NUM_SHARD")
    assert f["runtime.env.MODEL_ID"] == "mistralai/Mistral-7B-Instruct-v0.3"
    assert "runtime.env.HOSTNAME" not in f  # Kubernetes sets it to the pod name: not configuration


def test_tgi_flag_beats_its_env_variable() -> None:
    p = parse("text-generation-launcher --max-total-tokens 4096", {"MAX_TOTAL_TOKENS": "8192"})
    s = p.get("runtime.max_model_len")
    assert s is not None and (s.value, s.method, s.detail) == (4096, "arg", "--max-total-tokens")


def test_env_with_engine_prefixes_is_reported_and_secrets_redacted() -> None:
    env = {"VLLM_USE_V1": "1", "HF_TOKEN": HF, "CUDA_VISIBLE_DEVICES": "0,1", "HOME": "/root", "DB_URL": SK}
    f = facts(parse("vllm serve m", env))
    assert f["runtime.env.VLLM_USE_V1"] == "1"
    assert f["runtime.env.CUDA_VISIBLE_DEVICES"] == "0,1"
    assert str(f["runtime.env.HF_TOKEN"]).startswith(REDACTED_PREFIX)
    assert "runtime.env.HOME" not in f and "runtime.env.DB_URL" not in f
    assert f["runtime.use_v1"] is True


def test_api_key_is_redacted_and_marks_auth_required() -> None:
    p = parse(f"vllm serve m --api-key {SK}")
    assert str(p.value("runtime.args.api_key")).startswith(REDACTED_PREFIX)
    assert p.value("serving.api_key_required") is True
    assert SK not in repr(p.settings)


def test_api_key_from_env_marks_auth_required_and_absence_says_not() -> None:
    assert parse("vllm serve m", {"VLLM_API_KEY": SK}).value("serving.api_key_required") is True
    s = parse("vllm serve m").get("serving.api_key_required")
    assert s is not None and s.value is False and s.method == "derived"


def test_secret_shaped_value_under_an_innocent_flag_is_redacted() -> None:
    p = parse(f"vllm serve m --hf-overrides token={HF}")
    assert HF not in repr(p.settings)


def test_model_path_or_hub_id_is_told_apart_by_shape() -> None:
    assert "model.path" in facts(parse("vllm serve /mnt/models"))
    assert "model.path" in facts(parse("vllm serve ./llama"))
    assert "model.path" in facts(parse("vllm serve s3://bucket/llama"))
    assert "model.id" in facts(parse("vllm serve gpt2"))


def test_unknown_engine_reports_flags_generically() -> None:
    argv = ["/opt/server", "--listen", "0.0.0.0:9000", "--verbose"]
    p = parse_args(GENERIC, argv, {}, REDACT)
    f = facts(p)
    assert f["runtime.args.listen"] == "0.0.0.0:9000"
    assert f["runtime.args.verbose"] is True


def test_hostile_flag_names_become_problems_not_bad_keys() -> None:
    p = parse_args(VLLM, ["vllm", "serve", "m", "--bad\tname", "x", "--\x01"], {}, REDACT)
    assert len(p.problems) == 2
    assert all(" " not in s.key and "\t" not in s.key for s in p.settings)


def test_default_redaction_applies_when_the_caller_gives_none() -> None:
    p = parse_args(VLLM, ["vllm", "serve", "m", "--api-key", SK], {"HF_TOKEN": HF})
    assert SK not in repr(p.settings) and HF not in repr(p.settings)


# --- real manifests -----------------------------------------------------------------------------


def test_production_stack_vllm_deployment(real_fixtures: Path) -> None:
    argv, env = container_command(real_fixtures / "manifests" / "production-stack__vllm-gpu-deployment.yaml")
    spec = detect(argv)
    assert spec is VLLM
    p = parse_args(spec, argv, env, REDACT)
    f = facts(p)
    assert f["model.id"] == "meta-llama/Llama-3.2-1B-Instruct"
    assert f["runtime.tensor_parallel_size"] == 1
    assert f["runtime.max_num_seqs"] == 1024  # spelled --max-num-seq: an argparse prefix
    assert f["serving.port"] == 8000
    assert f["runtime.enable_lora"] is True
    assert f["runtime.max_loras"] == 2
    assert f["runtime.args.compilation_config"] == "3"
    assert f["runtime.env.VLLM_USE_V1"] == "1"
    assert f["runtime.use_v1"] is True
    assert str(f["runtime.env.HUGGING_FACE_HUB_TOKEN"]).startswith(REDACTED_PREFIX)
    assert SECRET_FROM_REF not in repr(p.settings)
    assert p.problems == []


def test_aibrix_sglang_deployment(real_fixtures: Path) -> None:
    path = real_fixtures / "manifests" / "aibrix__sglang-deepseek-r1-distill-llama-8b-deployment.yaml"
    argv, env = container_command(path)
    spec = detect(argv)
    assert spec is SGLANG
    p = parse_args(spec, argv, env, REDACT)
    f = facts(p)
    assert f["model.path"] == "/root/models/DeepSeek-R1-Distill-Llama-8B"
    assert f["runtime.served_model_name"] == "DeepSeek-R1-Distill-Llama-8B"
    assert f["serving.port"] == 8000
    assert f["runtime.attention_backend"] == "flashinfer"
    assert f["runtime.args.enable_metrics"] is True
    assert f["runtime.args.log_level_http"] == "warning"
    assert p.host == "0.0.0.0"
    assert p.problems == []


def test_opea_tgi_deployment_configured_only_by_env(real_fixtures: Path) -> None:
    # The container sets no command: the image's entrypoint, text-generation-launcher, runs.
    argv, env = container_command(
        real_fixtures / "manifests" / "opea-genaiinfra__tgi-nv.yaml",
        image_entrypoint=["text-generation-launcher"],
    )
    assert argv == ["text-generation-launcher"]
    spec = detect(argv)
    assert spec is TGI
    p = parse_args(spec, argv, env, REDACT)
    f = facts(p)
    assert f["model.id"] == "Intel/neural-chat-7b-v3-3"
    assert f["serving.port"] == 2080
    port = p.get("serving.port")
    assert port is not None and port.method == "env" and port.detail == "PORT"
    assert str(f["runtime.env.HF_TOKEN"]).startswith(REDACTED_PREFIX)
    assert f["runtime.env.HF_HOME"] == "/tmp/.cache/huggingface"
    assert f["serving.api_key_required"] is False
    assert "insert-your-huggingface-token-here" not in repr(p.settings)


def test_kserve_vllm_runtime_uses_equals_form_flags(real_fixtures: Path) -> None:
    argv, env = container_command(
        real_fixtures / "manifests" / "kserve__clusterservingruntime-vllmserver.yaml"
    )
    spec = detect(argv)
    assert spec is VLLM
    f = facts(parse_args(spec, argv, env, REDACT))
    assert f["model.path"] == "/mnt/models"
    assert f["serving.port"] == 8080
    assert f["runtime.served_model_name"] == "{{.Name}}"
    assert f["runtime.env.VLLM_WORKER_MULTIPROC_METHOD"] == "spawn"


def test_vllm_started_from_a_bash_script_in_a_manifest(real_fixtures: Path) -> None:
    argv, env = container_command(
        real_fixtures / "manifests" / "production-stack__vllm-disagg-prefill-deploy.yaml"
    )
    inv = locate(argv)
    assert inv is not None and inv.spec is VLLM and inv.via_shell
    p = parse_args(VLLM, argv, env, REDACT)
    # The shell expanded ${MODEL_ID}, ${PORT} and ${MAX_SEQ_LEN} from the container's env.
    assert p.value("model.path") == "/var/mdl/YOUR-MODEL-PATH"
    assert p.value("serving.port") == 8000
    assert p.value("runtime.max_model_len") == 512
    assert p.value("runtime.served_model_name") == "YOUR-MODEL-NAME"
    assert p.problems == []


def test_shell_variable_missing_from_the_env_stays_literal_and_its_flag_is_unknown() -> None:
    p = parse_args(
        VLLM, ["bash", "-c", "vllm serve m --port ${PORT} --max-model-len ${LEN:-4096}"], {}, REDACT
    )
    assert p.value("runtime.args.port") == "${PORT}"
    assert any(pr.startswith("--port:") for pr in p.problems)
    assert p.get("serving.port") is None  # not the default: the flag was given, unreadably
    assert p.value("runtime.max_model_len") == 4096  # ${VAR:-default}


def test_secret_in_equals_form_and_secret_named_flags_are_redacted() -> None:
    p = parse(f"vllm serve m --api-key={SK} --hf-token {HF} --ssl-keyfile /certs/key.pem")
    text = repr(p.settings)
    assert SK not in text and HF not in text
    assert p.value("serving.api_key_required") is True
    assert p.value("runtime.args.ssl_keyfile") == "/certs/key.pem"  # a path to a key is not the key


# --- --config, args from env, eval and arithmetic in scripts ----------------------------------------


def test_config_file_settings_apply_and_the_command_line_wins() -> None:
    cfg = (
        "max-model-len: 4096\nmax_num_seqs: 64\nenforce-eager: true\n"
        "enable-prefix-caching: false\ndtype: bf16\n"
    )
    argv = ["vllm", "serve", "m", "--config", "/etc/vllm/cfg.yaml", "--max-model-len", "8192"]
    p = parse_args(VLLM, argv, {}, REDACT, {"/etc/vllm/cfg.yaml": cfg})
    assert p.value("runtime.max_model_len") == 8192
    assert p.value("runtime.max_num_seqs") == 64
    assert p.value("runtime.enforce_eager") is True
    assert p.value("runtime.enable_prefix_caching") is False
    s = p.get("runtime.dtype")
    assert s is not None and (s.value, s.detail) == ("bfloat16", "--dtype (in --config /etc/vllm/cfg.yaml)")


def test_config_file_the_agent_cannot_read_makes_its_settings_unknown_not_default() -> None:
    p = parse_args(VLLM, ["vllm", "serve", "m", "--config=/etc/cfg.yaml"], {}, REDACT, {})
    assert any("/etc/cfg.yaml" in pr and "not readable" in pr for pr in p.problems)


def test_malformed_config_file_is_a_problem_naming_file_and_line() -> None:
    p = parse_args(VLLM, ["vllm", "serve", "m", "--config", "c.yaml"], {}, REDACT, {"c.yaml": "a: [1,\n"})
    assert any("c.yaml" in pr and "line" in pr for pr in p.problems)


def test_config_paths_lists_the_files_to_read() -> None:
    assert config_paths(VLLM, ["vllm", "serve", "m", "--config", "a.yaml"]) == ["a.yaml"]
    assert config_paths(TGI, ["text-generation-launcher", "--config", "a.yaml"]) == []


def test_additional_args_env_read_by_the_launcher_itself_are_env_settings() -> None:
    env = {"VLLM_ADDITIONAL_ARGS": "--max-model-len 8192 --enforce-eager"}
    p = parse_args(VLLM, ["vllm", "serve", "m"], env, REDACT)
    s = p.get("runtime.max_model_len")
    assert s is not None and (s.value, s.method, s.detail) == (
        8192,
        "env",
        "--max-model-len ($VLLM_ADDITIONAL_ARGS)",
    )


def test_eval_assignments_and_arithmetic_in_a_launch_script_are_followed() -> None:
    script = 'N=4\neval "vllm serve m --tensor-parallel-size $N --data-parallel-size $(( 8 * 2 ))"'
    p = parse_args(VLLM, ["/bin/sh", "-c", script], {}, REDACT)
    assert p.value("runtime.tensor_parallel_size") == 4
    assert p.value("runtime.data_parallel_size") == 16
    assert expand_shell_vars("$(( __import__ ))", {}) == "$(( __import__ ))"  # only integer arithmetic
