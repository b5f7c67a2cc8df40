"""SGLang as data: ``python -m sglang.launch_server`` and its ServerArgs flags.

SGLang names several vLLM concepts differently; each row maps its flag onto the canonical key of
the same meaning: ``--context-length`` is the max model length, ``--max-running-requests`` the
max number of sequences, ``--page-size`` the KV block size, ``--mem-fraction-static`` the share
of GPU memory it claims, ``--disable-cuda-graph`` is eager mode and ``--disable-radix-cache``
turns prefix caching off. Metrics (with ``--enable-metrics``) are on the API port under
``sglang:``; ``/get_server_info`` reports the server's arguments as it resolved them (an unset
``--mem-fraction-static`` comes back as the value SGLang chose) and the KV-cache capacity.
"""

from __future__ import annotations

from agent.engines.base import (
    COMMON_ENV_PREFIXES,
    KV_CACHE_INPUTS,
    MODEL,
    EngineSpec,
    Entrypoint,
    InfoEndpoint,
    MetricsSpec,
    ObservationSpec,
    SettingSpec,
    checkpoint_derivations,
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
        InfoEndpoint(
            "/get_server_info",
            {
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
                "internal_states.0.max_total_num_tokens": ("runtime.max_total_tokens", "int"),
            },
        ),
    ),
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
