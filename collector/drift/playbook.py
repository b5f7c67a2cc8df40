"""The mitigation playbook as data: which symptom a drifted key points to, how bad, what to do.

Rows are tried in order; the first whose glob matches the finding's key wins, so specific rows
come before the catch-all of their category. The three symptom patterns are the skew playbooks':
"same model, suddenly slower", "quality worse but weights unchanged", "staging OK, prod bad"
(the last is what peers and per-environment intent findings show). An intent's SkewPolicy may
override the severity by key glob; the hint always comes from here.

A hint names the flag as the engine that produced the fact spells it (``{flag}``): SGLang's
``--context-length`` where vLLM has ``--max-model-len``, TGI's ``--quantize``. The collector knows
no engine's flags: the agent's provenance does (the flag a value came from, or the
``runtime.args.*`` facts it follows from). A value the cluster watch read from a Kubernetes object
(an autoscaler's bounds, an Ingress timeout) gets the play's ``cluster_hint``, which names that
object and field as the value's provenance does, and the values found and expected.
"""

# ruff: noqa: E501  (a data table: one row per line reads better than wrapped rows)

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass

from collector.domain.cluster import CLUSTER_SOURCE
from skewwatch.core.facts import Provenance

SLOWER = "same model, suddenly slower"
QUALITY = "quality worse but weights unchanged"
ENVIRONMENT = "staging OK, prod bad"
WRONG_MODEL = "different model or weights"


@dataclass(frozen=True)
class Play:
    pattern: str
    severity: str
    symptom: str
    hint: str
    # The hint when the value came from a Kubernetes object the cluster watch read: it names the
    # object ({object}: "HorizontalPodAutoscaler ml/llama"), its field ({field}), the values
    # ({actual}, {expected}) and who expected it ({reference}: "ModelSpec", "baseline", …).
    cluster_hint: str = ""


