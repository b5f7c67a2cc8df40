"""SGLang as data: ``python -m sglang.launch_server`` and its ServerArgs flags.

SGLang names several vLLM concepts differently; each row maps its flag onto the canonical key of
the same meaning: ``--context-length`` is the max model length, ``--max-running-requests`` the
max number of sequences, ``--page-size`` the KV block size, ``--mem-fraction-static`` the share
of GPU memory it claims, ``--disable-cuda-graph`` is eager mode and ``--disable-radix-cache``
turns prefix caching off. Metrics (with ``--enable-metrics``) are on the API port.
"""

from __future__ import annotations

from agent.engines.base import COMMON_ENV_PREFIXES, MODEL, EngineSpec, Entrypoint, SettingSpec

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
        "runtime.tensor_parallel_size": 1,
        "runtime.pipeline_parallel_size": 1,
        "runtime.data_parallel_size": 1,
    },
    env_prefixes=("SGLANG_", "SGL_", *COMMON_ENV_PREFIXES),
)
