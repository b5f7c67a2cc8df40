"""A pod template as facts: the inference container's resources, placement, the ConfigMaps it
references, and (for a revision) every container's image, command, args and environment. Pure.

Every literal env value and every argument goes through the redactor (the agent's rules and
salt, ``skewwatch.redact``); an env value read from a Secret is named by its reference
(``secretKeyRef:<secret>/<key>``), never read. Keys are ``orchestration.template.…`` so that they
never collide with what the agent reads from its own Pod (``orchestration.resources.*``,
``orchestration.node_selector``, ``orchestration.tolerations`` hold the Pod's values, shaped as
the Pod API gives them).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from collector.cluster.objects_common import (
    MAX_LIST,
    FactSink,
    Src,
    cut,
    mapping,
    seq,
    str_map,
    text,
)
from skewwatch.core.facts import FactValue
from skewwatch.redact import Redactor

TEMPLATE = "orchestration.template"
CONFIGMAP = "orchestration.configmap"
ABSENT = "absent"  # a referenced ConfigMap that is not in the namespace
GPU_RESOURCE = re.compile(r"^(nvidia\.com|amd\.com|gpu\.intel\.com)/gpu$|^habana\.ai/gaudi$")
# How the agent picks the inference container (agent/k8s.py engine_container): the one requesting
# GPUs, else (here, without SKEWWATCH_CONTAINER) one named like an engine, else the first that is
# not the agent.
ENGINE_NAME = re.compile(
    r"vllm|sglang|tgi|text-generation|trtllm|tensorrt|triton|lmdeploy|kserve-container|^main$"
)
AGENT_NAME = re.compile(r"skewwatch", re.IGNORECASE)
# Node labels that say which GPU a pod may land on (GPU feature discovery, clouds' accelerators).
GPU_LABEL = re.compile(
    r"^(nvidia\.com/|amd\.com/|cloud\.google\.com/gke-accelerator|cloud\.google\.com/gke-gpu|"
    r"karpenter\.k8s\.aws/instance-gpu|node\.kubernetes\.io/instance-type$|feature\.node\.kubernetes\.io/pci-10de)"
)
# Volume sources and the field that names what they mount ("" : the type alone says it).
VOLUME_SOURCES: tuple[tuple[str, str], ...] = (
    ("configMap", "name"),
    ("secret", "secretName"),
    ("persistentVolumeClaim", "claimName"),
    ("hostPath", "path"),
    ("emptyDir", "medium"),
    ("csi", "driver"),
    ("nfs", "path"),
    ("ephemeral", ""),
    ("downwardAPI", ""),
    ("image", "reference"),
)


def pod_spec(template: object) -> Mapping[str, Any]:
    """The ``spec`` of a PodTemplateSpec."""
    return mapping(mapping(template).get("spec"))


def containers(spec: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The containers, then the init containers (a native sidecar is one), each a map with a name."""
    out: list[Mapping[str, Any]] = []
    for part in ("containers", "initContainers"):
        out.extend(
            c for c in seq(spec.get(part))[:MAX_LIST] if isinstance(c, Mapping) and text(c.get("name"))
        )
    return out


def _requests_gpu(c: Mapping[str, Any]) -> bool:
    res = mapping(c.get("resources"))
    return any(GPU_RESOURCE.match(str(k)) for part in ("limits", "requests") for k in mapping(res.get(part)))


def engine_container(spec: Mapping[str, Any]) -> tuple[Mapping[str, Any], str] | None:
    """The inference container of a pod spec, and why it was chosen."""
    main = [
        c for c in seq(spec.get("containers"))[:MAX_LIST] if isinstance(c, Mapping) and text(c.get("name"))
    ]
    for c in main:
        if _requests_gpu(c):
            return c, "requests GPUs"
    for c in main:
        if ENGINE_NAME.search(str(c["name"]).lower()):
            return c, "named like an engine"
    for c in main:
        if not AGENT_NAME.search(str(c["name"])):
            return c, "the first that is not the agent"
    return None


