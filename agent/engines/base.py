"""What an inference engine is, as data: how to recognise its command line and read its settings.

An :class:`EngineSpec` is a table, not code: the executables and Python modules that start the
engine, each setting's flag spellings and environment variables with the canonical fact key it
feeds and the type of its value, the defaults worth reporting, the env-name prefixes whose
variables are configuration, the engine's rules for settings left to ``auto`` (:class:`Derivation`),
and what it calls things on ``/metrics`` and its info endpoints (:class:`MetricsSpec`). The parser
in :mod:`agent.engines.parse`, :mod:`agent.engines.effective` and the runtime-metrics source are
the only code that reads these tables; adding an engine, a flag or a renamed metric is adding a row.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from skewwatch.core.facts import FactValue

# int/float/bool/str as named; "size" is a human-readable integer ("32k" = 32000, "32K" = 32768,
# vLLM's convention for --max-model-len); "dtype" is a string normalised to torch names.
ValueType = Literal["int", "float", "bool", "str", "size", "dtype"]

# Hub cache variables in the order huggingface_hub honours them (``HF_HOME`` then adds ``/hub``).
HUB_CACHE_ENV: tuple[str, ...] = ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_CACHE")

# The pseudo-key of the setting that names the model: the parser turns it into model.id (a hub
# repository id) or model.path (anything path-shaped), which only the value can tell apart.
MODEL = "model"
# The key of the setting that names the model's revision (a hub ref or commit).
REVISION = "model.revision"


@dataclass(frozen=True)
class SettingSpec:
    """One engine setting: where it can be spelled and the canonical fact it becomes."""

    key: str  # canonical fact key (``runtime.max_model_len``) or MODEL
    flags: tuple[str, ...] = ()  # spellings as on the command line: ("--max-model-len",)
    type: ValueType = "str"
    env: tuple[str, ...] = ()  # environment variables that set it too (TGI's clap ``env``)
    invert: bool = False  # the flag says the opposite: SGLang --disable-radix-cache
    multiple: bool = False  # takes one or more values: --served-model-name a b
    # A bool flag is a switch (``--enforce-eager``) unless it takes a value (TGI's ``--sharded true``).
    takes_value: bool = False


@dataclass(frozen=True)
class Entrypoint:
    """One way of starting the engine."""

    kind: Literal["executable", "module"]
    name: str  # basename of the executable or console script, or the ``python -m`` module
    subcommand: str | None = None  # ``vllm serve``: the word that must follow
    positional: str | None = None  # setting key fed by the first positional argument
    # A framework that starts the engine in its own worker and passes its flags through
    # (NVIDIA Dynamo's ``python -m dynamo.vllm``): reported as ``runtime.launcher``.
    launcher: str | None = None


ObservationKind = Literal[
    "counter_rate",  # per-second rate of a counter's delta over the window
    "histogram_sum_rate",  # per-second rate of a histogram's _sum (TGI counts tokens this way)
    "histogram_quantiles",  # p50/p95/p99 of the observations that fell in the window
    "gauge_mean",  # mean of the gauge's samples over the window
    "gauge_sample_quantile",  # p95 of the gauge's samples over the last scrapes (effective batch)
]


@dataclass(frozen=True)
class ObservationSpec:
    """One observation and the engine's metric names for it (no prefix), preferred name first.

    Several names cover renames across versions: vLLM V1's ``kv_cache_usage_perc`` before V0's
    ``gpu_cache_usage_perc``. For quantiles, ``name`` is the stem: ``ttft_seconds`` becomes
    ``ttft_seconds_p50`` … ``ttft_seconds_p99``.
    """

    name: str
    unit: str
    kind: ObservationKind
    metrics: tuple[str, ...]
    combine: Literal["sum", "max"] = "sum"  # several series (tp ranks, models) of one gauge
    quantiles: tuple[float, ...] = (0.5, 0.95, 0.99)


@dataclass(frozen=True)
class InfoMetric:
    """An ``*_info`` metric whose labels are configuration: label → (fact key, type)."""

    metric: str  # without prefix: "cache_config_info"
    labels: Mapping[str, tuple[str, ValueType]]
    extra_prefix: str  # where labels not in the table go: "runtime.cache_config"


@dataclass(frozen=True)
class InfoEndpoint:
    """A JSON endpoint on the engine's port and the fields of it that are facts.

    ``fields`` maps a dotted path into the document (``data.0.max_model_len``) to the fact key and
    type. A value of ``"auto"`` or null is what was asked, not what runs, and is not reported.
    """

    path: str
    fields: Mapping[str, tuple[str, ValueType]]
    # May answer 401 when the server was started with an API key (vLLM's /v1 routes).
    needs_auth: bool = False
    # Older routes of the same document, asked in order only when ``path`` is not served (404):
    # SGLang's deprecated ``/get_server_info`` behind ``/server_info``. The one that answered is
    # remembered for the process, so a deprecated route is never asked every cycle.
    fallbacks: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExpectedFamily:
    """A metric family (no prefix) the engine exports in the releases [since, until) of its
    reported version; missing from a scrape, it is reported in ``runtime.metrics.missing``.

    ``replaced_by`` names the family that replaced it where the engine renamed it (vLLM's
    ``gpu_cache_usage_perc`` by ``kv_cache_usage_perc``); ``source`` says where this was read.
    """

    name: str
    since: str | None = None
    until: str | None = None
    replaced_by: str | None = None
    source: str = ""


@dataclass(frozen=True)
class MetricsSpec:
    """What an engine calls things on ``/metrics`` and which info endpoints it serves."""

    prefixes: tuple[str, ...] = ()
    info_metrics: tuple[InfoMetric, ...] = ()
    model_name_label: str | None = None
    # Values of that label that name no model (TensorRT-LLM's server sets "undefined").
    model_name_placeholders: frozenset[str] = frozenset()
    # Labels of info metrics that say which process or replica reported, not how it is configured.
    identity_labels: frozenset[str] = frozenset()
    # Gauges whose value is configuration the runtime resolved: metric → (fact key, type).
    value_facts: Mapping[str, tuple[str, ValueType]] = field(default_factory=dict)
    observations: tuple[ObservationSpec, ...] = ()
    info_endpoints: tuple[InfoEndpoint, ...] = ()
    # The families a scrape of each release should hold (metric-name drift is a fact).
    expected: tuple[ExpectedFamily, ...] = ()
    # Some releases serve the families without any prefix (TensorRT-LLM 1.1's five request
    # families): read so only when the process source says it is this engine, never detected so.
    unprefixed: bool = False


@dataclass(frozen=True)
class Derivation:
    """The engine's rule for a setting left unset or to ``auto``: its effective value comes from
    another fact (the checkpoint's ``torch_dtype``, the model's context length).

    Applies when ``key`` is absent or one of ``when``; ``mapping`` translates the source value
    (vLLM serves a float32 checkpoint as float16). ``rule`` says so in the provenance.
    """

    key: str
    source: str
    rule: str
    when: tuple[FactValue, ...] = (None, "auto")
    mapping: Mapping[str, FactValue] = field(default_factory=dict)
    type: ValueType = "str"
    # The releases the rule holds for, [since, until): a rule that changed between releases applies
    # only where the engine's reported version (``runtime.version``) lies in its range; with no
    # version known, the rule of the newest releases (until=None) applies.
    since: str | None = None
    until: str | None = None
    # Only where another fact compares so with a number: ("hardware.gpu.compute_capability", "<", 8.0).
    only_if: tuple[str, str, float] | None = None


@dataclass(frozen=True)
class VersionedDefault:
    """A default that changed between releases: applies where the version lies in [since, until).

    Used for a setting left unset whose default is known for some releases only (vLLM's
    ``--gpu-memory-utilization``: 0.9 in the releases our captures hold, 0.92 in 0.32). Outside
    the known ranges, or with no version known, the default is not reported: the runtime's own
    report (``cache_config_info``) is the truth then.
    """

    key: str
    value: FactValue
    since: str | None = None
    until: str | None = None
    source: str = ""  # where the default was read: "vllm/config/cache.py in 0.32.0"


FLOAT32_AS_FLOAT16 = Derivation(
    "runtime.dtype",
    "model.config.torch_dtype",
    "--dtype auto: the checkpoint dtype, float32 served as float16",
    mapping={"float32": "float16", "float": "float16"},
    type="dtype",
)


def checkpoint_derivations(
    context_flag: str, auto_dtype: tuple[Derivation, ...] = (FLOAT32_AS_FLOAT16,)
) -> tuple[Derivation, ...]:
    """The auto rules vLLM and SGLang share (SGLang's model_config follows vLLM's).

    ``--dtype auto`` is the checkpoint's dtype, with float32 checkpoints downcast (``auto_dtype``:
    to float16 in vLLM before 0.9.1 and in SGLang, "following common practice"; vLLM's own rules
    since are in agent/engines/vllm.py); the KV cache follows the model dtype; an unset context
    length and quantization come from the checkpoint.
    """
    return (
        *auto_dtype,
        Derivation(
            "runtime.kv_cache_dtype", "runtime.dtype", "--kv-cache-dtype auto: the model dtype", type="dtype"
        ),
        Derivation(
            "runtime.max_model_len",
            "model.config.max_position_embeddings",
            f"no {context_flag}: the model's context length",
            when=(None,),
            type="int",
        ),
        Derivation(
            "runtime.quantization",
            "model.config.quantization",
            "no --quantization: the checkpoint's quantization_config.quant_method",
            when=(None,),
        ),
    )


@dataclass(frozen=True)
class EngineSpec:
    name: str  # vllm | sglang | tgi | trtllm
    entrypoints: tuple[Entrypoint, ...]
    settings: tuple[SettingSpec, ...]
    # Flags that take no value but feed no canonical key; knowing them keeps the parser from
    # swallowing the next positional argument as their value.
    switches: tuple[str, ...] = ()
    defaults: Mapping[str, FactValue] = field(default_factory=dict)
    metrics_path: str = "/metrics"
    port_key: str = "serving.port"
    host_flags: tuple[str, ...] = ("--host",)
    api_key_flags: tuple[str, ...] = ("--api-key",)
    api_key_env: tuple[str, ...] = ()
    env_prefixes: tuple[str, ...] = ()
    # argparse accepts unique prefixes of long flags (vLLM, SGLang); clap (TGI) does not.
    allow_abbrev: bool = True
    # ``--config FILE``: a YAML file of flag → value the engine reads before its command line.
    config_flags: tuple[str, ...] = ()
    # The config file is a nested mapping of API options, read as dotted flags
    # (``kv_cache_config: {dtype: fp8}`` is ``--kv_cache_config.dtype fp8``): TensorRT-LLM's
    # ``--extra_llm_api_options``.
    config_nested: bool = False
    # The config file's values win over the command line's (TensorRT-LLM merges its extra
    # options over the flags); else the command line wins (vLLM, SGLang).
    config_overrides_cli: bool = False
    # Variables whose value is more arguments (KServe's ``VLLM_ADDITIONAL_ARGS``, expanded by the
    # launch script into the command line, or read by the launcher itself).
    args_env: tuple[str, ...] = ()
    derivations: tuple[Derivation, ...] = ()
    # Defaults that differ by release, resolved once the engine's version is known (effective.py).
    versioned_defaults: tuple[VersionedDefault, ...] = ()
    # Where the engine keeps downloaded models: flags naming the hub cache (vLLM's
    # ``--download-dir``) before the variables, then ``HF_HOME``/hub and ``~/.cache``.
    download_dir_flags: tuple[str, ...] = ()
    hub_cache_env: tuple[str, ...] = HUB_CACHE_ENV
    # Settings read only to find the model on disk, never reported as facts (GENERIC: every
    # engine's model and revision flags, which mean nothing as facts of an unknown engine).
    lookup_settings: tuple[SettingSpec, ...] = ()
    metrics: MetricsSpec = field(default_factory=MetricsSpec)
    # What the engine resolves from other settings at start-up: fact key -> the fact keys (or
    # globs) whose change changes it (vLLM sizes its KV cache from dtype, memory share, GPU…).
    # With the flags, env and auto rules above, these are the links that make one cause one
    # finding (agent.engines.links).
    consequences: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def flag_table(self) -> dict[str, SettingSpec]:
        """Normalised flag name (no dashes, ``_`` as ``-``) → setting."""
        return {normalise_flag(f): s for s in self.settings for f in s.flags}

    def env_table(self) -> dict[str, SettingSpec]:
        """Environment variable name → setting."""
        return {e: s for s in self.settings for e in s.env}

    def switch_names(self) -> frozenset[str]:
        names = {normalise_flag(f) for f in self.switches}
        names.update(
            normalise_flag(f)
            for s in self.settings
            if s.type == "bool" and not s.takes_value
            for f in s.flags
        )
        return frozenset(names)

    def reports_env(self, name: str) -> bool:
        """True for environment variables worth reporting as ``runtime.env.<NAME>``."""
        return name in self.env_table() or name in self.api_key_env or name.startswith(self.env_prefixes)


def args_key(spec: EngineSpec, flag: str) -> str:
    """``runtime.args.<name>``: the one key a setting's flag is reported under, whatever spelling."""
    name = normalise_flag(flag)
    setting = spec.flag_table().get(name)
    if setting is not None:
        longs = [f for f in setting.flags if f.startswith("--")]
        if longs:
            name = normalise_flag(longs[0])
    return "runtime.args." + name.replace("-", "_")


