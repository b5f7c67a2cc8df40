"""Launchers as data: NVIDIA Dynamo workers and NVIDIA NIM LLM containers, and the engine under each.

A launcher starts an engine in a process of its own making and reads the engine's configuration
through it: ``python -m dynamo.vllm`` builds vLLM's own argument parser and hands it every flag
that is not Dynamo's, ``python -m vllm_nvext.entrypoints.openai.api_server`` is NVIDIA's vLLM
server with NIM's ``NIM_*`` variables on top. A :class:`LauncherSpec` says which entry points are
the launcher's, which flags and variables are its own (so the engine's table does not misread
them: a Dynamo switch never swallows the next argument), where it serves the engine's metrics,
and which engine defaults stop holding under it (a Dynamo worker serves no HTTP API: vLLM's port
8000 is not its port). :func:`launched` merges it into the engine's :class:`EngineSpec` with
``dataclasses.replace``; the engine tables themselves stay as they are.

Sources, read for these tables (reference only, nothing copied):

- ai-dynamo/dynamo ``components/src/dynamo/vllm/args.py`` @ 000a36a7399ab3fa8e27d9537d8b1f5020e34db4:
  Dynamo's own groups are parsed first (``parse_known_args``), everything unknown goes to vLLM's
  ``FlexibleArgumentParser`` (``AsyncEngineArgs.add_cli_args``): vLLM's flags pass through.
- ``components/src/dynamo/common/configuration/groups/runtime_args.py`` @
  007ec17411ddb372faf45e6a7641edd19dc6d3de: the flags common to every Dynamo worker (``--namespace``
  / ``DYN_NAMESPACE``, ``--endpoint`` / ``DYN_ENDPOINT`` as ``dyn://namespace.component.endpoint``,
  ``--discovery-backend``, ``--request-plane``, ``--connector`` (nargs ``*``), …).
- ``components/src/dynamo/vllm/backend_args.py`` @ 036f289b17f289ffa99c34d554eb8ca8cc4a2b88,
  ``components/src/dynamo/sglang/backend_args.py`` @ 02ae17cce37049e29399bb9fab260c55b68c46e5:
  the per-engine Dynamo flags (``--is-prefill-worker``, ``--is-decode-worker``, ``--use-sglang-tokenizer``…).
- ``components/src/dynamo/trtllm/backend_args.py`` @ 0a6a115c6cd15ae95647e90c55be2ea06b36e66f:
  ``dynamo.trtllm`` parses TensorRT-LLM's settings itself, under its own spellings
  (``--tensor-parallel-size``, ``--kv-block-size``, ``--max-batch-size``, ``--max-seq-len``,
  ``--free-gpu-memory-fraction``, ``--extra-engine-args`` YAML), each with a ``DYN_TRTLLM_*`` variable.
- docs.nvidia.com/dynamo/latest/backends/vllm/prometheus.html (and …/sglang/…, …/trtllm/…): the
  engine's metrics are passed through on the worker's system ``/metrics`` (``vllm:``, ``sglang:``,
  ``trtllm_`` families next to ``dynamo_*``), served only when ``DYN_SYSTEM_PORT`` is set (default
  ``-1``, disabled); the operator sets ``DYN_SYSTEM_ENABLED=true`` and ``DYN_SYSTEM_PORT=9090``
  (deploy/operator tests), older releases needed ``DYN_SYSTEM_ENABLED`` as well.
- ``lib/llm/src/model_card.rs`` @ 01159fcc8a491d274fbd7db20f068478fa4a4809: ``mdcsum()``, see
  :data:`MDC_CHECKSUM_FIELDS`.
- NIM for LLMs: docs.nvidia.com/nim/large-language-models/latest/reference/environment-variables.html
  (``NIM_SERVER_PORT``, ``NIM_MODEL_PROFILE``, ``NIM_MODEL_PATH``, ``NIM_LOG_LEVEL``), …/1.12.0/profiles.html
  and …/2.1.5/deployment/model-profiles-and-selection.html (profile names
  ``<backend>-<precision>-tp<N>-pp<M>[-lora]``; profile ids are hashes), and NIM 1.x containers started as
  ``python3 -m vllm_nvext.entrypoints.openai.api_server --max-model-len 16000 …`` (vLLM flags pass
  through; DataDog integrations-core ``nvidia_nim`` names that module as the process signature).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from agent.engines.base import MODEL, EngineSpec, Entrypoint, SettingSpec
from skewwatch.core.facts import FactValue

DYNAMO = "dynamo"
NIM = "nim"

_DYNAMO_SOURCE = "ai-dynamo/dynamo components/src/dynamo/{engine}/ (args.py, backend_args.py)"


@dataclass(frozen=True)
class MetricsPort:
    """Where a launcher serves the engine's metrics: a port read from the environment."""

    env: tuple[str, ...]  # the variables naming the port, first set wins
    path: str = "/metrics"
    host_env: tuple[str, ...] = ()
    # Values that mean "not served" (Dynamo's default -1), and variables that switch it off.
    disabled_values: frozenset[str] = frozenset({"-1"})
    off_env: tuple[str, ...] = ()
    source: str = ""