def configmap_refs(spec: Mapping[str, Any]) -> dict[str, str]:
    """ConfigMaps the pod spec references → where the first reference is (volumes, projected
    volumes, envFrom, env valueFrom.configMapKeyRef)."""
    refs: dict[str, str] = {}

    def note(name: object, where: str) -> None:
        if isinstance(name, str) and name and name not in refs:
            refs[name] = where

    for v in seq(spec.get("volumes"))[:MAX_LIST]:
        vol = mapping(v)
        vname = text(vol.get("name")) or "?"
        note(mapping(vol.get("configMap")).get("name"), f"volumes[{vname}].configMap")
        for s in seq(mapping(vol.get("projected")).get("sources"))[:MAX_LIST]:
            note(mapping(mapping(s).get("configMap")).get("name"), f"volumes[{vname}].projected.configMap")
    for c in containers(spec):
        cname = c["name"]
        for e in seq(c.get("envFrom"))[:MAX_LIST]:
            note(mapping(mapping(e).get("configMapRef")).get("name"), f"containers[{cname}].envFrom")
        for e in seq(c.get("env"))[:MAX_LIST]:
            ref = mapping(mapping(mapping(e).get("valueFrom")).get("configMapKeyRef"))
            note(ref.get("name"), f"containers[{cname}].env.valueFrom.configMapKeyRef")
    return refs


def configmap_facts(
    sink: FactSink,
    spec: Mapping[str, Any],
    configmaps: Mapping[str, Mapping[str, Any]] | None,
    src: Src,
    path: str,
) -> None:
    """``orchestration.configmap.<name>.digest`` of every referenced ConfigMap (``absent`` when
    there is none of that name); nothing when ConfigMaps could not be read (``configmaps`` None)."""
    if configmaps is None:
        return
    for name, where in sorted(configmap_refs(spec).items()):
        cm = configmaps.get(name)
        digest = text(mapping(cm).get("digest")) if cm is not None else None
        value = digest if digest else ABSENT
        if cm is not None:
            rv = text(mapping(cm.get("metadata")).get("resourceVersion")) or ""
            detail = f"{path}.{where} → ConfigMap/{src.namespace}/{name}" + (f"@{rv}" if rv else "")
        else:
            detail = f"{path}.{where} (no such ConfigMap)"

        sink.add(f"{CONFIGMAP}.{name}.digest", value, src.at(detail))