PLAYBOOK: tuple[Play, ...] = (
    # model: weights and identity
    Play("model.weights.*", "critical", WRONG_MODEL,
         "the weights differ from the reference: roll back to the validated revision and pin it by digest"),
    Play("model.files.*.safetensors", "critical", WRONG_MODEL,
         "a weight shard differs: roll back and pin the weights by digest (SkewPolicy pins.model.files)"),
    Play("model.id", "critical", WRONG_MODEL, "a different model is served: check the deployment's model argument"),
    Play("model.path", "low", WRONG_MODEL, "the model path moved; harmless if the digests are unchanged"),
    Play("model.revision", "high", WRONG_MODEL, "pin the model revision ({flag}) to the validated one"),
    # model: what changes outputs without touching the weights
    Play("model.tokenizer.*", "high", QUALITY,
         "the tokenizer changed while the weights did not: pin the tokenizer revision / the tokenizer "
         "digest and roll back the tokenizer files"),
    Play("model.files.tokenizer*", "high", QUALITY, "tokenizer files changed: pin the tokenizer revision"),
    Play("model.chat_template.*", "high", QUALITY,
         "the chat template changed: pin the engine's chat template to the validated one"),
    Play("model.generation_config.*", "high", QUALITY,
         "generation defaults changed (temperature, top_p, max tokens): pin generation_config.json or the "
         "request defaults"),
    Play("model.files.generation_config.json", "high", QUALITY, "generation_config.json changed: pin it"),
    Play("model.config.rope_scaling", "high", QUALITY,
         "rope scaling changed: long-context quality shifts; restore the validated config.json"),
    Play("model.config.*", "high", QUALITY, "the model config changed: restore the validated config.json"),
    Play("model.*", "medium", QUALITY, "a model file changed: compare with the last-good snapshot"),
    # runtime: speed and numerics
    Play("runtime.dtype", "high", SLOWER,
         "precision drifted: pin {flag} to the validated precision (auto resolves from config.json)"),
    Play("runtime.quantization", "high", QUALITY, "quantization changed: pin {flag} (or remove it)"),
    Play("runtime.kv_cache_dtype", "high", QUALITY, "KV-cache dtype changed: pin {flag}"),
    Play("runtime.engine", "high", ENVIRONMENT, "a different serving engine runs: fix the image / command"),
    Play("runtime.version", "high", ENVIRONMENT,
         "the engine version differs: pin the image by digest and roll back to the validated version"),
    Play("runtime.launcher", "high", ENVIRONMENT,
         "the engine runs under another launcher (NVIDIA Dynamo, NIM, or none): its flags, defaults and "
         "metrics port differ; fix the image / command"),
    Play("runtime.backend", "high", SLOWER,
         "the engine's backend changed (TensorRT-LLM's pytorch or TensorRT engine): pin {flag}"),
    Play("runtime.metrics.missing", "medium", ENVIRONMENT,
         "the engine no longer exports metric families that dashboards and alerts read (renamed between "
         "releases; the agent's source message names each replacement): move the queries to the new "
         "names, or pin the validated version"),
    Play("runtime.max_model_len", "medium", SLOWER,
         "context length changed: restore {flag}; route long-context traffic to a dedicated pool"),
    Play("runtime.max_num_seqs", "medium", SLOWER, "batch limit changed: restore {flag}"),
    Play("runtime.max_num_batched_tokens", "medium", SLOWER, "the batched-token budget changed: restore {flag}"),
    Play("runtime.tensor_parallel_size", "high", SLOWER, "parallelism changed: pin {flag}"),
    Play("runtime.pipeline_parallel_size", "high", SLOWER, "parallelism changed: pin {flag}"),
    Play("runtime.num_gpu_blocks", "medium", SLOWER,
         "the KV cache holds a different number of blocks: look for dtype, memory-utilisation or GPU changes"),
    Play("runtime.gpu_memory_utilization", "medium", SLOWER, "the GPU memory share changed: restore {flag}"),
    Play("runtime.enforce_eager", "medium", SLOWER, "CUDA graphs toggled: restore {flag}"),
    Play("runtime.enable_prefix_caching", "medium", SLOWER, "prefix caching toggled: restore {flag}"),
    Play("runtime.enable_chunked_prefill", "medium", SLOWER, "chunked prefill toggled: restore {flag}"),
    Play("runtime.env.*", "medium", ENVIRONMENT, "an environment variable differs: fix the pod spec / ConfigMap"),
    Play("runtime.args.*", "low", ENVIRONMENT, "a launch argument ({flag}) differs: compare the pod specs"),
    Play("runtime.*", "medium", SLOWER, "a runtime setting changed: diff against last-good and pin it"),
    # hardware
    Play("hardware.gpu.product", "high", ENVIRONMENT,
         "replicas run on another GPU class: pin the node selector / affinity on nvidia.com/gpu.product"),
    Play("hardware.gpu.count", "high", SLOWER, "the GPU count differs: fix the nvidia.com/gpu limit"),
    Play("hardware.gpu.memory_bytes", "high", ENVIRONMENT, "GPU memory differs: pin the GPU class"),
    Play("hardware.gpu.mig*", "medium", ENVIRONMENT, "MIG layout differs: pin the MIG profile in the resource"),
    Play("hardware.driver_version", "medium", ENVIRONMENT,
         "the driver differs: pin the node pool / driver version range"),
    Play("hardware.cuda_driver_version", "medium", ENVIRONMENT, "the CUDA driver differs: pin the node pool"),
    Play("hardware.*", "medium", ENVIRONMENT, "hardware differs: compare node pools"),
    # serving: the engine's own settings, and what the Services / Ingresses / routes / mesh in front say
    Play("serving.timeout_seconds", "medium", ENVIRONMENT,
         "the request timeout differs: long generations are cut off (or hang) at another point; align the "
         "engine's and the proxy's timeouts with the intent",
         "the {object} sets {field} {actual} s; the {reference} expects {expected} s: align the timeout "
         "(long generations are cut off at the shorter one)"),
    Play("serving.retries", "medium", SLOWER,
         "retries in front of the engine differ: a retried generation costs its GPU time again",
         "the {object} sets {field} {actual}; the {reference} has {expected}: align the retry policy (a "
         "retried generation costs its GPU time again)"),
    Play("serving.max_body_bytes", "medium", ENVIRONMENT,
         "the request body limit in front of the engine differs: long prompts are refused before the engine",
         "the {object} sets {field} {actual}; the {reference} has {expected}: long prompts are refused "
         "before they reach the engine"),
    Play("serving.streaming", "medium", ENVIRONMENT, "response streaming in front of the engine differs",
         "the {object} sets {field} {actual}; the {reference} has {expected}: a buffering proxy holds "
         "streamed tokens back (time to first token as the client sees it)"),
    Play("serving.service.protocol", "high", ENVIRONMENT,
         "the protocol in front of the engine differs from the intent: clients speak another protocol",
         "the {object} declares {field} {actual}; the {reference} expects {expected}: fix the Service "
         "port's appProtocol (or name), or the intent"),
    Play("serving.service.port", "low", ENVIRONMENT, "the Service's port changed: check its clients",
         "the {object} sets {field} {actual}; the {reference} has {expected}: check the clients of the Service"),
    Play("serving.route", "medium", ENVIRONMENT, "the route to the workload changed: check what serves its clients",
         "the {object} routes {field} to {actual}; the {reference} has {expected}: check which backend "
         "serves the clients"),
    Play("serving.mesh.*", "medium", ENVIRONMENT, "the service mesh policy in front of the engine differs",
         "the {object} sets {field} {actual}; the {reference} has {expected}: align the mesh policy"),
    Play("serving.*", "low", ENVIRONMENT, "a serving setting differs: fix the pod spec or the engine flags",
         "the {object} sets {field} {actual}; the {reference} has {expected}: compare the manifests"),
    # orchestration
    Play("orchestration.image_digest", "high", ENVIRONMENT,
         "the image moved under its tag: pin the image by digest (image@sha256:…)"),
    Play("orchestration.image", "high", ENVIRONMENT, "another image runs: pin the image by digest"),
    Play("orchestration.resources.*", "medium", SLOWER, "resources differ: fix requests/limits"),
    Play("orchestration.replicas", "medium", SLOWER, "replica count outside the intent: check the autoscaler"),
    Play("orchestration.autoscaling.kind", "medium", SLOWER,
         "how the workload scales differs from the intent: reactive needs an autoscaler "
         "(HorizontalPodAutoscaler, ScaledObject, InferenceService), manual needs none",
         "the workload's autoscaler is {actual} ({object}: {field}); the {reference} expects {expected}: "
         "reactive needs a HorizontalPodAutoscaler, ScaledObject or InferenceService autoscaling, manual none"),
    Play("orchestration.autoscaling.min", "medium", SLOWER,
         "the autoscaler's lower bound differs: too few warm replicas for the intent",
         "the {object} allows minReplicas {actual}, the {reference} {expected}: align {field}"),
    Play("orchestration.autoscaling.max", "medium", SLOWER,
         "the autoscaler's upper bound differs: the workload cannot scale as the intent plans",
         "the {object} allows maxReplicas {actual}, the {reference} {expected}: align {field}"),
    Play("orchestration.autoscaling.*", "medium", SLOWER,
         "the autoscaler's metric or target changed: it scales on another signal",
         "the {object} sets {field} {actual}; the {reference} has {expected}: align the autoscaler"),
    Play("orchestration.template.resources.*", "medium", SLOWER, "the pod template's resources changed: fix requests/limits",
         "the {object} sets {field} {actual}; the {reference} has {expected}: fix requests/limits"),
    Play("orchestration.*node_selector*", "high", ENVIRONMENT,
         "the node selector changed: pods can land on another GPU class or node pool",
         "the {object} selects nodes by {field} = {actual}; the {reference} has {expected}: pods can land "
         "on another GPU class; restore the selector"),
    Play("orchestration.*affinity.gpu", "high", ENVIRONMENT,
         "the GPU node affinity changed: pods can land on another GPU class",
         "the {object} sets {field} {actual}; the {reference} has {expected}: pods can land on another "
         "GPU class; restore the affinity on nvidia.com/gpu.product"),
    Play("orchestration.*tolerations", "medium", ENVIRONMENT, "the tolerations changed: pods can land on other nodes",
         "the {object} sets {field} {actual}; the {reference} has {expected}: compare the node pools"),
    Play("orchestration.configmap.*.digest", "high", QUALITY,
         "a ConfigMap the pods mount changed while the pods did not: configuration moved under them",
         "the {object} changed ({field}); the {reference} has another content: diff the ConfigMap against "
         "its last-good content and roll it back, or restart the pods deliberately"),
    Play("orchestration.node_gpu_product", "high", ENVIRONMENT, "pin the node selector on the GPU product"),
    Play("orchestration.*", "low", ENVIRONMENT, "an orchestration setting differs: compare the manifests",
         "the {object} sets {field} {actual}; the {reference} has {expected}: compare the manifests"),
    # performance observations
    Play("observation.generation_tokens_per_s", "high", SLOWER,
         "tokens/s fell at comparable load: diff against last-good (skewwatch diff --last-good) — dtype, "
         "quantization, GPU class, max-model-len and image are the usual causes; roll back if unexplained"),
    Play("observation.ttft_seconds_*", "medium", SLOWER,
         "time to first token rose at comparable load: check prefill settings, prefix caching, context length"),
    Play("observation.e2e_latency_seconds_*", "medium", SLOWER,
         "end-to-end latency is over target: diff against last-good; scale out or route long-context traffic"),
    Play("observation.batch_size_*", "medium", SLOWER, "the effective batch shrank: check the batch limit and the KV cache"),
    Play("observation.requests_per_s", "low", SLOWER, "more traffic than the intent planned: scale out"),
    Play("observation.gpu_*", "medium", SLOWER, "GPU use differs at comparable load: check dtype and batching"),
    Play("observation.*", "medium", SLOWER, "performance differs at comparable load: diff against last-good"),
    Play("*", "medium", ENVIRONMENT, "compare with last-good: skewwatch diff --last-good"),
)  # fmt: skip


