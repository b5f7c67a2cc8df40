"""Engine knowledge as data: vLLM, SGLang, TGI and TensorRT-LLM tables, and the pure parser that reads them.

``detect(argv)`` names the engine a command line starts; ``parse_args(spec, argv, env)`` turns
it into typed settings (``runtime.args.<flag>``, canonical keys, ``runtime.env.<NAME>``) with
provenance. ``GENERIC`` stands in for a process found by pid or pattern that is none of them.
"""

from __future__ import annotations

from agent.engines.base import (
    COMMON_ENV_PREFIXES,
    HUB_CACHE_ENV,
    MODEL,
    REVISION,
    EngineSpec,
    Entrypoint,
    SettingSpec,
)
from agent.engines.parse import (
    MAX_CONFIG_FILE_CHARS,
    Invocation,
    ParsedCommand,
    Redact,
    Setting,
    config_file_args,
    config_paths,
    detect,
    engine_args,
    expand_shell_vars,
    is_shell,
    locate,
    model_key,
    parse_args,
    parse_size,
    redact_with,
    shell_commands,
)
from agent.engines.sglang import SGLANG
from agent.engines.tgi import TGI
from agent.engines.trtllm import TRTLLM
from agent.engines.vllm import VLLM

ENGINES: tuple[EngineSpec, ...] = (VLLM, SGLANG, TGI, TRTLLM)

GENERIC = EngineSpec(
    name="unknown",
    entrypoints=(),
    settings=(),
    env_prefixes=tuple(dict.fromkeys(p for spec in ENGINES for p in spec.env_prefixes)),
    api_key_env=tuple(dict.fromkeys(n for spec in ENGINES for n in spec.api_key_env)),
    download_dir_flags=tuple(dict.fromkeys(f for spec in ENGINES for f in spec.download_dir_flags)),
    # To find the model of a process found by pid or pattern: the engines' model and revision
    # settings, not reported (an unknown engine's flags are not these facts).
    lookup_settings=tuple(
        dict.fromkeys(s for spec in ENGINES for s in spec.settings if s.key in (MODEL, REVISION))
    ),
)


def engine_named(name: str) -> EngineSpec:
    """The spec of ``name`` (vllm | sglang | tgi | trtllm), else GENERIC."""
    return next((s for s in ENGINES if s.name == name), GENERIC)


__all__ = [
    "COMMON_ENV_PREFIXES",
    "ENGINES",
    "GENERIC",
    "HUB_CACHE_ENV",
    "MAX_CONFIG_FILE_CHARS",
    "MODEL",
    "REVISION",
    "SGLANG",
    "TGI",
    "TRTLLM",
    "VLLM",
    "EngineSpec",
    "Entrypoint",
    "Invocation",
    "ParsedCommand",
    "Redact",
    "Setting",
    "SettingSpec",
    "config_file_args",
    "config_paths",
    "detect",
    "engine_args",
    "engine_named",
    "expand_shell_vars",
    "is_shell",
    "locate",
    "model_key",
    "parse_args",
    "parse_size",
    "redact_with",
    "shell_commands",
]