def quantity_text(value: object) -> str | None:
    """A resource quantity as the agent reports it (``str`` of what the API holds)."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    return cut(str(value), 64)


def resource_facts(
    sink: FactSink, prefix: str, c: Mapping[str, Any], src: Src, path: str, *, note: str = ""
) -> None:
    res = mapping(c.get("resources"))
    for part in ("requests", "limits"):
        for name, qty in sorted(mapping(res.get(part)).items())[:MAX_LIST]:
            value = quantity_text(qty)
            if isinstance(name, str) and value is not None:
                sink.add(f"{prefix}.{part}.{name}", value, src.at(f"{path}.resources.{part}{note}"))


def engine_facts(sink: FactSink, spec: Mapping[str, Any], src: Src, path: str) -> None:
    """``orchestration.template.resources.*`` of the inference container."""
    chosen = engine_container(spec)
    if chosen is None:
        return
    c, why = chosen
    note = f" (the inference container: {why})"
    resource_facts(sink, f"{TEMPLATE}.resources", c, src, f"{path}.containers[{c['name']}]", note=note)


def _gpu_terms(affinity: Mapping[str, Any]) -> list[str]:
    node = mapping(mapping(affinity).get("nodeAffinity"))
    terms: list[tuple[str, Mapping[str, Any]]] = []
    required = mapping(node.get("requiredDuringSchedulingIgnoredDuringExecution"))
    terms.extend(("", mapping(t)) for t in seq(required.get("nodeSelectorTerms"))[:MAX_LIST])
    for p in seq(node.get("preferredDuringSchedulingIgnoredDuringExecution"))[:MAX_LIST]:
        terms.append(("preferred ", mapping(mapping(p).get("preference"))))
    out: set[str] = set()
    for how, term in terms:
        for e in seq(term.get("matchExpressions"))[:MAX_LIST]:
            expr = mapping(e)
            key, op = text(expr.get("key")), text(expr.get("operator")) or ""
            if key and GPU_LABEL.match(key):
                values = sorted(v for v in seq(expr.get("values"))[:MAX_LIST] if isinstance(v, str))
                out.add(cut(f"{how}{key} {op} {','.join(values)}".rstrip(), 512))
    return sorted(out)[:MAX_LIST]


def _toleration(t: Mapping[str, Any]) -> str | None:
    key, value, effect = text(t.get("key")) or "", text(t.get("value")) or "", text(t.get("effect")) or ""
    if t.get("operator") == "Exists" and not key:
        key = "*"
    if not key and not value and not effect:
        return None
    return cut(f"{key}{'=' + value if value else ''}:{effect}", 512)


def placement_facts(sink: FactSink, spec: Mapping[str, Any], src: Src, path: str) -> None:
    """Node selector labels, GPU node-affinity terms, tolerations."""
    for label, value in sorted(str_map(spec.get("nodeSelector")).items())[:MAX_LIST]:
        sink.add(f"{TEMPLATE}.node_selector.{label}", cut(value, 512), src.at(f"{path}.nodeSelector"))
    gpu = _gpu_terms(mapping(spec.get("affinity")))
    if gpu:
        sink.add(f"{TEMPLATE}.affinity.gpu", list(gpu), src.at(f"{path}.affinity.nodeAffinity"))
    tolerations = sorted(
        {s for t in seq(spec.get("tolerations"))[:MAX_LIST] if (s := _toleration(mapping(t)))}
    )
    if tolerations:
        sink.add(f"{TEMPLATE}.tolerations", list(tolerations), src.at(f"{path}.tolerations"))


def workload_template_facts(
    sink: FactSink,
    spec: Mapping[str, Any],
    configmaps: Mapping[str, Mapping[str, Any]] | None,
    src: Src,
    path: str,
) -> None:
    """What a workload's current template contributes to its cluster facts."""
    engine_facts(sink, spec, src, path)
    placement_facts(sink, spec, src, path)
    configmap_facts(sink, spec, configmaps, src, path)


# Keys whose values the redactor already judged by their own rules (argv, env by name and shape),
# and volumes, whose values are built of object names ("secret:<name>" is no secret pair).
_REDACTED_BY_RULE = re.compile(r"^orchestration\.template\.(?:[^.]+\.(?:args|command|env\..+)|volumes\..+)$")


def scrub(facts: Mapping[str, FactValue], redactor: Redactor) -> dict[str, FactValue]:
    """Every other string value (a label, a route, a metric name, a volume's path) with
    secret-shaped text redacted in place, as the agent's central pass does."""
    out: dict[str, FactValue] = {}
    for key, value in facts.items():
        if _REDACTED_BY_RULE.match(key):
            out[key] = value
        elif isinstance(value, str):
            out[key] = redactor.text(value)
        elif isinstance(value, list):
            out[key] = [redactor.text(v) if isinstance(v, str) else v for v in value]
        else:
            out[key] = value
    return out


# --- a revision: every container ---------------------------------------------------------------


def _words(value: object) -> list[str] | None:
    items = seq(value)
    if not items:
        return None
    return [
        cut(str(a)) for a in items[:MAX_LIST] if isinstance(a, str | int | float) and not isinstance(a, bool)
    ]


def _env_value(e: Mapping[str, Any], redactor: Redactor) -> str | None:
    name = text(e.get("name")) or ""
    if "value" in e:
        raw = e.get("value")
        if isinstance(raw, bool) or not isinstance(raw, str | int | float):
            return None
        return cut(redactor.value(name, cut(str(raw))))
    ref = mapping(e.get("valueFrom"))
    for kind, fields in (
        ("secretKeyRef", ("name", "key")),
        ("configMapKeyRef", ("name", "key")),
        ("fieldRef", ("fieldPath",)),
        ("resourceFieldRef", ("containerName", "resource")),
    ):
        if kind in ref:
            r = mapping(ref.get(kind))
            parts = [text(r.get(f)) or "" for f in fields]
            # A Secret's name and key say where the value is; its value is never read.
            return cut(f"{kind}:{'/'.join(p for p in parts if p)}", 512)
    return None


