"""Hugging Face Text Generation Inference as data: ``text-generation-launcher`` and its env.

TGI's launcher is a clap program: every flag also reads an environment variable of the upper-case
name (``--max-total-tokens`` / ``MAX_TOTAL_TOKENS``), a flag beats its variable, and there are no
abbreviations. Deployments often configure it purely by env (OPEA's chart). ``HOSTNAME`` is
deliberately not in the table: Kubernetes sets it to the pod name for every container. The shard
processes (``text-generation-server serve``) are children of the launcher and not entry points.
"""

from __future__ import annotations

from agent.engines.base import COMMON_ENV_PREFIXES, MODEL, EngineSpec, Entrypoint, SettingSpec

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
    defaults={"serving.port": 80},
    host_flags=("--hostname",),
    api_key_env=("API_KEY",),
    env_prefixes=COMMON_ENV_PREFIXES,
    allow_abbrev=False,
)
