"""vLLM as data: entry points, flags, environment, defaults, ``auto`` rules and metric names.

Flags as ``vllm serve --help`` spells them (vLLM 0.6 to 0.11); argparse there treats ``_`` and ``-``
alike and accepts unique prefixes (``--max-num-seq`` in production-stack's manifests), and
``--config FILE`` reads more flags from YAML. The OpenAI server's ``/metrics`` is on the API port,
with V0 and V1 engine names (V1 renamed ``gpu_cache_usage_perc`` to ``kv_cache_usage_perc`` and
``time_per_output_token_seconds`` to ``inter_token_latency_seconds``); under Ray Serve every name
carries ``ray_vllm:`` instead of ``vllm:``.
"""

from __future__ import annotations

from agent.engines.base import (
    COMMON_ENV_PREFIXES,
    KV_CACHE_INPUTS,
    MODEL,
    Derivation,
    EngineSpec,
    Entrypoint,
    ExpectedFamily,
    InfoEndpoint,
    InfoMetric,
    MetricsSpec,
    ObservationSpec,
    SettingSpec,
    ValueType,
    VersionedDefault,
    checkpoint_derivations,
)

# vllm:cache_config_info labels, decided per label against vLLM 0.32.0's own page (the real CPU
# build, tests/e2e/test_real_vllm*.py; the table is in docs/agent-facts.md). Canonical facts here; every
# other label goes under runtime.cache_config.<label>, as configuration. Per-run sizes (what the
# profiling run left for the KV cache, restated in bytes, tokens and concurrent requests) and
# bookkeeping labels are stored but never fingerprinted (skewwatch.core.fingerprint): on a GPU they
# move by a few MB between restarts with the same arguments; num_gpu_blocks, their one coarse
# summary, stays fingerprinted as the KV cache's consequence of its inputs.
CACHE_CONFIG_LABELS: dict[str, tuple[str, ValueType]] = {
    "block_size": ("runtime.block_size", "int"),
    # "auto" included: agent.engines.effective resolves it to the model dtype.
    "cache_dtype": ("runtime.kv_cache_dtype", "str"),
    "gpu_memory_utilization": ("runtime.gpu_memory_utilization", "float"),
    "num_gpu_blocks": ("runtime.num_gpu_blocks", "int"),
    "enable_prefix_caching": ("runtime.enable_prefix_caching", "bool"),
    # per-run sizes (0.32): stored, not fingerprinted
    "kv_cache_memory_bytes": ("runtime.kv_cache_memory_bytes", "int"),
    "kv_cache_size_tokens": ("runtime.kv_cache_tokens", "int"),
    "kv_cache_max_concurrency": ("runtime.kv_cache_max_concurrency", "float"),
}

# --dtype auto in vLLM: vllm/config/model.py ``_get_and_verify_dtype``. Before 0.9.1 a float32
# checkpoint was served in float16; since (vLLM PR #18751, "Rework dtype resolution") in the
# platform's first supported dtype: bfloat16 on x86 and Arm CPUs and on GPUs of compute
# capability 8.0 and up, float16 below (where bfloat16 checkpoints are downcast to float16 too).
# Checked against the real 0.32.0 CPU build: a float32 checkpoint runs as torch.bfloat16.
_AUTO = "--dtype auto"
_TO_FLOAT16 = {"float32": "float16", "float": "float16", "bfloat16": "float16"}
VLLM_AUTO_DTYPE: tuple[Derivation, ...] = (
    Derivation(
        "runtime.dtype", "model.config.torch_dtype", f"{_AUTO} (vLLM < 0.9.1): the checkpoint dtype, "
        "float32 served as float16", mapping={"float32": "float16", "float": "float16"}, type="dtype",
        until="0.9.1",
    ),
    Derivation(
        "runtime.dtype", "model.config.torch_dtype", f"{_AUTO} on a GPU without bfloat16 (compute "
        "capability < 8.0): float16", mapping=_TO_FLOAT16, type="dtype", since="0.9.1",
        only_if=("hardware.gpu.compute_capability", "<", 8.0),
    ),
    Derivation(
        "runtime.dtype", "model.config.torch_dtype", f"{_AUTO}: the checkpoint dtype, float32 served in "
        "the platform's first dtype, bfloat16", mapping={"float32": "bfloat16", "float": "bfloat16"},
        type="dtype", since="0.9.1",
    ),
)  # fmt: skip

