"""What each fact follows from, as data: the links that let the collector tell a cause from its
consequences (one ``--dtype`` change is one finding, not four).

Pure. A fact's ``Provenance.inputs`` names the fact keys (or key globs) whose change changes it.
They come from the engine tables, never from ``if`` chains: a canonical setting follows from the
flags and variables that spell it (``runtime.dtype`` ← ``runtime.args.dtype``), an ``auto`` rule's
key from the fact it reads (``runtime.kv_cache_dtype`` ← ``runtime.dtype``), what the engine sizes
at start-up from what it is sized by (:attr:`EngineSpec.consequences`), and, for every engine,
the model files' digests from the files and the files from the model's identity
(:data:`COMMON_CONSEQUENCES`).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import replace

from agent.engines.base import MODEL, EngineSpec, args_key
from skewwatch.core.facts import MAX_INPUTS, Fact

_WEIGHT_FILES = (
    "model.files.*.safetensors",
    "model.files.*.safetensors.index.json",
    "model.files.*.bin",
    "model.files.*.pt",
    "model.files.*.gguf",
)

# Key glob -> input globs, for any engine (and for a process no engine table recognises).
COMMON_CONSEQUENCES: tuple[tuple[str, tuple[str, ...]], ...] = (
    # Another model, revision or path is another set of files.
    ("model.files.*", ("model.id", "model.path", "model.revision")),
    ("model.revision", ("model.id",)),
    ("model.weights.*", _WEIGHT_FILES),
    ("model.params", _WEIGHT_FILES),
    ("model.manifest.digest", ("model.files.*",)),
    ("model.integrity", ("model.files.*",)),
    ("model.config.*", ("model.files.config.json",)),
    (
        "model.tokenizer.digest",
        (
            "model.files.tokenizer*",
            "model.files.special_tokens_map.json",
            "model.files.vocab*",
            "model.files.merges.txt",
            "model.files.*.model",
            "model.files.added_tokens.json",
        ),
    ),
    ("model.chat_template.digest", ("model.files.tokenizer_config.json", "model.files.chat_template*")),
    ("model.generation_config.digest", ("model.files.generation_config.json",)),
    # A GPU class fixes its marketing name, architecture, form factor, memory, compute capability
    # and default power limit: a pod rescheduled onto another class is one change, not six.
    ("hardware.gpu.name", ("hardware.gpu.product",)),
    ("hardware.gpu.architecture", ("hardware.gpu.product",)),
    ("hardware.gpu.form_factor", ("hardware.gpu.product",)),
    ("hardware.gpu.memory_bytes", ("hardware.gpu.product",)),
    ("hardware.gpu.compute_capability", ("hardware.gpu.product",)),
    ("hardware.gpu.power_default_limit_watts", ("hardware.gpu.product",)),
    # The image is the engine build.
    ("runtime.version", ("orchestration.image", "orchestration.image_digest")),
    # Which metric families a release exports follows from the release: an upgrade that renames
    # one is the version's finding, not a second one (a list changing under the same version is
    # its own finding: metrics turned off, a hidden family shown again).
    ("runtime.metrics.missing", ("runtime.version", "runtime.engine")),
    ("orchestration.image_digest", ("orchestration.image",)),
)


def _add(table: dict[str, list[str]], key: str, inputs: tuple[str, ...] | list[str]) -> None:
    have = table.setdefault(key, [])
    for i in inputs:
        if i != key and i not in have:
            have.append(i)


_TABLES: dict[int, tuple[EngineSpec, tuple[tuple[str, tuple[str, ...]], ...]]] = {}


def link_table(spec: EngineSpec) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Key (or glob) -> inputs, from ``spec``'s settings, auto rules and consequences (cached)."""
    cached = _TABLES.get(id(spec))
    if cached is not None and cached[0] is spec:
        return cached[1]
    result = _build(spec)
    _TABLES[id(spec)] = (spec, result)
    return result


def _build(spec: EngineSpec) -> tuple[tuple[str, tuple[str, ...]], ...]:
    table: dict[str, list[str]] = {}
    for s in spec.settings:
        inputs = [args_key(spec, f) for f in s.flags] + [f"runtime.env.{e}" for e in s.env]
        for key in ("model.id", "model.path") if s.key == MODEL else (s.key,):
            _add(table, key, inputs)
    if any(e.positional == MODEL for e in spec.entrypoints):
        for key in ("model.id", "model.path"):
            _add(table, key, ["runtime.args.model"])
    api_key = [args_key(spec, f) for f in spec.api_key_flags] + [f"runtime.env.{e}" for e in spec.api_key_env]
    if api_key:
        _add(table, "serving.api_key_required", api_key)
    for rule in spec.derivations:
        _add(table, rule.key, [rule.source])
    for key, more in spec.consequences.items():
        _add(table, key, more)
    for pattern, more in COMMON_CONSEQUENCES:
        _add(table, pattern, more)
    return tuple((k, tuple(v)) for k, v in table.items())


def inputs_for(key: str, spec: EngineSpec) -> tuple[str, ...]:
    """The inputs of ``key`` under ``spec`` (every matching row, in table order, at most MAX_INPUTS)."""
    out: list[str] = []
    for pattern, inputs in link_table(spec):
        if pattern == key or fnmatch.fnmatchcase(key, pattern):
            out.extend(i for i in inputs if i != key and i not in out)
    return tuple(out[:MAX_INPUTS])


def link_inputs(facts: Mapping[str, Fact], spec: EngineSpec) -> dict[str, Fact]:
    """``facts`` with each one's provenance naming its inputs (facts with none are unchanged)."""
    out: dict[str, Fact] = {}
    for key, fact in facts.items():
        inputs = inputs_for(key, spec)
        if inputs and fact.provenance.inputs != inputs:
            out[key] = replace(fact, provenance=replace(fact.provenance, inputs=inputs))
        else:
            out[key] = fact
    return out
