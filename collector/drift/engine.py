"""The drift engine: one workload's replicas, intents, baseline and previous findings in; finding
changes out. Pure: no I/O, no clock (``now`` is an argument), no servers. ``evaluate_pool`` judges
an InferencePool's pods (of any workloads) as peers on what a pool assumes equal.

``evaluate`` finds the drifts of this moment against the three references (intent, baseline,
peers) and decorates each with severity, hint and symptom from the playbook (SkewPolicy severity
overrides win). ``reconcile`` turns drifts into a lifecycle against the previous active findings:

- a new drift is *pending* until it has been seen in ``Debounce.snapshots`` evaluations and
  ``Debounce.seconds`` have passed since first seen, then *open*;
- an open finding seen again is *confirmed* (last_seen moves) or *updated* (its actual values,
  expected value or pods changed: a history event);
- an open finding no longer seen is *resolved* (resolved_at recorded); a pending one is dropped;
- identities the evaluation could not judge (metric at incomparable load, fact unreported) are
  left exactly as they were.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from collector.baseline.model import compare_config, compare_performance
from collector.domain.baseline import Baseline
from collector.domain.model import (
    ChangeKind,
    Drift,
    FindingChange,
    FindingRecord,
    Reference,
    Replica,
    Status,
)
from collector.drift.causes import finding_of, group, links_of, show
from collector.drift.playbook import (
    HintValues,
    Play,
    cluster_object,
    flag_for,
    hint_for,
    play_for,
    severity_for,
)
from collector.intent.binding import Bound, bind
from collector.intent.evaluate import Check, evaluate_intents
from collector.intent.model import Intent, Tolerance
from collector.peers.compare import compare_peers
from collector.peers.pools import PoolPod, compare_pool, pool_hint, pool_message
from skewwatch.core.facts import Provenance
from skewwatch.core.fingerprint import canonical


@dataclass(frozen=True)
class Debounce:
    """How persistent a drift must be before its finding opens (see docs/drift.md for defaults)."""

    snapshots: int = 1
    seconds: float = 0.0
    performance_snapshots: int = 2
    performance_seconds: float = 0.0


@dataclass(frozen=True)
class WorkloadInput:
    workload: str
    replicas: Sequence[Replica]
    intents: Sequence[Intent] = ()
    baseline: Baseline | None = None


@dataclass
class Evaluation:
    workload: str
    bound: Bound
    drifts: list[Drift] = field(default_factory=list)
    undecided: set[tuple[str, str]] = field(default_factory=set)
    checks: list[Check] = field(default_factory=list)
    ignore: list[str] = field(default_factory=list)  # the bound policies' ignore globs
    live: set[str] = field(default_factory=set)  # pods of the replicas evaluated


def evaluate(inp: WorkloadInput) -> Evaluation:
    bound = bind(inp.intents, inp.workload, inp.replicas)
    ignore: list[str] = []
    overrides: dict[str, str] = {}
    tolerances: dict[str, Tolerance] = {}
    load: dict[str, float] = {}
    for p in bound.policies:
        ignore.extend(p.ignore)
        for k, sev in p.severity.items():
            overrides.setdefault(k, sev)
        for k, t in p.tolerances.items():
            tolerances.setdefault(k, t)
        for k, v in p.load_tolerance.items():
            load.setdefault(k, v)
    # A fact carried while its source was not ready is unknown: no reference judges it.
    known = [r.without_carried() for r in inp.replicas]
    intent = evaluate_intents(bound, known, ignore)
    out = Evaluation(
        inp.workload,
        bound,
        checks=intent.checks,
        undecided=set(intent.indeterminate),
        ignore=ignore,
        live={r.pod for r in inp.replicas},
    )
    drifts = list(intent.drifts)
    violators = frozenset(p for d in intent.drifts if not d.performance for p in d.pods)
    if inp.baseline is not None:
        drifts += compare_config(inp.baseline, inp.replicas, ignore)
        perf, undecided = compare_performance(inp.baseline, inp.replicas, tolerances, load, ignore)
        drifts += perf
        out.undecided |= undecided
    drifts += compare_peers(
        inp.replicas, ignore, inp.baseline.fingerprint if inp.baseline else None, violators
    )
    drifts = [replace(d, severity=_severity(d, overrides)) for d in drifts]
    links = links_of(inp.replicas, inp.baseline.provenance if inp.baseline else {})
    live = sum(1 for r in inp.replicas if r.facts)
    for root in group(drifts, links):
        d = finding_of(root, live)
        play = play_for(d.key)
        out.drifts.append(
            replace(d, hint=d.hint or _hint(play, d, inp.replicas), symptom=d.symptom or play.symptom)
        )
    return out


@dataclass(frozen=True)
class PoolInput:
    """One InferencePool (``pool`` is its id, ``namespace/InferencePool/name``) and the live pods
    its selector matches, each with its workload (``collector.peers.pools.select_pods``)."""

    pool: str
    pods: Sequence[PoolPod]


def evaluate_pool(inp: PoolInput) -> Evaluation:
    """The pool's homogeneity: its pods as peers on what a pool assumes equal, one finding per
    root cause, named by the pool. No intent or baseline judges a pool: its members' own
    evaluations do."""
    replicas = [p.replica for p in inp.pods]
    out = Evaluation(inp.pool, Bound(), live={r.pod for r in replicas})
    drifts = [replace(d, severity=_severity(d, {})) for d in compare_pool(inp.pool, inp.pods)]
    live = sum(1 for r in replicas if r.facts)
    for root in group(drifts, links_of(replicas)):
        d = finding_of(root, live)
        play = play_for(d.key)
        related = [str(r["key"]) for r in d.evidence.get("related", [])]
        play_hint = hint_for(play, d.key, flag_for(d.key, _provenances(d, replicas)))
        out.drifts.append(
            replace(
                d,
                message=pool_message(inp.pool, d, inp.pods, related),
                hint=pool_hint(inp.pool, d, inp.pods, play_hint),
                symptom=play.symptom,
            )
        )
    return out


def _provenances(d: Drift, replicas: Sequence[Replica]) -> list[Provenance]:
    """Where the finding's value came from: its pods first, then any replica that has the key."""
    ranked = sorted(replicas, key=lambda r: r.pod not in d.pods)
    return [r.provenance[d.key] for r in ranked if d.key in r.provenance]


