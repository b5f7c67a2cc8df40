"""The mapping table: which intent field constrains which fact or observation, and how they compare.

One row per field of the published ModelSpec v0.1 schema (``MODELSPEC_ROWS``) and per SkewPolicy
pin (``POLICY_ROWS``). A row either checks (``target`` names a fact key, ``observation:NAME``,
``replicas`` or ``source:NAME``; ``compare`` names a comparator in ``COMPARATORS``; ``fallbacks``
are further fact keys read in order when the target is not reported, and ``replicas`` among them
falls back to the live-replica count under ``fallback_compare``) or is
documentary (``target`` None, ``note`` says why no fact can check it). Fields ending in ``.*``
map each entry (an environment variable NAME → ``runtime.env.NAME``). docs/modelspec-mapping.md
is this table in prose; a test checks that every schema field has exactly one row.
"""

# ruff: noqa: E501  (a data table: one row per line reads better than wrapped rows)

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from collector.intent.versions import in_range
from skewwatch.core.fingerprint import canonical
from skewwatch.core.gpu import gpu_class_name, mig_profile_name, normalise_gpu


@dataclass(frozen=True)
class Row:
    field: str
    target: str | None
    compare: str = "equal"
    note: str = ""
    fallbacks: tuple[str, ...] = ()
    # With ``replicas`` among the fallbacks: the comparator of the live-replica count, used when no
    # replica reports the target (the scaling rows: the autoscaler's bounds, else the live count).
    fallback_compare: str = ""

    @property
    def checks(self) -> bool:
        return self.target is not None


# -- value normalisers (data) ------------------------------------------------------------------

DTYPE_ALIASES: dict[str, str] = {
    "fp16": "float16", "float16": "float16", "half": "float16", "f16": "float16", "torch.float16": "float16",
    "bf16": "bfloat16", "bfloat16": "bfloat16", "torch.bfloat16": "bfloat16",
    "fp32": "float32", "float32": "float32", "float": "float32", "f32": "float32", "torch.float32": "float32",
}  # fmt: skip
# ModelSpec precisions that are quantization schemes, not a compute dtype: they constrain
# runtime.quantization (and say nothing about runtime.dtype).
QUANTIZED_PRECISIONS: dict[str, frozenset[str]] = {
    "int8": frozenset({"int8", "w8a8", "w8a8_int8", "bitsandbytes", "smoothquant", "compressed-tensors"}),
    "int4": frozenset({"int4", "awq", "gptq", "awq_marlin", "gptq_marlin", "bitsandbytes", "w4a16"}),
    "fp8": frozenset({"fp8", "fbgemm_fp8", "modelopt", "fp8_e4m3", "compressed-tensors"}),
    "fp4": frozenset({"fp4", "nvfp4", "modelopt_fp4", "mxfp4"}),
}
ENGINE_ALIASES: dict[str, str] = {
    "vllm": "vllm", "v-llm": "vllm",
    "sglang": "sglang",
    "tgi": "tgi", "text-generation-inference": "tgi", "huggingface-tgi": "tgi", "hf-tgi": "tgi",
}  # fmt: skip
KV_DTYPE_ALIASES: dict[str, str] = {"fp8": "fp8_e4m3", "fp8_e4m3fn": "fp8_e4m3", "float8_e4m3fn": "fp8_e4m3"}
NO_QUANTIZATION = frozenset({"", "none", "null", "no", "false", "off"})
# orchestration.autoscaling.kind when nothing scales the workload (the cluster watch says "none").
NO_AUTOSCALER = frozenset({"", "none", "null"})
# ModelSpec serving.protocol -> serving.service.protocol values that serve it (True), that do not
# (False); any other is undecided: h2c (HTTP/2 cleartext) carries gRPC and plain HTTP/2 alike.
PROTOCOLS: dict[str, dict[str, bool]] = {
    "http": {"http": True, "h2c": True, "grpc": False},
    "grpc": {"grpc": True, "http": False},
}