# Defaults that changed between releases; outside the ranges known here none is reported.
_CACHE_PY = "vllm/config/cache.py, 0.32.0"
VLLM_VERSIONED_DEFAULTS: tuple[VersionedDefault, ...] = (
    VersionedDefault("runtime.gpu_memory_utilization", 0.9, until="0.12.0", source="engine args to 0.11"),
    VersionedDefault("runtime.gpu_memory_utilization", 0.92, since="0.32.0", source=_CACHE_PY),
    VersionedDefault("runtime.enable_prefix_caching", True, since="0.32.0", source=_CACHE_PY),
    VersionedDefault("runtime.enable_chunked_prefill", True, since="0.32.0", source="0.32.0 start-up config"),
)

# The families a scrape of each release holds (``runtime.metrics.missing``), as the engine spells
# them after its prefix. vLLM's policy (docs.vllm.ai usage/metrics, "deprecation policy"): a
# family deprecated in X.Y is hidden in X.Y+1 (``--show-hidden-metrics-for-version=X.Y`` shows it
# again) and removed in X.Y+2; a row's ``until`` is the release that hides it. Two engines share
# releases 0.8 to 0.10 (V1 the default since 0.8.0, V0 removed in 0.11.0), so a family only one
# engine exports is expected only where that engine is the only one: V0-only families before
# 0.8.0, V1-only families from 0.11.0. Rows without a range are exported by every release, V0 and
# V1 alike (in the V0 captures of DataDog integrations-core vllm/tests/fixtures @ e99474c and the
# real 0.32.0 CPU build of tests/e2e alike); they are the only ones checked with no version known.
_EVERY = "V0 capture (DataDog integrations-core vllm fixture @ e99474c) and the V1 0.32.0 build"
_PR18354 = (
    "vllm-project/vllm PR #18354 (gpu_-prefixed names deprecated in 0.10), hidden in 0.11, "
    "removed in PR #29330"
)
_PR24110 = "vllm-project/vllm PR #24110 (deprecated in 0.11), hidden in 0.12 by PR #29330"
_PR14136 = "vllm-project/vllm PR #14136 (V0 KV-offload metrics deprecated in 0.8), hidden by PR #15458"
VLLM_EXPECTED: tuple[ExpectedFamily, ...] = (
    ExpectedFamily("cache_config_info", source=_EVERY),
    ExpectedFamily("num_requests_running", source=_EVERY),
    ExpectedFamily("num_requests_waiting", source=_EVERY),
    ExpectedFamily("prompt_tokens_total", source=_EVERY),
    ExpectedFamily("generation_tokens_total", source=_EVERY),
    ExpectedFamily("request_success_total", source=_EVERY),
    ExpectedFamily("num_preemptions_total", source=_EVERY),
    ExpectedFamily("time_to_first_token_seconds", source=_EVERY),
    ExpectedFamily("e2e_request_latency_seconds", source=_EVERY),
    # Renamed: the old name is expected until it is hidden, the new one once only V1 exists.
    ExpectedFamily(
        "gpu_cache_usage_perc", until="0.11.0", replaced_by="kv_cache_usage_perc", source=_PR18354
    ),
    ExpectedFamily("kv_cache_usage_perc", since="0.11.0", source=_PR18354),
    ExpectedFamily("prefix_cache_queries_total", since="0.11.0", source=_PR18354),
    ExpectedFamily("prefix_cache_hits_total", since="0.11.0", source=_PR18354),
    ExpectedFamily(
        "time_per_output_token_seconds",
        until="0.12.0",
        replaced_by="inter_token_latency_seconds",
        source=_PR24110,
    ),
    ExpectedFamily("inter_token_latency_seconds", since="0.11.0", source=_PR24110),
    # V0 only (KV-cache swapping to CPU): the default engine's until V1 became it in 0.8.0.
    ExpectedFamily("num_requests_swapped", until="0.8.0", source=_PR14136),
    ExpectedFamily("cpu_cache_usage_perc", until="0.8.0", source=_PR14136),
)