# The KV cache an engine can allocate follows from everything that shares GPU memory with it
# (vLLM's and SGLang's profiling run): the engines' ``consequences`` tables name this.
KV_CACHE_INPUTS: tuple[str, ...] = (
    "runtime.dtype",
    "runtime.kv_cache_dtype",
    "runtime.quantization",
    "runtime.gpu_memory_utilization",
    "runtime.block_size",
    "runtime.max_model_len",
    "runtime.max_num_seqs",
    "runtime.max_num_batched_tokens",
    "runtime.tensor_parallel_size",
    "runtime.pipeline_parallel_size",
    "runtime.enforce_eager",
    "hardware.gpu.memory_bytes",
    "hardware.gpu.product",
    "model.weights.*",
)


def normalise_flag(flag: str) -> str:
    """``--max_model_len`` → ``max-model-len``: argparse (vLLM) treats ``_`` and ``-`` alike."""
    return flag.lstrip("-").replace("_", "-")


# Environment prefixes that configure any of the engines or the libraries under them.
COMMON_ENV_PREFIXES: tuple[str, ...] = (
    "CUDA_",
    "NCCL_",
    "NVIDIA_",
    "HF_",
    "HUGGING_FACE_",
    "HUGGINGFACE_",
    "TRANSFORMERS_",
    "TOKENIZERS_",
    "TORCH_",
    "PYTORCH_",
    "TORCHINDUCTOR_",
    "TRITON_",
    "OMP_",
    "MKL_",
    "FLASHINFER_",
    "XFORMERS_",
    "LMCACHE_",
    "UCX_",
    "NIXL_",
)
