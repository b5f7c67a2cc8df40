"""Which workload each controller object is, as the agent names it from a pod's owner chain
(``agent/k8s.py``), and the readable objects of one namespace. Pure.

A Deployment (its pods' ReplicaSet's owner), StatefulSet or LeaderWorkerSet is its own workload
unless a controller owns it (a KServe InferenceService or LLMInferenceService: the top of the
chain), or its pod labels name the higher-level workload (``serving.kserve.io/inferenceservice``,
``leaderworkerset.sigs.k8s.io/name``) where the chain stops at machinery. An InferenceService or
LLMInferenceService with no controller of its own yet is a workload too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from collector.cluster.objects_common import Src, mapping, meta, seq, str_map
from collector.cluster.objects_template import pod_spec
from collector.cluster.resources import KINDS
from collector.domain.cluster import RevisionTemplate
from skewwatch.core.facts import SourceState, SourceStatus

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
LWS_NAME_LABEL = "leaderworkerset.sigs.k8s.io/name"
MAX_OWNER_DEPTH = 5
MAX_WORKLOADS = 1_000  # per namespace
NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?$")
KIND_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,62}$")


@dataclass
class Workload:
    workload: str
    kind: str
    name: str
    controllers: list[tuple[str, str, Mapping[str, Any]]] = field(default_factory=list)
    custom: Mapping[str, Any] | None = None  # the InferenceService / LLMInferenceService object
    revisions: dict[str, str] = field(default_factory=dict)
    templates: list[RevisionTemplate] = field(default_factory=list)


def controller_ref(obj: Mapping[str, Any]) -> tuple[str, str] | None:
    """The owner with ``controller: true`` (else the only one), as the agent picks it."""
    refs = [mapping(r) for r in seq(meta(obj).get("ownerReferences"))]
    refs = [r for r in refs if isinstance(r.get("kind"), str) and isinstance(r.get("name"), str)]
    chosen = next((r for r in refs if r.get("controller") is True), refs[0] if len(refs) == 1 else None)
    if chosen is None or not KIND_NAME.match(chosen["kind"]) or not NAME.match(chosen["name"]):
        return None
    return chosen["kind"], chosen["name"]


def template_labels(kind: str, obj: Mapping[str, Any]) -> dict[str, str]:
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


def template_spec(kind: str, obj: Mapping[str, Any]) -> tuple[Mapping[str, Any], str]:
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


class NamespaceView:
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
                if isinstance(n, str) and NAME.match(n) and isinstance(o, Mapping)
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
            ref = controller_ref(current)
            if ref is None:
                break
            chain.append(ref)
            nxt = self.objs(ref[0]).get(ref[1]) if ref[0] in OWNER_KINDS else None
            if nxt is None:
                break
            current = nxt
        if chain[-1][0] in INTERMEDIATE_KINDS:
            labels = template_labels(kind, obj)
            for label, label_kind in WORKLOAD_LABELS:
                if NAME.match(labels.get(label, "")):
                    return label_kind, labels[label]
        return chain[-1]

    def workload_id(self, kind: str, name: str) -> str:
        return f"{self.namespace}/{kind}/{name}"


def group_workloads(ns: NamespaceView) -> dict[str, Workload]:
    out: dict[str, Workload] = {}

    def group(kind: str, name: str) -> Workload | None:
        wid = ns.workload_id(kind, name)
        if wid not in out:
            if len(out) >= MAX_WORKLOADS:
                return None
            out[wid] = Workload(wid, kind, name)
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


def target_labels(w: Workload) -> list[Mapping[str, str]]:
    """The label sets of the workload's pods, as Services and InferencePools select them: each
    template's labels with those its controller adds to every pod (LeaderWorkerSet's name, KServe's
    inferenceservice label)."""
    added: dict[str, str] = {}
    if w.kind == "InferenceService":
        added[KSERVE_LABEL] = w.name
    out: list[Mapping[str, str]] = []
    for kind, name, obj in w.controllers:
        labels = {**template_labels(kind, obj), **added}
        if kind == "LeaderWorkerSet":
            labels[LWS_NAME_LABEL] = name
        out.append(labels)
    if not w.controllers and added:
        out.append(added)
    return [lab for lab in out if lab]