# /server_info: served only with VLLM_SERVER_DEV_MODE=1 (added in 0.9 by vllm-project/vllm PR
# #16572; vllm/entrypoints/serve/instrumentator/server_info.py @ 09cb327), a 404 otherwise, which
# the runtime-metrics source remembers per process. ``config_format=json`` has it dump the
# VllmConfig as JSON (sections model_config, cache_config, parallel_config, scheduler_config, each
# field by name; torch dtypes as "torch.bfloat16"); an older release ignores the parameter and
# sends the config as one string, from which no field is read. Only these fields are copied: the
# document also holds model_config.hf_token and every VLLM_* variable (vllm_env).
_VC = "vllm_config."
VLLM_SERVER_INFO_FIELDS: dict[str, tuple[str, ValueType]] = {
    _VC + "model_config.dtype": ("runtime.dtype", "dtype"),
    _VC + "model_config.max_model_len": ("runtime.max_model_len", "int"),
    _VC + "model_config.quantization": ("runtime.quantization", "str"),
    _VC + "model_config.enforce_eager": ("runtime.enforce_eager", "bool"),
    _VC + "cache_config.block_size": ("runtime.block_size", "int"),
    _VC + "cache_config.cache_dtype": ("runtime.kv_cache_dtype", "str"),
    _VC + "cache_config.gpu_memory_utilization": ("runtime.gpu_memory_utilization", "float"),
    _VC + "cache_config.enable_prefix_caching": ("runtime.enable_prefix_caching", "bool"),
    _VC + "parallel_config.tensor_parallel_size": ("runtime.tensor_parallel_size", "int"),
    _VC + "parallel_config.pipeline_parallel_size": ("runtime.pipeline_parallel_size", "int"),
    _VC + "parallel_config.data_parallel_size": ("runtime.data_parallel_size", "int"),
    _VC + "scheduler_config.max_num_seqs": ("runtime.max_num_seqs", "int"),
    _VC + "scheduler_config.max_num_batched_tokens": ("runtime.max_num_batched_tokens", "int"),
    _VC + "scheduler_config.enable_chunked_prefill": ("runtime.enable_chunked_prefill", "bool"),
}

VLLM_METRICS = MetricsSpec(
    # ray_vllm: is vLLM under Ray Serve, which re-exports the same families with its own prefix.
    prefixes=("vllm:", "ray_vllm:"),
    info_metrics=(InfoMetric("cache_config_info", CACHE_CONFIG_LABELS, "runtime.cache_config"),),
    model_name_label="model_name",
    # engine: the V1 engine-core index; the rest are Ray Serve's per-worker labels.
    identity_labels=frozenset({"engine", "Component", "NodeAddress", "SessionName", "Version", "WorkerId"}),
    observations=(
        ObservationSpec("prompt_tokens_per_s", "{token}/s", "counter_rate", ("prompt_tokens_total",)),
        ObservationSpec("generation_tokens_per_s", "{token}/s", "counter_rate", ("generation_tokens_total",)),
        ObservationSpec("requests_per_s", "{request}/s", "counter_rate", ("request_success_total",)),
        ObservationSpec("preemptions_per_s", "{preemption}/s", "counter_rate", ("num_preemptions_total",)),
        ObservationSpec("ttft_seconds", "s", "histogram_quantiles", ("time_to_first_token_seconds",)),
        ObservationSpec("e2e_latency_seconds", "s", "histogram_quantiles", ("e2e_request_latency_seconds",)),
        ObservationSpec(
            "itl_seconds",
            "s",
            "histogram_quantiles",
            ("inter_token_latency_seconds", "time_per_output_token_seconds"),
        ),
        # Both are ratios in [0, 1] despite "perc".
        ObservationSpec(
            "kv_cache_usage_ratio",
            "1",
            "gauge_mean",
            ("kv_cache_usage_perc", "gpu_cache_usage_perc"),
            combine="max",
        ),
        ObservationSpec("requests_running", "{request}", "gauge_mean", ("num_requests_running",)),
        ObservationSpec("requests_waiting", "{request}", "gauge_mean", ("num_requests_waiting",)),
        # vLLM exports no batch-size histogram: the running requests, sampled at each scrape, are it.
        ObservationSpec(
            "batch_size", "{request}", "gauge_sample_quantile", ("num_requests_running",), quantiles=(0.95,)
        ),
    ),
    info_endpoints=(
        InfoEndpoint("/version", {"version": ("runtime.version", "str")}),
        InfoEndpoint(
            "/v1/models", {"data.0.max_model_len": ("runtime.max_model_len", "int")}, needs_auth=True
        ),
        InfoEndpoint("/server_info?config_format=json", VLLM_SERVER_INFO_FIELDS),
    ),
    expected=VLLM_EXPECTED,
)

