"""What the cluster watch keeps of each Kubernetes object: :func:`slim`. Pure.

Only the fields ``collector.cluster.objects.derive`` reads, bounded (strings cut, maps and lists
capped, nesting limited, a node budget per object); ``managedFields``, status noise and the
``kubectl.kubernetes.io/last-applied-configuration`` annotation (the whole object again, env values
included) are dropped. A ConfigMap keeps only its name, resourceVersion and a sha256 digest of its
content; a Secret is never kept.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from typing import Any

from collector.cluster.objects_common import integer, mapping, meta, seq, str_map
from skewwatch.redact import Redactor

# ------------------------------------------------------------

MAX_SLIM_NODES = 20_000  # values kept of one object (a pod template with 100 env vars is ~1,000)
MAX_SLIM_DEPTH = 24  # ControllerRevision data.spec.leaderWorkerTemplate.workerTemplate.spec.… fits
MAX_SLIM_STRING = 16 * 1024
MAX_SLIM_ENTRIES = 512  # entries of one map or list
# Annotations derive() reads; the rest (last-applied-configuration: the whole object, env values
# included) is dropped.
KEPT_ANNOTATIONS = re.compile(
    r"^(deployment\.kubernetes\.io/revision|kubernetes\.io/ingress\.class|nginx\.ingress\.kubernetes\.io/.*|"
    r"nginx\.org/.*|serving\.kserve\.io/.*|autoscaling\.knative\.dev/.*)$"
)
SPEC_FIELDS: dict[str, tuple[str, ...]] = {
    "Deployment": ("replicas", "selector", "template"),
    "ReplicaSet": ("replicas", "selector", "template"),
    "StatefulSet": ("replicas", "selector", "template", "serviceName"),
    "LeaderWorkerSet": ("replicas", "leaderWorkerTemplate"),
    "HorizontalPodAutoscaler": ("scaleTargetRef", "minReplicas", "maxReplicas", "metrics"),
    "ScaledObject": ("scaleTargetRef", "minReplicaCount", "maxReplicaCount", "idleReplicaCount"),
    "Service": ("selector", "ports", "type", "clusterIP"),
    "Ingress": ("ingressClassName", "rules", "defaultBackend"),
    "HTTPRoute": ("hostnames", "parentRefs", "rules"),
    "InferencePool": ("selector", "targetPorts", "targetPortNumber", "appProtocol"),
    "VirtualService": ("hosts", "http"),
    "DestinationRule": ("host", "trafficPolicy"),
    "InferenceService": ("predictor",),
    "LLMInferenceService": ("replicas", "template", "worker", "prefill", "parallelism"),
}
STATUS_FIELDS: dict[str, tuple[str, ...]] = {
    "Deployment": ("replicas", "readyReplicas", "updatedReplicas", "availableReplicas"),
    "ReplicaSet": ("replicas", "readyReplicas"),
    "StatefulSet": ("replicas", "readyReplicas", "currentRevision", "updateRevision"),
    "LeaderWorkerSet": ("replicas", "readyReplicas", "updatedReplicas"),
}
# KEDA trigger metadata that carry the target or the metric's name (keda.sh/docs/latest/scalers/:
# prometheus threshold, cpu/memory value, …); the rest (queries, hosts, credentials' names) is not kept.
KEDA_METADATA = (
    "threshold",
    "value",
    "targetValue",
    "targetQueueLength",
    "queueLength",
    "metricName",
    "activationThreshold",
)


def _bounded(value: object, depth: int, budget: list[int]) -> Any:
    """A JSON-like copy of ``value``: strings cut, maps and lists capped, deep or exotic parts
    dropped (``_DROP``), at most ``budget[0]`` values in all."""
    budget[0] -= 1
    if budget[0] < 0 or depth > MAX_SLIM_DEPTH:
        return _DROP
    if value is None or isinstance(value, bool | int):
        return value if not isinstance(value, int) or abs(value) < 2**63 else _DROP
    if isinstance(value, float):
        return value if math.isfinite(value) else _DROP
    if isinstance(value, str):
        return value[:MAX_SLIM_STRING]
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in list(value.items())[:MAX_SLIM_ENTRIES]:
            if isinstance(k, str):
                kept = _bounded(v, depth + 1, budget)
                if kept is not _DROP:
                    out[k[:512]] = kept
        return out
    if isinstance(value, list | tuple):
        items = [_bounded(v, depth + 1, budget) for v in list(value)[:MAX_SLIM_ENTRIES]]
        return [v for v in items if v is not _DROP]
    return _DROP


_DROP = object()


def _slim_meta(obj: Mapping[str, Any], budget: list[int]) -> dict[str, Any]:
    m = meta(obj)
    out: dict[str, Any] = {}
    for key in ("name", "namespace", "resourceVersion", "uid", "creationTimestamp", "generation"):
        v = m.get(key)
        if isinstance(v, str | int) and not isinstance(v, bool):
            out[key] = v if isinstance(v, int) else v[:512]
    labels = {k[:317]: v[:1024] for k, v in list(str_map(m.get("labels")).items())[:MAX_SLIM_ENTRIES]}
    if labels:
        out["labels"] = labels
    annotations = {
        k: v[:MAX_SLIM_STRING]
        for k, v in list(str_map(m.get("annotations")).items())[:MAX_SLIM_ENTRIES]
        if KEPT_ANNOTATIONS.match(k)
    }
    if annotations:
        out["annotations"] = annotations
    owners = []
    for r in seq(m.get("ownerReferences"))[:16]:
        ref = mapping(r)
        if isinstance(ref.get("kind"), str) and isinstance(ref.get("name"), str):
            owners.append(
                {
                    "kind": ref["kind"][:63],
                    "name": ref["name"][:253],
                    "controller": ref.get("controller") is True,
                }
            )
    if owners:
        out["ownerReferences"] = owners
    budget[0] -= len(labels) + len(annotations) + 4 * len(owners)
    return out


def configmap_digest(obj: Mapping[str, Any]) -> str:
    """sha256 over a ConfigMap's ``data`` and ``binaryData`` (canonical: sorted keys, JSON): a
    change of content changes it, the content itself is never kept."""

    def entries(part: str) -> dict[str, str]:
        # ConfigMap values are strings; anything else (a hostile object) counts by its type alone.
        return {
            k: v if isinstance(v, str) else f"<{type(v).__name__}>"
            for k, v in mapping(obj.get(part)).items()
            if isinstance(k, str)
        }

    doc = {"binaryData": entries("binaryData"), "data": entries("data")}
    blob = json.dumps(doc, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()


def _slim_triggers(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    out = []
    for t in seq(spec.get("triggers"))[:32]:
        trig = mapping(t)
        kept: dict[str, Any] = {
            k: trig[k][:256] for k in ("type", "name", "metricType") if isinstance(trig.get(k), str)
        }
        md = mapping(trig.get("metadata"))
        kept["metadata"] = {k: md[k][:256] for k in KEDA_METADATA if isinstance(md.get(k), str)}
        out.append(kept)
    return out


def redact_containers(node: Any, redactor: Redactor, depth: int = 0) -> None:
    """In place: every container's literal env values and its command and args, redacted as
    derive() would (redaction is idempotent), so that what the watch holds for hours carries no
    secret a Deployment spells out in clear."""
    if depth > MAX_SLIM_DEPTH:
        return
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "env" and isinstance(value, list):
                for var in value:
                    if isinstance(var, dict) and isinstance(var.get("value"), str):
                        var["value"] = redactor.value(str(var.get("name", "")), var["value"])
            elif key in ("args", "command") and isinstance(value, list):
                node[key] = redactor.argv([v for v in value if isinstance(v, str)])
            else:
                redact_containers(value, redactor, depth + 1)
    elif isinstance(node, list):
        for item in node:
            redact_containers(item, redactor, depth + 1)


def slim(kind: str, obj: Mapping[str, Any], redactor: Redactor | None = None) -> dict[str, Any] | None:
    """What is kept of one object for :func:`derive`; None: not kept (a Secret, a kind not
    watched, not an object with a name). With ``redactor``, containers' env values and
    arguments are kept redacted (:func:`redact_containers`)."""
    kept = _slim(kind, obj)
    if kept is not None and redactor is not None:
        redact_containers(kept, redactor)
    return kept


def _slim(kind: str, obj: Mapping[str, Any]) -> dict[str, Any] | None:
    if kind == "Secret" or not isinstance(obj, Mapping):
        return None
    if kind not in SPEC_FIELDS and kind not in ("ConfigMap", "ControllerRevision"):
        return None
    budget = [MAX_SLIM_NODES]
    metadata = _slim_meta(obj, budget)
    if not isinstance(metadata.get("name"), str) or not metadata["name"]:
        return None
    if kind == "ConfigMap":
        small = {k: metadata[k] for k in ("name", "namespace", "resourceVersion") if k in metadata}
        return {"metadata": small, "digest": configmap_digest(obj)}
    out: dict[str, Any] = {"metadata": metadata}
    if kind == "ControllerRevision":
        if integer(obj.get("revision")) is not None:
            out["revision"] = integer(obj.get("revision"))
        data = _bounded(mapping(obj.get("data")), 1, budget)
        out["data"] = data if data is not _DROP else {}
        return out
    spec = mapping(obj.get("spec"))
    kept = {k: _bounded(spec[k], 2, budget) for k in SPEC_FIELDS[kind] if k in spec}
    if kind == "ScaledObject":
        kept["triggers"] = _slim_triggers(spec)
    out["spec"] = {k: v for k, v in kept.items() if v is not _DROP}
    status = mapping(obj.get("status"))
    if kind in STATUS_FIELDS and "status" in obj:
        out["status"] = {
            k: status[k]
            for k in STATUS_FIELDS[kind]
            if isinstance(status.get(k), str | int) and not isinstance(status.get(k), bool)
        }
    return out
