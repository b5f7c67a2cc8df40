"""Engine knowledge as data: vLLM, SGLang, TGI and TensorRT-LLM tables, and the pure parser that reads them.

``detect(argv)`` names the engine a command line starts; ``parse_args(spec, argv, env)`` turns
it into typed settings (``runtime.args.<flag>``, canonical keys, ``runtime.env.<NAME>``) with
provenance. ``GENERIC`` stands in for a process found by pid or pattern that is none of them.

Launchers (:mod:`agent.engines.launchers`: NVIDIA Dynamo workers, NIM containers) are merged into
the engine they start here, as further specs of the same engine name (``DYNAMO_VLLM`` is vLLM's
table with ``python -m dynamo.vllm`` and Dynamo's own flags), after the plain engines in
``ENGINES`` so a plain engine is always the one a name stands for (:func:`engine_named`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace as _replace

from agent.engines.base import (
    COMMON_ENV_PREFIXES,
    HUB_CACHE_ENV,
    MODEL,
    REVISION,
    EngineSpec,
    Entrypoint,
    SettingSpec,
)
from agent.engines.launchers import (
    DYNAMO_SGLANG_LAUNCHER,
    DYNAMO_TRTLLM_LAUNCHER,
    DYNAMO_VLLM_LAUNCHER,
    NIM_LLM_SDK,
    NIM_VLLM_NVEXT,
    LauncherSpec,
    launched,
    launcher_for,
    nim_backend,
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

# The engines as their launchers start them (the engine tables stay untouched).
DYNAMO_VLLM = launched(VLLM, DYNAMO_VLLM_LAUNCHER)
DYNAMO_SGLANG = launched(SGLANG, DYNAMO_SGLANG_LAUNCHER)
DYNAMO_TRTLLM = launched(TRTLLM, DYNAMO_TRTLLM_LAUNCHER)
NIM_VLLM = launched(VLLM, NIM_VLLM_NVEXT)
# NIM's SDK server before its backend is known: NIM's variables only, engine unknown.
NIM_SDK = EngineSpec(
    name="unknown",
    entrypoints=NIM_LLM_SDK.entrypoints,
    settings=NIM_LLM_SDK.settings,
    defaults=dict(NIM_LLM_SDK.defaults),
    env_prefixes=(*NIM_LLM_SDK.env_prefixes, *COMMON_ENV_PREFIXES),
)
# ... and once NIM_MODEL_PROFILE names it (never detected by itself: resolve_launched picks it).
NIM_SDK_BACKENDS: dict[str, EngineSpec] = {
    spec.name: launched(spec, NIM_LLM_SDK) for spec in (VLLM, SGLANG, TRTLLM)
}
LAUNCHED: tuple[EngineSpec, ...] = (DYNAMO_VLLM, DYNAMO_SGLANG, DYNAMO_TRTLLM, NIM_VLLM, NIM_SDK)

ENGINES: tuple[EngineSpec, ...] = (VLLM, SGLANG, TGI, TRTLLM, *LAUNCHED)

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
    """The spec of ``name`` (vllm | sglang | tgi | trtllm), else GENERIC; never a launcher's variant."""
    if name == GENERIC.name:
        return GENERIC
    return next((s for s in ENGINES if s.name == name), GENERIC)


def launched_engine(name: str, launcher: str | None) -> EngineSpec:
    """The spec of engine ``name`` as ``launcher`` (dynamo | nim, ``runtime.launcher``) starts it,
    for what reads a snapshot's facts (the links of a Dynamo worker's ``--kv-block-size``); the
    plain engine without a launcher, GENERIC for an unknown engine."""
    if launcher is None or name == GENERIC.name:
        return engine_named(name)
    variants = (*LAUNCHED, *NIM_SDK_BACKENDS.values())
    return next(
        (s for s in variants if s.name == name and any(e.launcher == launcher for e in s.entrypoints)),
        engine_named(name),
    )


def resolve_launched(inv: Invocation, env: Mapping[str, str]) -> tuple[Invocation, str]:
    """The invocation with its engine as far as the launcher lets it be told, and a note saying how.

    A NIM SDK server runs the backend its ``NIM_MODEL_PROFILE`` names; without a profile name the
    engine stays unknown and the note says why. Every other invocation is returned as it is.
    """
    if inv.spec is not NIM_SDK:
        return inv, ""
    backend, why = nim_backend(env)
    if backend is None or backend not in NIM_SDK_BACKENDS:
        return inv, f"NIM backend unknown: {why}"
    return _replace(inv, spec=NIM_SDK_BACKENDS[backend]), why


__all__ = [
    "COMMON_ENV_PREFIXES",
    "DYNAMO_SGLANG",
    "DYNAMO_TRTLLM",
    "DYNAMO_VLLM",
    "ENGINES",
    "GENERIC",
    "HUB_CACHE_ENV",
    "LAUNCHED",
    "MAX_CONFIG_FILE_CHARS",
    "MODEL",
    "NIM_SDK",
    "NIM_SDK_BACKENDS",
    "NIM_VLLM",
    "REVISION",
    "SGLANG",
    "TGI",
    "TRTLLM",
    "VLLM",
    "EngineSpec",
    "Entrypoint",
    "Invocation",
    "LauncherSpec",
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
    "launched_engine",
    "launcher_for",
    "locate",
    "model_key",
    "parse_args",
    "parse_size",
    "redact_with",
    "resolve_launched",
    "shell_commands",
]