VLLM = EngineSpec(
    name="vllm",
    entrypoints=(
        Entrypoint("executable", "vllm", subcommand="serve", positional=MODEL),
        Entrypoint("module", "vllm.entrypoints.cli.main", subcommand="serve", positional=MODEL),
        Entrypoint("module", "vllm.entrypoints.openai.api_server"),
        Entrypoint("module", "vllm.entrypoints.api_server"),
    ),
    settings=(
        SettingSpec(MODEL, ("--model",)),
        SettingSpec("model.revision", ("--revision",)),
        SettingSpec("runtime.dtype", ("--dtype",), "dtype"),
        SettingSpec("runtime.quantization", ("--quantization", "-q")),
        SettingSpec("runtime.kv_cache_dtype", ("--kv-cache-dtype",)),
        SettingSpec("runtime.max_model_len", ("--max-model-len",), "size"),
        SettingSpec("runtime.max_num_seqs", ("--max-num-seqs",), "int"),
        SettingSpec("runtime.max_num_batched_tokens", ("--max-num-batched-tokens",), "size"),
        SettingSpec("runtime.tensor_parallel_size", ("--tensor-parallel-size", "-tp"), "int"),
        SettingSpec("runtime.pipeline_parallel_size", ("--pipeline-parallel-size", "-pp"), "int"),
        SettingSpec("runtime.data_parallel_size", ("--data-parallel-size", "-dp"), "int"),
        SettingSpec("runtime.gpu_memory_utilization", ("--gpu-memory-utilization",), "float"),
        SettingSpec("runtime.enforce_eager", ("--enforce-eager",), "bool"),
        SettingSpec("runtime.enable_prefix_caching", ("--enable-prefix-caching",), "bool"),
        SettingSpec("runtime.enable_chunked_prefill", ("--enable-chunked-prefill",), "bool"),
        SettingSpec("runtime.block_size", ("--block-size",), "int"),
        SettingSpec("runtime.served_model_name", ("--served-model-name",), multiple=True),
        SettingSpec("runtime.trust_remote_code", ("--trust-remote-code",), "bool"),
        SettingSpec("runtime.seed", ("--seed",), "int"),
        SettingSpec("runtime.load_format", ("--load-format",)),
        SettingSpec("runtime.tokenizer_mode", ("--tokenizer-mode",)),
        SettingSpec("runtime.enable_lora", ("--enable-lora",), "bool"),
        SettingSpec("runtime.max_loras", ("--max-loras",), "int"),
        SettingSpec("runtime.max_lora_rank", ("--max-lora-rank",), "int"),
        SettingSpec("runtime.enable_expert_parallel", ("--enable-expert-parallel",), "bool"),
        SettingSpec("runtime.speculative_config", ("--speculative-config",)),
        SettingSpec("runtime.swap_space_gib", ("--swap-space",), "float"),
        SettingSpec("runtime.cpu_offload_gib", ("--cpu-offload-gb",), "float"),
        SettingSpec("runtime.attention_backend", (), env=("VLLM_ATTENTION_BACKEND",)),
        SettingSpec("runtime.use_v1", (), "bool", env=("VLLM_USE_V1",)),
        SettingSpec("serving.port", ("--port",), "int"),
    ),
    switches=(
        "--disable-log-requests",
        "--enable-log-requests",
        "--disable-log-stats",
        "--disable-frontend-multiprocessing",
        "--enable-auto-tool-choice",
        "--disable-custom-all-reduce",
        "--enable-sleep-mode",
        "--enable-prompt-tokens-details",
        "--enable-server-load-tracking",
        "--enable-request-id-headers",
        "--disable-fastapi-docs",
        "--disable-uvicorn-access-log",
        "--skip-tokenizer-init",
        "--enable-lora-bias",
        "--fully-sharded-loras",
    ),
    defaults={
        "serving.port": 8000,
        "runtime.dtype": "auto",
        "runtime.kv_cache_dtype": "auto",
        "runtime.tensor_parallel_size": 1,
        "runtime.pipeline_parallel_size": 1,
        "runtime.data_parallel_size": 1,
        "runtime.enforce_eager": False,
        "runtime.trust_remote_code": False,
    },
    api_key_env=("VLLM_API_KEY",),
    env_prefixes=("VLLM_", *COMMON_ENV_PREFIXES),
    config_flags=("--config",),
    args_env=("VLLM_ADDITIONAL_ARGS",),
    derivations=checkpoint_derivations("--max-model-len", VLLM_AUTO_DTYPE),
    versioned_defaults=VLLM_VERSIONED_DEFAULTS,
    download_dir_flags=("--download-dir",),
    metrics=VLLM_METRICS,
    # vLLM sizes the KV cache in a profiling run at start-up (cache_config_info num_gpu_blocks).
    consequences={
        # --show-hidden-metrics-for-version brings hidden families back onto the page.
        "runtime.metrics.missing": ("runtime.args.show_hidden_metrics_for_version",),
        "runtime.num_gpu_blocks": KV_CACHE_INPUTS,
        "runtime.kv_cache_memory_bytes": KV_CACHE_INPUTS,
        "runtime.kv_cache_tokens": KV_CACHE_INPUTS,
        "runtime.kv_cache_max_concurrency": KV_CACHE_INPUTS,
    },
)
