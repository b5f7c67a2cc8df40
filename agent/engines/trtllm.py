"""TensorRT-LLM as data: ``trtllm-serve`` and its flags, the LLM API options file, its metrics.

(Skeleton: the tables are being filled in.)
"""

from __future__ import annotations

from agent.engines.base import (
    COMMON_ENV_PREFIXES,
    MODEL,
    EngineSpec,
    Entrypoint,
    MetricsSpec,
    SettingSpec,
)

TRTLLM_METRICS = MetricsSpec(prefixes=("trtllm_",))

TRTLLM = EngineSpec(
    name="trtllm",
    entrypoints=(
        Entrypoint("executable", "trtllm-serve", subcommand="serve", positional=MODEL),
        Entrypoint("executable", "trtllm-serve", positional=MODEL),
    ),
    settings=(SettingSpec("serving.port", ("--port",), "int"),),
    defaults={"serving.port": 8000},
    metrics_path="/prometheus/metrics",
    env_prefixes=("TRTLLM_", "TLLM_", *COMMON_ENV_PREFIXES),
    config_flags=("--extra_llm_api_options", "--config"),
    config_nested=True,
    config_overrides_cli=True,
    metrics=TRTLLM_METRICS,
)
