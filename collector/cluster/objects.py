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

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from collector.cluster.objects_common import (
    MAX_LIST,
    MAX_MESSAGE,
    MAX_PROBLEMS,
    FactSink,
    Src,
    integer,
    mapping,
    meta,
    quantity,
    seq,
    str_map,
    text,
)
from collector.cluster.objects_serving import Serving, Target, pool_selector
from collector.cluster.objects_slim import slim
from collector.cluster.objects_template import (
    pod_spec,
    revision_facts,
    workload_template_facts,
)
from collector.cluster.resources import KINDS
from collector.domain.cluster import CLUSTER_SOURCE, ClusterFacts, PoolMembers, RevisionTemplate
from skewwatch.core.facts import FactValue, SourceState, SourceStatus
from skewwatch.redact import Redactor

__all__ = ["Derived", "derive", "slim"]

# --- derive ---------------------------------------------------------------------------------------

CONTROLLER_KINDS = ("Deployment", "StatefulSet", "LeaderWorkerSet")
CUSTOM_WORKLOADS = ("InferenceService", "LLMInferenceService")
# Owner kinds the agent follows further up (agent/k8s.py OWNER_KINDS), and the machinery between a
# pod and what the user wrote, below which a controller's pod label names the workload instead.
OWNER_KINDS = frozenset({"ReplicaSet", "Deployment", "StatefulSet", "LeaderWorkerSet"})
INTERMEDIATE_KINDS = OWNER_KINDS | {"Revision", "Configuration"}
WORKLOAD_LABELS = (
    ("serving.kserve.io/inferenceservice", "InferenceService"),
    ("leaderworkerset.sigs.k8s.io/name", "LeaderWorkerSet"),
)
KSERVE_LABEL = "serving.kserve.io/inferenceservice"
MAX_OWNER_DEPTH = 5
MAX_WORKLOADS = 1_000  # per namespace
MAX_REVISIONS = 50  # per workload, newest first
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
TEMPLATE_HASH = "pod-template-hash"
REVISION_HASH_LABELS = (
    "controller-revision-hash",
    "controller.kubernetes.io/hash",
    "leaderworkerset.sigs.k8s.io/template-revision-hash",
)
_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?$")
_KIND = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,62}$")
_SEVERITY = {SourceState.OK: 0, SourceState.PENDING: 1, SourceState.UNAVAILABLE: 2, SourceState.ERROR: 3}


@dataclass(frozen=True)
class Derived:
    facts: list[ClusterFacts]
    pools: list[PoolMembers]
    revisions: list[RevisionTemplate]


@dataclass
class _Workload:
    workload: str
    kind: str
    name: str
    controllers: list[tuple[str, str, Mapping[str, Any]]] = field(default_factory=list)
    custom: Mapping[str, Any] | None = None  # the InferenceService / LLMInferenceService object
    revisions: dict[str, str] = field(default_factory=dict)
    templates: list[RevisionTemplate] = field(default_factory=list)


def _controller_ref(obj: Mapping[str, Any]) -> tuple[str, str] | None:
    """The owner with ``controller: true`` (else the only one), as the agent picks it."""
    refs = [mapping(r) for r in seq(meta(obj).get("ownerReferences"))]
    refs = [r for r in refs if isinstance(r.get("kind"), str) and isinstance(r.get("name"), str)]
    chosen = next((r for r in refs if r.get("controller") is True), refs[0] if len(refs) == 1 else None)
    if chosen is None or not _KIND.match(chosen["kind"]) or not _NAME.match(chosen["name"]):
        return None
    return chosen["kind"], chosen["name"]


def _template_labels(kind: str, obj: Mapping[str, Any]) -> dict[str, str]:
    spec = mapping(obj.get("spec"))
    if kind == "LeaderWorkerSet":
        lwt = mapping(spec.get("leaderWorkerTemplate"))
        template = (
            lwt.get("leaderTemplate")
            if isinstance(lwt.get("leaderTemplate"), Mapping)
            else lwt.get("workerTemplate")
        )
        return str_map(mapping(mapping(template).get("metadata")).get("labels"))
    return str_map(mapping(mapping(spec.get("template")).get("metadata")).get("labels"))


