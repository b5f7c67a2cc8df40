"""Kubernetes objects → per-workload cluster facts, pod-template revisions and inference pools.
Pure: no I/O, no clock (``now`` is given), no exception on any input.

The cluster watch keeps, per namespace and kind (``collector.cluster.resources.KINDS``), each
object as :func:`slim` leaves it — only what :func:`derive` reads, bounded; a ConfigMap reduced to
a digest of its content; a Secret never — and calls :func:`derive` whenever one changed.

:func:`derive` forms each workload's id as the agent does from a pod's owner chain
(``agent/k8s.py``): a Deployment (its pods' ReplicaSet's owner), StatefulSet or LeaderWorkerSet
is its own workload unless a controller owns it (a KServe InferenceService or
LLMInferenceService: the top of the chain), or its pod labels name the higher-level workload
(``serving.kserve.io/inferenceservice``, ``leaderworkerset.sigs.k8s.io/name``). An
InferenceService or LLMInferenceService with no controller of its own yet is a workload too.

For each workload (:class:`ClusterFacts`, provenance ``cluster``/``k8s``, the detail
``Kind/namespace/name@resourceVersion: field``): replicas, the autoscaler, the current template's
inference-container resources and placement, the ConfigMaps it references, the serving layer in
front of it (``collector.cluster.objects_serving``) and which revision each template hash is.
For each ReplicaSet of a Deployment and ControllerRevision of a StatefulSet / LeaderWorkerSet a
:class:`RevisionTemplate` (``collector.cluster.objects_template``); for each InferencePool and
KServe predictor a :class:`PoolMembers`. A kind that could not be read leaves its facts out and
is named in the status message of every workload.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from collector.cluster.objects_common import (
    MAX_LIST,
    MAX_MESSAGE,
    MAX_PROBLEMS,
    FactSink,
    Src,
    integer,
    mapping,
    quantity,
    seq,
    text,
)
from collector.cluster.objects_revisions import current_revision, derive_revisions
from collector.cluster.objects_serving import Serving, Target, pool_selector
from collector.cluster.objects_slim import slim
from collector.cluster.objects_template import scrub, workload_template_facts
from collector.cluster.objects_workloads import (
    CUSTOM_WORKLOADS,
    NamespaceView,
    Workload,
    controller_ref,
    group_workloads,
    target_labels,
    template_spec,
)
from collector.cluster.resources import KINDS
from collector.domain.cluster import CLUSTER_SOURCE, ClusterFacts, PoolMembers, RevisionTemplate
from skewwatch.core.facts import FactValue, SourceState, SourceStatus
from skewwatch.redact import Redactor

__all__ = ["Derived", "derive", "slim"]

_SEVERITY = {SourceState.OK: 0, SourceState.PENDING: 1, SourceState.UNAVAILABLE: 2, SourceState.ERROR: 3}


@dataclass(frozen=True)
class Derived:
    facts: list[ClusterFacts]
    pools: list[PoolMembers]
    revisions: list[RevisionTemplate]


def derive(
    namespace: str,
    objects: Mapping[str, Mapping[str, Mapping[str, Any]]],
    kinds: Mapping[str, SourceStatus],
    redactor: Redactor,
    now: float,
) -> Derived:
    """Facts per workload, revisions and pools of one namespace (see the module docstring)."""
    ns = NamespaceView(namespace, objects, kinds)
    configmaps = ns.objs("ConfigMap") if ns.ok("ConfigMap") else None
    workloads = group_workloads(ns)
    revisions = derive_revisions(ns, workloads, redactor, configmaps)
    serving = Serving(
        namespace,
        [Target(w.workload, tuple(target_labels(w))) for w in workloads.values()],
        ns.objs,
    )
    facts = [
        _facts(ns, w, serving, configmaps=configmaps, redactor=redactor, now=now) for w in workloads.values()
    ]
    return Derived(facts=facts, pools=_pools(ns), revisions=revisions)


# --- facts of one workload ----------------------------------------------------------------------


def _facts(
    ns: NamespaceView,
    w: Workload,
    serving: Serving,
    *,
    configmaps: Mapping[str, Mapping[str, Any]] | None,
    redactor: Redactor,
    now: float,
) -> ClusterFacts:
    sink = FactSink()
    _replicas(ns, w, sink)
    _autoscaling(ns, w, sink)
    _kserve(ns, w, sink, serving)
    primary = w.controllers[0] if w.controllers else None
    if primary is not None:
        kind, name, obj = primary
        spec, path = template_spec(kind, obj)
        src = ns.src(kind, name, obj)
    elif w.custom is not None:
        spec, path = template_spec(w.kind, w.custom)
        src = ns.src(w.kind, w.name, w.custom)
    else:
        spec, path, src = {}, "", ns.src(w.kind, w.name, {})
    if primary is not None and primary[0] == "LeaderWorkerSet":
        size = integer(mapping(mapping(primary[2].get("spec")).get("leaderWorkerTemplate")).get("size"))
        if size is not None:
            sink.add("orchestration.group_size", size, src.at("spec.leaderWorkerTemplate.size"))
    _check_shape(sink, spec, src, path)
    workload_template_facts(sink, spec, configmaps, src, path)
    serving.facts(w.workload, sink)
    current = current_revision(ns, w)
    return ClusterFacts(
        workload=w.workload,
        facts=scrub(sink.facts, redactor),
        provenance=sink.provenance,
        status=_status(ns, w, sink),
        observed_at=now,
        revisions=dict(w.revisions),
        current_revision=current,
    )


def _check_shape(sink: FactSink, spec: Mapping[str, Any], src: Src, path: str) -> None:
    """Name a template whose shape is wrong (its facts are left out, not guessed)."""
    if not path:
        return
    if not spec:
        sink.problem(f"{src.at(path)} is not a pod spec (absent or not a map): template facts left out")
        return
    for part in ("containers", "volumes", "tolerations", "initContainers"):
        if part in spec and not isinstance(spec[part], list):
            sink.problem(f"{src.at(path + '.' + part)} is {type(spec[part]).__name__}, not a list: left out")
    for part in ("nodeSelector", "affinity"):
        if part in spec and not isinstance(spec[part], Mapping):
            sink.problem(f"{src.at(path + '.' + part)} is {type(spec[part]).__name__}, not a map: left out")


def _replicas(ns: NamespaceView, w: Workload, sink: FactSink) -> None:
    desired: list[tuple[int, str]] = []
    ready: list[tuple[int, str]] = []
    for kind, name, obj in w.controllers:
        src = ns.src(kind, name, obj)
        n = integer(mapping(obj.get("spec")).get("replicas"))
        desired.append(
            (1, src.at("spec.replicas (absent: 1)")) if n is None else (n, src.at("spec.replicas"))
        )
        if isinstance(obj.get("status"), Mapping):
            r = integer(mapping(obj.get("status")).get("readyReplicas"))
            ready.append((r or 0, src.at("status.readyReplicas")))
    if not desired and w.kind == "LLMInferenceService" and w.custom is not None:
        n = integer(mapping(w.custom.get("spec")).get("replicas"))
        if n is not None:
            desired.append((n, ns.src(w.kind, w.name, w.custom).at("spec.replicas")))
    for key, values in (("orchestration.replicas.desired", desired), ("orchestration.replicas.ready", ready)):
        if values:
            # Clamped to what the wire's sint64 carries (each count is, their sum need not be).
            total = max(-(2**63), min(2**63 - 1, sum(v for v, _ in values)))
            sink.add(key, total, "; ".join(d for _, d in values))


def _hpa_metric(metric: Mapping[str, Any]) -> tuple[str, str | None, FactValue]:
    """(type, metric name, target) of one HPA metric (autoscaling/v2 MetricSpec)."""
    mtype = text(metric.get("type")) or ""
    body = mapping(
        metric.get(
            {"Resource": "resource", "ContainerResource": "containerResource"}.get(
                mtype, mtype[:1].lower() + mtype[1:]
            )
        )
    )
    name = text(body.get("name")) or text(mapping(body.get("metric")).get("name"))
    target = mapping(body.get("target"))
    value: FactValue = None
    for f in ("averageUtilization", "averageValue", "value"):
        if f in target:
            value = quantity(target.get(f))
            break
    return mtype, name, value


AUTOSCALING = "orchestration.autoscaling"


def _scale_target(obj: Mapping[str, Any], default_kind: str) -> tuple[str, str]:
    ref = mapping(mapping(obj.get("spec")).get("scaleTargetRef"))
    return text(ref.get("kind")) or default_kind, text(ref.get("name")) or ""


def _bound(sink: FactSink, key: str, value: int | None, *, default: int | None, src: Src, path: str) -> None:
    if value is not None:
        sink.add(f"{AUTOSCALING}.{key}", value, src.at(path))
    elif default is not None:
        sink.add(f"{AUTOSCALING}.{key}", default, src.at(f"{path} (absent: {default})"))


def _scaled_object_facts(sink: FactSink, so: Mapping[str, Any], src: Src) -> None:
    spec = mapping(so.get("spec"))
    sink.add(f"{AUTOSCALING}.kind", "ScaledObject", src.at("spec.scaleTargetRef"))
    trig = mapping(next(iter(seq(spec.get("triggers"))), {}))
    md = mapping(trig.get("metadata"))
    if text(trig.get("type")):
        sink.add(f"{AUTOSCALING}.metric_type", trig["type"], src.at("spec.triggers[0].type"))
    metric = text(md.get("metricName")) or text(trig.get("name"))
    if metric:
        sink.add(f"{AUTOSCALING}.metric", metric, src.at("spec.triggers[0].metadata.metricName"))
    for f in ("threshold", "value", "targetValue", "targetQueueLength", "queueLength"):
        if quantity(md.get(f)) is not None:
            sink.add(f"{AUTOSCALING}.target", quantity(md.get(f)), src.at(f"spec.triggers[0].metadata.{f}"))
            break
    # KEDA's defaults when absent: minReplicaCount 0, maxReplicaCount 100.
    _bound(sink, "min", integer(spec.get("minReplicaCount")), default=0, src=src, path="spec.minReplicaCount")
    _bound(
        sink, "max", integer(spec.get("maxReplicaCount")), default=100, src=src, path="spec.maxReplicaCount"
    )


def _hpa_facts(sink: FactSink, hpa: Mapping[str, Any], src: Src) -> None:
    spec = mapping(hpa.get("spec"))
    sink.add(f"{AUTOSCALING}.kind", "HorizontalPodAutoscaler", src.at("spec.scaleTargetRef"))
    metrics = [mapping(m) for m in seq(spec.get("metrics"))[:MAX_LIST]]
    if metrics:
        mtype, metric, target = _hpa_metric(metrics[0])
        if mtype:
            sink.add(f"{AUTOSCALING}.metric_type", mtype, src.at("spec.metrics[0].type"))
        if metric:
            sink.add(f"{AUTOSCALING}.metric", metric, src.at("spec.metrics[0]"))
        if target is not None:
            sink.add(f"{AUTOSCALING}.target", target, src.at("spec.metrics[0].target"))
    _bound(sink, "min", integer(spec.get("minReplicas")), default=1, src=src, path="spec.minReplicas")
    _bound(sink, "max", integer(spec.get("maxReplicas")), default=None, src=src, path="spec.maxReplicas")


def _predictor_scaling(sink: FactSink, isvc: Mapping[str, Any], src: Src) -> bool:
    predictor = mapping(mapping(isvc.get("spec")).get("predictor"))
    if not any(k in predictor for k in ("minReplicas", "maxReplicas", "scaleMetric", "scaleTarget")):
        return False
    sink.add(f"{AUTOSCALING}.kind", "InferenceService", src.at("spec.predictor"))
    for key, f in (("min", "minReplicas"), ("max", "maxReplicas"), ("target", "scaleTarget")):
        _bound(sink, key, integer(predictor.get(f)), default=None, src=src, path=f"spec.predictor.{f}")
    if text(predictor.get("scaleMetric")):
        sink.add(f"{AUTOSCALING}.metric", predictor["scaleMetric"], src.at("spec.predictor.scaleMetric"))
    return True


def _autoscaling(ns: NamespaceView, w: Workload, sink: FactSink) -> None:
    """The autoscaler of the workload: a ScaledObject, else an HPA, else the KServe predictor's
    own bounds, else (HPAs read, none naming it) ``none``."""
    targets = {(k, n) for k, n, _ in w.controllers} | {(w.kind, w.name)}

    def keda_made(name: str, hpa: Mapping[str, Any]) -> bool:
        # KEDA makes an HPA ``keda-hpa-<ScaledObject>`` it owns: reported as the ScaledObject, once.
        # With ScaledObjects unread, that HPA is what is known of the autoscaler.
        owner = controller_ref(hpa)
        made = (owner is not None and owner[0] == "ScaledObject") or name.startswith("keda-hpa-")
        return made and ns.ok("ScaledObject")

    for name, so in sorted(ns.objs("ScaledObject").items()):
        if _scale_target(so, "Deployment") in targets:
            _scaled_object_facts(sink, so, ns.src("ScaledObject", name, so))
            return
    for name, hpa in sorted(ns.objs("HorizontalPodAutoscaler").items()):
        if _scale_target(hpa, "") in targets and not keda_made(name, hpa):
            _hpa_facts(sink, hpa, ns.src("HorizontalPodAutoscaler", name, hpa))
            return
    custom = w.custom
    if (
        w.kind == "InferenceService"
        and custom is not None
        and _predictor_scaling(sink, custom, ns.src(w.kind, w.name, custom))
    ):
        return
    if ns.ok("HorizontalPodAutoscaler"):
        # KEDA scales through an HPA too: with HPAs read, no HPA naming the workload means none.
        sink.add(
            f"{AUTOSCALING}.kind",
            "none",
            f"HorizontalPodAutoscaler/{ns.namespace}: none targets {w.workload}",
        )


def _kserve(ns: NamespaceView, w: Workload, sink: FactSink, serving: Serving) -> None:
    """A KServe predictor's request timeout (offered beside the routes') and concurrency limit."""
    if w.kind != "InferenceService" or w.custom is None:
        return
    predictor = mapping(mapping(w.custom.get("spec")).get("predictor"))
    src = ns.src("InferenceService", w.name, w.custom)
    timeout = integer(predictor.get("timeout"))
    if timeout is not None:
        serving.offer(
            [w.workload], "serving.timeout_seconds", float(timeout), src.at("spec.predictor.timeout")
        )
    concurrency = integer(predictor.get("containerConcurrency"))
    if concurrency is not None:
        sink.add("serving.container_concurrency", concurrency, src.at("spec.predictor.containerConcurrency"))


def _status(ns: NamespaceView, w: Workload, sink: FactSink) -> SourceStatus:
    used = {k for k, _, _ in w.controllers}
    if "Deployment" in used:
        used.add("ReplicaSet")
    if used & {"StatefulSet", "LeaderWorkerSet"}:
        used.add("ControllerRevision")
    if w.kind in CUSTOM_WORKLOADS:
        used.add(w.kind)
    state = SourceState.OK
    for kind in sorted(used):
        s = ns.kinds.get(kind)
        k_state = s.state if s is not None else SourceState.UNAVAILABLE
        if _SEVERITY[k_state] > _SEVERITY[state]:
            state = k_state
    unread = []
    for k in KINDS:
        s = ns.kinds.get(k.name)
        if s is None:
            unread.append(f"{k.name} (not reported)")
        elif s.state != SourceState.OK:
            unread.append(f"{k.name} ({s.state.value}{': ' + s.message[:160] if s.message else ''})")
    parts = [f"kinds not read, their facts left out: {', '.join(unread)}"] if unread else []
    problems = sink.messages()
    if problems:
        parts.append("; ".join(problems[:MAX_PROBLEMS]))
        if state == SourceState.OK:
            state = SourceState.ERROR
    message = "; ".join(parts)
    return SourceStatus(CLUSTER_SOURCE, state, message[:MAX_MESSAGE])


# --- pools --------------------------------------------------------------------------------------


def _pools(ns: NamespaceView) -> list[PoolMembers]:
    out = []
    for name, pool in sorted(ns.objs("InferencePool").items()):
        selector = pool_selector(pool)
        if selector:
            out.append(
                PoolMembers(
                    f"{ns.namespace}/InferencePool/{name}",
                    ns.namespace,
                    selector,
                    str(ns.src("InferencePool", name, pool)),
                )
            )
    # A KServe predictor's pods are one workload already (the agent names them by the
    # serving.kserve.io/inferenceservice label, whatever Deployment runs them), so its peers
    # comparison is the predictor's homogeneity check; a pool of the same id would shadow it.
    return out