@dataclass(frozen=True)
class LauncherSpec:
    """One launcher of one engine: its entry points, its own flags and variables, its metrics."""

    name: str  # dynamo | nim: reported as runtime.launcher
    engine: str  # vllm | sglang | trtllm, or "unknown" when only the environment can tell (NIM SDK)
    entrypoints: tuple[Entrypoint, ...]
    # The launcher's own settings: canonical where they mean an engine setting (dynamo.trtllm's
    # --max-batch-size is max_num_seqs), else only there so the parser knows they take a value.
    settings: tuple[SettingSpec, ...] = ()
    switches: tuple[str, ...] = ()  # the launcher's own flags that take no value
    env_prefixes: tuple[str, ...] = ()
    config_flags: tuple[str, ...] = ()
    # Engine defaults that do not hold under the launcher, and the launcher's own defaults.
    drop_defaults: tuple[str, ...] = ()
    defaults: Mapping[str, FactValue] = field(default_factory=dict)
    metrics: MetricsPort | None = None
    source: str = ""

    def describe(self) -> str:
        return "NVIDIA Dynamo worker" if self.name == DYNAMO else "NVIDIA NIM container"


def launched(engine: EngineSpec, launcher: LauncherSpec) -> EngineSpec:
    """``engine`` as ``launcher`` starts it: the launcher's entry points, its settings after the
    engine's (so its own spelling of a flag wins), its switches, variables and defaults."""
    defaults = {k: v for k, v in engine.defaults.items() if k not in launcher.drop_defaults}
    defaults.update(launcher.defaults)
    return replace(
        engine,
        entrypoints=launcher.entrypoints,
        settings=(*engine.settings, *launcher.settings),
        switches=(*engine.switches, *launcher.switches),
        env_prefixes=(*launcher.env_prefixes, *engine.env_prefixes),
        config_flags=(*engine.config_flags, *launcher.config_flags),
        defaults=defaults,
    )


# --- NVIDIA Dynamo ----------------------------------------------------------------------------

# runtime_args.py: every worker's own switches (argparse BooleanOptionalAction: --no-X too).
DYNAMO_RUNTIME_SWITCHES: tuple[str, ...] = (
    "--fpm-trace",
    "--exclude-tools-when-tool-choice-none",
    "--multimodal-embedding-cache-publisher",
    "--tcp-tls-insecure",
    "--nats-tls-insecure",
    "--dyn-enable-structural-tag",
)
# Not tabled: --connector and --output-modalities take several values (nargs "*"); given more
# than one, the second is read as a positional argument, which a Dynamo worker has none of.

