"""Hugging Face Text Generation Inference as data: ``text-generation-launcher`` and its env.

TGI's launcher is a clap program: every flag also reads an environment variable of the upper-case
name (``--max-total-tokens`` / ``MAX_TOTAL_TOKENS``), a flag beats its variable, and there are no
abbreviations. Deployments often configure it purely by env (OPEA's chart). ``HOSTNAME`` is
deliberately not in the table: Kubernetes sets it to the pod name for every container. The shard
processes (``text-generation-server serve``) are children of the launcher and not entry points.

The router's ``/metrics`` (``tgi_``) counts tokens in histograms (``tgi_request_input_length``,
``tgi_request_generated_tokens``), so token rates come from their ``_sum``; it has no
time-to-first-token histogram and no KV-cache gauge. ``/info`` reports the limits the router
resolved (``max_total_tokens`` defaults from the model) and the model's commit ``model_sha``.
"""

from __future__ import annotations

from agent.engines.base import (
    COMMON_ENV_PREFIXES,
    MODEL,
    EngineSpec,
    Entrypoint,
    ExpectedFamily,
    InfoEndpoint,
    MetricsSpec,
    ObservationSpec,
    SettingSpec,
)

# Families (after ``tgi_``) a router scrape holds, the ones the observations read: TGI's metrics
# reference (huggingface/text-generation-inference docs/source/reference/metrics.md) and the
# router capture of DataDog integrations-core hugging_face_tgi/tests/fixtures/payload.txt @
# 9e390cd. No rename is known among them, so no row has a range. Counters here carry no ``_total``.
_TGI_DOC = "TGI docs/source/reference/metrics.md; DataDog hugging_face_tgi payload @ 9e390cd"
TGI_EXPECTED: tuple[ExpectedFamily, ...] = tuple(
    ExpectedFamily(name, source=_TGI_DOC)
    for name in (
        "request_success",
        "request_input_length",
        "request_generated_tokens",
        "request_duration",
        "request_mean_time_per_token_duration",
        "batch_current_size",
        "batch_next_size",
        "queue_size",
    )
)

TGI_METRICS = MetricsSpec(
    prefixes=("tgi_",),
    observations=(
        ObservationSpec("prompt_tokens_per_s", "{token}/s", "histogram_sum_rate", ("request_input_length",)),
        ObservationSpec(
            "generation_tokens_per_s", "{token}/s", "histogram_sum_rate", ("request_generated_tokens",)
        ),
        ObservationSpec("requests_per_s", "{request}/s", "counter_rate", ("request_success",)),
        ObservationSpec("e2e_latency_seconds", "s", "histogram_quantiles", ("request_duration",)),
        ObservationSpec("itl_seconds", "s", "histogram_quantiles", ("request_mean_time_per_token_duration",)),
        # TGI batches continuously; the current batch is the set of requests being decoded.
        ObservationSpec("requests_running", "{request}", "gauge_mean", ("batch_current_size",)),
        ObservationSpec("requests_waiting", "{request}", "gauge_mean", ("queue_size",)),
        ObservationSpec(
            "batch_size", "{request}", "histogram_quantiles", ("batch_next_size",), quantiles=(0.95,)
        ),
    ),
    info_endpoints=(
        InfoEndpoint(
            "/info",
            {
                "model_sha": ("model.revision", "str"),
                "model_dtype": ("runtime.dtype", "dtype"),
                "max_total_tokens": ("runtime.max_model_len", "int"),
                "max_input_tokens": ("runtime.max_input_tokens", "int"),
                "max_input_length": ("runtime.max_input_tokens", "int"),
                "max_concurrent_requests": ("serving.max_concurrency", "int"),
                "max_batch_total_tokens": ("runtime.max_batch_total_tokens", "int"),
                "max_batch_size": ("runtime.max_num_seqs", "int"),
                "version": ("runtime.version", "str"),
            },
        ),
    ),
    expected=TGI_EXPECTED,
)