def _env_from(c: Mapping[str, Any]) -> list[str]:
    out = []
    for e in seq(c.get("envFrom"))[:MAX_LIST]:
        ent = mapping(e)
        prefix = text(ent.get("prefix")) or ""
        for kind in ("configMapRef", "secretRef"):
            name = text(mapping(ent.get(kind)).get("name"))
            if name:
                out.append(cut(f"{kind}:{name}" + (f" prefix {prefix}" if prefix else ""), 512))
    return out


def container_facts(sink: FactSink, c: Mapping[str, Any], redactor: Redactor, src: Src, path: str) -> None:
    name = c["name"]
    prefix = f"{TEMPLATE}.{name}"
    where = f"{path}.containers[{name}]"
    image = text(c.get("image"))
    if image:
        sink.add(f"{prefix}.image", cut(image, 1024), src.at(f"{where}.image"))
    for part in ("command", "args"):
        words = _words(c.get(part))
        if words is not None:
            redacted: FactValue = [cut(w) for w in redactor.argv(words)]
            sink.add(f"{prefix}.{part}", redacted, src.at(f"{where}.{part}"))
    for e in seq(c.get("env"))[:MAX_LIST]:
        env = mapping(e)
        env_name = text(env.get("name"))
        value = _env_value(env, redactor) if env_name else None
        if env_name and value is not None:
            sink.add(f"{prefix}.env.{env_name}", value, src.at(f"{where}.env[{env_name}]"))
    env_from = _env_from(c)
    if env_from:
        sink.add(f"{prefix}.env_from", list(env_from), src.at(f"{where}.envFrom"))
    resource_facts(sink, f"{prefix}.resources", c, src, where)


def volume_value(vol: Mapping[str, Any]) -> str | None:
    """``configMap:<name>``, ``secret:<name>``, ``persistentVolumeClaim:<claim>``, ``emptyDir``
    (``emptyDir:Memory``), ``hostPath:<path>``, ``projected:<sources>``, …"""
    for kind, field_name in VOLUME_SOURCES:
        if kind in vol:
            detail = text(mapping(vol.get(kind)).get(field_name)) if field_name else None
            return cut(f"{kind}:{detail}" if detail else kind, 1024)
    if "projected" in vol:
        parts = []
        for s in seq(mapping(vol.get("projected")).get("sources"))[:MAX_LIST]:
            for kind, field_name in (
                ("configMap", "name"),
                ("secret", "name"),
                ("serviceAccountToken", "path"),
            ):
                if kind in mapping(s):
                    parts.append(f"{kind}:{text(mapping(mapping(s).get(kind)).get(field_name)) or ''}")
            if "downwardAPI" in mapping(s):
                parts.append("downwardAPI")
        return cut("projected:" + ",".join(sorted(parts)), 1024)
    other = sorted(k for k in vol if isinstance(k, str) and k != "name")
    return cut(other[0], 256) if other else None


def revision_facts(
    sink: FactSink,
    spec: Mapping[str, Any],
    *,
    redactor: Redactor,
    configmaps: Mapping[str, Mapping[str, Any]] | None,
    src: Src,
    path: str,
) -> None:
    """One revision's pod spec as facts, diffable against another revision's."""
    for c in containers(spec):
        container_facts(sink, c, redactor, src, path)
    for v in seq(spec.get("volumes"))[:MAX_LIST]:
        vol = mapping(v)
        vname = text(vol.get("name"))
        value = volume_value(vol) if vname else None
        if vname and value is not None:
            sink.add(f"{TEMPLATE}.volumes.{vname}", value, src.at(f"{path}.volumes[{vname}]"))
    placement_facts(sink, spec, src, path)
    configmap_facts(sink, spec, configmaps, src, path)