ARGS_PREFIX = "runtime.args."


def flag_for(key: str, provenances: Iterable[Provenance]) -> str | None:
    """The engine flag that sets ``key``, as the provenance of its value tells it; None if none does."""
    seen = list(provenances)
    for p in seen:
        if p.method == "arg" and p.detail.startswith("-") and " " not in p.detail:
            return p.detail
    if key.startswith(ARGS_PREFIX):
        return _flag(key)
    for p in seen:
        for i in p.inputs:
            if i.startswith(ARGS_PREFIX) and "*" not in i:
                return _flag(i)
    return None


def _flag(args_key: str) -> str:
    return "--" + args_key.removeprefix(ARGS_PREFIX).replace("_", "-")


@dataclass(frozen=True)
class ClusterObject:
    """The Kubernetes object (and field) a cluster fact was read from, as its provenance says:
    ``Provenance("cluster", "k8s", "HorizontalPodAutoscaler/ml/llama@4711: spec.maxReplicas")``."""

    kind: str
    namespace: str
    name: str
    field: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}" if self.namespace else f"{self.kind} {self.name}"


def cluster_object(provenances: Iterable[Provenance]) -> ClusterObject | None:
    """The object the first cluster provenance names; None when no value came from the cluster."""
    for p in provenances:
        if p.source != CLUSTER_SOURCE:
            continue
        where, _, fld = p.detail.partition(": ")
        parts = where.split("@", 1)[0].split("/")
        if len(parts) == 3 and all(parts):
            return ClusterObject(parts[0], parts[1], parts[2], fld.strip())
        if len(parts) == 2 and all(parts):  # cluster-scoped
            return ClusterObject(parts[0], "", parts[1], fld.strip())
    return None


