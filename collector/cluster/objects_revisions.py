"""The revisions of a workload's pod template: one :class:`RevisionTemplate` per ReplicaSet of a
Deployment and per ControllerRevision of a StatefulSet / LeaderWorkerSet, which template hash is
which revision, and which revision is current. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from collector.cluster.objects_common import FactSink, Src, integer, mapping, meta, str_map, text
from collector.cluster.objects_template import pod_spec, revision_facts, scrub
from collector.cluster.objects_workloads import NamespaceView, Workload, controller_ref
from collector.domain.cluster import RevisionTemplate
from skewwatch.redact import Redactor

MAX_REVISIONS = 50  # per workload, newest first
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
TEMPLATE_HASH = "pod-template-hash"
REVISION_HASH_LABELS = (
    "controller-revision-hash",
    "controller.kubernetes.io/hash",
    "leaderworkerset.sigs.k8s.io/template-revision-hash",
)


# ------------------------------------------------------------------------------------


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
    ns: NamespaceView, workloads: Mapping[str, Workload], obj: Mapping[str, Any], kinds: tuple[str, ...]
) -> Workload | None:
    ref = controller_ref(obj)
    if ref is None or ref[0] not in kinds:
        return None
    owner = ns.objs(ref[0]).get(ref[1])
    top = ns.resolve(ref[0], ref[1], owner) if owner is not None else ref
    return workloads.get(ns.workload_id(*top))


def derive_revisions(
    ns: NamespaceView,
    workloads: Mapping[str, Workload],
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
    w: Workload,
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
            facts=scrub(sink.facts, redactor),
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


def current_revision(ns: NamespaceView, w: Workload) -> str:
    """The revision of the workload's current template (see the module docstring)."""
    if not w.revisions:
        return ""
    primary = w.controllers[0] if w.controllers else None
    if primary is not None and primary[0] == "Deployment":
        name, dep = primary[1], primary[2]
        wanted = _without_hash(mapping(dep.get("spec")).get("template"))
        for rs in ns.objs("ReplicaSet").values():
            ref = controller_ref(rs)
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