TGI = EngineSpec(
    name="tgi",
    entrypoints=(Entrypoint("executable", "text-generation-launcher"),),
    settings=(
        SettingSpec(MODEL, ("--model-id",), env=("MODEL_ID",)),
        SettingSpec("model.revision", ("--revision",), env=("REVISION",)),
        SettingSpec("runtime.dtype", ("--dtype",), "dtype", env=("DTYPE",)),
        SettingSpec("runtime.quantization", ("--quantize",), env=("QUANTIZE",)),
        SettingSpec("runtime.kv_cache_dtype", ("--kv-cache-dtype",), env=("KV_CACHE_DTYPE",)),
        SettingSpec("runtime.tensor_parallel_size", ("--num-shard",), "int", env=("NUM_SHARD",)),
        # Per-request input + output budget: the same limit as vLLM's max model length.
        SettingSpec("runtime.max_model_len", ("--max-total-tokens",), "int", env=("MAX_TOTAL_TOKENS",)),
        SettingSpec(
            "runtime.max_input_tokens",
            ("--max-input-tokens", "--max-input-length"),
            "int",
            env=("MAX_INPUT_TOKENS", "MAX_INPUT_LENGTH"),
        ),
        SettingSpec(
            "runtime.max_num_batched_tokens",
            ("--max-batch-prefill-tokens",),
            "int",
            env=("MAX_BATCH_PREFILL_TOKENS",),
        ),
        SettingSpec(
            "runtime.max_batch_total_tokens",
            ("--max-batch-total-tokens",),
            "int",
            env=("MAX_BATCH_TOTAL_TOKENS",),
        ),
        SettingSpec("runtime.max_num_seqs", ("--max-batch-size",), "int", env=("MAX_BATCH_SIZE",)),
        SettingSpec(
            "serving.max_concurrency",
            ("--max-concurrent-requests",),
            "int",
            env=("MAX_CONCURRENT_REQUESTS",),
        ),
        SettingSpec(
            "runtime.trust_remote_code", ("--trust-remote-code",), "bool", env=("TRUST_REMOTE_CODE",)
        ),
        SettingSpec(
            "runtime.gpu_memory_utilization",
            ("--cuda-memory-fraction",),
            "float",
            env=("CUDA_MEMORY_FRACTION",),
        ),
        SettingSpec("runtime.cuda_graphs", ("--cuda-graphs",), env=("CUDA_GRAPHS",)),
        SettingSpec("runtime.rope_scaling", ("--rope-scaling",), env=("ROPE_SCALING",)),
        SettingSpec("runtime.rope_factor", ("--rope-factor",), "float", env=("ROPE_FACTOR",)),
        SettingSpec("runtime.speculate", ("--speculate",), "int", env=("SPECULATE",)),
        SettingSpec("runtime.served_model_name", ("--served-model-name",), env=("SERVED_MODEL_NAME",)),
        SettingSpec("runtime.sharded", ("--sharded",), "bool", env=("SHARDED",), takes_value=True),
        # TGI 3.x server switches read from env by the Python shards.
        SettingSpec(
            "runtime.enable_prefix_caching", (), "bool", env=("PREFIX_CACHING", "USE_PREFIX_CACHING")
        ),
        SettingSpec("runtime.enable_chunked_prefill", (), "bool", env=("PREFILL_CHUNKING",)),
        SettingSpec("runtime.attention_backend", (), env=("ATTENTION",)),
        SettingSpec("serving.payload_limit", ("--payload-limit",), "int", env=("PAYLOAD_LIMIT",)),
        SettingSpec("serving.port", ("--port",), "int", env=("PORT",)),
    ),
    switches=(
        "--disable-custom-kernels",
        "--json-output",
        "--disable-grammar-support",
        "--disable-crash-reports",
    ),
    # The official image sets ENV PORT=80 (the bare launcher's own default is 3000); with no
    # --num-shard TGI shards over every visible GPU, so no tensor-parallel default is claimed.
    defaults={"serving.port": 80, "runtime.trust_remote_code": False},
    host_flags=("--hostname",),
    api_key_env=("API_KEY",),
    env_prefixes=COMMON_ENV_PREFIXES,
    allow_abbrev=False,
    download_dir_flags=("--huggingface-hub-cache",),
    metrics=TGI_METRICS,
)