# -- symbolic values: pins that name an engine rule, not a value (data) -------------------------


@dataclass(frozen=True)
class Symbolic:
    """A value that asks the engine to choose (``auto``) rather than naming what runs.

    A pin equal to it is compared with what was *requested*, never with what the rule resolved
    to: ``--kv-cache-dtype auto`` runs the KV cache in the model dtype (the agent reports
    ``runtime.kv_cache_dtype = bfloat16``, provenance ``derived``), and a ``kvCacheDtype: auto``
    pin holds. The request is, in order: the first of ``requested`` a replica reports (the flag
    as given, else the engine's variable); else what the agent read for the setting itself (a
    ``default`` value is the engine's default; a ``derived`` one comes from the engine's auto rule,
    which applies only where the setting was unset or ``auto``; a reported ``auto`` is the request);
    else, when the command line was read (process source ok) and carries no flag, the engine's
    default for the setting (``engine_defaults``, by ``runtime.engine``).
    """

    value: str
    requested: tuple[str, ...]
    engine_defaults: Mapping[str, str]
    means: str


# Fact key -> its symbolic values. Every row (pin, ModelSpec field, facts.* entry) whose target is
# one of these keys and whose value is one of these is compared with the request.
SYMBOLIC_VALUES: dict[str, tuple[Symbolic, ...]] = {
    "runtime.dtype": (
        Symbolic("auto", ("runtime.args.dtype", "runtime.env.DTYPE"), {"vllm": "auto", "sglang": "auto"},
                 "the checkpoint's dtype (vLLM and SGLang serve float32 checkpoints as float16)"),
    ),
    "runtime.kv_cache_dtype": (
        # TGI has no "auto" spelling, but without --kv-cache-dtype it uses the model's dtype too.
        Symbolic("auto", ("runtime.args.kv_cache_dtype", "runtime.env.KV_CACHE_DTYPE"),
                 {"vllm": "auto", "sglang": "auto", "tgi": "auto"}, "the model dtype"),
    ),
}  # fmt: skip

# (comparator, value) -> why the value says nothing about that comparator's fact: such a row is
# documentary. ModelSpec's precision feeds a dtype row and a quantization row; "auto" constrains
# only the dtype (a quantized checkpoint is served with --dtype auto as well).
UNCONSTRAINED: dict[tuple[str, str], str] = {
    ("precision_quantization", "auto"):
        "precision auto says nothing about quantization; pin spec.pins.runtime.quantization in a SkewPolicy",
    ("scaling_strategy", "predictive"):
        "a predictive strategy is how the autoscaler decides, which no object of the cluster states",
}  # fmt: skip

# (fact key, value) -> why a pin of that value cannot be checked; rejected when the intent loads.
UNCHECKABLE_PINS: dict[tuple[str, str], str] = {
    ("runtime.quantization", "auto"):
        "it is not a quantization method (engines read the checkpoint's quantization_config "
        "themselves, so it would accept anything); pin the method (awq, gptq, fp8, ...) or null for "
        "an unquantized model",
    ("hardware.gpu.mig_profiles", "auto"):
        "MIG has no 'auto' profile; pin the profile (3g.40gb) or null for MIG off",
}  # fmt: skip

# Comparators that read every key of their row (target, then fallbacks) instead of the first one
# reported: whether a model is quantized is said by the engine (runtime.quantization, from
# --quantization or the checkpoint) and by the checkpoint (model.config.quantization, null when
# config.json has no quantization_config); a method named by either is the actual value, and the
# row is unverifiable only when neither is reported.
READS_ALL = frozenset({"quantization", "precision_quantization"})


def symbolic(target: str | None, value: Any) -> Symbolic | None:
    """The symbolic value ``value`` is for the fact ``target``, if it is one."""
    if target is None or not isinstance(value, str):
        return None
    text = value.strip().lower()
    return next((s for s in SYMBOLIC_VALUES.get(target, ()) if s.value == text), None)


