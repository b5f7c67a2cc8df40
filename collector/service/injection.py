"""Missed injections: which opted-in, running pods carry no agent that reports to this collector.

The injecting webhook runs with ``failurePolicy: Ignore``, so a webhook that is down, slow or
mis-scoped lets pods start without their agent and says nothing. This module is the pure part of
catching that: :func:`classify` takes the Pod and Namespace objects as the API server lists them
(plain JSON), the set of pods whose agents report, and the time, and returns an
:class:`InjectionReport`; :func:`reporting_pods` asks the pod queries which pods report.
``collector.cluster`` reads the objects and keeps the latest report; the API and the telemetry
read that report.

Opted in: the pod annotation ``skewwatch.io/inject: "true"``, or its namespace labelled
``skewwatch.io/inject=enabled`` and the pod not annotated ``"false"``; never the system
namespaces (:data:`EXCLUDED_NAMESPACES`, the webhook's defaults). Injected: the annotation
``skewwatch.io/injected`` or a container or init container named ``skewwatch-agent``. Missed:
opted in, phase Running for longer than the grace period (from ``status.startTime``), and either
not injected or injected with no agent of that namespace/pod reporting (a live stream, or a
record heard from within ``replica_stale_s``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from collector.service.pods import Pods
from skewwatch.core.identity import PodKey

INJECT_ANNOTATION = "skewwatch.io/inject"
INJECTED_ANNOTATION = "skewwatch.io/injected"
NAMESPACE_LABEL = "skewwatch.io/inject"
NAMESPACE_ENABLED = "enabled"
AGENT_CONTAINER = "skewwatch-agent"
EXCLUDED_NAMESPACES: frozenset[str] = frozenset({"kube-system", "kube-public", "kube-node-lease"})
DEFAULT_GRACE_S = 120.0

Why = Literal["not injected", "injected, no agent reporting"]
NOT_INJECTED: Why = "not injected"
NO_AGENT: Why = "injected, no agent reporting"
# The metric's ``reason`` attribute for each ``why`` (attribute values without spaces or commas).
REASONS: dict[Why, str] = {NOT_INJECTED: "not_injected", NO_AGENT: "no_agent_reporting"}


@dataclass(frozen=True)
class MissedPod:
    """An opted-in running pod with no agent reporting: why, and since when (Unix seconds)."""

    namespace: str
    pod: str
    workload: str | None  # "Kind/name" of the controlling owner reference, if any
    why: Why
    since: float | None


@dataclass(frozen=True)
class InjectionReport:
    """The latest check: counts, the missed pods, and whether the check could run at all."""

    available: bool
    reason: str | None = None
    checked_at: float | None = None
    opted_in: int = 0
    injected: int = 0
    reporting: int = 0
    missed: tuple[MissedPod, ...] = ()
    # Opted-in pods per namespace (the telemetry's skewwatch.injection.opted_in).
    opted_in_by_namespace: Mapping[str, int] = field(default_factory=dict)

    def missed_counts(self) -> dict[tuple[str, str], int]:
        """(namespace, reason) -> missed pods, zeros included for every opted-in namespace."""
        counts = {(ns, r): 0 for ns in self.opted_in_by_namespace for r in REASONS.values()}
        for m in self.missed:
            key = (m.namespace, REASONS[m.why])
            counts[key] = counts.get(key, 0) + 1
        return counts


def unavailable(reason: str, checked_at: float | None = None) -> InjectionReport:
    return InjectionReport(available=False, reason=reason, checked_at=checked_at)


def _str_map(value: object) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def parse_time(value: object) -> float | None:
    """An RFC 3339 API timestamp (``2025-06-02T09:14:51Z``) as Unix seconds; None if absent or bad."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def namespace_labels(namespaces: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, str]]:
    """Namespace name -> its labels, from NamespaceList items."""
    out: dict[str, dict[str, str]] = {}
    for ns in namespaces:
        meta = _dict(ns.get("metadata"))
        if meta.get("name"):
            out[str(meta["name"])] = _str_map(meta.get("labels"))
    return out


def opted_in(pod: Mapping[str, Any], ns_labels: Mapping[str, str]) -> bool:
    """Whether the pod asks for the agent (annotation, or its namespace's label without opt-out)."""
    meta = _dict(pod.get("metadata"))
    if str(meta.get("namespace", "")) in EXCLUDED_NAMESPACES:
        return False
    wanted = _str_map(meta.get("annotations")).get(INJECT_ANNOTATION)
    if wanted == "true":
        return True
    return ns_labels.get(NAMESPACE_LABEL) == NAMESPACE_ENABLED and wanted != "false"


