"""vLLM as data: entry points, flags, environment and defaults.

Flags as ``vllm serve --help`` spells them (vLLM 0.6 to 0.11); argparse there treats ``_`` and ``-``
alike and accepts unique prefixes (``--max-num-seq`` in production-stack's manifests). The
OpenAI server's ``/metrics`` is on the API port.
"""

from __future__ import annotations

from agent.engines.base import COMMON_ENV_PREFIXES, MODEL, EngineSpec, Entrypoint, SettingSpec

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
        "runtime.tensor_parallel_size": 1,
        "runtime.pipeline_parallel_size": 1,
        "runtime.data_parallel_size": 1,
    },
    api_key_env=("VLLM_API_KEY",),
    env_prefixes=("VLLM_", *COMMON_ENV_PREFIXES),
)
