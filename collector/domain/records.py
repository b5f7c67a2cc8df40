"""The collector's records: who a pod is, what it reported, and the rows read back about it.

Typed views shared by the store (which writes and reads them), the service (which queries them)
and the edges (which serialise them). Plain frozen dataclasses, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from skewwatch.core.facts import FactValue, Fingerprint, Observation, Provenance, SourceStatus
from skewwatch.core.identity import PodIdentity, PodKey


@dataclass(frozen=True)
class CurrentState:
    """A pod's latest snapshot as last received (always updated, even when unchanged)."""

    sequence: int
    collected_at: float
    received_at: float
    facts: Mapping[str, FactValue]
    provenance: Mapping[str, Provenance]
    sources: Mapping[str, SourceStatus]
    fingerprint: Fingerprint


@dataclass(frozen=True)
class EngineState:
    """What the agent's target process is doing: running | not_running | starting (since when)."""

    state: str
    since: float | None
    message: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"state": self.state, "since": self.since, "message": self.message}


@dataclass(frozen=True)
class PodEvent:
    """Something that happened to a pod's engine, not a configuration: a restart."""

    id: int
    key: PodKey
    at: float
    kind: str
    detail: Mapping[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "at": self.at, "kind": self.kind, **self.detail}


@dataclass(frozen=True)
class PodRecord:
    identity: PodIdentity
    first_seen: float
    last_seen: float
    last_sequence: int
    # The history row holding this configuration; None until the first snapshot.
    current_snapshot_id: int | None
    current: CurrentState | None
    engine: EngineState | None = None  # None: the agent never said (older agents)

    @property
    def key(self) -> PodKey:
        return self.identity.key

    @property
    def fingerprint(self) -> str | None:
        return self.current.fingerprint.overall if self.current is not None else None


@dataclass(frozen=True)
class SnapshotRecord:
    """One stored history row: a configuration a pod had, from when it was first received."""

    id: int
    key: PodKey
    sequence: int
    agent_id: str
    collected_at: float
    received_at: float
    facts: Mapping[str, FactValue]
    provenance: Mapping[str, Provenance]
    sources: Mapping[str, SourceStatus]
    fingerprint: Fingerprint


@dataclass(frozen=True)
class ObservationsRecord:
    key: PodKey
    sequence: int
    at: float
    window_s: float
    received_at: float
    items: Mapping[str, Observation] = field(default_factory=dict)


@dataclass(frozen=True)
class SnapshotWrite:
    """Outcome of storing a snapshot: which history row holds it and whether that row is new."""

    snapshot_id: int
    new_row: bool


class HeartbeatResult(StrEnum):
    OK = "ok"
    UNKNOWN_POD = "unknown-pod"
    FINGERPRINT_MISMATCH = "fingerprint-mismatch"


@dataclass(frozen=True)
class ReplicaRecord:
    """A pod of a workload with its recent observation windows (newest first), for the drift engine."""

    pod: PodRecord
    observations: list[ObservationsRecord]


@dataclass(frozen=True)
class PodBrief:
    """The light columns of a pod row, for workload listings."""

    key: PodKey
    workload: str
    last_seen: float
    fingerprint: str | None


@dataclass(frozen=True)
class IntentRecord:
    kind: str
    name: str
    body: str
    updated_at: float


@dataclass(frozen=True)
class FindingEvent:
    id: int
    finding_id: int
    at: float
    event: str
    actual: Any
    pods: Any
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "event": self.event,
            "actual": self.actual,
            "pods": self.pods,
            "message": self.message,
        }


@dataclass(frozen=True)
class FindingQuery:
    """Which findings to list, newest (highest id) first: every given filter must hold.

    ``namespace`` takes the findings of every workload in it; ``since`` and ``until`` bound the
    finding's ``last_seen`` (Unix seconds, ``since <= last_seen < until``); ``before_id`` is the
    paging cursor (ids below it). The store answers at most ``limit`` rows."""

    workload: str | None = None
    status: str | None = None
    reference: str | None = None
    category: str | None = None
    severity: str | None = None
    limit: int = 100
    before_id: int | None = None
    namespace: str | None = None
    since: float | None = None
    until: float | None = None


# -- agent messages as writes: what ingest hands the store, one batch per transaction -------------


@dataclass(frozen=True)
class HelloWrite:
    """Create or refresh the pod row (identity, agent, last_seen)."""

    identity: PodIdentity
    sequence: int
    received_at: float


@dataclass(frozen=True)
class SnapshotIn:
    """A full snapshot; a new history row only when its overall fingerprint changed."""

    identity: PodIdentity
    sequence: int
    facts: Mapping[str, FactValue]
    provenance: Mapping[str, Provenance]
    sources: Mapping[str, SourceStatus]
    fingerprint: Fingerprint
    collected_at: float
    received_at: float


@dataclass(frozen=True)
class HeartbeatIn:
    """Refresh last_seen when the fingerprint matches the pod's current one."""

    identity: PodIdentity
    sequence: int
    overall_fingerprint: str
    received_at: float


@dataclass(frozen=True)
class EngineStateIn:
    identity: PodIdentity
    sequence: int
    engine: EngineState
    received_at: float


@dataclass(frozen=True)
class EventIn:
    """One engine event (a restart) appended to the pod's bounded events."""

    identity: PodIdentity
    sequence: int
    at: float
    kind: str
    detail: Mapping[str, Any]


@dataclass(frozen=True)
class ObservationsIn:
    identity: PodIdentity
    sequence: int
    items: Mapping[str, Observation]
    at: float
    window_s: float
    received_at: float


# One agent message as a store write; ``RecordingStore.record_batch`` applies many in one transaction.
Write = HelloWrite | SnapshotIn | HeartbeatIn | EngineStateIn | EventIn | ObservationsIn
# What each write returns: SnapshotWrite for a snapshot, HeartbeatResult for a heartbeat, else None.
WriteResult = SnapshotWrite | HeartbeatResult | None


@dataclass(frozen=True)
class Retention:
    """How long and how much history the store keeps (docs/scale.md); None keeps without bound.

    Per pod: at most ``snapshot_rows`` history rows and none older than ``snapshot_days`` (the
    row a pod's current state points at is always kept), at most ``observation_rows`` windows and
    none older than ``observation_days``. A pod not heard from for ``pod_days`` is deleted with
    everything stored for it (findings and baselines naming it stay)."""

    snapshot_rows: int | None = 1000
    snapshot_days: float | None = 30.0
    observation_rows: int | None = 2000
    observation_days: float | None = 7.0
    pod_days: float | None = 3.0


@dataclass(frozen=True)
class PruneResult:
    """Rows deleted by one ``prune`` pass, per table."""

    snapshots: int = 0
    observations: int = 0
    pods: int = 0
    done: bool = True  # False: a bound on rows per pass stopped it; call again

    def __add__(self, other: PruneResult) -> PruneResult:
        """Both passes' deletions, done when the later one is."""
        return PruneResult(
            self.snapshots + other.snapshots, self.observations + other.observations,
            self.pods + other.pods, other.done,
        )  # fmt: skip
