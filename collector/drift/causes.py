"""One root cause, one finding: the drifts of one evaluation grouped by what caused them. Pure.

The references (intent, baseline, peers) each report the keys they see drift, one ``Drift`` per
reference and key. A single change shows up many times over: ``--dtype float32`` changes
``runtime.args.dtype``, the effective ``runtime.dtype``, the ``runtime.kv_cache_dtype`` that
follows it and the ``runtime.num_gpu_blocks`` vLLM sized from both, against the baseline, the
peers and the ModelSpec's precision alike. Here they become one finding.

The links are data the agent sent: every fact's ``Provenance.inputs`` names the keys (or globs)
it follows from, taken from the engine tables. Per pod, the drifting keys form a graph by those
links; a key none of whose inputs drifts is a **root**. Every drifting key belongs to the
finding of each root it descends from. The finding is named by its **headline**: the root
itself, or — when the root only spells a setting (``runtime.args.*``, ``runtime.env.*``) — the
setting it spells (``runtime.dtype``), so that the finding's key is what pins, hints and
dashboards speak of. The other keys are listed as the finding's cause and consequences, each
with its values per pod and the references it breaks.

Performance drifts (``observation.*``) are symptoms, not configuration: they are grouped only
across references, by key.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from collector.domain.model import OBSERVATION_PREFIX, SEVERITY_ORDER, Drift, Reference, Replica
from skewwatch.core.facts import Provenance

# Which reference's expectation a finding states first: what was declared, then what was
# recorded good, then what the other replicas run.
REFERENCE_ORDER: tuple[Reference, ...] = (Reference.INTENT, Reference.BASELINE, Reference.PEERS)
# Keys that only spell or carry something: a finding is named by what they set (the setting, not
# its flag; the tokenizer digest, not tokenizer.json), when one of those drifts with them.
ALIAS_PREFIXES = ("runtime.args.", "runtime.env.", "model.files.")
# Digests over everything: they change with any file, so they never name a finding.
AGGREGATES = frozenset({"model.manifest.digest", "model.integrity"})
MAX_PODS_NAMED = 5


@dataclass(frozen=True)
class Root:
    """A finding in the making: its headline key and every (reference drift, pods) it covers."""

    headline: str
    root: str
    parts: list[tuple[Drift, dict[str, Any]]] = field(default_factory=list)


def links_of(replicas: Sequence[Replica], *provenances: Mapping[str, Provenance]) -> dict[str, set[str]]:
    """Key -> the input globs any replica (or reference provenance) names for it."""
    out: dict[str, set[str]] = {}
    for prov in (*(r.provenance for r in replicas), *provenances):
        for key, p in prov.items():
            if p.inputs:
                out.setdefault(key, set()).update(p.inputs)
    return out


def _parents(key: str, drifting: set[str], links: Mapping[str, set[str]]) -> set[str]:
    globs = links.get(key, ())
    return {
        other
        for other in drifting
        if other != key and any(other == g or fnmatch.fnmatchcase(other, g) for g in globs)
    }


def roots_by_key(drifting: set[str], links: Mapping[str, set[str]]) -> dict[str, set[str]]:
    """For each drifting key, the roots it descends from (itself when it is one)."""
    parents = {k: _parents(k, drifting, links) for k in drifting}
    ancestors: dict[str, set[str]] = {}
    for key in drifting:
        seen: set[str] = set()
        stack = list(parents[key])
        while stack:
            k = stack.pop()
            if k not in seen:
                seen.add(k)
                stack.extend(parents[k])
        ancestors[key] = seen

    def is_root(k: str) -> bool:
        # No drifting input, or only inputs that themselves descend from k (a cycle): the
        # smallest key of a cycle stands for it.
        if not all(k in ancestors[p] for p in parents[k]):
            return False
        cycle = {p for p in ancestors[k] if k in ancestors[p]}
        return not cycle or k == min(cycle | {k})

    return {k: {a for a in ancestors[k] | {k} if is_root(a)} or {k} for k in drifting}


def _headline(root: str, drifting: set[str], links: Mapping[str, set[str]]) -> str:
    if not root.startswith(ALIAS_PREFIXES):
        return root
    spelled = sorted(
        k
        for k in drifting
        if not k.startswith(ALIAS_PREFIXES) and k not in AGGREGATES and root in _parents(k, drifting, links)
    )
    return spelled[0] if spelled else root


def group(drifts: Sequence[Drift], links: Mapping[str, set[str]]) -> list[Root]:
    """Drifts of one evaluation (every reference) by root cause; deterministic order."""
    drifting_by_pod: dict[str, set[str]] = {}
    changed_by_pod: dict[str, set[str]] = {}  # against the baseline or the peers: a change
    for d in drifts:
        if not d.performance:
            for pod in d.pods:
                drifting_by_pod.setdefault(pod, set()).add(d.key)
                if d.reference is not Reference.INTENT:
                    changed_by_pod.setdefault(pod, set()).add(d.key)
    plan: dict[str, dict[str, set[tuple[str, str]]]] = {}  # pod -> key -> {(headline, root)}
    for pod, keys in drifting_by_pod.items():
        roots = roots_by_key(keys, links)
        plan[pod] = {k: {(_headline(r, keys, links), r) for r in rs} for k, rs in roots.items()}
    out: dict[str, Root] = {}
    for d in drifts:
        if d.performance and d.pods:
            _performance(d, plan, changed_by_pod, out)
            continue
        if d.performance or not d.pods:
            out.setdefault(d.key, Root(d.key, d.key)).parts.append((d, dict(d.pods)))
            continue
        split: dict[tuple[str, str], dict[str, Any]] = {}
        for pod, value in d.pods.items():
            for target in plan[pod][d.key]:
                split.setdefault(target, {})[pod] = value
        for (headline, root), pods in sorted(split.items()):
            out.setdefault(headline, Root(headline, root)).parts.append((d, pods))
    return [out[k] for k in sorted(out)]


def _performance(
    d: Drift,
    plan: Mapping[str, Mapping[str, set[tuple[str, str]]]],
    changed: Mapping[str, set[str]],
    out: dict[str, Root],
) -> None:
    """A replica slower than its baseline whose configuration changed too (against the baseline
    or its peers): the slowdown is a consequence of that change (the playbook's "same model,
    suddenly slower" points at it), listed in its finding. An intent violation alone explains
    nothing new, and on a replica whose configuration did not change the slowdown stands alone."""
    alone: dict[str, Any] = {}
    for pod, value in d.pods.items():
        keys = changed.get(pod, set())
        targets = {t for key, ts in plan.get(pod, {}).items() if key in keys for t in ts}
        for headline, root in sorted(targets):
            out.setdefault(headline, Root(headline, root)).parts.append((d, {pod: value}))
        if not targets:
            alone[pod] = value
    if alone:
        out.setdefault(d.key, Root(d.key, d.key)).parts.append((d, alone))


# --- what a finding says ----------------------------------------------------------------------


def show(value: Any) -> str:
    if value is ABSENT:
        return "(absent)"
    if isinstance(value, float):
        return f"{value:.4g}"
    return value if isinstance(value, str) else repr(value)


class _Absent:
    def __repr__(self) -> str:
        return "(absent)"


ABSENT: Any = _Absent()


def values_text(pods: Mapping[str, Any], present: Mapping[str, bool] | None = None) -> str:
    """``float32 on a, b; bfloat16 on c``: each distinct value with the replicas that have it."""
    by_value: dict[str, list[str]] = {}
    for pod in sorted(pods):
        shown = show(ABSENT if present is not None and not present.get(pod, True) else pods[pod])
        by_value.setdefault(shown, []).append(pod)
    parts = []
    for shown, names in sorted(by_value.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        named = ", ".join(names[:MAX_PODS_NAMED]) + (
            f" and {len(names) - MAX_PODS_NAMED} more" if len(names) > MAX_PODS_NAMED else ""
        )
        parts.append(f"{shown} on {named}")
    return "; ".join(parts)


def _ordered(refs: Iterable[Reference]) -> list[Reference]:
    have = set(refs)
    return [r for r in REFERENCE_ORDER if r in have]


def finding_of(root: Root, total_replicas: int) -> Drift:
    """One Drift for a root cause: the headline's values, every reference, causes, consequences."""
    head = [(d, pods) for d, pods in root.parts if d.key == root.headline]
    if not head:  # only consequences drift against this reference set: the root names it
        head = root.parts[:1]
    refs = _ordered(d.reference for d, _ in root.parts)
    head_refs = _ordered(d.reference for d, _ in head)
    by_ref = {d.reference: (d, pods) for d, pods in head}
    first, _ = by_ref[head_refs[0]]
    actual_by_pod: dict[str, Any] = {}
    present: dict[str, bool] = {}
    evidence: dict[str, Any] = {}
    for ref in head_refs:
        d, pods = by_ref[ref]
        for pod, value in pods.items():
            actual_by_pod.setdefault(pod, value)
            present.setdefault(pod, d.present.get(pod, True) if d.present else True)
            if pod in d.evidence:
                evidence.setdefault(pod, d.evidence[pod])
    values = list(actual_by_pod.values())
    actual = max(values, key=lambda v: sum(1 for x in values if x == v)) if values else first.actual
    related = _related(root)
    split = any(d.split for d, _ in head)
    expected = {ref.value: by_ref[ref][0].expected for ref in head_refs if not by_ref[ref][0].split}
    text = _message(
        root.headline,
        actual_by_pod=actual_by_pod,
        present=present,
        refs=head_refs,
        by_ref=by_ref,
        total=total_replicas,
        related=related,
        split=split,
    )
    sources = [by_ref[r][0].source for r in head_refs if by_ref[r][0].source]
    severities = [d.severity for d, _ in root.parts if d.severity]
    return replace(
        first,
        key=root.headline,
        expected=first.expected if not first.split else None,
        actual=actual,
        pods=actual_by_pod,
        message=text,
        source="; ".join(dict.fromkeys(sources)),
        evidence={
            "by_pod": evidence,
            "expected_by_reference": expected,
            "root": root.root,
            "related": related,
        },
        severity=min(severities, key=lambda s: SEVERITY_ORDER.get(s, 9)) if severities else first.severity,
        references=tuple(refs),
        split=split,
    )


def _related(root: Root) -> list[dict[str, Any]]:
    keys: dict[str, dict[str, Any]] = {}
    for d, pods in root.parts:
        if d.key == root.headline:
            continue
        entry = keys.setdefault(
            d.key,
            {
                "key": d.key,
                "role": "cause" if d.key == root.root else "consequence",
                "references": [],
                "expected": d.expected,
                "actual_by_pod": {},
            },
        )
        if d.reference.value not in entry["references"]:
            entry["references"].append(d.reference.value)
        for pod, value in pods.items():
            entry["actual_by_pod"].setdefault(pod, value)
    return [keys[k] for k in sorted(keys, key=lambda k: (keys[k]["role"] != "cause", k))]


def _message(
    key: str,
    *,
    actual_by_pod: Mapping[str, Any],
    present: Mapping[str, bool],
    refs: Sequence[Reference],
    by_ref: Mapping[Reference, tuple[Drift, dict[str, Any]]],
    total: int,
    related: Sequence[Mapping[str, Any]],
    split: bool,
) -> str:
    values = values_text(actual_by_pod, present)
    first = by_ref[refs[0]][0] if refs else None
    if not actual_by_pod and first is not None:
        # A drift of the workload, not of pods (its live-replica count): no pods to name.
        text = f"{key} = {show(first.actual)} for the workload ({total} live replicas)"
    elif split:
        text = f"{key} is split across {len(actual_by_pod)} replicas with no majority: {values}"
    else:
        text = f"{key} differs on {len(actual_by_pod)} of {total} replicas: {values}"
    expectations = []
    for ref in refs:
        d, _ = by_ref[ref]
        if d.split:
            continue
        where = d.expected_text or f"expected {show(d.expected)}"
        named = d.source and ref is not Reference.PEERS  # the peers' text already says which
        expectations.append(f"{ref.value}: {where}" + (f" ({d.source})" if named else ""))
    if expectations:
        text += " — " + "; ".join(expectations)
    causes = [r["key"] for r in related if r["role"] == "cause"]
    consequences = [r["key"] for r in related if r["role"] == "consequence"]
    if causes:
        text += f"; set by {', '.join(causes)}"
    if consequences:
        text += f"; with {', '.join(consequences)}"
    rollout = next((by_ref[r][0].note for r in refs if by_ref[r][0].note), "")
    if rollout:
        text += f"; {rollout}"
    return text


def is_performance(key: str) -> bool:
    return key.startswith(OBSERVATION_PREFIX)
