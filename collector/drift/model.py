"""What the drift engine works on and produces: replicas in, drifts and finding changes out. Pure.

A ``Drift`` is one mismatch seen in one evaluation (a candidate); a ``Finding`` is a drift with
a lifecycle (pending → open → resolved) and an identity that is stable across evaluations:
(workload, reference, key). The same drift seen again updates its finding; it never makes a new
one while the finding is pending or open.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
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
        status = self.sources.get(prov.source)
        return status is None or status.state is SourceState.OK

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

    @property
    def category(self) -> str:
        return category_of(self.key)

    @property
    def identity(self) -> tuple[str, str]:
        return (self.reference.value, self.key)


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

    @property
    def identity(self) -> tuple[str, str]:
        return (self.reference, self.key)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "workload": self.workload,
            "reference": self.reference,
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
            "evidence": {p: self.evidence[p] for p in sorted(self.evidence)},
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "opened_at": self.opened_at,
            "resolved_at": self.resolved_at,
            "seen": self.hits,
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