# Who expected a finding's value, as a hint names it (an intent's kind comes from its source).
_EXPECTED_BY = {Reference.BASELINE: "baseline", Reference.PEERS: "other replicas"}


def _hint(play: Play, d: Drift, replicas: Sequence[Replica]) -> str:
    """The playbook hint: the engine's flag named, or the Kubernetes object the value came from."""
    provs = _provenances(d, replicas)
    obj = cluster_object(provs)
    values = None
    if obj is not None:
        ref = (d.references or (d.reference,))[0]
        by = _EXPECTED_BY.get(ref) or (d.source.split("/", 1)[0] if "/" in d.source else ref.value)
        absent = d.expected is None and ref is not Reference.INTENT  # new since the baseline
        values = HintValues(show(d.actual), "(absent)" if absent else show(d.expected), by)
    return hint_for(play, d.key, flag_for(d.key, provs), obj=obj, values=values)


def _severity(d: Drift, overrides: dict[str, str]) -> str:
    return severity_for(d.key, overrides) if (overrides or not d.severity) else d.severity


def _same(a: Any, b: Any) -> bool:
    """Equal as the store keeps them: a tuple is the list it is stored as, and a value the
    fingerprint cannot take (a non-finite float) is compared by its text, never called different
    because it could not be compared."""
    return _comparable(a) == _comparable(b)


def _comparable(value: Any) -> str:
    if isinstance(value, tuple):
        value = list(value)
    if isinstance(value, float) and not math.isfinite(value):
        return f"f:{value!r}"
    if isinstance(value, list):
        return "l[" + ",".join(_comparable(v) for v in value) + "]"
    if isinstance(value, dict):
        return "m{" + ",".join(f"{k!r}:{_comparable(v)}" for k, v in sorted(value.items())) + "}"
    return canonical(value)  # FactError for a type no fact or finding holds: a bug, not "differs"