def unconstrained(compare: str, value: Any) -> str | None:
    """Why ``value`` says nothing a ``compare`` row could check, if it says nothing."""
    return UNCONSTRAINED.get((compare, value.strip().lower())) if isinstance(value, str) else None


def uncheckable(target: str | None, value: Any) -> str | None:
    """Why a pin of ``value`` on ``target`` cannot be checked (rejected at load), or None."""
    if target is None or not isinstance(value, str):
        return None
    return UNCHECKABLE_PINS.get((target, value.strip().lower()))


def norm_dtype(v: Any) -> str:
    text = str(v).strip().lower()
    return DTYPE_ALIASES.get(text, text)


def _str(v: Any) -> str:
    return str(v).strip().lower()


def _digest(v: Any) -> str:
    text = _str(v)
    return text.split(":", 1)[1] if text.startswith("sha256:") else text


_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")
# Kubernetes quantity suffixes, case-sensitive as Kubernetes reads them ("m" is milli).
_UNITS = {
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


def quantity(v: Any) -> float | None:
    """A Kubernetes quantity (``16``, ``500m``, ``128Gi``) or a number, as a float; None if neither."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        return float(v)
    m = _QUANTITY.match(str(v).strip())
    if not m:
        return None
    return float(m.group(1)) * (_UNITS[m.group(2)] if m.group(2) else 1.0)


# -- comparators: (expected, actual) -> True (conforms) / False (drift) / None (cannot tell) -----


def _equal(e: Any, a: Any) -> bool | None:
    if (
        isinstance(e, int | float)
        and isinstance(a, int | float)
        and not isinstance(e, bool)
        and not isinstance(a, bool)
    ):
        return math.isclose(float(e), float(a), rel_tol=1e-9)
    if isinstance(e, str | int | float) and isinstance(a, str) and not isinstance(e, bool):
        return str(e) == a
    return canonical(e) == canonical(a)


def _precision_dtype(e: Any, a: Any) -> bool | None:
    if _str(e) in QUANTIZED_PRECISIONS:
        return None  # the quantization row checks it
    return norm_dtype(e) == norm_dtype(a)


def _precision_quantization(e: Any, a: Any) -> bool | None:
    schemes = QUANTIZED_PRECISIONS.get(_str(e))
    actual = "none" if a is None else _str(a)
    if schemes is None:
        # A float precision says the model runs unquantized.
        return None if norm_dtype(e) not in DTYPE_ALIASES.values() else actual in NO_QUANTIZATION
    return actual in schemes


def _engine(e: Any, a: Any) -> bool | None:
    return ENGINE_ALIASES.get(_str(e), _str(e)) == ENGINE_ALIASES.get(_str(a), _str(a))


def _gpu_class(e: Any, a: Any) -> bool | None:
    return gpu_class_name(str(e)) == gpu_class_name(str(a))


def _gpu_vendor(e: Any, a: Any) -> bool | None:
    found = normalise_gpu(str(a))
    return None if found is None else found.vendor == _str(e)


def _cpu(e: Any, a: Any) -> bool | None:
    q = quantity(a)
    return None if q is None else math.isclose(q, float(e), rel_tol=0.001)


def _gigabytes(e: Any, a: Any) -> bool | None:
    # ModelSpec says "Gb" without saying decimal or binary; a 128Gi limit and 128G both match 128.
    q = quantity(a)
    if q is None:
        return None
    return any(math.isclose(q, float(e) * unit, rel_tol=0.01) for unit in (1e9, 2**30))


def _max(e: Any, a: Any) -> bool | None:
    return float(a) <= float(e)


def _max_ms(e: Any, a: Any) -> bool | None:
    return float(a) * 1000 <= float(e)


def _min_count(e: Any, a: Any) -> bool | None:
    return int(a) >= int(e)


def _max_count(e: Any, a: Any) -> bool | None:
    return int(a) <= int(e)


def _model_id(e: Any, a: Any) -> bool | None:
    want, have = _str(e), _str(a)
    return have == want or have.rstrip("/").rsplit("/", 1)[-1] == want.rsplit("/", 1)[-1]


def _model_uri(e: Any, a: Any) -> bool | None:
    uri = str(e).strip()
    if uri.startswith("hf://"):
        uri = uri[5:]
    elif "://" in uri or uri.startswith("/"):
        return None  # object-store and local URIs cannot be told from inside the pod; pin digests
    return _model_id(uri.split("@", 1)[0], a)


def _version(e: Any, a: Any) -> bool | None:
    return in_range(str(a), str(e))


def _digest_eq(e: Any, a: Any) -> bool | None:
    want = _digest(e)
    have = _digest(a["sha256"] if isinstance(a, dict) and "sha256" in a else a)
    if len(want) >= 12 and len(want) < len(have):
        return have.startswith(want)  # a digest prefix of at least 12 hex digits pins as well
    return have == want


def _quantization(e: Any, a: Any) -> bool | None:
    want = "none" if e is None else _str(e)
    have = "none" if a is None else _str(a)
    if want in NO_QUANTIZATION:
        return have in NO_QUANTIZATION
    return have == want


def _kv_dtype(e: Any, a: Any) -> bool | None:
    return KV_DTYPE_ALIASES.get(_str(e), _str(e)) == KV_DTYPE_ALIASES.get(_str(a), _str(a))


def _mig(e: Any, a: Any) -> bool | None:
    # Both sides through the one MIG normaliser: a pin written "MIG 3g.40gb" or "3c.3g.40gb"
    # is the slice the agent reports as "3g.40gb".
    profiles = [mig_profile_name(str(p)) for p in (a if isinstance(a, list) else [a]) if p not in (None, "")]
    if e is None or _str(e) in NO_QUANTIZATION:
        return not profiles
    return bool(profiles) and all(p == mig_profile_name(str(e)) for p in profiles)


def _scaling_strategy(e: Any, a: Any) -> bool | None:
    # a: orchestration.autoscaling.kind (HorizontalPodAutoscaler | ScaledObject | InferenceService | none)
    scaled = _str(a) not in NO_AUTOSCALER and a is not None
    return {"reactive": scaled, "manual": not scaled}.get(_str(e))


def _protocol(e: Any, a: Any) -> bool | None:
    return PROTOCOLS.get(_str(e), {}).get(_str(a))


def _enabled(e: Any, a: Any) -> bool | None:
    return bool(e) == bool(a)


def _present(e: Any, a: Any) -> bool | None:
    # a: whether the fact exists; "enabled: false" forbids it, "enabled: true" requires it.
    return bool(e) == bool(a)


COMPARATORS: dict[str, Callable[[Any, Any], bool | None]] = {
    "equal": _equal,
    "precision_dtype": _precision_dtype,
    "precision_quantization": _precision_quantization,
    "engine": _engine,
    "gpu_class": _gpu_class,
    "gpu_vendor": _gpu_vendor,
    "cpu": _cpu,
    "gigabytes": _gigabytes,
    "max": _max,
    "max_ms": _max_ms,
    "min_count": _min_count,
    "max_count": _max_count,
    "model_id": _model_id,
    "model_uri": _model_uri,
    "version_range": _version,
    "digest": _digest_eq,
    "quantization": _quantization,
    "kv_dtype": _kv_dtype,
    "mig": _mig,
    "enabled": _enabled,
    "present": _present,
    "scaling_strategy": _scaling_strategy,
    "protocol": _protocol,
}


def conforms(compare: str, expected: Any, actual: Any) -> bool | None:
    """Does ``actual`` satisfy ``expected`` under a comparator? None when it cannot be told."""
    try:
        return COMPARATORS[compare](expected, actual)
    except (TypeError, ValueError, KeyError):
        return None


# -- the tables ----------------------------------------------------------------------------------

_NO_FACT = "no fact can check it"
MODELSPEC_ROWS: tuple[Row, ...] = (
    Row("apiVersion", None, note="document type"),
    Row("kind", None, note="document type"),
    Row("metadata.name", None, note="names the intent; pods may select it with the skewwatch.io/modelspec annotation"),
    Row("metadata.version", None, note="shown with findings"),
    Row("metadata.description", None, note="documentary"),
    Row("metadata.labels.*", None, note="documentary (bindings select workloads, not specs)"),
    Row("metadata.annotations.*", None, note="documentary"),
    Row("spec.identity.model.id", "runtime.served_model_name", "model_id",
        "binds by default; the served name (else model.id) must be it or end in it", ("model.id",)),
    Row("spec.identity.model.family", None, note=f"{_NO_FACT} (architectures are not families)"),
    Row("spec.identity.model.task", None, note=_NO_FACT),
    Row("spec.identity.model.framework", "runtime.engine", "engine", "vllm | sglang | tgi (text-generation-inference)"),
    Row("spec.identity.model.precision", "runtime.dtype", "precision_dtype",
        "fp16/float16/half alike, bf16/bfloat16, fp32/float32; auto = --dtype auto requested; int8/int4/fp8/fp4 are checked as quantization"),
    Row("spec.identity.model.precision", "runtime.quantization", "precision_quantization",
        "a float precision means unquantized (engine and checkpoint); int8/int4/fp8/fp4 accept their "
        "quantization schemes", ("model.config.quantization",)),
    Row("spec.identity.model.artifacts.modelUri", "model.id", "model_uri",
        "hf://org/name or org/name is compared with model.id; s3://, gs:// and paths cannot be (pin digests)"),
    Row("spec.identity.model.artifacts.tokenizerUri", None,
        note=f"{_NO_FACT}: the tokenizer's source is not visible in the pod; pin tokenizerDigest in a SkewPolicy"),
    Row("spec.runtime.accelerator.vendor", "hardware.gpu.product", "gpu_vendor",
        "vendor of the normalised GPU class", ("orchestration.node_gpu_product",)),
    Row("spec.runtime.accelerator.type", "hardware.gpu.product", "gpu_class",
        "GPU class through the normaliser (a100-80gb = NVIDIA A100-SXM4-80GB)", ("orchestration.node_gpu_product",)),
    Row("spec.runtime.accelerator.count", "hardware.gpu.count", "equal", "GPUs per replica",
        ("orchestration.resources.limits.nvidia.com/gpu",)),
    Row("spec.runtime.batch.maxBatchSize", "runtime.max_num_seqs", "equal", "vLLM --max-num-seqs (and equivalents)"),
    Row("spec.runtime.batch.maxSequenceLengthTokens", "runtime.max_model_len", "equal", "--max-model-len"),
    Row("spec.runtime.resources.cpuCores", "orchestration.resources.requests.cpu", "cpu", "Kubernetes quantity",
        ("orchestration.resources.limits.cpu",)),
    Row("spec.runtime.resources.memoryGb", "orchestration.resources.limits.memory", "gigabytes",
        "GB or GiB", ("orchestration.resources.requests.memory",)),
    Row("spec.runtime.resources.ephemeralStorageGb", "orchestration.resources.limits.ephemeral-storage",
        "gigabytes", "GB or GiB", ("orchestration.resources.requests.ephemeral-storage",)),
    Row("spec.runtime.environment.variables.*", "runtime.env.*", "equal",
        "each variable NAME against runtime.env.NAME; a redacted value cannot be compared"),
    Row("spec.operations.serving.protocol", "serving.service.protocol", "protocol",
        "the protocol of the Service port in front of the pods (appProtocol, else the port's name): http "
        "accepts http and h2c, grpc accepts grpc; h2c cannot tell gRPC from HTTP/2 (unverifiable)"),
    Row("spec.operations.serving.port", "serving.port", "equal",
        "the engine's own port; the Service's targetPort (serving.service.target_port) need not be it"),
    Row("spec.operations.serving.readinessProbe.path", "orchestration.probes.readiness.path", "equal",
        "when the pod source reports probes"),
    Row("spec.operations.serving.readinessProbe.timeoutSeconds", "orchestration.probes.readiness.timeout_seconds",
        "equal", "when the pod source reports probes"),
    Row("spec.operations.serving.livenessProbe.path", "orchestration.probes.liveness.path", "equal",
        "when the pod source reports probes"),
    Row("spec.operations.serving.livenessProbe.timeoutSeconds", "orchestration.probes.liveness.timeout_seconds",
        "equal", "when the pod source reports probes"),
    Row("spec.operations.serving.maxConcurrency", "serving.max_concurrency", "equal"),
    Row("spec.operations.serving.timeoutSeconds", "serving.timeout_seconds", "equal",
        "the engine's, else the request timeout of the Ingress / HTTPRoute / mesh in front of the workload"),
    Row("spec.operations.scaling.minReplicas", "orchestration.autoscaling.min", "equal",
        "the autoscaler's minReplicas (HorizontalPodAutoscaler, ScaledObject, InferenceService); with none, "
        "at least this many live replicas", ("replicas",), "min_count"),
    Row("spec.operations.scaling.maxReplicas", "orchestration.autoscaling.max", "equal",
        "the autoscaler's maxReplicas; with none, at most this many live replicas", ("replicas",), "max_count"),
    Row("spec.operations.scaling.strategy", "orchestration.autoscaling.kind", "scaling_strategy",
        "reactive: an autoscaler scales the workload; manual: none does; predictive cannot be checked"),
    Row("spec.operations.scaling.targetLatencyMsP95", "observation:e2e_latency_seconds_p95", "max_ms",
        "observed p95 end-to-end latency (median of the last 3 windows) must not exceed it"),
    Row("spec.operations.scaling.targetRps", "observation:requests_per_s", "max",
        "observed requests/s per replica above the planned rate"),
    Row("spec.operations.scaling.warmPool.size", None, note=_NO_FACT),
    Row("spec.operations.scaling.warmPool.strategy", None, note=_NO_FACT),
    Row("spec.operations.observability.metrics.enabled", "source:runtime_metrics", "enabled",
        "the runtime's /metrics must be readable (the runtime_metrics source ok)"),
    Row("spec.operations.observability.metrics.provider", None, note=_NO_FACT),
    Row("spec.operations.observability.metrics.port", "serving.metrics_port", "equal",
        "the engine's metrics port; vLLM serves /metrics on its API port", ("serving.port",)),
    Row("spec.operations.observability.logging.level", "runtime.log_level", "equal", "when the engine reports it"),
    Row("spec.operations.observability.tracing.enabled", "runtime.args.otlp_traces_endpoint", "present",
        "vLLM traces only with --otlp-traces-endpoint"),
    Row("spec.pipeline.preprocess.steps[].name", None, note=f"{_NO_FACT}: runs outside the engine"),
    Row("spec.pipeline.preprocess.steps[].type", None, note=f"{_NO_FACT}: runs outside the engine"),
    Row("spec.pipeline.preprocess.steps[].enabled", None, note=f"{_NO_FACT}: runs outside the engine"),
    Row("spec.pipeline.postprocess.steps[].name", None, note=f"{_NO_FACT}: runs outside the engine"),
    Row("spec.pipeline.postprocess.steps[].type", None, note=f"{_NO_FACT}: runs outside the engine"),
    Row("spec.pipeline.postprocess.steps[].enabled", None, note=f"{_NO_FACT}: runs outside the engine"),
    Row("spec.pipeline.dependencies[].id", None, note="documentary: a dependency is another workload's intent"),
    Row("spec.pipeline.dependencies[].role", None, note="documentary"),
    Row("spec.pipeline.dependencies[].specRef", None, note="documentary"),
    Row("spec.pipeline.dependencies[].required", None, note="documentary"),
    Row("spec.pipeline.dependencies[].interface.inputType", None, note="documentary"),
    Row("spec.pipeline.dependencies[].interface.outputType", None, note="documentary"),
    Row("spec.pipeline.dependencies[].interface.maxLatencyMs", None,
        note="documentary: the dependency's own latency is observed on its own workload"),
    Row("spec.governance.compliance.pii.allowed", None, note=f"{_NO_FACT} (data handling)"),
    Row("spec.governance.compliance.pii.policy", None, note=_NO_FACT),
    Row("spec.governance.compliance.retention.logsDays", None, note=_NO_FACT),
    Row("spec.governance.compliance.retention.artifactsDays", None, note=_NO_FACT),
    Row("spec.governance.compliance.governance.changeApproval", None, note="shown with findings"),
    Row("spec.governance.compliance.governance.owner", None, note="shown with findings"),
    Row("spec.governance.cost.targetCostPer1kTokensUsd", None, note=f"{_NO_FACT} (needs prices)"),
    Row("spec.governance.cost.pricingHints.cloudProvider", None, note=_NO_FACT),
    Row("spec.governance.cost.pricingHints.instanceType", "orchestration.node_instance_type", "equal",
        "the node's node.kubernetes.io/instance-type, when the pod source reports it"),
    Row("spec.governance.cost.pricingHints.spotAllowed", None, note=_NO_FACT),
)  # fmt: skip

POLICY_ROWS: tuple[Row, ...] = (
    Row("spec.pins.model.revision", "model.revision", "equal"),
    Row("spec.pins.model.tokenizerRevision", "model.tokenizer.revision", "equal"),
    Row(
        "spec.pins.model.weightsDigest", "model.weights.digest", "digest", "sha256, with or without 'sha256:'"
    ),
    Row("spec.pins.model.configDigest", "model.config.digest", "digest"),
    Row("spec.pins.model.tokenizerDigest", "model.tokenizer.digest", "digest"),
    Row("spec.pins.model.chatTemplateDigest", "model.chat_template.digest", "digest"),
    Row("spec.pins.model.generationConfigDigest", "model.generation_config.digest", "digest"),
    Row(
        "spec.pins.model.files.*",
        "model.files.*",
        "digest",
        "each file NAME against model.files.NAME's sha256",
    ),
    Row("spec.pins.image.reference", "orchestration.image", "equal"),
    Row("spec.pins.image.digest", "orchestration.image_digest", "digest"),
    Row("spec.pins.runtime.version", "runtime.version", "version_range", ">=0.6.3,<0.7 or a prefix"),
    Row("spec.pins.runtime.dtype", "runtime.dtype", "precision_dtype", "auto = auto requested"),
    Row(
        "spec.pins.runtime.quantization",
        "runtime.quantization",
        "quantization",
        "null or 'none' = unquantized: neither the engine nor the checkpoint names a method",
        ("model.config.quantization",),
    ),
    Row("spec.pins.runtime.kvCacheDtype", "runtime.kv_cache_dtype", "kv_dtype", "auto = auto requested"),
    Row("spec.pins.runtime.tensorParallelSize", "runtime.tensor_parallel_size", "equal"),
    Row("spec.pins.runtime.pipelineParallelSize", "runtime.pipeline_parallel_size", "equal"),
    Row("spec.pins.hardware.driverVersion", "hardware.driver_version", "version_range"),
    Row("spec.pins.hardware.cudaVersion", "hardware.cuda_driver_version", "version_range"),
    Row("spec.pins.hardware.migProfile", "hardware.gpu.mig_profiles", "mig", "null = MIG off"),
    Row(
        "spec.pins.facts.*",
        "*",
        "equal",
        "any fact key, exact typed value (auto on runtime.dtype or runtime.kv_cache_dtype = auto requested)",
    ),
)