DYNAMO_VLLM_SWITCHES: tuple[str, ...] = (
    "--is-prefill-worker",
    "--is-decode-worker",
    "--use-vllm-tokenizer",
    "--route-to-encoder",
    "--multimodal-encode-worker",
    "--multimodal-worker",
    "--multimodal-decode-worker",
    "--enable-multimodal",
    "--frontend-decoding",
    "--omni",
    "--gms-shadow-mode",
)
DYNAMO_SGLANG_SWITCHES: tuple[str, ...] = (
    "--use-sglang-tokenizer",
    "--multimodal-processor",
    "--multimodal-encode-worker",
    "--multimodal-worker",
    "--embedding-worker",
    "--image-diffusion-worker",
    "--video-generation-worker",
)

# dynamo.trtllm's own spellings of TensorRT-LLM settings (backend_args.py), each with its
# DYN_TRTLLM_* variable: canonical keys where they differ from trtllm-serve's --tp_size,
# --kv_cache_free_gpu_memory_fraction, --extra_llm_api_options; the ones that normalise to
# trtllm-serve's own (--max-batch-size is --max_batch_size) are here too, with their variables.
DYNAMO_TRTLLM_SETTINGS: tuple[SettingSpec, ...] = (
    SettingSpec(MODEL, ("--model", "--model-path"), env=("DYN_TRTLLM_MODEL",)),
    SettingSpec("runtime.served_model_name", ("--served-model-name",), env=("DYN_TRTLLM_SERVED_MODEL_NAME",)),
    SettingSpec(
        "runtime.tensor_parallel_size",
        ("--tensor-parallel-size",),
        "int",
        env=("DYN_TRTLLM_TENSOR_PARALLEL_SIZE",),
    ),
    SettingSpec(
        "runtime.pipeline_parallel_size",
        ("--pipeline-parallel-size",),
        "int",
        env=("DYN_TRTLLM_PIPELINE_PARALLEL_SIZE",),
    ),
    SettingSpec(
        "runtime.expert_parallel_size",
        ("--expert-parallel-size",),
        "int",
        env=("DYN_TRTLLM_EXPERT_PARALLEL_SIZE",),
    ),
    SettingSpec("runtime.block_size", ("--kv-block-size",), "int", env=("DYN_TRTLLM_KV_BLOCK_SIZE",)),
    SettingSpec("runtime.max_num_seqs", ("--max-batch-size",), "int", env=("DYN_TRTLLM_MAX_BATCH_SIZE",)),
    SettingSpec(
        "runtime.max_num_batched_tokens", ("--max-num-tokens",), "int", env=("DYN_TRTLLM_MAX_NUM_TOKENS",)
    ),
    SettingSpec("runtime.max_model_len", ("--max-seq-len",), "int", env=("DYN_TRTLLM_MAX_SEQ_LEN",)),
    SettingSpec("runtime.max_beam_width", ("--max-beam-width",), "int", env=("DYN_TRTLLM_MAX_BEAM_WIDTH",)),
    # kv_cache_config.free_gpu_memory_fraction: agent/engines/trtllm.py reads it as
    # runtime.gpu_memory_utilization (a share of the memory left after the weights).
    SettingSpec(
        "runtime.gpu_memory_utilization",
        ("--free-gpu-memory-fraction",),
        "float",
        env=("DYN_TRTLLM_FREE_GPU_MEMORY_FRACTION",),
    ),
    SettingSpec("runtime.load_format", ("--load-format",), env=("DYN_TRTLLM_LOAD_FORMAT",)),
)
DYNAMO_TRTLLM_SWITCHES: tuple[str, ...] = (
    "--enable-attention-dp",
    "--conversation-affinity",
    "--publish-kv-events",
    "--publish-events-and-metrics",
    "--enable-multimodal",
)