def _pods_same(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return set(a) == set(b) and all(_same(a[k], b[k]) for k in a)


def _refs(d: Drift) -> tuple[str, ...]:
    return tuple(r.value for r in (d.references or (d.reference,)))


def reconcile(
    workload: str, previous: Sequence[FindingRecord], evaluation: Evaluation, now: float, debounce: Debounce
) -> list[FindingChange]:
    """Finding changes from the previous active (pending and open) findings and this evaluation."""
    prev = {f.identity: f for f in previous if f.status is not Status.RESOLVED}
    changes: list[FindingChange] = []
    for d in evaluation.drifts:
        old = prev.pop(d.identity, None)
        changes.append(_new(workload, d, now, debounce) if old is None else _again(old, d, now, debounce))
    for old in prev.values():
        change = _gone_away(old, evaluation, now)
        if change is not None:
            changes.append(change)
    return changes


def _needs(d: Drift, debounce: Debounce) -> tuple[int, float]:
    """Snapshots and seconds a drift must persist before its finding opens."""
    if d.performance:
        return debounce.performance_snapshots, debounce.performance_seconds
    return debounce.snapshots, debounce.seconds


def _new(workload: str, d: Drift, now: float, debounce: Debounce) -> FindingChange:
    need_n, need_s = _needs(d, debounce)
    opens = need_n <= 1 and need_s <= 0
    rec = FindingRecord(
        id=0,
        workload=workload,
        key=d.key,
        category=d.category,
        status=Status.OPEN if opens else Status.PENDING,
        first_seen=now,
        last_seen=now,
        opened_at=now if opens else None,
        resolved_at=None,
        hits=1,
        **_as_seen(d),
    )
    return FindingChange(ChangeKind.OPENED if opens else ChangeKind.PENDING, rec)


def _again(old: FindingRecord, d: Drift, now: float, debounce: Debounce) -> FindingChange:
    """An active finding seen again: a pending one may open; an open one is updated or confirmed."""
    hits = old.hits + 1
    status = old.status
    if old.status is Status.PENDING:
        need_n, need_s = _needs(d, debounce)
        opens = hits >= need_n and now - old.first_seen >= need_s
        kind = ChangeKind.OPENED if opens else ChangeKind.SEEN
        status = Status.OPEN if opens else Status.PENDING
    else:
        kind = ChangeKind.UPDATED if _moved(old, d) else ChangeKind.CONFIRMED
    rec = replace(
        old,
        status=status,
        last_seen=now,
        opened_at=now if kind is ChangeKind.OPENED else old.opened_at,
        hits=hits,
        **_as_seen(d),
    )
    return FindingChange(kind, rec)


def _as_seen(d: Drift) -> dict[str, Any]:
    """The fields of a finding that the latest evaluation sets."""
    return {
        "reference": _refs(d)[0],
        "references": _refs(d),
        "severity": d.severity,
        "expected": d.expected,
        "actual": d.actual,
        "pods": dict(d.pods),
        "message": d.message,
        "source": d.source,
        "hint": d.hint,
        "symptom": d.symptom,
        "evidence": dict(d.evidence),
    }


def _moved(old: FindingRecord, d: Drift) -> bool:
    """Whether an open finding's values, pods, severity or references changed."""
    return (
        not _same(old.actual, d.actual)
        or not _same(old.expected, d.expected)
        or not _pods_same(old.pods, d.pods)
        or old.severity != d.severity
        or tuple(old.references) != _refs(d)
    )


def _gone_away(old: FindingRecord, evaluation: Evaluation, now: float) -> FindingChange | None:
    """An active finding this evaluation no longer shows: resolved, dropped, or (undecided) kept."""
    # Its replicas are gone (not heard from within replica_stale_s): nothing can fix or confirm it
    # any more, so it resolves as "gone" whatever is undecided.
    gone = bool(old.pods) and not set(old.pods) & evaluation.live
    if not gone and any((ref, old.key) in evaluation.undecided for ref in (*old.references, old.reference)):
        return None
    if old.status is Status.OPEN:
        resolution = "gone" if gone else "fixed"
        return FindingChange(
            ChangeKind.RESOLVED, replace(old, status=Status.RESOLVED, resolved_at=now, resolution=resolution)
        )
    return FindingChange(ChangeKind.DROPPED, old)
