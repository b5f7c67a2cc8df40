"""SGLang as data: ``python -m sglang.launch_server`` and its ServerArgs flags.

SGLang names several vLLM concepts differently; each row maps its flag onto the canonical key of
the same meaning: ``--context-length`` is the max model length, ``--max-running-requests`` the
max number of sequences, ``--page-size`` the KV block size, ``--mem-fraction-static`` the share
of GPU memory it claims, ``--disable-cuda-graph`` is eager mode and ``--disable-radix-cache``
turns prefix caching off. Metrics (with ``--enable-metrics``) are on the API port under
``sglang:``; ``/server_info`` (``/get_server_info`` in older releases) reports the server's
arguments as it resolved them (an unset ``--mem-fraction-static`` comes back as the value SGLang
chose) and the KV-cache capacity.
"""

from __future__ import annotations

from agent.engines.base import (
    COMMON_ENV_PREFIXES,
    KV_CACHE_INPUTS,
    MODEL,
    EngineSpec,
    Entrypoint,
    ExpectedFamily,
    InfoEndpoint,
    MetricsSpec,
    ObservationSpec,
    SettingSpec,
    ValueType,
    checkpoint_derivations,
)

# /server_info and /model_info are the current routes; /get_server_info and /get_model_info the
# deprecated ones, which still answer the same document with a warning logged on every call
# (python/sglang/srt/entrypoints/http_server.py @ 78043d44: "Endpoint '/get_server_info' is
# deprecated and will be removed in a future version. Please use '/server_info' instead.";
# callers migrated by sgl-project/sglang PR #21463; releases before the rename serve only the old
# routes, http_server.py @ 0025436). The server info is ServerArgs flattened
# (``dataclasses.asdict``), the scheduler's info, ``internal_states`` (one per DP rank) and
# ``version``. ServerArgs holds ``api_key`` (and ``admin_api_key`` in newer releases): only the
# fields named here are copied, never the document.
SGLANG_SERVER_INFO_FIELDS: dict[str, tuple[str, ValueType]] = {
    "version": ("runtime.version", "str"),
    "dtype": ("runtime.dtype", "dtype"),
    "quantization": ("runtime.quantization", "str"),
    "kv_cache_dtype": ("runtime.kv_cache_dtype", "str"),
    "context_length": ("runtime.max_model_len", "int"),
    "max_running_requests": ("runtime.max_num_seqs", "int"),
    "tp_size": ("runtime.tensor_parallel_size", "int"),
    "pp_size": ("runtime.pipeline_parallel_size", "int"),
    "dp_size": ("runtime.data_parallel_size", "int"),
    "mem_fraction_static": ("runtime.gpu_memory_utilization", "float"),
    "page_size": ("runtime.block_size", "int"),
    "chunked_prefill_size": ("runtime.chunked_prefill_size", "int"),
    # The KV pool the scheduler sized: top level in 0.5.9's document (the real capture under
    # tests/fixtures/real-world/engines/), in internal_states[0] in older releases.
    "max_total_num_tokens": ("runtime.max_total_tokens", "int"),
    "internal_states.0.max_total_num_tokens": ("runtime.max_total_tokens", "int"),
}
# /model_info: model_path, tokenizer_path, is_generation, preferred_sampling_params,
# weight_version (what an in-place weight update last set: "default" until one), and in newer
# releases has_image_understanding, has_audio_understanding, model_type, architectures (the
# native-API docs' example). The model's identity comes from the process and its files.
SGLANG_MODEL_INFO_FIELDS: dict[str, tuple[str, ValueType]] = {
    "weight_version": ("runtime.weight_version", "str"),
}

# Families (after ``sglang:``) a scrape should hold (``runtime.metrics.missing``). Unranged rows
# are SGLang's first Prometheus families, unchanged since (python/sglang/srt/metrics/collector.py;
# in the v0.5.10.post1 capture of DataDog integrations-core sglang/tests/fixtures @ 71a3042).
# Rows from 0.5.10 are known present there and unchecked in earlier releases (the lower bound is
# the capture, not the release that added them): older SGLang spelled the inter-token latency
# time_per_output_token_seconds, in a release not pinned down here, so that rename has no row.
_SGL_CAPTURE = "v0.5.10.post1 capture (DataDog integrations-core sglang fixture @ 71a3042)"
SGLANG_EXPECTED: tuple[ExpectedFamily, ...] = (
    ExpectedFamily("num_running_reqs", source=_SGL_CAPTURE),
    ExpectedFamily("num_queue_reqs", source=_SGL_CAPTURE),
    ExpectedFamily("token_usage", source=_SGL_CAPTURE),
    ExpectedFamily("prompt_tokens_total", source=_SGL_CAPTURE),
    ExpectedFamily("generation_tokens_total", source=_SGL_CAPTURE),
    ExpectedFamily("time_to_first_token_seconds", source=_SGL_CAPTURE),
    ExpectedFamily("e2e_request_latency_seconds", source=_SGL_CAPTURE),
    ExpectedFamily("num_requests_total", since="0.5.10", source=_SGL_CAPTURE),
    ExpectedFamily("inter_token_latency_seconds", since="0.5.10", source=_SGL_CAPTURE),
    ExpectedFamily("max_total_num_tokens", since="0.5.10", source=_SGL_CAPTURE),
    ExpectedFamily("is_cuda_graph", since="0.5.10", source=_SGL_CAPTURE),
)