DYNAMO_METRICS = MetricsPort(
    env=("DYN_SYSTEM_PORT",),
    host_env=("DYN_SYSTEM_HOST",),
    off_env=("DYN_SYSTEM_ENABLED",),
    source="docs.nvidia.com/dynamo/latest/backends/{vllm,sglang,trtllm}/prometheus.html: engine metrics "
    "passed through on the system /metrics; DYN_SYSTEM_PORT default -1 (disabled)",
)


def _dynamo(
    engine: str,
    modules: tuple[str, ...],
    switches: tuple[str, ...],
    *,
    settings: tuple[SettingSpec, ...] = (),
    config_flags: tuple[str, ...] = (),
    defaults: Mapping[str, FactValue] | None = None,
) -> LauncherSpec:
    return LauncherSpec(
        name=DYNAMO,
        engine=engine,
        entrypoints=tuple(Entrypoint("module", m, launcher=DYNAMO) for m in modules),
        settings=settings,
        switches=(*DYNAMO_RUNTIME_SWITCHES, *switches),
        env_prefixes=("DYN_", "ETCD_", "NATS_"),
        config_flags=config_flags,
        # A worker serves no HTTP API of the engine's (the Dynamo frontend does): the engine's port
        # default is not its port.
        drop_defaults=("serving.port",),
        defaults=dict(defaults or {}),
        metrics=DYNAMO_METRICS,
        source=_DYNAMO_SOURCE.format(engine=engine),
    )


DYNAMO_VLLM_LAUNCHER = _dynamo("vllm", ("dynamo.vllm", "dynamo.vllm.unified_main"), DYNAMO_VLLM_SWITCHES)
DYNAMO_SGLANG_LAUNCHER = _dynamo("sglang", ("dynamo.sglang",), DYNAMO_SGLANG_SWITCHES)
DYNAMO_TRTLLM_LAUNCHER = _dynamo(
    "trtllm",
    ("dynamo.trtllm",),
    DYNAMO_TRTLLM_SWITCHES,
    settings=DYNAMO_TRTLLM_SETTINGS,
    config_flags=("--extra-engine-args",),
    # backend_args.py: --kv-block-size default 32 (trtllm-serve has no such flag).
    defaults={"runtime.block_size": 32},
)

# --- NVIDIA NIM -------------------------------------------------------------------------------

# NIM_* variables on canonical keys (a flag given on the command line still beats its variable).
NIM_SETTINGS: tuple[SettingSpec, ...] = (
    SettingSpec(MODEL, (), env=("NIM_MODEL_NAME", "NIM_MODEL_PATH")),
    SettingSpec("runtime.served_model_name", (), env=("NIM_SERVED_MODEL_NAME",)),
    SettingSpec("runtime.max_model_len", (), "int", env=("NIM_MAX_MODEL_LEN",)),
    SettingSpec("runtime.tensor_parallel_size", (), "int", env=("NIM_TENSOR_PARALLEL_SIZE",)),
    SettingSpec("runtime.pipeline_parallel_size", (), "int", env=("NIM_PIPELINE_PARALLEL_SIZE",)),
    SettingSpec("serving.port", (), "int", env=("NIM_SERVER_PORT",)),
)
NIM_SOURCE = "docs.nvidia.com/nim/large-language-models/latest/reference/environment-variables.html"

NIM_VLLM_NVEXT = LauncherSpec(
    name=NIM,
    engine="vllm",
    entrypoints=(Entrypoint("module", "vllm_nvext.entrypoints.openai.api_server", launcher=NIM),),
    settings=NIM_SETTINGS,
    env_prefixes=("NIM_",),
    defaults={"serving.port": 8000},  # NIM_SERVER_PORT's default
    source=NIM_SOURCE,
)
# NIM 1.x's SDK server runs the backend its model profile names (TensorRT-LLM, vLLM or SGLang):
# only NIM_MODEL_PROFILE, when it is a profile name rather than an id, can tell which.
NIM_LLM_SDK = LauncherSpec(
    name=NIM,
    engine="unknown",
    entrypoints=(Entrypoint("module", "nim_llm_sdk.entrypoints.openai.api_server", launcher=NIM),),
    settings=NIM_SETTINGS,
    env_prefixes=("NIM_",),
    defaults={"serving.port": 8000},
    source=NIM_SOURCE,
)