def _template_spec(kind: str, obj: Mapping[str, Any]) -> tuple[Mapping[str, Any], str]:
    """The pod spec of a controller's or custom workload's current template, and its field path."""
    spec = mapping(obj.get("spec"))
    if kind == "LeaderWorkerSet":
        lwt = mapping(spec.get("leaderWorkerTemplate"))
        part = "leaderTemplate" if isinstance(lwt.get("leaderTemplate"), Mapping) else "workerTemplate"
        return pod_spec(lwt.get(part)), f"spec.leaderWorkerTemplate.{part}.spec"
    if kind == "LLMInferenceService":
        return mapping(spec.get("template")), "spec.template"  # a PodSpec, not a PodTemplateSpec
    if kind == "InferenceService":
        predictor = mapping(spec.get("predictor"))
        if seq(predictor.get("containers")):
            return predictor, "spec.predictor"
        model = mapping(predictor.get("model"))
        # A predictor's model is the kserve-container the controller makes of it.
        shaped = {
            k: predictor[k] for k in ("nodeSelector", "affinity", "tolerations", "volumes") if k in predictor
        }
        return {
            **shaped,
            "containers": [{**model, "name": "kserve-container"}] if model else [],
        }, "spec.predictor"
    return pod_spec(spec.get("template")), "spec.template.spec"


class _Namespace:
    """One derive() run: the readable objects of one namespace and what is known of each kind."""

    def __init__(
        self,
        namespace: str,
        objects: Mapping[str, Mapping[str, Mapping[str, Any]]],
        kinds: Mapping[str, SourceStatus],
    ) -> None:
        self.namespace = namespace
        self.kinds = kinds
        self._objects: dict[str, dict[str, Mapping[str, Any]]] = {}
        for k in KINDS:
            status = kinds.get(k.name)
            raw = objects.get(k.name) if isinstance(objects, Mapping) else None
            if status is None or status.state != SourceState.OK or not isinstance(raw, Mapping):
                continue
            self._objects[k.name] = {
                n: o
                for n, o in raw.items()
                if isinstance(n, str) and _NAME.match(n) and isinstance(o, Mapping)
            }

    def ok(self, kind: str) -> bool:
        status = self.kinds.get(kind)
        return status is not None and status.state == SourceState.OK

    def objs(self, kind: str) -> Mapping[str, Mapping[str, Any]]:
        return self._objects.get(kind, {})

    def src(self, kind: str, name: str, obj: Mapping[str, Any]) -> Src:
        return Src.of(kind, self.namespace, name, obj)

    def resolve(self, kind: str, name: str, obj: Mapping[str, Any]) -> tuple[str, str]:
        """The workload (kind, name) the agent names for the pods of this controller."""
        chain = [(kind, name)]
        current = obj
        for _ in range(MAX_OWNER_DEPTH):
            ref = _controller_ref(current)
            if ref is None:
                break
            chain.append(ref)
            nxt = self.objs(ref[0]).get(ref[1]) if ref[0] in OWNER_KINDS else None
            if nxt is None:
                break
            current = nxt
        if chain[-1][0] in INTERMEDIATE_KINDS:
            labels = _template_labels(kind, obj)
            for label, label_kind in WORKLOAD_LABELS:
                if _NAME.match(labels.get(label, "")):
                    return label_kind, labels[label]
        return chain[-1]

    def workload_id(self, kind: str, name: str) -> str:
        return f"{self.namespace}/{kind}/{name}"


def derive(
    namespace: str,
    objects: Mapping[str, Mapping[str, Mapping[str, Any]]],
    kinds: Mapping[str, SourceStatus],
    redactor: Redactor,
    now: float,
) -> Derived:
    """Facts per workload, revisions and pools of one namespace (see the module docstring)."""
    ns = _Namespace(namespace, objects, kinds)
    configmaps = ns.objs("ConfigMap") if ns.ok("ConfigMap") else None
    workloads = _workloads(ns)
    revisions = _revisions(ns, workloads, redactor, configmaps)
    serving = Serving(
        namespace,
        [Target(w.workload, tuple(_target_labels(w))) for w in workloads.values()],
        ns.objs,
    )
    facts = [_facts(ns, w, serving, configmaps, now) for w in workloads.values()]
    return Derived(facts=facts, pools=_pools(ns), revisions=revisions)


def _workloads(ns: _Namespace) -> dict[str, _Workload]:
    out: dict[str, _Workload] = {}

    def group(kind: str, name: str) -> _Workload | None:
        wid = ns.workload_id(kind, name)
        if wid not in out:
            if len(out) >= MAX_WORKLOADS:
                return None
            out[wid] = _Workload(wid, kind, name)
        return out[wid]

    for kind in CONTROLLER_KINDS:
        for name, obj in sorted(ns.objs(kind).items()):
            top_kind, top_name = ns.resolve(kind, name, obj)
            g = group(top_kind, top_name)
            if g is not None:
                g.controllers.append((kind, name, obj))
    for kind in CUSTOM_WORKLOADS:
        for name, obj in sorted(ns.objs(kind).items()):
            g = group(kind, name)
            if g is not None:
                g.custom = obj
    return dict(sorted(out.items()))


