"""Drift queries: workloads, findings, diffs, baselines and intents, as typed results.

``Queries`` answers what the API asks, over the store and the ``DriftService`` (its evaluation,
intent registry, settings and clock). Each answer is a frozen dataclass whose ``as_dict()`` is the
route's JSON body: ``WorkloadSummary`` and ``WorkloadView``, ``FindingsPage`` and
``FindingDetail``, ``DiffResult``, ``BaselineHistory``, ``IntentListing``. Not-found and conflict
answers raise ``collector.errors`` (``NotFoundError``, ``ConflictError``, ``BadRequestError``),
which the edge translates. Mutations (notes on findings, baselines, intents) go through here too.

A diff has five modes (``DIFF_MODES``), one small method each, dispatched by a table. The
last-good search walks the replica's stored history (``LAST_GOOD_DEPTH`` rows, newest first).

With the cluster watch's ``ClusterState``, a workload also has pod-template revisions (stored,
newest first) and its cluster facts. The ``revisions`` mode then takes, besides two stored
snapshot ids, two workload revisions (``parse_revision_ref``: ``rN`` / ``revision:N``, a template
hash or ``hash:H``, ``current``, ``last-good``) and diffs their templates' facts. ``current`` is the
revision the controller names current (the watch's ``current_revision``), else the newest stored;
``last-good`` is the revision the workload's baseline was recorded on (its pods' template-hash
label in the snapshot each had when the baseline was recorded), and there is none without a
baseline. The ``last_good`` mode adds ``template``: that pod-template diff, last-good revision to
current, or null and ``template_why``. Template facts are stored as the watch redacted them.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from collector.baseline.model import compare_config
from collector.domain.baseline import Baseline, BaselineError
from collector.domain.cluster import TEMPLATE_HASH_LABELS, ClusterFacts, RevisionTemplate, merge_cluster
from collector.domain.diff import ChangeKind, FactChange, diff_facts
from collector.domain.identity import split_workload, workload_id
from collector.domain.model import SEVERITY_ORDER, FindingRecord, Replica
from collector.domain.records import FindingEvent, FindingQuery, IntentRecord, SnapshotRecord
from collector.domain.replicas import config_facts, differing_keys, groups, majority_group
from collector.drift.engine import Evaluation
from collector.errors import BadRequestError, ConflictError, NotFoundError
from collector.intent.binding import bind
from collector.intent.evaluate import Check
from collector.intent.model import Intent
from collector.service.cluster import ClusterState
from collector.service.evaluation import DriftService
from collector.service.probes import (
    PROBES_KEEP,
    ProbeList,
    ProbeView,
    Verification,
    parse_document,
    redact_document,
    verification,
)
from collector.store.base import QueryStore
from skewwatch.core.facts import FactValue, SourceState
from skewwatch.core.identity import PodKey
from skewwatch.redact import DEFAULT_SALT, Redactor

log = logging.getLogger(__name__)

JSON = dict[str, Any]
DIFF_MODES = ("last_good", "baseline", "intent", "revisions", "pods")
LAST_GOOD_DEPTH = 100
RESOLVED_SHOWN = 20  # resolved findings a workload's answer lists after its active ones
MAX_FLEET_FINDINGS = 100_000  # open findings the workload list counts by category, at most
BASELINE_HISTORY = 50
# Intents posted through the API the collector keeps at most (each one is in memory and in the
# store; the directory's are bounded by its file limits); more are refused naming the limit.
MAX_API_INTENTS = 10_000
LIMIT_API_INTENTS = "max_api_intents"


def workload_state(live_replicas: int) -> str:
    """``serving`` while a pod of the workload was heard from within replica_stale_s, else ``no-replicas``."""
    return "serving" if live_replicas else "no-replicas"


# The fleet page's one word for a workload (GET /api/v1/workloads ``drift_state``), first that holds:
# drifting (an open finding, silenced ones aside), no_intent (no intent binds it), no_baseline
# (none recorded), else in_intent.
DRIFT_STATES = ("in_intent", "drifting", "no_intent", "no_baseline")


def drift_state(open_findings: int, intent_bound: bool, baseline: bool) -> str:
    if open_findings:
        return "drifting"
    if not intent_bound:
        return "no_intent"
    return "in_intent" if baseline else "no_baseline"


def _names(workload: str) -> JSON:
    ns, kind, name = split_workload(workload)
    return {"workload": workload, "namespace": ns, "kind": kind, "name": name}


# -- workloads -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkloadSummary:
    """One row of the workload list."""

    workload: str
    pods: int
    replicas_live: int
    configurations: int  # distinct fingerprints among the live replicas
    last_seen: float
    open_findings: Mapping[str, int]  # severity -> open, in severity order (silenced apart)
    silenced_findings: int
    baseline_recorded_at: float | None
    # category -> severity -> open (silenced apart), both in their usual order.
    open_by_category: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    intent_bound: bool = False  # an intent (ModelSpec or SkewPolicy) binds the workload

    def as_dict(self) -> JSON:
        return {
            **_names(self.workload),
            "replicas": self.replicas_live,
            "replicas_live": self.replicas_live,
            "state": workload_state(self.replicas_live),
            "pods": self.pods,
            "configurations": self.configurations,
            "last_seen": self.last_seen,
            "open_findings": dict(self.open_findings),
            "silenced_findings": self.silenced_findings,
            "baseline_recorded_at": self.baseline_recorded_at,
            "open_findings_by_category": {c: dict(v) for c, v in self.open_by_category.items()},
            # Pods stored for it whose agent has not been heard from within replica_stale_s.
            "silent_pods": self.pods - self.replicas_live,
            "intent_bound": self.intent_bound,
            "drift_state": drift_state(
                sum(self.open_findings.values()), self.intent_bound, self.baseline_recorded_at is not None
            ),
        }


@dataclass(frozen=True)
class BoundIntent:
    kind: str
    name: str
    file: str
    reason: str

    def as_dict(self) -> JSON:
        return {"kind": self.kind, "name": self.name, "file": self.file, "reason": self.reason}


@dataclass(frozen=True)
class WorkloadView:
    """One workload now: its live replicas, their configurations, intent checks and findings."""

    workload: str
    replicas: Sequence[Replica]
    majority: frozenset[str]  # pods of the majority configuration
    configurations: Sequence[tuple[str, Sequence[str]]]  # fingerprint -> pods, largest first
    representative: Replica | None  # the newest replica of the majority
    divergent_keys: Sequence[str]
    bound: Sequence[BoundIntent]
    checks: Sequence[Check]
    baseline: Baseline | None
    findings: Sequence[FindingRecord]  # active, then the newest resolved
    now: float
    cluster: ClusterSection | None = None  # None: no cluster watch on this collector
    probe: ProbeView | None = None  # the latest probe result stored for it

    def as_dict(self) -> JSON:
        rep = self.representative
        facts = dict(rep.facts) if rep else {}
        return {
            **_names(self.workload),
            "replicas": [_replica_json(r, self.majority, rep, self.divergent_keys) for r in self.replicas],
            "replicas_live": len(self.replicas),
            "state": workload_state(len(self.replicas)),
            "configurations": [{"fingerprint": sig, "pods": list(pods)} for sig, pods in self.configurations],
            "facts": {k: facts[k] for k in sorted(facts)},
            "provenance": {k: rep.provenance[k].as_dict() for k in sorted(rep.provenance)} if rep else {},
            "divergent_keys": list(self.divergent_keys),
            "intent": {
                "bound": [b.as_dict() for b in self.bound],
                "checks": [c.as_dict() for c in self.checks],
            },
            "baseline": self.baseline.as_dict(facts=False) if self.baseline else None,
            "findings": [f.as_dict(self.now) for f in self.findings],
            "cluster": (self.cluster or ClusterSection(None, NO_CLUSTER_WATCH, ())).as_dict(),
            "probe": self.probe.as_dict(document=False) if self.probe else None,
        }


def _replica_json(
    r: Replica, majority: frozenset[str], rep: Replica | None, divergent: Sequence[str]
) -> JSON:
    return {
        "pod": r.pod,
        "fingerprint": r.fingerprint,
        "first_seen": r.first_seen,
        "last_seen": r.last_seen,
        "in_majority": r.pod in majority,
        "snapshot_id": r.snapshot_id,
        "observations": {n: o.value for n, o in sorted(r.observations[0].items())} if r.observations else {},
        # The divergent keys on which this pod's value is not the majority's (its newest replica's).
        "differs": [k for k in divergent if rep is not None and r.facts.get(k) != rep.facts.get(k)],
    }


# -- cluster: facts and pod-template revisions ---------------------------------------------------

NO_CLUSTER_WATCH = "the cluster watch is not configured on this collector"
REVISIONS_NAMED = 20  # stored revisions an unknown-revision error lists
BASELINE_PODS_ASKED = 8  # recorded pods whose history is read for the baseline's template hash
# What a workload revision reference may hold: a Kubernetes name segment (template hashes are).
_REF_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_")
MAX_REF = 253


@dataclass(frozen=True)
class RevisionRef:
    """A workload revision as asked for: ``kind`` is ``current``, ``last-good``, ``number`` (the
    controller's revision number) or ``hash`` (a pod-template or controller-revision hash)."""

    kind: str
    value: str = ""

    def __str__(self) -> str:
        return {"number": f"r{self.value}", "hash": f"hash:{self.value}"}.get(self.kind, self.kind)


def is_snapshot_id(text: str) -> bool:
    """ASCII digits only, at most 18: a stored snapshot id (``revisions=A,B``'s first meaning)."""
    return text.isascii() and text.isdigit() and 0 < len(text) <= 18


def parse_revision_ref(text: str, where: str) -> RevisionRef:
    """``current``, ``last-good``, ``rN`` / ``revision:N``, ``hash:H`` or a template hash (any other
    name that is not a plain integer: a plain integer is a snapshot id); BadRequestError naming
    ``where`` otherwise."""
    low = text.lower()
    if low in ("current", "last-good", "last_good"):
        return RevisionRef(low.replace("_", "-"))
    for prefix in ("revision:", "r"):
        number = text[len(prefix) :] if low.startswith(prefix) else ""
        if is_snapshot_id(number):
            return RevisionRef("number", str(int(number)))
    value = text[len("hash:") :] if low.startswith("hash:") else text
    if (
        value
        and len(value) <= MAX_REF
        and set(value) <= _REF_CHARS
        and (value != text or not value.isdigit())
    ):
        return RevisionRef("hash", value)
    raise BadRequestError(
        f"{where}: {text[:60]!r} is not a workload revision: give rN or revision:N (the controller's "
        "revision number), a template hash (or hash:H), current or last-good"
    )


@dataclass(frozen=True)
class RevisionEntry:
    """One stored pod-template revision of a workload, as the revision list shows it."""

    template: RevisionTemplate
    first_seen: float | None  # when this store first heard of it (None: the store does not say)
    last_seen: float | None
    current: bool

    @property
    def name(self) -> str:
        t = self.template
        return f"r{t.revision} ({t.template_hash})" if t.revision else f"hash:{t.template_hash}"

    def as_dict(self) -> JSON:
        t = self.template
        return {
            "revision": t.revision or None,
            "template_hash": t.template_hash,
            "created_at": t.created_at,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "source": t.source,
            "current": self.current,
        }

    def side(self, why: str | None = None) -> DiffSide:
        t = self.template
        details = {"revision": t.revision or None, "template_hash": t.template_hash, "source": t.source}
        label = f"revision {self.name}" + (", current" if self.current else "")
        return DiffSide(
            label, why=why, details={**details, "created_at": t.created_at, "current": self.current}
        )


@dataclass(frozen=True)
class LastGoodRevision:
    """The revision the baseline was recorded on, or None and why there is none."""

    entry: RevisionEntry | None
    why: str

    def as_dict(self) -> JSON:
        e = self.entry
        return {
            "revision": (e.template.revision or None) if e else None,
            "template_hash": e.template.template_hash if e else None,
            "why": self.why,
        }


@dataclass(frozen=True)
class RevisionList:
    """A workload's stored pod-template revisions, newest first, with the current and last-good one."""

    workload: str
    revisions: Sequence[RevisionEntry]
    last_good: LastGoodRevision
    available: bool  # a cluster watch is configured
    message: str | None

    def as_dict(self) -> JSON:
        current = next((e for e in self.revisions if e.current), None)
        return {
            **_names(self.workload),
            "available": self.available,
            "message": self.message,
            "current_revision": (current.template.revision or None) if current else None,
            "last_good": self.last_good.as_dict(),
            "revisions": [e.as_dict() for e in self.revisions],
        }


@dataclass(frozen=True)
class ClusterSection:
    """What the cluster watch says of one workload: its facts (None, with ``message``, when it
    has none) and its stored revisions."""

    facts: ClusterFacts | None
    message: str | None
    revisions: Sequence[RevisionEntry]

    def as_dict(self) -> JSON:
        return {
            "available": self.facts is not None,
            "message": self.message,
            "cluster_facts": self.facts.as_dict() if self.facts is not None else None,
            "revisions": [e.as_dict() for e in self.revisions],
        }


def template_hash_of(facts: Mapping[str, FactValue]) -> str | None:
    """The pod-template (or controller-revision) hash label among a pod's facts."""
    for label in TEMPLATE_HASH_LABELS:
        value = facts.get(label)
        if isinstance(value, str) and value:
            return value
    return None


def _stored_names(entries: Sequence[RevisionEntry]) -> str:
    if not entries:
        return "none is stored"
    shown = ", ".join(e.name + (" current" if e.current else "") for e in entries[:REVISIONS_NAMED])
    more = f" and {len(entries) - REVISIONS_NAMED} older" if len(entries) > REVISIONS_NAMED else ""
    return f"stored: {shown}{more}"


# -- findings ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FindingsPage:
    """Findings newest first, at most ``limit``.

    ``rows`` holds up to ``limit + 1`` rows: the extra one is never shown, it only says that an
    older match exists. So ``more`` is exact, and ``next_before`` (the id to pass as ``before``
    for the next page) is None exactly when there is no further row."""

    rows: Sequence[FindingRecord]
    limit: int
    now: float

    @property
    def findings(self) -> Sequence[FindingRecord]:
        return self.rows[: self.limit]

    @property
    def more(self) -> bool:
        return len(self.rows) > self.limit

    @property
    def next_before(self) -> int | None:
        return self.findings[-1].id if self.more else None

    def as_dict(self) -> JSON:
        return {
            "findings": [f.as_dict(self.now) for f in self.findings],
            "next_before": self.next_before,
            "more": self.more,
        }


@dataclass(frozen=True)
class FindingDetail:
    """One finding with its lifecycle events."""

    finding: FindingRecord
    events: Sequence[FindingEvent]
    now: float

    def as_dict(self) -> JSON:
        return {**self.finding.as_dict(self.now), "history": [e.as_dict() for e in self.events]}


@dataclass(frozen=True)
class FindingView:
    """A finding as a note (ack, silence) left it."""

    finding: FindingRecord
    now: float

    def as_dict(self) -> JSON:
        return self.finding.as_dict(self.now)


# -- diff ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DiffSide:
    """One end of a diff: what it is, the stored row it names (``ref``: "snapshot" or "baseline",
    with its id, which may be null) and, for the last-good side, why it was chosen."""

    label: str
    ref: str | None = None
    ref_id: int | None = None
    why: str | None = None
    # A pod-template revision side: revision, template_hash, source, created_at, current.
    details: Mapping[str, Any] | None = None

    @classmethod
    def snapshot(cls, label: str, snapshot_id: int | None, why: str | None = None) -> DiffSide:
        return cls(label, "snapshot", snapshot_id, why)

    def as_dict(self) -> JSON:
        out: JSON = {"label": self.label, **(self.details or {})}
        if self.ref is not None:
            out[f"{self.ref}_id"] = self.ref_id
        if self.why is not None:
            out["why"] = self.why
        return out


@dataclass(frozen=True)
class DiffResult:
    workload: str
    mode: str
    from_: DiffSide | None
    to: DiffSide | None
    changes: Sequence[FactChange] = ()
    checks: Sequence[Check] | None = None  # the intent mode's checks
    # The last_good mode's pod-template diff (last-good revision -> current), or None and why.
    template: DiffResult | None = None
    template_why: str | None = None
    # Where each side's value of a changed key came from: {"from"|"to": {key: provenance}}.
    provenance: Mapping[str, Mapping[str, JSON]] | None = None

    def as_dict(self) -> JSON:
        out: JSON = {
            "workload": self.workload,
            "mode": self.mode,
            "from": self.from_.as_dict() if self.from_ else None,
            "to": self.to.as_dict() if self.to else None,
            "changes": [c.as_dict() for c in self.changes],
        }
        if self.provenance and any(self.provenance.values()):  # a side naming a snapshot or baseline
            out["provenance"] = {side: dict(self.provenance.get(side, {})) for side in ("from", "to")}
        if self.checks is not None:
            out["checks"] = [c.as_dict() for c in self.checks]
        if self.mode == "last_good":
            out["template"] = self.template.as_dict() if self.template is not None else None
            out["template_why"] = self.template_why
        return out


@dataclass(frozen=True)
class DiffRequest:
    """What to compare: the mode and, for ``pods`` and ``revisions``, the pair (names, snapshot
    ids, or for ``revisions`` instead two workload revisions: ``templates``)."""

    mode: str
    pods: tuple[str, str] | None = None
    revisions: tuple[int, int] | None = None
    templates: tuple[RevisionRef, RevisionRef] | None = None


@dataclass(frozen=True)
class _DiffContext:
    """The workload as evaluated now, shared by every diff mode."""

    workload: str
    evaluation: Evaluation
    replicas: list[Replica]
    baseline: Baseline | None
    representative: Replica | None  # the newest replica of the majority


@dataclass(frozen=True)
class LastGood:
    snapshot: SnapshotRecord | None
    why: str


def changes(before: Mapping[str, FactValue], after: Mapping[str, FactValue]) -> list[FactChange]:
    """The configuration changes from ``before`` to ``after`` (identity keys left out)."""
    return diff_facts(config_facts(before, ()), config_facts(after, ()))


def _most(pods: Mapping[str, Any]) -> Any:
    values = list(pods.values())
    return max(values, key=values.count) if values else None


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _baseline_side(baseline: Baseline, why: str | None = None) -> DiffSide:
    return DiffSide(f"baseline {baseline.id} ({baseline.origin})", "baseline", baseline.id, why)


# -- baselines and intents -----------------------------------------------------------------------


@dataclass(frozen=True)
class BaselineHistory:
    """A workload's latest baseline (with its facts) and the older ones (without)."""

    workload: str
    latest: Baseline
    older: Sequence[Baseline]

    def as_dict(self) -> JSON:
        return {
            "workload": self.workload,
            "baseline": self.latest.as_dict(),
            "history": [b.as_dict(facts=False) for b in self.older],
        }


def intent_json(i: Intent) -> JSON:
    return {"kind": i.kind, "name": i.name, "file": i.file, "document": i.data}


@dataclass(frozen=True)
class IntentListing:
    intents: Sequence[Mapping[str, object]]
    errors: Sequence[JSON]
    directory: str | None

    def as_dict(self) -> JSON:
        return {"intents": list(self.intents), "errors": list(self.errors), "directory": self.directory}


# -- the service ---------------------------------------------------------------------------------


class Queries:
    """The drift queries over ``store`` and the evaluation service ``drift``; with ``cluster`` (the
    cluster watch's state; by default the one the evaluation joins to replicas), the workloads'
    cluster facts and pod-template revisions too; ``redactor`` redacts posted probe documents."""

    def __init__(
        self,
        store: QueryStore,
        drift: DriftService,
        cluster: ClusterState | None = None,
        redactor: Redactor | None = None,
    ) -> None:
        self.store = store
        self.drift = drift
        # One state for what a workload is evaluated with and what its queries show.
        self.cluster = cluster if cluster is not None else drift.cluster
        # What posted probe documents are redacted with: the collector's redaction_salt (as the
        # cluster watch's), so one secret reads as one digest everywhere; else the agent's default.
        self.redactor = redactor if redactor is not None else Redactor(DEFAULT_SALT)

    def now(self) -> float:
        return self.drift.clock()

    # -- workloads -------------------------------------------------------------------------------

    async def workload_ids(self) -> set[str]:
        """The workloads of the pods heard from, and the inference pools the cluster watch knows
        (``namespace/InferencePool/name``: their findings are the pool's homogeneity)."""
        ids = {workload_id(b.key.namespace, b.key.pod, b.workload) for b in await self.store.pod_briefs()}
        return ids | self._pool_ids()

    def _pool_ids(self) -> set[str]:
        return {p.pool for p in self.cluster.pools()} if self.cluster is not None else set()

    async def resolve_workload(self, text: str, where: str) -> str:
        """``namespace/name`` or ``namespace/kind/name`` → the stored workload id; 400/404 otherwise."""
        parts = text.split("/")
        if len(parts) not in (2, 3) or not all(parts) or len(text) > 512:
            raise BadRequestError(f"{where}: {text[:80]!r} must be NAMESPACE/NAME or NAMESPACE/KIND/NAME")
        known = await self.workload_ids()
        if len(parts) == 3:
            if text in known:
                return text
            raise NotFoundError(f"workload {text} is not known to this collector")
        namespace, name = parts
        matches = sorted(
            w for w in known if split_workload(w)[0] == namespace and split_workload(w)[2] == name
        )
        if not matches:
            raise NotFoundError(f"workload {namespace}/{name} is not known to this collector")
        if len(matches) > 1:
            raise BadRequestError(f"{where}: {text} is ambiguous ({', '.join(matches)}); name the kind")
        return matches[0]

    async def workloads(self) -> list[WorkloadSummary]:
        now = self.drift.clock()
        by_workload: dict[str, list[Any]] = {}
        for b in await self.store.pod_briefs():
            by_workload.setdefault(workload_id(b.key.namespace, b.key.pod, b.workload), []).append(b)
        counts = await self.store.open_finding_counts(now)
        by_category = await self._open_by_category(now)
        baselines = {bl.workload: bl for bl in await self.store.list_baselines()}
        intents = self.drift.registry.intents()
        out = []
        pools = {p.pool: p for p in self.cluster.pools()} if self.cluster is not None else {}
        for w in sorted(by_workload.keys() | pools.keys()):
            if w in pools:
                # A pool's replicas are the live pods its selector matches, of any workload.
                members = [m.replica for m in await self.drift.pool_pods(pools[w])]
                seen = [(m.last_seen, m.fingerprint) for m in members]
                live_seen = seen
            else:
                pods = by_workload[w]
                seen = [(p.last_seen, p.fingerprint or "") for p in pods]
                stale_s = self.drift.settings.replica_stale_s
                live_seen = [x for x in seen if now - x[0] <= stale_s]
            count = counts.get(w, {})
            base = baselines.get(w)
            # One read of the workload's replicas each, only while some intent is loaded (binding
            # needs their labels, annotation and served names): ~0.5 ms a workload on SQLite.
            bound = bool(intents) and await self._intent_bound(w, intents)
            out.append(
                WorkloadSummary(
                    workload=w,
                    pods=len(seen),
                    replicas_live=len(live_seen),
                    configurations=len({f for _, f in live_seen if f}),
                    last_seen=max((t for t, _ in seen), default=0.0),
                    open_findings=dict(
                        sorted(
                            ((s, n) for s, n in count.items() if s != "silenced"),
                            key=lambda kv: SEVERITY_ORDER.get(kv[0], 9),
                        )
                    ),
                    silenced_findings=count.get("silenced", 0),
                    baseline_recorded_at=base.recorded_at if base else None,
                    open_by_category=by_category.get(w, {}),
                    intent_bound=bound,
                )
            )
        return out

    async def _open_by_category(self, now: float) -> dict[str, dict[str, dict[str, int]]]:
        """workload -> category -> severity -> open findings, silenced ones (at ``now``) left out."""
        rows = await self.store.list_findings(FindingQuery(status="open", limit=MAX_FLEET_FINDINGS))
        counts: dict[str, dict[str, dict[str, int]]] = {}
        for f in rows:
            until = (f.silence or {}).get("until")
            if isinstance(until, int | float) and until > now:
                continue
            sev = counts.setdefault(f.workload, {}).setdefault(f.category, {})
            sev[f.severity] = sev.get(f.severity, 0) + 1
        return {
            w: {
                c: dict(sorted(v.items(), key=lambda kv: SEVERITY_ORDER.get(kv[0], 9)))
                for c, v in sorted(cats.items())
            }
            for w, cats in counts.items()
        }

    async def _intent_bound(self, workload: str, intents: Sequence[Intent]) -> bool:
        """Whether an intent binds ``workload`` now, as its evaluation would bind it."""
        if self.drift.is_pool(workload):
            ev, _, _ = await self.drift.evaluate_only(workload)
            return bool(ev.bound.intents)
        return bool(bind(intents, workload, await self.drift.replicas(workload)).intents)

    async def _context(self, workload: str) -> _DiffContext:
        ev, replicas, baseline = await self.drift.evaluate_only(workload)
        majority = majority_group(replicas, ev.ignore, baseline.fingerprint if baseline else None)
        rep = max(majority, key=lambda r: r.last_seen) if majority else None
        return _DiffContext(workload, ev, replicas, baseline, rep)

    async def workload(self, workload: str) -> WorkloadView:
        ev, replicas, baseline = await self.drift.evaluate_only(workload)
        majority = majority_group(replicas, ev.ignore, baseline.fingerprint if baseline else None)
        members = frozenset(r.pod for r in majority)
        rep = max(majority, key=lambda r: r.last_seen) if majority else None
        expected = config_facts(dict(rep.facts) if rep else {}, ev.ignore)
        divergent = sorted(
            {
                c.key
                for r in replicas
                if r.pod not in members and r.facts
                for c in diff_facts(expected, config_facts(r.facts, ev.ignore))
            }
        )
        active = await self.store.active_findings(workload)
        resolved = await self.store.list_findings(
            FindingQuery(workload=workload, status="resolved", limit=RESOLVED_SHOWN)
        )
        bound = [
            BoundIntent(i.kind, i.name, i.file, ev.bound.reasons.get(f"{i.kind}/{i.name}", ""))
            for i in ev.bound.intents
        ]
        configurations = [
            (sig, sorted(r.pod for r in rs))
            for sig, rs in sorted(groups(replicas, ev.ignore).items(), key=lambda kv: -len(kv[1]))
        ]
        return WorkloadView(
            workload=workload,
            replicas=replicas,
            majority=members,
            configurations=configurations,
            representative=rep,
            divergent_keys=divergent,
            bound=bound,
            checks=ev.checks,
            baseline=baseline,
            findings=[*active, *resolved],
            now=time.time(),
            cluster=await self._cluster_section(workload),
            probe=await self.latest_probe(workload),
        )

    # -- probe results and verification ----------------------------------------------------------

    async def record_probe(self, workload: str, document: Any) -> ProbeView:
        """Check the posted probe document (BadRequestError naming the field), redact every string
        of it, store it with the collector's clock, keeping the newest ``PROBES_KEEP`` per workload."""
        doc = redact_document(parse_document(document), self.redactor)
        stored = await self.store.add_probe_result(workload, self.now(), doc["verdict"], doc, PROBES_KEEP)
        return ProbeView(stored)

    async def probes(self, workload: str, limit: int) -> ProbeList:
        return ProbeList(workload, [ProbeView(r) for r in await self.store.probe_results(workload, limit)])

    async def probe(self, workload: str, probe_id: int) -> ProbeView:
        found = await self.store.get_probe_result(probe_id)
        if found is None or found.workload != workload:
            raise NotFoundError(f"probe result {probe_id} of {workload} is not stored")
        return ProbeView(found)

    async def latest_probe(self, workload: str) -> ProbeView | None:
        latest = await self.store.probe_results(workload, 1)
        return ProbeView(latest[0]) if latest else None

    async def verification(self, workload: str) -> Verification:
        """May the incident be closed: the active findings, the baseline and the latest
        observations of the live replicas judged by the drift engine's performance rule."""
        ev, replicas, baseline = await self.drift.evaluate_only(workload)
        latest = await self.store.probe_results(workload, 1)
        return verification(
            workload,
            active=await self.store.active_findings(workload),
            baseline=baseline,
            replicas=replicas,
            bound=ev.bound,
            ignore=ev.ignore,
            latest_probe=latest[0] if latest else None,
            now=self.now(),
        )

    # -- cluster: facts and revisions --------------------------------------------------------------

    def cluster_status(self) -> JSON:
        """The cluster watch's own report (``GET /api/v1/cluster``)."""
        if self.cluster is None:
            return {"available": False, "message": NO_CLUSTER_WATCH, "namespaces": {}}
        return dict(self.cluster.status())

    def _no_facts_message(self, workload: str) -> str:
        assert self.cluster is not None
        status = self.cluster.status()
        if not status.get("available", False):
            return str(status.get("message") or "the cluster watch is not available")
        return f"the cluster watch reports no facts of {workload} (not in a watched namespace, or gone)"

    async def _cluster_section(self, workload: str) -> ClusterSection | None:
        if self.cluster is None:
            return None
        facts = self.cluster.facts(workload)
        message = None if facts is not None else self._no_facts_message(workload)
        return ClusterSection(facts, message, await self.revision_entries(workload))

    async def revision_entries(self, workload: str) -> list[RevisionEntry]:
        """The workload's stored revisions, newest first; ``current`` marks the revision the
        controller names current, else the newest stored one."""
        if self.cluster is None:
            return []
        stored = await self.cluster.revision_history(workload)
        facts = self.cluster.facts(workload)
        named = facts.current_revision if facts is not None else ""
        current = next((t.template_hash for t, _, _ in stored if named and t.revision == named), None)
        if current is None and stored:
            current = stored[0][0].template_hash
        return [RevisionEntry(t, first, last, t.template_hash == current) for t, first, last in stored]

    async def revisions(self, workload: str) -> RevisionList:
        """``GET /api/v1/workloads/{namespace}/{name}/revisions``."""
        entries = await self.revision_entries(workload)
        baseline = await self.store.latest_baseline(workload)
        last_good = await self.last_good_revision(workload, entries, baseline)
        if self.cluster is None:
            return RevisionList(workload, entries, last_good, False, NO_CLUSTER_WATCH)
        message = None if entries else f"no pod-template revision of {workload} is stored yet"
        return RevisionList(workload, entries, last_good, True, message)

    async def last_good_revision(
        self, workload: str, entries: Sequence[RevisionEntry], baseline: Baseline | None
    ) -> LastGoodRevision:
        """The revision the baseline was recorded on: the template-hash label of its facts, else of
        the snapshot each of its pods had when it was recorded, mapped through ``entries``."""
        if baseline is None:
            return LastGoodRevision(
                None, f"no last-good revision: record a baseline ('skewwatch baseline record {workload}')"
            )
        if not entries:
            return LastGoodRevision(
                None, f"no last-good revision: no pod-template revision of {workload} is stored"
            )
        found = await self._baseline_template_hash(workload, baseline)
        label = f"baseline {baseline.id} ({baseline.origin}, recorded {_iso(baseline.recorded_at)})"
        if found is None:
            return LastGoodRevision(
                None,
                f"no last-good revision: the pods of {label} carry no pod-template-hash or "
                "controller-revision-hash label",
            )
        template_hash, pod = found
        entry = next((e for e in entries if e.template.template_hash == template_hash), None)
        if entry is None:
            return LastGoodRevision(
                None,
                f"no last-good revision: {label} ran template {template_hash} (pod {pod}), which is not "
                f"among the stored revisions ({_stored_names(entries)}; at most cluster_revisions_keep "
                "are kept)",
            )
        return LastGoodRevision(entry, f"revision {entry.name}: the template {label} ran on (pod {pod})")

    async def _baseline_template_hash(self, workload: str, baseline: Baseline) -> tuple[str, str] | None:
        """(template hash, pod) the baseline was recorded on. Its facts leave identity labels out,
        so each recorded pod's stored snapshot at the recording time says it."""
        in_facts = template_hash_of(baseline.facts)
        if in_facts is not None:
            return in_facts, ", ".join(baseline.pods)
        namespace = split_workload(workload)[0]
        # The recorded pods ran one configuration (the majority): a few of them answer it.
        for pod in sorted(baseline.pods)[:BASELINE_PODS_ASKED]:
            rows = await self.store.history(PodKey(namespace, pod), LAST_GOOD_DEPTH)
            then = next((r for r in rows if r.received_at <= baseline.recorded_at), None)
            found = template_hash_of(then.facts) if then is not None else None
            if found is not None:
                return found, pod
        return None

    async def _resolve_revision(
        self, workload: str, ref: RevisionRef, entries: Sequence[RevisionEntry], baseline: Baseline | None
    ) -> tuple[RevisionEntry, str | None]:
        """The stored revision ``ref`` names, and for ``last-good`` why it is that one; 404 naming
        what is stored otherwise."""
        if self.cluster is None:
            raise NotFoundError(f"revision {ref} of {workload}: {NO_CLUSTER_WATCH}")
        if ref.kind == "last-good":
            good = await self.last_good_revision(workload, entries, baseline)
            if good.entry is None:
                raise NotFoundError(good.why)
            return good.entry, good.why
        if ref.kind == "current":
            found = next((e for e in entries if e.current), None)
        elif ref.kind == "number":
            found = next((e for e in entries if e.template.revision == ref.value), None)
        else:
            found = next((e for e in entries if e.template.template_hash == ref.value), None)
        if found is None:
            raise NotFoundError(f"revision {ref} of {workload} is not stored; {_stored_names(entries)}")
        return found, None

    # -- findings --------------------------------------------------------------------------------

    async def findings(self, query: FindingQuery) -> FindingsPage:
        """One page of ``query``: one row more is asked of the store, to know whether there are more."""
        rows = await self.store.list_findings(replace(query, limit=query.limit + 1))
        return FindingsPage(rows, query.limit, time.time())

    async def finding(self, finding_id: int) -> FindingDetail:
        found = await self.store.get_finding(finding_id)
        if found is None:
            raise NotFoundError(f"finding {finding_id} does not exist")
        finding, events = found
        return FindingDetail(finding, events, time.time())

    async def _note(
        self, finding_id: int, field_name: str, value: dict[str, Any] | None, event: str
    ) -> FindingView:
        f = await self.store.set_finding_note(finding_id, field_name, value, event, self.drift.clock())
        if f is None:
            raise NotFoundError(f"finding {finding_id} does not exist")
        log.info("finding %d %s%s", finding_id, event, f": {value['reason']}" if value else "")
        return FindingView(f, self.drift.clock())

    async def ack(self, finding_id: int, reason: str, by: str) -> FindingView:
        """Acknowledge: someone has seen it and is on it. It stays open and counts as before."""
        return await self._note(
            finding_id, "ack", {"reason": reason, "by": by, "at": self.drift.clock()}, "acknowledged"
        )

    async def unack(self, finding_id: int) -> FindingView:
        return await self._note(finding_id, "ack", None, "unacknowledged")

    async def silence(self, finding_id: int, reason: str, by: str, *, at: float, until: float) -> FindingView:
        """Silence until a time: the finding stays listed (and keeps its lifecycle) but counts apart."""
        value = {"reason": reason, "by": by, "at": at, "until": until}
        return await self._note(finding_id, "silence", value, "silenced")

    async def unsilence(self, finding_id: int) -> FindingView:
        return await self._note(finding_id, "silence", None, "unsilenced")

    # -- diff ------------------------------------------------------------------------------------

    async def diff(self, workload: str, request: DiffRequest) -> DiffResult:
        """Compare the workload's configuration by ``request.mode`` (one of ``DIFF_MODES``)."""
        mode = _DIFF.get(request.mode)
        if mode is None:
            raise BadRequestError(f"diff mode {request.mode[:40]!r} is not one of {', '.join(DIFF_MODES)}")
        ctx = await self._context(workload)
        result = await mode(self, ctx, request)
        return replace(result, provenance=await self._diff_provenance(ctx, result))

    async def _diff_provenance(self, ctx: _DiffContext, result: DiffResult) -> dict[str, dict[str, JSON]]:
        """The provenance of each changed key on each side that names a stored snapshot or baseline."""
        keys = {c.key for c in result.changes}
        out: dict[str, dict[str, JSON]] = {}
        for name, side in (("from", result.from_), ("to", result.to)):
            prov: Mapping[str, Any] = {}
            if side is not None and side.ref == "snapshot" and side.ref_id is not None:
                snap = await self.store.get_snapshot(side.ref_id)
                prov = snap.provenance if snap is not None else {}
            elif (
                side is not None
                and side.ref == "baseline"
                and ctx.baseline is not None
                and side.ref_id in (None, ctx.baseline.id)
            ):
                prov = ctx.baseline.provenance
            out[name] = {k: prov[k].as_dict() for k in sorted(keys) if k in prov}
        return out

    async def _diff_intent(self, ctx: _DiffContext, request: DiffRequest) -> DiffResult:
        ev = ctx.evaluation
        return DiffResult(
            ctx.workload,
            request.mode,
            DiffSide(", ".join(f"{i.kind}/{i.name}" for i in ev.bound.intents) or "no intent bound"),
            DiffSide(f"{len(ctx.replicas)} live replicas"),
            [
                FactChange(c.target or c.field, ChangeKind.CHANGED, c.expected, _most(c.pods))
                for c in ev.checks
                if c.status == "drift"
            ],
            checks=ev.checks,
        )

    async def _diff_pods(self, ctx: _DiffContext, request: DiffRequest) -> DiffResult:
        if request.pods is None:
            raise BadRequestError("query parameter 'pods': give two pod names, P1,P2")
        by_pod = {r.pod: r for r in ctx.replicas}
        for n in request.pods:
            if n not in by_pod:
                raise NotFoundError(f"pod {n} is not a live replica of {ctx.workload}")
        a, b = by_pod[request.pods[0]], by_pod[request.pods[1]]
        return DiffResult(
            ctx.workload,
            request.mode,
            DiffSide.snapshot(f"pod {a.pod}", a.snapshot_id),
            DiffSide.snapshot(f"pod {b.pod}", b.snapshot_id),
            changes(a.facts, b.facts),
        )

    async def _revision(self, ctx: _DiffContext, snapshot_id: int, pods: set[str]) -> SnapshotRecord:
        snap = await self.store.get_snapshot(snapshot_id)
        if snap is None:
            raise NotFoundError(f"snapshot {snapshot_id} does not exist")
        rec = await self.store.get_pod(snap.key)
        owner = workload_id(snap.key.namespace, snap.key.pod, rec.identity.workload) if rec else ""
        if owner != ctx.workload and snap.key.pod not in pods:
            raise BadRequestError(
                f"snapshot {snapshot_id} belongs to {snap.key}, not to a pod of {ctx.workload}"
            )
        return snap

    async def _diff_templates(self, ctx: _DiffContext, refs: tuple[RevisionRef, RevisionRef]) -> DiffResult:
        entries = await self.revision_entries(ctx.workload)
        a, why_a = await self._resolve_revision(ctx.workload, refs[0], entries, ctx.baseline)
        b, why_b = await self._resolve_revision(ctx.workload, refs[1], entries, ctx.baseline)
        return DiffResult(
            ctx.workload,
            "revisions",
            a.side(why_a),
            b.side(why_b),
            changes(a.template.facts, b.template.facts),
        )

    async def template_last_good(
        self, workload: str, baseline: Baseline | None
    ) -> tuple[DiffResult | None, str | None]:
        """The pod-template diff last-good revision (the one ``baseline`` was recorded on) -> current
        revision, or None and why not."""
        if self.cluster is None:
            return None, NO_CLUSTER_WATCH
        entries = await self.revision_entries(workload)
        if not entries:
            return (
                None,
                f"no pod-template revision of {workload} is stored (the cluster watch has not seen it)",
            )
        good = await self.last_good_revision(workload, entries, baseline)
        if good.entry is None:
            return None, good.why
        current = next(e for e in entries if e.current)
        diff = DiffResult(
            workload,
            "revisions",
            good.entry.side(good.why),
            current.side(),
            changes(good.entry.template.facts, current.template.facts),
        )
        return diff, None

    async def _diff_revisions(self, ctx: _DiffContext, request: DiffRequest) -> DiffResult:
        if request.templates is not None:
            return await self._diff_templates(ctx, request.templates)
        if request.revisions is None:
            raise BadRequestError(
                "query parameter 'revisions': give two snapshot ids, A,B (see skewwatch history)"
            )
        pods = {r.pod for r in ctx.replicas}
        a = await self._revision(ctx, request.revisions[0], pods)
        b = await self._revision(ctx, request.revisions[1], pods)
        return DiffResult(
            ctx.workload,
            request.mode,
            DiffSide.snapshot(f"snapshot {a.id} of {a.key}", a.id),
            DiffSide.snapshot(f"snapshot {b.id} of {b.key}", b.id),
            changes(a.facts, b.facts),
        )

    @staticmethod
    def _current(ctx: _DiffContext) -> tuple[Replica, DiffSide]:
        rep = ctx.representative
        if rep is None:
            raise NotFoundError(f"workload {ctx.workload} has no live replica with a snapshot")
        return rep, DiffSide.snapshot(f"current configuration (pod {rep.pod})", rep.snapshot_id)

    async def _diff_baseline(self, ctx: _DiffContext, request: DiffRequest) -> DiffResult:
        rep, to = self._current(ctx)
        if ctx.baseline is None:
            raise NotFoundError(
                f"workload {ctx.workload} has no baseline; record one with "
                f"'skewwatch baseline record {ctx.workload}'"
            )
        return DiffResult(
            ctx.workload,
            request.mode,
            _baseline_side(ctx.baseline),
            to,
            changes(ctx.baseline.facts, rep.facts),
        )

    async def _diff_last_good(self, ctx: _DiffContext, request: DiffRequest) -> DiffResult:
        rep, to = self._current(ctx)
        good = await self.last_good(ctx.workload, rep, ctx.replicas, ctx.baseline, ctx.evaluation.ignore)
        template, template_why = await self.template_last_good(ctx.workload, ctx.baseline)
        if good.snapshot is not None:
            label = f"last-good configuration of pod {rep.pod} (snapshot {good.snapshot.id})"
            side = DiffSide.snapshot(label, good.snapshot.id, good.why)
            # A pod's history holds what its agent sent; the workload's cluster facts are joined to
            # both sides as they are now (their changes are the template diff's and the baseline's).
            found = changes(self._joined(ctx.workload, rep.pod, good.snapshot).facts, rep.facts)
        elif ctx.baseline is not None:
            side = _baseline_side(ctx.baseline, good.why)
            found = changes(ctx.baseline.facts, rep.facts)
        else:
            side = DiffSide("no good configuration stored for this replica", why=good.why)
            found = []
        return DiffResult(
            ctx.workload, request.mode, side, to, found, template=template, template_why=template_why
        )

    def _joined(self, workload: str, pod: str, row: SnapshotRecord) -> Replica:
        """A stored row of ``pod`` as a replica reporting it now would be judged: with the
        workload's cluster facts joined (history holds only what the agent sent)."""
        seen = Replica(pod, row.facts, row.provenance, row.sources, row.fingerprint.overall)
        return merge_cluster(seen, self.cluster.facts(workload) if self.cluster is not None else None)

    async def last_good(
        self,
        workload: str,
        rep: Replica,
        replicas: Sequence[Replica],
        baseline: Baseline | None,
        ignore: Sequence[str],
    ) -> LastGood:
        """The newest stored configuration of ``rep`` that broke no baseline or peer check.

        Intent is not asked: a violation that persisted all along would leave nothing good, and
        what the question wants is the configuration that last *worked*. A row is judged as the
        drift engine would judge a replica reporting it now: against the workload's baseline and
        against the majority of the other live replicas. Rows taken while a source that is healthy
        now had failed (a collection during a restart) are incomplete and skipped. When no stored
        row qualifies, the recorded baseline stands in for it.
        """
        others = [r for r in replicas if r.pod != rep.pod and r.facts]
        majority = majority_group(others, ignore, baseline.fingerprint if baseline else None)
        ref = max(majority, key=lambda r: r.last_seen) if majority else None
        unhealthy_now = {n for n, st in rep.sources.items() if st.state is not SourceState.OK}
        skipped = 0
        for row in await self.store.history(PodKey(split_workload(workload)[0], rep.pod), LAST_GOOD_DEPTH):
            seen = self._joined(workload, rep.pod, row)
            if _breaks(row, seen, unhealthy_now=unhealthy_now, baseline=baseline, ref=ref, ignore=ignore):
                skipped += 1
                continue
            return LastGood(row, _good_why(row, rep, baseline, majority if ref is not None else [], skipped))
        if baseline is not None:
            return LastGood(
                None,
                f"none of the newest {LAST_GOOD_DEPTH} stored configurations of pod {rep.pod} keeps the "
                f"baseline and the peers: the recorded baseline {baseline.id} is the last known good",
            )
        return LastGood(
            None, f"none of the stored configurations of pod {rep.pod} is complete and matches its peers"
        )

    # -- baselines -------------------------------------------------------------------------------

    async def baselines(self, workload: str | None = None, namespace: str | None = None) -> list[Baseline]:
        """Newest first; without ``workload``, the latest of each workload; with ``namespace``,
        only workloads in it."""
        return await self.store.list_baselines(workload, namespace=namespace)

    async def baseline(self, workload: str) -> BaselineHistory:
        rows = await self.store.list_baselines(workload, limit=BASELINE_HISTORY)
        if not rows:
            raise NotFoundError(f"workload {workload} has no baseline")
        return BaselineHistory(workload, rows[0], rows[1:])

    async def record_baseline(self, workload: str, note: str) -> Baseline:
        """Record the workload's current majority configuration; ConflictError when there is none."""
        try:
            return await self.drift.record(workload, origin="manual", note=note)
        except BaselineError as e:
            raise ConflictError(str(e)) from e

    async def delete_baseline(self, workload: str) -> BaselineHistory:
        """Forget the workload's baseline (the current one and its older ones; nothing else) and
        re-evaluate, as recording one does: findings against it resolve. NotFoundError when there
        is none. The answer is the baseline as ``baseline()`` showed it before."""
        rows = await self.store.delete_baselines(workload)
        if not rows:
            raise NotFoundError(f"workload {workload} has no baseline")
        log.info("baseline of %s deleted (%d recorded)", workload, len(rows))
        self.drift.schedule(workload)
        return BaselineHistory(workload, rows[0], rows[1:BASELINE_HISTORY])

    # -- intents ---------------------------------------------------------------------------------

    def intents(self) -> IntentListing:
        reg = self.drift.registry
        return IntentListing(
            reg.listing(), [e.as_dict() for e in reg.errors()], str(reg.directory) if reg.directory else None
        )

    def intent(self, kind: str, name: str) -> Intent:
        found = self.drift.registry.get(kind, name)
        if found is None:
            raise NotFoundError(f"{kind} {name} is not loaded")
        return found

    async def _save_intents(self, intents: Sequence[Intent]) -> None:
        have = self.drift.registry.api_keys()
        new = {(i.kind, i.name) for i in intents} - have
        if len(have) + len(new) > MAX_API_INTENTS:
            raise BadRequestError(
                f"body: {len(new)} new intent(s) would make {len(have) + len(new)} posted through the API, "
                f"over the limit of {MAX_API_INTENTS} ({LIMIT_API_INTENTS}); delete some first",
                limit=LIMIT_API_INTENTS,
            )
        for i in intents:
            await self.store.put_intent(IntentRecord(i.kind, i.name, json.dumps(i.data), self.drift.clock()))
            self.drift.registry.put_api(i)
        self.drift.schedule_all()

    async def create_intents(self, intents: Sequence[Intent]) -> None:
        """Store new intents; ConflictError naming those that exist already (nothing is stored)."""
        existing = {(i.kind, i.name) for i in self.drift.registry.intents()}
        clash = [f"{i.kind}/{i.name}" for i in intents if (i.kind, i.name) in existing]
        if clash:
            raise ConflictError(f"{', '.join(clash)} already exist; 'skewwatch intent apply' replaces them")
        await self._save_intents(intents)

    async def put_intent(self, intent: Intent) -> bool:
        """Create or replace one intent; True when it was created."""
        created = self.drift.registry.get(intent.kind, intent.name) is None
        await self._save_intents([intent])
        return created

    async def delete_intent(self, kind: str, name: str) -> None:
        """Delete an intent posted through the API; ConflictError for one from the directory."""
        if not await self.store.delete_intent(kind, name):
            found = self.drift.registry.get(kind, name)
            if found is not None:
                raise ConflictError(
                    f"{kind} {name} comes from the intents directory ({found.file}); remove the file"
                )
            raise NotFoundError(f"{kind} {name} was not posted through the API")
        self.drift.registry.delete_api(kind, name)
        self.drift.schedule_all()


DiffMode = Callable[[Queries, _DiffContext, DiffRequest], Awaitable[DiffResult]]
_DIFF: Mapping[str, DiffMode] = {
    "last_good": Queries._diff_last_good,
    "baseline": Queries._diff_baseline,
    "intent": Queries._diff_intent,
    "revisions": Queries._diff_revisions,
    "pods": Queries._diff_pods,
}
assert tuple(_DIFF) == DIFF_MODES


def _breaks(
    row: SnapshotRecord,
    seen: Replica,
    *,
    unhealthy_now: set[str],
    baseline: Baseline | None,
    ref: Replica | None,
    ignore: Sequence[str],
) -> bool:
    """Whether a stored row (``seen``, as a replica with the cluster facts joined) is incomplete, or
    breaks the baseline or the peers."""
    if {n for n, st in row.sources.items() if st.state is not SourceState.OK} - unhealthy_now:
        return True  # incomplete
    if baseline is not None and compare_config(baseline, [seen], ignore):
        return True
    return ref is not None and bool(differing_keys(ref, seen, ignore))


def _good_why(
    row: SnapshotRecord, rep: Replica, baseline: Baseline | None, majority: Sequence[Replica], skipped: int
) -> str:
    checks = []
    if baseline is not None:
        checks.append(f"matches baseline {baseline.id} ({baseline.origin})")
    if majority:
        checks.append(
            f"matches the majority of the other replicas ({', '.join(sorted(r.pod for r in majority))})"
        )
    if not checks:
        checks.append("no baseline and no other replica to break: the newest complete configuration")
    current = " (the current configuration)" if row.fingerprint.overall == rep.fingerprint else ""
    newer = f"; {skipped} newer stored configuration(s) broke a check or were incomplete" if skipped else ""
    received = _iso(row.received_at)
    return f"snapshot {row.id}{current}, received {received}: complete, " + " and ".join(checks) + newer