def injected(pod: Mapping[str, Any]) -> bool:
    """Whether the webhook patched the pod (its annotation, or the agent container)."""
    meta = _dict(pod.get("metadata"))
    if INJECTED_ANNOTATION in _str_map(meta.get("annotations")):
        return True
    spec = _dict(pod.get("spec"))
    return any(
        _dict(c).get("name") == AGENT_CONTAINER
        for part in ("containers", "initContainers")
        for c in spec.get(part) or []
    )


def workload_of(pod: Mapping[str, Any]) -> str | None:
    """``Kind/name`` of the controlling owner reference (else the only one), or None."""
    refs = [_dict(r) for r in _dict(pod.get("metadata")).get("ownerReferences") or []]
    refs = [r for r in refs if r.get("kind") and r.get("name")]
    chosen = next((r for r in refs if r.get("controller")), refs[0] if len(refs) == 1 else None)
    return f"{chosen['kind']}/{chosen['name']}" if chosen else None


def classify(
    pods: Iterable[Mapping[str, Any]],
    namespaces: Mapping[str, Mapping[str, str]],
    reporting: Mapping[PodKey, float | None],
    now: float,
    grace_s: float = DEFAULT_GRACE_S,
) -> InjectionReport:
    """The report over listed pods. ``namespaces``: name -> labels; ``reporting``: the pods whose
    agents report now -> when last heard from (None: unknown), from :func:`reporting_pods`."""
    n_opted = n_injected = n_reporting = 0
    by_ns: dict[str, int] = {}
    missed: list[MissedPod] = []
    for pod in pods:
        meta = _dict(pod.get("metadata"))
        ns, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
        if not ns or not name or not opted_in(pod, namespaces.get(ns, {})):
            continue
        n_opted += 1
        by_ns[ns] = by_ns.get(ns, 0) + 1
        is_injected = injected(pod)
        n_injected += is_injected
        if PodKey(ns, name) in reporting:  # an agent reports, however it got there
            n_reporting += 1
            continue
        status = _dict(pod.get("status"))
        started = parse_time(status.get("startTime"))
        if status.get("phase") != "Running" or started is None or now - started < grace_s:
            continue  # not running yet, or still within its grace period: not missed (yet)
        missed.append(
            MissedPod(ns, name, workload_of(pod), NO_AGENT if is_injected else NOT_INJECTED, started)
        )
    missed.sort(key=lambda m: (m.namespace, m.pod))
    return InjectionReport(
        available=True,
        checked_at=now,
        opted_in=n_opted,
        injected=n_injected,
        reporting=n_reporting,
        missed=tuple(missed),
        opted_in_by_namespace=dict(sorted(by_ns.items())),
    )


async def reporting_pods(pods: Pods) -> dict[PodKey, float | None]:
    """The pods whose agents report to this collector now: a live stream, or heard from within
    the stale threshold; each with when it was last heard from."""
    out: dict[PodKey, float | None] = {}
    for view in await pods.list():
        live = bool(view.liveness.streams)
        if live or not view.liveness.fields(view.record)["stale"]:
            out[view.record.key] = view.record.last_seen
    return out


def slim_pod(pod: Mapping[str, Any]) -> dict[str, Any]:
    """Only what :func:`classify` reads of a Pod: a listed Pod with its managedFields is tens of
    KiB; this is a few hundred bytes."""
    meta, spec, status = _dict(pod.get("metadata")), _dict(pod.get("spec")), _dict(pod.get("status"))
    annotations = _str_map(meta.get("annotations"))
    return {
        "metadata": {
            "namespace": meta.get("namespace"),
            "name": meta.get("name"),
            "annotations": {
                k: v for k, v in annotations.items() if k in (INJECT_ANNOTATION, INJECTED_ANNOTATION)
            },
            "ownerReferences": [
                {k: _dict(r).get(k) for k in ("kind", "name", "controller")}
                for r in meta.get("ownerReferences") or []
            ],
        },
        "spec": {
            part: [{"name": _dict(c).get("name")} for c in spec.get(part) or []]
            for part in ("containers", "initContainers")
        },
        "status": {"phase": status.get("phase"), "startTime": status.get("startTime")},
    }


def slim_namespace(ns: Mapping[str, Any]) -> dict[str, Any]:
    """Only a Namespace's name and labels (what :func:`namespace_labels` reads)."""
    meta = _dict(ns.get("metadata"))
    return {"metadata": {"name": meta.get("name"), "labels": _str_map(meta.get("labels"))}}