@dataclass(frozen=True)
class HintValues:
    """What a finding says, for a hint that names its values: the value found, the value expected
    and who expected it ("ModelSpec", "SkewPolicy", "baseline", "other replicas")."""

    actual: str
    expected: str
    reference: str


def hint_for(
    play: Play,
    key: str,
    flag: str | None,
    *,
    obj: ClusterObject | None = None,
    values: HintValues | None = None,
) -> str:
    """The play's hint with the flag named, or the fact key where no provenance names one; where the
    value came from a Kubernetes object and the play has a hint for that, it names the object."""
    if obj is not None and values is not None and play.cluster_hint:
        return (
            play.cluster_hint.replace("{object}", str(obj))
            .replace("{field}", obj.field or key)
            .replace("{actual}", values.actual)
            .replace("{expected}", values.expected)
            .replace("{reference}", values.reference)
        )
    return play.hint.replace("{flag}", flag or f"the engine's setting for {key}")


def play_for(key: str) -> Play:
    for play in PLAYBOOK:
        if fnmatch.fnmatchcase(key, play.pattern):
            return play
    return PLAYBOOK[-1]


def severity_for(key: str, overrides: dict[str, str] | None = None) -> str:
    """The playbook severity, unless an override glob (first match, in the given order) says otherwise."""
    for pattern, severity in (overrides or {}).items():
        if fnmatch.fnmatchcase(key, pattern):
            return severity
    return play_for(key).severity