def _target_labels(w: _Workload) -> list[Mapping[str, str]]:
    labels: list[Mapping[str, str]] = [_template_labels(k, o) for k, _, o in w.controllers]
    if w.kind == "InferenceService":
        labels.append({KSERVE_LABEL: w.name})  # KServe labels every predictor pod so
    return [lab for lab in labels if lab]


# --- facts of one workload ----------------------------------------------------------------------


def _facts(
    ns: _Namespace,
    w: _Workload,
    serving: Serving,
    configmaps: Mapping[str, Mapping[str, Any]] | None,
    now: float,
) -> ClusterFacts:
    sink = FactSink()
    _replicas(ns, w, sink)
    _autoscaling(ns, w, sink)
    _kserve(ns, w, sink, serving)
    primary = w.controllers[0] if w.controllers else None
    if primary is not None:
        kind, name, obj = primary
        spec, path = _template_spec(kind, obj)
        src = ns.src(kind, name, obj)
    elif w.custom is not None:
        spec, path = _template_spec(w.kind, w.custom)
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
    current = _current_revision(ns, w)
    return ClusterFacts(
        workload=w.workload,
        facts=sink.facts,
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


def _replicas(ns: _Namespace, w: _Workload, sink: FactSink) -> None:
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
            sink.add(key, sum(v for v, _ in values), "; ".join(d for _, d in values))


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


def _autoscaling(ns: _Namespace, w: _Workload, sink: FactSink) -> None:
    """The autoscaler of the workload: a ScaledObject, else an HPA, else the KServe predictor's
    own bounds, else (HPAs read, none naming it) ``none``."""
    targets = {(k, n) for k, n, _ in w.controllers} | {(w.kind, w.name)}

    def keda_made(name: str, hpa: Mapping[str, Any]) -> bool:
        # KEDA makes an HPA ``keda-hpa-<ScaledObject>`` it owns: reported as the ScaledObject, once.
        # With ScaledObjects unread, that HPA is what is known of the autoscaler.
        owner = _controller_ref(hpa)
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


def _kserve(ns: _Namespace, w: _Workload, sink: FactSink, serving: Serving) -> None:
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


def _status(ns: _Namespace, w: _Workload, sink: FactSink) -> SourceStatus:
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


# --- revisions ------------------------------------------------------------------------------------


def _created(obj: Mapping[str, Any]) -> float:
    stamp = text(meta(obj).get("creationTimestamp"))
    if not stamp:
        return 0.0
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except (ValueError, OverflowError, OSError):
        return 0.0


def _revision_number(value: str) -> int:
    return int(value) if value.isdigit() and len(value) < 19 else -1


def _owner_workload(
    ns: _Namespace, workloads: Mapping[str, _Workload], obj: Mapping[str, Any], kinds: tuple[str, ...]
) -> _Workload | None:
    ref = _controller_ref(obj)
    if ref is None or ref[0] not in kinds:
        return None
    owner = ns.objs(ref[0]).get(ref[1])
    top = ns.resolve(ref[0], ref[1], owner) if owner is not None else ref
    return workloads.get(ns.workload_id(*top))


def _revisions(
    ns: _Namespace,
    workloads: Mapping[str, _Workload],
    redactor: Redactor,
    configmaps: Mapping[str, Mapping[str, Any]] | None,
) -> list[RevisionTemplate]:
    for name, rs in sorted(ns.objs("ReplicaSet").items()):
        w = _owner_workload(ns, workloads, rs, ("Deployment",))
        labels = str_map(meta(rs).get("labels")) or str_map(
            mapping(mapping(mapping(rs.get("spec")).get("template")).get("metadata")).get("labels")
        )
        template_hash = labels.get(TEMPLATE_HASH, "")
        if w is None or not template_hash:
            continue
        revision = str_map(meta(rs).get("annotations")).get(REVISION_ANNOTATION, "")
        w.revisions[template_hash] = revision
        src = ns.src("ReplicaSet", name, rs)
        _add_template(
            w,
            revision=revision,
            template_hash=template_hash,
            spec=pod_spec(mapping(rs.get("spec")).get("template")),
            path="spec.template.spec",
            src=src,
            obj=rs,
            redactor=redactor,
            configmaps=configmaps,
        )
    for name, cr in sorted(ns.objs("ControllerRevision").items()):
        w = _owner_workload(ns, workloads, cr, ("StatefulSet", "LeaderWorkerSet"))
        if w is None:
            continue
        number = integer(cr.get("revision"))
        revision = "" if number is None else str(number)
        labels = str_map(meta(cr).get("labels"))
        hashes = [name] + [labels[h] for h in REVISION_HASH_LABELS if labels.get(h)]
        for h in hashes:
            w.revisions[h] = revision
        data_spec = mapping(mapping(cr.get("data")).get("spec"))
        if "leaderWorkerTemplate" in data_spec:
            lwt = mapping(data_spec.get("leaderWorkerTemplate"))
            part = "leaderTemplate" if isinstance(lwt.get("leaderTemplate"), Mapping) else "workerTemplate"
            spec, path = pod_spec(lwt.get(part)), f"data.spec.leaderWorkerTemplate.{part}.spec"
        else:
            spec, path = pod_spec(data_spec.get("template")), "data.spec.template.spec"
        # Pods carry the LeaderWorkerSet's template-revision hash, a StatefulSet's revision name.
        template_hash = labels.get("leaderworkerset.sigs.k8s.io/template-revision-hash") or name
        _add_template(
            w,
            revision=revision,
            template_hash=template_hash,
            spec=spec,
            path=path,
            src=ns.src("ControllerRevision", name, cr),
            obj=cr,
            redactor=redactor,
            configmaps=configmaps,
        )
    out: list[RevisionTemplate] = []
    for w in workloads.values():
        w.templates.sort(
            key=lambda t: (_revision_number(t.revision), t.created_at, t.template_hash), reverse=True
        )
        del w.templates[MAX_REVISIONS:]
        if len(w.revisions) > MAX_REVISIONS * 4:
            w.revisions = dict(
                sorted(w.revisions.items(), key=lambda hr: -_revision_number(hr[1]))[: MAX_REVISIONS * 4]
            )
        out.extend(w.templates)
    return out


def _add_template(
    w: _Workload,
    *,
    revision: str,
    template_hash: str,
    spec: Mapping[str, Any],
    path: str,
    src: Src,
    obj: Mapping[str, Any],
    redactor: Redactor,
    configmaps: Mapping[str, Mapping[str, Any]] | None,
) -> None:
    sink = FactSink()
    revision_facts(sink, spec, redactor=redactor, configmaps=configmaps, src=src, path=path)
    w.templates.append(
        RevisionTemplate(
            workload=w.workload,
            revision=revision,
            template_hash=template_hash,
            facts=sink.facts,
            provenance=sink.provenance,
            created_at=_created(obj),
            source=str(src),
        )
    )


def _without_hash(template: object) -> Any:
    t = dict(mapping(template))
    md = dict(mapping(t.get("metadata")))
    labels = {k: v for k, v in mapping(md.get("labels")).items() if k != TEMPLATE_HASH}
    md["labels"] = labels
    t["metadata"] = md
    return t


def _current_revision(ns: _Namespace, w: _Workload) -> str:
    """The revision of the workload's current template (see the module docstring)."""
    if not w.revisions:
        return ""
    primary = w.controllers[0] if w.controllers else None
    if primary is not None and primary[0] == "Deployment":
        name, dep = primary[1], primary[2]
        wanted = _without_hash(mapping(dep.get("spec")).get("template"))
        for rs in ns.objs("ReplicaSet").values():
            ref = _controller_ref(rs)
            rs_hash = str_map(meta(rs).get("labels")).get(TEMPLATE_HASH, "")
            same = _without_hash(mapping(rs.get("spec")).get("template")) == wanted
            if ref == ("Deployment", name) and rs_hash in w.revisions and same:
                return w.revisions[rs_hash]
        annotated = str_map(meta(dep).get("annotations")).get(REVISION_ANNOTATION)
        if annotated and annotated in w.revisions.values():
            return annotated
    if primary is not None and primary[0] == "StatefulSet":
        update = text(mapping(primary[2].get("status")).get("updateRevision"))
        if update and update in w.revisions:
            return w.revisions[update]
    return max(w.revisions.values(), key=_revision_number)


# --- pools --------------------------------------------------------------------------------------


def _pools(ns: _Namespace) -> list[PoolMembers]:
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
    for name, isvc in sorted(ns.objs("InferenceService").items()):
        out.append(
            PoolMembers(
                f"{ns.namespace}/InferenceService/{name}",
                ns.namespace,
                {KSERVE_LABEL: name},
                str(ns.src("InferenceService", name, isvc)),
            )
        )
    return out
