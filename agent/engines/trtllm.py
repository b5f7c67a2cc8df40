"""TensorRT-LLM as data: ``trtllm-serve`` and its flags, the LLM API options file, its metrics.

``trtllm-serve MODEL`` (or ``trtllm-serve serve MODEL``: the click group falls back to ``serve``
for a first word that is no subcommand; ``python -m tensorrt_llm.commands.serve`` is the same
group) takes click options spelled with underscores (``--max_batch_size``, ``--tp_size``); click
resolves no abbreviations. ``--extra_llm_api_options FILE`` (``--config FILE`` in newer
releases) is a YAML mapping of LLM API options, nested (``kv_cache_config: {dtype: fp8}``),
read as dotted flags (``--kv_cache_config.dtype``); its values WIN over the command line's, and
a mapping it gives replaces the command line's whole section (``llm_args | extra`` is a shallow
merge: a file's ``kv_cache_config`` drops the ``--kv_cache_free_gpu_memory_fraction`` of the
command line). Options that only the file can set (``dtype``, ``kv_cache_config.dtype``,
``quant_config``) are rows here with their dotted spelling.

Prometheus text is served under ``/prometheus/metrics`` (``/metrics`` is a JSON list of
iteration statistics), every family prefixed ``trtllm_`` by ``tensorrt_llm/metrics/collector.py``
itself (in 1.1 the families had no prefix; NVIDIA Dynamo added ``trtllm_`` when it re-exported
them), labelled ``model_name`` and ``engine_type``. There is no API-key option.

Sources (NVIDIA/TensorRT-LLM unless named otherwise):

- S1 ``tensorrt_llm/commands/serve.py`` at 00209af149e7774406881a37283dce303571eb11: the
  ``serve`` options and defaults, ``get_llm_args`` (``--backend`` default ``pytorch``,
  ``--host localhost``, ``--port 8000``, ``--kv_cache_free_gpu_memory_fraction 0.9``, tp/pp/cp 1,
  ``--max_seq_len`` unset: "deduced from the model config"), ``DefaultGroup``, ``__main__``;
- S2 ``tensorrt_llm/llmapi/llm_args.py`` ``update_llm_args_with_extra_dict`` (``llm_args |
  llm_args_dict``, "Overriding kv_cache_config"), the same in every stored version;
  ``KvCacheConfig`` fields ``free_gpu_memory_fraction``, ``enable_block_reuse``, ``dtype``,
  ``max_tokens``, ``tokens_per_block`` (default 32);
- S3 ``tensorrt_llm/metrics/collector.py``: unprefixed at 89fd9b74ab7ae753b4c6b3db25a400dca7ea54a0
  (request_success_total, e2e_request_latency_seconds, time_to_first_token_seconds,
  time_per_output_token_seconds, request_queue_time_seconds: the five of 1.1.0rc5 that Dynamo's
  docs list, docs.nvidia.com/dynamo/latest/backends/trtllm/prometheus.html); later
  ``metric_prefix = "trtllm_"`` with token counters, KV-cache, queue, batch and memory gauges;
- S4 ``examples/serve/prometheus_metrics.py`` at 47d640ec77b8bbb9c1f0faa5b8fd4e74657a167c
  (nvidia.github.io/TensorRT-LLM/latest/examples/prometheus_metrics.html, 61cef212):
  ``METRIC_PREFIX = "trtllm_"``, ``http://localhost:8000/prometheus/metrics``;
- S5 ``tensorrt_llm/serve/openai_server.py``: ``/prometheus/metrics`` mounted, ``/metrics`` the
  iteration stats, ``/version`` answering ``{"version": VERSION}``, ``/v1/models`` one
  ``ModelCard(id=model)`` (no context length);
- S6 ``docs/source/commands/trtllm-serve.rst``: ``trtllm-serve <model> [--backend pytorch --tp_size
  <tp> --pp_size <pp> --ep_size <ep> --host <host> --port <port>]``.
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
    MetricsSpec,
    ObservationSpec,
    SettingSpec,
    VersionedDefault,
)

_S1 = "tensorrt_llm/commands/serve.py @00209af"
_S3 = "tensorrt_llm/metrics/collector.py"
_S4 = "examples/serve/prometheus_metrics.py @47d640e"

# The releases whose collector prefixes its own families. The first release with
# ``metric_prefix = "trtllm_"`` is not pinned down (no tag in the stored history names it): 1.1.0rc5
# had no prefix (S3); the 1.3 documentation's examples and the 2026 example (S4) ask for the
# prefixed names. 1.3.0 is the conservative bound: before it nothing is claimed missing.
_PREFIXED_SINCE = "1.3.0"

TRTLLM_METRICS = MetricsSpec(
    prefixes=("trtllm_",),
    # S3: the collector of 1.1.0rc5 names its five request families without a prefix.
    unprefixed=True,
    model_name_label="model_name",
    # openai_server.py labels its metrics model_name="undefined" (the stand-in's source, demo/
    # standin_trtllm.py, cites the commit): no served model name is read from that.
    model_name_placeholders=frozenset({"undefined"}),
    # engine_type says which backend (pytorch / tensorrt) serves; it is configuration, not identity.
    value_facts={
        # The engine's own KV-cache sizing, like vLLM's num_gpu_blocks (S3, the prefixed collector).
        "kv_cache_max_blocks": ("runtime.num_gpu_blocks", "int"),
        "kv_cache_tokens_per_block": ("runtime.block_size", "int"),
        "max_batch_size_static": ("runtime.max_num_seqs", "int"),
    },
    observations=(
        ObservationSpec("prompt_tokens_per_s", "{token}/s", "counter_rate", ("prompt_tokens_total",)),
        ObservationSpec("generation_tokens_per_s", "{token}/s", "counter_rate", ("generation_tokens_total",)),
        ObservationSpec("requests_per_s", "{request}/s", "counter_rate", ("request_success_total",)),
        ObservationSpec("ttft_seconds", "s", "histogram_quantiles", ("time_to_first_token_seconds",)),
        ObservationSpec("e2e_latency_seconds", "s", "histogram_quantiles", ("e2e_request_latency_seconds",)),
        ObservationSpec("itl_seconds", "s", "histogram_quantiles", ("time_per_output_token_seconds",)),
        # "KV cache utilization": used over max blocks, a ratio in [0, 1].
        ObservationSpec("kv_cache_usage_ratio", "1", "gauge_mean", ("kv_cache_utilization",), combine="max"),
        ObservationSpec("requests_running", "{request}", "gauge_mean", ("num_requests_running",)),
        ObservationSpec("requests_waiting", "{request}", "gauge_mean", ("num_requests_waiting",)),
        ObservationSpec(
            "batch_size", "{request}", "gauge_sample_quantile", ("num_requests_running",), quantiles=(0.95,)
        ),
    ),
    info_endpoints=(InfoEndpoint("/version", {"version": ("runtime.version", "str")}),),
    expected=(
        *(
            ExpectedFamily(name, since=_PREFIXED_SINCE, source=f"{_S3}; {_S4}")
            for name in (
                "request_success_total",
                "e2e_request_latency_seconds",
                "time_to_first_token_seconds",
                "time_per_output_token_seconds",
                "request_queue_time_seconds",
                "kv_cache_hit_rate",
                "kv_cache_utilization",
            )
        ),
    ),
)

# The click options of ``trtllm-serve serve`` (S1), then the LLM API options only the options file
# can set (S2), each under the canonical key of the same meaning. A CLI spelling comes first: it
# names ``runtime.args.<flag>`` whichever spelling was used.
_SETTINGS: tuple[SettingSpec, ...] = (
    SettingSpec(MODEL, ()),  # the MODEL argument: the entry points' positional
    SettingSpec("model.revision", ("--revision",)),
    SettingSpec("runtime.tokenizer", ("--tokenizer",)),
    # pytorch | tensorrt (alias trt) | _autodeploy: which runtime runs the model at all.
    SettingSpec("runtime.backend", ("--backend",)),
    SettingSpec("runtime.max_num_seqs", ("--max_batch_size",), "int"),
    SettingSpec("runtime.max_num_batched_tokens", ("--max_num_tokens",), "int"),
    SettingSpec("runtime.max_model_len", ("--max_seq_len",), "int"),
    SettingSpec("runtime.max_beam_width", ("--max_beam_width",), "int"),
    SettingSpec("runtime.tensor_parallel_size", ("--tensor_parallel_size", "--tp_size"), "int"),
    SettingSpec("runtime.pipeline_parallel_size", ("--pipeline_parallel_size", "--pp_size"), "int"),
    SettingSpec("runtime.context_parallel_size", ("--context_parallel_size", "--cp_size"), "int"),
    SettingSpec("runtime.expert_parallel_size", ("--moe_expert_parallel_size", "--ep_size"), "int"),
    SettingSpec("runtime.gpus_per_node", ("--gpus_per_node",), "int"),
    # A share of the GPU memory left FREE after the weights and buffers are loaded, not of the
    # total as vLLM's --gpu-memory-utilization is: the same number claims less memory here.
    SettingSpec(
        "runtime.gpu_memory_utilization",
        (
            "--kv_cache_free_gpu_memory_fraction",
            "--free_gpu_memory_fraction",
            "--kv_cache_config.free_gpu_memory_fraction",
        ),
        "float",
    ),
    SettingSpec("runtime.trust_remote_code", ("--trust_remote_code",), "bool"),
    SettingSpec("runtime.enable_chunked_prefill", ("--enable_chunked_prefill",), "bool"),
    SettingSpec("runtime.num_postprocess_workers", ("--num_postprocess_workers",), "int"),
    SettingSpec("runtime.reasoning_parser", ("--reasoning_parser",)),
    SettingSpec("runtime.tool_parser", ("--tool_parser",)),
    # Newer releases (the CLI reference of 1.3: "The model name used in the API. If not specified,
    # the model path is used"; not in S1's serve.py); downstream launchers pass it.
    SettingSpec("runtime.served_model_name", ("--served_model_name",)),
    SettingSpec("serving.port", ("--port",), "int"),
    # Only in the options file (S2).
    SettingSpec("runtime.dtype", ("--dtype",), "dtype"),
    SettingSpec("runtime.kv_cache_dtype", ("--kv_cache_config.dtype",)),
    SettingSpec("runtime.enable_prefix_caching", ("--kv_cache_config.enable_block_reuse",), "bool"),
    SettingSpec(
        "runtime.block_size",
        ("--kv_cache_config.tokens_per_block", "--build_config.plugin_config.tokens_per_block"),
        "int",
    ),
    # The KV cache's capacity in tokens, as SGLang's --max-total-tokens.
    SettingSpec("runtime.max_total_tokens", ("--kv_cache_config.max_tokens",), "int"),
    SettingSpec("runtime.quantization", ("--quant_config.quant_algo",)),
    SettingSpec("runtime.kv_cache_quant_algo", ("--quant_config.kv_cache_quant_algo",)),
    SettingSpec("runtime.attention_backend", ("--attn_backend",)),
    SettingSpec("runtime.enable_attention_dp", ("--enable_attention_dp",), "bool"),
    SettingSpec("runtime.capacity_scheduler_policy", ("--scheduler_config.capacity_scheduler_policy",)),
    SettingSpec("runtime.speculative_algorithm", ("--speculative_config.decoding_type",)),
)

# A float32 or bfloat16 checkpoint under ``dtype: auto`` runs in the checkpoint's dtype (the LLM
# API's default ``dtype="auto"``: "the data type of the model weights"); the KV cache follows
# the checkpoint's kv_cache_quant_algo (a ModelOpt FP8 KV cache) before the model dtype.
TRTLLM_DERIVATIONS: tuple[Derivation, ...] = (
    Derivation("runtime.dtype", "model.config.torch_dtype", "dtype auto: the checkpoint dtype", type="dtype"),
    Derivation(
        "runtime.kv_cache_dtype",
        "model.config.kv_cache_quantization",
        "kv_cache_config.dtype auto: the checkpoint's kv_cache_quant_algo",
        mapping={"fp8": "fp8", "int8": "int8", "nvfp4": "nvfp4"},
    ),
    Derivation(
        "runtime.kv_cache_dtype", "runtime.dtype", "kv_cache_config.dtype auto: the model dtype", type="dtype"
    ),
    Derivation(
        "runtime.max_model_len",
        "model.config.max_position_embeddings",
        "no --max_seq_len: deduced from the model config",
        when=(None,),
        type="int",
    ),
    Derivation(
        "runtime.quantization",
        "model.config.quantization",
        "no quant_config: the checkpoint's quantization (hf_quant_config.json quant_algo)",
        when=(None,),
    ),
)

TRTLLM = EngineSpec(
    name="trtllm",
    entrypoints=(
        Entrypoint("executable", "trtllm-serve", subcommand="serve", positional=MODEL),
        Entrypoint("executable", "trtllm-serve", positional=MODEL),
        Entrypoint("module", "tensorrt_llm.commands.serve", subcommand="serve", positional=MODEL),
        Entrypoint("module", "tensorrt_llm.commands.serve", positional=MODEL),
    ),
    settings=_SETTINGS,
    switches=("--fail_fast_on_attention_window_too_large",),
    defaults={
        "serving.port": 8000,
        "runtime.tensor_parallel_size": 1,
        "runtime.pipeline_parallel_size": 1,
        "runtime.context_parallel_size": 1,
        "runtime.gpu_memory_utilization": 0.9,
        "runtime.trust_remote_code": False,
        "runtime.enable_chunked_prefill": False,
        "runtime.max_beam_width": 1,
        "runtime.dtype": "auto",
        "runtime.kv_cache_dtype": "auto",
    },
    versioned_defaults=(
        # The PyTorch backend became the default with 1.0; before, "Default is cpp path" (the
        # TensorRT engine: nvidia.github.io/TensorRT-LLM/0.18.2/commands/trtllm-serve.html).
        VersionedDefault("runtime.backend", "pytorch", since="1.0.0", source=_S1),
        VersionedDefault(
            "runtime.backend", "tensorrt", until="1.0.0", source="trtllm-serve 0.18.2 reference"
        ),
        VersionedDefault(
            "runtime.enable_prefix_caching", True, since="1.0.0", source="KvCacheConfig.enable_block_reuse"
        ),
        VersionedDefault("runtime.block_size", 32, since="1.0.0", source="KvCacheConfig.tokens_per_block"),
    ),
    metrics_path="/prometheus/metrics",
    host_flags=("--host",),
    api_key_flags=(),
    # TRTLLM_* and TLLM_* (TLLM_DISAGG_*, TLLM_SPAWN_PROXY_PROCESS, TRTLLM_SERVER_DISABLE_GC in S1).
    env_prefixes=("TRTLLM_", "TLLM_", *COMMON_ENV_PREFIXES),
    allow_abbrev=False,
    config_flags=("--extra_llm_api_options", "--config"),
    config_nested=True,
    config_overrides_cli=True,
    derivations=TRTLLM_DERIVATIONS,
    metrics=TRTLLM_METRICS,
    consequences={"runtime.num_gpu_blocks": KV_CACHE_INPUTS},
)