LAUNCHERS: tuple[LauncherSpec, ...] = (
    DYNAMO_VLLM_LAUNCHER,
    DYNAMO_SGLANG_LAUNCHER,
    DYNAMO_TRTLLM_LAUNCHER,
    NIM_VLLM_NVEXT,
    NIM_LLM_SDK,
)

# A profile name's first word is its backend: ``vllm-bf16-tp1-pp1``, ``sglang-fp8-tp2-pp1-lora``,
# ``tensorrt_llm-h100-fp8-tp1-throughput`` (NIM 1.x). An id is 64 hex digits and says nothing.
NIM_PROFILE_BACKENDS: Mapping[str, str] = {
    "vllm": "vllm",
    "sglang": "sglang",
    "tensorrt_llm": "trtllm",
    "trtllm": "trtllm",
}
NIM_PROFILE_ENV = "NIM_MODEL_PROFILE"
_PROFILE_ID = re.compile(r"^[0-9a-f]{32,64}$")


def nim_backend(env: Mapping[str, str]) -> tuple[str | None, str]:
    """The engine a NIM SDK container runs, from ``NIM_MODEL_PROFILE``, and why (or why not)."""
    profile = env.get(NIM_PROFILE_ENV, "").strip()
    if not profile:
        return None, f"no {NIM_PROFILE_ENV}: NIM chose the profile (and its backend) itself at start-up"
    if _PROFILE_ID.match(profile.lower()):
        return None, (
            f"{NIM_PROFILE_ENV} is a profile id; its backend is in the container's model manifest, "
            "which the agent does not read"
        )
    backend = NIM_PROFILE_BACKENDS.get(profile.lower().split("-", 1)[0])
    if backend is None:
        return None, f"{NIM_PROFILE_ENV} names no backend skewwatch knows (vllm, sglang, tensorrt_llm)"
    return backend, f"{NIM_PROFILE_ENV} names a {backend} profile"


def launcher_for(entrypoint: Entrypoint) -> LauncherSpec | None:
    """The launcher whose entry point this is, else None."""
    if entrypoint.launcher is None:
        return None
    return next(
        (
            spec
            for spec in LAUNCHERS
            for ep in spec.entrypoints
            if (ep.kind, ep.name, ep.launcher) == (entrypoint.kind, entrypoint.name, entrypoint.launcher)
        ),
        None,
    )


def metrics_port(metrics: MetricsPort, env: Mapping[str, str]) -> tuple[int | None, str]:
    """The port the launcher serves metrics on, from its environment, and the variable that said so
    (or why none): an unset, disabled or malformed port is None, never a guess."""
    for name in metrics.off_env:
        if env.get(name, "").strip().lower() in ("0", "false", "no", "off"):
            return None, f"{name}={env[name].strip()}: the system status server is off"
    for name in metrics.env:
        raw = env.get(name, "").strip()
        if not raw:
            continue
        if raw in metrics.disabled_values:
            return None, f"{name}={raw}: the system status server is disabled"
        if raw.isdigit() and 0 < int(raw) < 65536:
            return int(raw), name
        return None, f"{name}={raw[:20]!r} is not a port"
    return None, f"no {' or '.join(metrics.env)}: the system status server (and its /metrics) is not served"


# --- Dynamo's Model Deployment Card -----------------------------------------------------------


@dataclass(frozen=True)
class MdcField:
    """One field of Dynamo's Model Deployment Card and the facts that carry it."""

    name: str  # the card's field, as model_card.rs names it
    facts: tuple[str, ...]  # the fact keys whose change changes the field
    checksummed: bool  # part of mdcsum()
    note: str = ""