SGLANG_METRICS = MetricsSpec(
    prefixes=("sglang:",),
    model_name_label="model_name",
    identity_labels=frozenset({"tp_rank", "pp_rank", "dp_rank"}),
    value_facts={
        "max_total_num_tokens": ("runtime.max_total_tokens", "int"),
        "is_cuda_graph": ("runtime.cuda_graph", "bool"),
    },
    observations=(
        ObservationSpec("prompt_tokens_per_s", "{token}/s", "counter_rate", ("prompt_tokens_total",)),
        ObservationSpec("generation_tokens_per_s", "{token}/s", "counter_rate", ("generation_tokens_total",)),
        ObservationSpec("requests_per_s", "{request}/s", "counter_rate", ("num_requests_total",)),
        ObservationSpec("ttft_seconds", "s", "histogram_quantiles", ("time_to_first_token_seconds",)),
        ObservationSpec("e2e_latency_seconds", "s", "histogram_quantiles", ("e2e_request_latency_seconds",)),
        ObservationSpec(
            "itl_seconds",
            "s",
            "histogram_quantiles",
            ("inter_token_latency_seconds", "time_per_output_token_seconds"),
        ),
        ObservationSpec("kv_cache_usage_ratio", "1", "gauge_mean", ("token_usage",), combine="max"),
        ObservationSpec("requests_running", "{request}", "gauge_mean", ("num_running_reqs",)),
        ObservationSpec("requests_waiting", "{request}", "gauge_mean", ("num_queue_reqs",)),
        ObservationSpec(
            "batch_size", "{request}", "gauge_sample_quantile", ("num_running_reqs",), quantiles=(0.95,)
        ),
    ),
    info_endpoints=(
        InfoEndpoint("/server_info", SGLANG_SERVER_INFO_FIELDS, fallbacks=("/get_server_info",)),
        InfoEndpoint("/model_info", SGLANG_MODEL_INFO_FIELDS, fallbacks=("/get_model_info",)),
    ),
    expected=SGLANG_EXPECTED,
)

SGLANG = EngineSpec(
    name="sglang",
    entrypoints=(
        Entrypoint("module", "sglang.launch_server"),
        Entrypoint("module", "sglang.srt.server"),
    ),
    settings=(
        SettingSpec(MODEL, ("--model-path", "--model")),
        SettingSpec("model.revision", ("--revision",)),
        SettingSpec("runtime.dtype", ("--dtype",), "dtype"),
        SettingSpec("runtime.quantization", ("--quantization",)),
        SettingSpec("runtime.kv_cache_dtype", ("--kv-cache-dtype",)),
        SettingSpec("runtime.max_model_len", ("--context-length",), "int"),
        SettingSpec("runtime.max_num_seqs", ("--max-running-requests",), "int"),
        SettingSpec("runtime.max_num_batched_tokens", ("--max-prefill-tokens",), "int"),
        SettingSpec("runtime.chunked_prefill_size", ("--chunked-prefill-size",), "int"),
        SettingSpec("runtime.max_total_tokens", ("--max-total-tokens",), "int"),
        SettingSpec("runtime.tensor_parallel_size", ("--tp-size", "--tensor-parallel-size"), "int"),
        SettingSpec("runtime.pipeline_parallel_size", ("--pp-size", "--pipeline-parallel-size"), "int"),
        SettingSpec("runtime.data_parallel_size", ("--dp-size", "--data-parallel-size"), "int"),
        SettingSpec("runtime.expert_parallel_size", ("--ep-size", "--expert-parallel-size"), "int"),
        SettingSpec("runtime.gpu_memory_utilization", ("--mem-fraction-static",), "float"),
        SettingSpec("runtime.enforce_eager", ("--disable-cuda-graph",), "bool"),
        SettingSpec("runtime.enable_prefix_caching", ("--disable-radix-cache",), "bool", invert=True),
        SettingSpec("runtime.block_size", ("--page-size",), "int"),
        SettingSpec("runtime.served_model_name", ("--served-model-name",)),
        SettingSpec("runtime.trust_remote_code", ("--trust-remote-code",), "bool"),
        SettingSpec("runtime.seed", ("--random-seed",), "int"),
        SettingSpec("runtime.load_format", ("--load-format",)),
        SettingSpec("runtime.tokenizer_mode", ("--tokenizer-mode",)),
        SettingSpec("runtime.attention_backend", ("--attention-backend",)),
        SettingSpec("runtime.schedule_policy", ("--schedule-policy",)),
        SettingSpec("runtime.speculative_algorithm", ("--speculative-algorithm",)),
        SettingSpec("runtime.enable_torch_compile", ("--enable-torch-compile",), "bool"),
        SettingSpec("serving.port", ("--port",), "int"),
    ),
    switches=(
        "--enable-metrics",
        "--enable-dp-attention",
        "--skip-tokenizer-init",
        "--disable-overlap-schedule",
        "--enable-mixed-chunk",
        "--enable-p2p-check",
        "--disable-custom-all-reduce",
        "--enable-cache-report",
        "--show-time-cost",
        "--log-requests",
        "--enable-lora",
    ),
    defaults={
        "serving.port": 30000,
        "runtime.dtype": "auto",
        "runtime.kv_cache_dtype": "auto",
        "runtime.tensor_parallel_size": 1,
        "runtime.pipeline_parallel_size": 1,
        "runtime.data_parallel_size": 1,
        "runtime.enable_prefix_caching": True,  # the radix cache is on unless disabled
        "runtime.enforce_eager": False,
        "runtime.trust_remote_code": False,
    },
    env_prefixes=("SGLANG_", "SGL_", *COMMON_ENV_PREFIXES),
    config_flags=("--config",),
    derivations=checkpoint_derivations("--context-length"),
    # SGLang sizes its KV pool (max_total_num_tokens) from what is left of the static memory share.
    consequences={"runtime.max_total_tokens": KV_CACHE_INPUTS},
    download_dir_flags=("--download-dir",),
    metrics=SGLANG_METRICS,
)
