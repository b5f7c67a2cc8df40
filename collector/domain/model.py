"""What the drift engine works on and produces: replicas in, drifts and finding changes out. Pure.

A ``Drift`` is one mismatch seen in one evaluation (a candidate); a ``Finding`` is a drift with
a lifecycle (pending → open → resolved) and an identity that is stable across evaluations:
(workload, reference, key). The same drift seen again updates its finding; it never makes a new
one while the finding is pending or open.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from skewwatch.core.facts import FactValue, Observation, Provenance, SourceState, SourceStatus

# Findings about observations (not facts) use this category; the five fact categories come
# from the key's first segment as everywhere else.
PERFORMANCE = "performance"
OBSERVATION_PREFIX = "observation."


class Reference(StrEnum):
    INTENT = "intent"
    BASELINE = "baseline"
    PEERS = "peers"


class Status(StrEnum):
    PENDING = "pending"  # seen, not yet persistent enough to open (debounce)
    OPEN = "open"
    RESOLVED = "resolved"


SEVERITY_ORDER = {"critical": 0, "high": 1, "medium": 2, "low": 3, "info": 4}


def category_of(key: str) -> str:
    return PERFORMANCE if key.startswith(OBSERVATION_PREFIX) else key.split(".", 1)[0]


@dataclass(frozen=True)
class Replica:
    """One pod of a workload as the engine sees it: current facts, sources and observations."""

    pod: str
    facts: Mapping[str, FactValue]
    provenance: Mapping[str, Provenance] = field(default_factory=dict)
    sources: Mapping[str, SourceStatus] = field(default_factory=dict)
    fingerprint: str = ""
    first_seen: float = 0.0
    last_seen: float = 0.0
    # Recent observation windows, newest first (each a name -> Observation map).
    observations: tuple[Mapping[str, Observation], ...] = ()
    snapshot_id: int | None = None

    def source_ok(self, key: str) -> bool:
        """Is the source that reported (or would report) ``key`` healthy in this snapshot?

        A key absent because its source was unavailable or failed is unknown, not drifted.
        """
        prov = self.provenance.get(key)
        if prov is None:
            return all(s.state is SourceState.OK for s in self.sources.values())
        if prov.carried:
            return False  # carried from an earlier collection: unknown now, not the same
        status = self.sources.get(prov.source)
        return status is None or status.state is SourceState.OK

    def known(self, key: str) -> bool:
        """Does this replica report ``key`` from a source that could read it now?"""
        prov = self.provenance.get(key)
        return key in self.facts and not (prov is not None and prov.carried)

    def without_carried(self) -> Replica:
        """This replica with the facts carried while their source was not ready left out."""
        carried = {k for k, p in self.provenance.items() if p.carried}
        if not carried:
            return self
        return replace(
            self,
            facts={k: v for k, v in self.facts.items() if k not in carried},
            provenance={k: v for k, v in self.provenance.items() if k not in carried},
        )

    def observed(self, name: str, windows: int = 3) -> float | None:
        """The median of the newest ``windows`` values of one observation (smooths one noisy window)."""
        values = sorted(o[name].value for o in self.observations[:windows] if name in o)
        if not values:
            return None
        mid = len(values) // 2
        return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


@dataclass(frozen=True)
class Drift:
    """One mismatch found by one evaluation."""

    reference: Reference
    key: str
    expected: Any
    actual: Any
    pods: Mapping[str, Any]  # affected pod -> its actual value
    message: str
    source: str = ""  # which intent field / baseline / majority said what to expect
    evidence: Mapping[str, Any] = field(default_factory=dict)  # pod -> provenance of the actual value
    severity: str = ""  # filled from the playbook unless an intent overrides
    hint: str = ""
    symptom: str = ""
    performance: bool = False
    # pod -> whether the key exists there at all (absent and a null value both show as None)
    present: Mapping[str, bool] = field(default_factory=dict)
    expected_text: str = ""  # how the reference states its expectation, when not "expected X"
    split: bool = False  # peers with no majority: no side is expected
    note: str = ""  # e.g. "a rollout is in progress (pod template a vs b)"
    # Every reference a grouped finding breaks (collector.drift.causes); empty before grouping.
    references: tuple[Reference, ...] = ()

    @property
    def category(self) -> str:
        return category_of(self.key)

    @property
    def identity(self) -> str:
        """One finding per key and workload: the same drift against several references is one."""
        return self.key


@dataclass(frozen=True)
class FindingRecord:
    """A stored finding (pending, open, or resolved)."""

    id: int
    workload: str
    reference: str
    key: str
    category: str
    severity: str
    status: Status
    expected: Any
    actual: Any
    pods: Mapping[str, Any]
    message: str
    source: str
    hint: str
    symptom: str
    evidence: Mapping[str, Any]
    first_seen: float
    last_seen: float
    opened_at: float | None
    resolved_at: float | None
    hits: int
    references: tuple[str, ...] = ()
    resolution: str = ""  # resolved: "fixed" (no longer seen) | "gone" (its replicas went away)
    # An admin's word on it: acknowledged (seen, being handled) or silenced until a time.
    ack: Mapping[str, Any] | None = None
    silence: Mapping[str, Any] | None = None

    @property
    def identity(self) -> str:
        return self.key

    def silenced(self, now: float) -> bool:
        until = self.silence.get("until") if self.silence else None
        return isinstance(until, int | float) and until > now

    def as_dict(self, now: float = 0.0) -> dict[str, Any]:
        """The API's shape; ``now`` decides whether a silence is still in force."""
        # Grouped findings keep provenance per pod under "by_pod" next to their causes and
        # consequences; findings stored before grouping hold provenance per pod directly.
        grouped = isinstance(self.evidence.get("by_pod"), dict)
        by_pod: Mapping[str, Any] = self.evidence["by_pod"] if grouped else self.evidence
        return {
            "id": self.id,
            "workload": self.workload,
            "reference": self.reference,
            "references": list(self.references or (self.reference,)),
            "key": self.key,
            "category": self.category,
            "severity": self.severity,
            "status": self.status.value,
            "expected": self.expected,
            "actual": self.actual,
            "pods": sorted(self.pods),
            "actual_by_pod": {p: self.pods[p] for p in sorted(self.pods)},
            "message": self.message,
            "source": self.source,
            "hint": self.hint,
            "symptom": self.symptom,
            "evidence": {p: by_pod[p] for p in sorted(by_pod)},
            "root": self.evidence.get("root", self.key) if grouped else self.key,
            "expected_by_reference": dict(self.evidence.get("expected_by_reference", {})) if grouped else {},
            "related": list(self.evidence.get("related", [])) if grouped else [],
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "opened_at": self.opened_at,
            "resolved_at": self.resolved_at,
            "resolution": self.resolution or None,
            "seen": self.hits,
            "acknowledged": dict(self.ack) if self.ack else None,
            "silence": dict(self.silence) if self.silence else None,
            "silenced": self.silenced(now),
        }


class ChangeKind(StrEnum):
    PENDING = "pending"  # a new candidate, not yet open
    SEEN = "seen"  # a pending candidate seen again, still not open
    OPENED = "opened"
    UPDATED = "updated"  # an open finding whose actual values or pods changed
    CONFIRMED = "confirmed"  # an open finding seen again, unchanged (last_seen only)
    RESOLVED = "resolved"
    DROPPED = "dropped"  # a pending candidate that went away before it opened


@dataclass(frozen=True)
class FindingChange:
    """What to write: a new or changed finding row, and whether it is a history event."""

    kind: ChangeKind
    finding: FindingRecord  # id 0 for a new one

    @property
    def is_event(self) -> bool:
        return self.kind in (ChangeKind.OPENED, ChangeKind.UPDATED, ChangeKind.RESOLVED)