_MDC = "ai-dynamo/dynamo lib/llm/src/model_card.rs @ 01159fcc8a491d274fbd7db20f068478fa4a4809"

# ``ModelDeploymentCard::mdcsum()`` hashes (blake3) these fields only; the frontend groups workers
# into WorkerSets by (namespace, mdcsum), so a worker whose card sums otherwise does not join the
# existing set of the same model ("rejected as incompatible with the existing WorkerSet",
# model_card.rs): a rolling update that changes one of them splits the model's workers. Before the
# field-wise sum (``mdcsum = blake3(to_json())``, 2025), the whole card was hashed, which held
# context_length, kv_cache_block_size and migration_limit and no runtime_config.
MDC_CHECKSUM_FIELDS: tuple[MdcField, ...] = (
    MdcField(
        "display_name",
        ("runtime.served_model_name", "model.id", "model.path"),
        True,
        "--served-model-name, else the model as given",
    ),
    MdcField("aliases", ("runtime.served_model_name",), True, "--served-model-name's further names"),
    MdcField("source_path", ("model.id", "model.path"), True, "--model"),
    MdcField("model_info", ("model.config.digest",), True, "checksum of config.json"),
    MdcField("tokenizer", ("model.tokenizer.digest",), True, "checksum of tokenizer.json / tiktoken model"),
    MdcField("prompt_formatter", ("model.tokenizer.digest",), True, "checksum of tokenizer_config.json"),
    MdcField(
        "chat_template_file",
        ("model.chat_template.digest", "runtime.args.custom_jinja_template"),
        True,
        "checksum of the chat template (the model's, or --custom-jinja-template)",
    ),
    MdcField("gen_config", ("model.generation_config.digest",), True, "checksum of generation_config.json"),
    MdcField(
        "context_length",
        ("runtime.max_model_len",),
        True,
        "effective_context_length(): runtime_config.context_length (the engine's max model length), "
        "else the architecture's max_position_embeddings",
    ),
    MdcField(
        "kv_cache_block_size", ("runtime.block_size",), True, "--block-size / --page-size / --kv-block-size"
    ),
    MdcField(
        "worker_type",
        (
            "runtime.args.is_prefill_worker",
            "runtime.args.is_decode_worker",
            "runtime.args.disaggregation_mode",
        ),
        True,
        "prefill | decode | encode | aggregated",
    ),
    MdcField("router_config", ("runtime.args.router_mode",), True, "hashed as JSON"),
    # Published with the card (ModelRuntimeConfig) but not summed: "TODO: Do we want any of
    # user_data or runtime_config?" in mdcsum(). A change here does not split the WorkerSet.
    MdcField(
        "runtime_config.total_kv_blocks",
        ("runtime.num_gpu_blocks",),
        False,
        "the KV cache the engine allocated",
    ),
    MdcField("runtime_config.max_num_seqs", ("runtime.max_num_seqs",), False),
    MdcField("runtime_config.max_num_batched_tokens", ("runtime.max_num_batched_tokens",), False),
)
MDC_SOURCE = _MDC


def mdc_fields_for(keys: set[str] | frozenset[str]) -> list[MdcField]:
    """The card's fields that a change of these fact keys changes, checksummed ones first."""
    out: list[MdcField] = []
    for f in MDC_CHECKSUM_FIELDS:
        if any(key in keys for key in f.facts):
            out.append(f)
    return sorted(out, key=lambda f: not f.checksummed)


def mdc_table() -> list[dict[str, str]]:
    """The card's fields as rows for docs: field, facts, in the checksum, note."""
    return [
        {
            "field": f.name,
            "facts": ", ".join(f.facts),
            "checksummed": "yes" if f.checksummed else "no",
            "note": f.note,
        }
        for f in MDC_CHECKSUM_FIELDS
    ]
