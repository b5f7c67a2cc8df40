"""The store interface the collector talks to, and the records it reads back.

Every backend (SQLite now, PostgreSQL later) implements ``Store``. Methods are async because the
collector is asyncio; a backend runs its blocking work off the event loop. Each write method is
one transaction: when it returns, the write is committed (so the ingest layer may acknowledge);
when it raises ``StoreError``, nothing stored was changed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from collector.baseline.model import Baseline
from collector.drift.model import FindingChange, FindingRecord
from skewwatch.core.facts import FactValue, Fingerprint, Observation, Provenance, SourceStatus


@dataclass(frozen=True, order=True)
class PodKey:
    namespace: str
    pod: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.pod}"


@dataclass(frozen=True)
class PodIdentity:
    """Who a stream speaks for, from its Hello."""

    namespace: str
    pod: str
    node: str = ""
    workload: str = ""
    workload_source: str = ""
    agent_id: str = ""
    agent_version: str = ""

    @property
    def key(self) -> PodKey:
        return PodKey(self.namespace, self.pod)


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


class Store(Protocol):
    """What the collector needs from a store. All writes are single transactions."""

    url: str

    async def open(self) -> None:
        """Connect and migrate the schema; raises StoreError."""

    async def close(self) -> None:
        """Release every connection and thread; idempotent."""

    async def ping(self) -> None:
        """Raise StoreError unless the store answers a trivial read."""

    async def hello(self, identity: PodIdentity, sequence: int, received_at: float) -> None:
        """Create or refresh the pod row (identity, agent, last_seen)."""

    async def record_snapshot(
        self,
        identity: PodIdentity,
        sequence: int,
        *,
        facts: Mapping[str, FactValue],
        provenance: Mapping[str, Provenance],
        sources: Mapping[str, SourceStatus],
        fingerprint: Fingerprint,
        collected_at: float,
        received_at: float,
    ) -> SnapshotWrite:
        """Store a snapshot: a new history row only when the overall fingerprint differs from
        the pod's current one; the pod's current state and last_seen are always updated."""

    async def record_heartbeat(
        self, key: PodKey, sequence: int, overall_fingerprint: str, received_at: float
    ) -> HeartbeatResult:
        """Update last_seen when the fingerprint matches the pod's current one; else change nothing."""

    async def record_engine_state(
        self, identity: PodIdentity, sequence: int, engine: EngineState, received_at: float
    ) -> None:
        """Store what the engine is doing (and last_seen): a state, never a configuration row."""

    async def record_event(
        self, identity: PodIdentity, sequence: int, at: float, kind: str, detail: Mapping[str, Any]
    ) -> None:
        """Append one engine event (a restart) to the pod's events."""

    async def pod_events(self, key: PodKey, limit: int) -> list[PodEvent]:
        """The pod's events, newest first."""

    async def get_snapshot(self, snapshot_id: int) -> SnapshotRecord | None:
        """One stored history row by id."""

    async def record_observations(
        self,
        identity: PodIdentity,
        sequence: int,
        *,
        items: Mapping[str, Observation],
        at: float,
        window_s: float,
        received_at: float,
    ) -> None:
        """Keep as the pod's latest observations and append to its bounded history."""

    async def list_pods(self) -> list[PodRecord]:
        """Every known pod, ordered by namespace then pod."""

    async def get_pod(self, key: PodKey) -> PodRecord | None: ...

    async def latest_observations(self, key: PodKey) -> ObservationsRecord | None: ...

    async def observation_history(self, key: PodKey, limit: int) -> list[ObservationsRecord]:
        """Newest first."""

    async def history(self, key: PodKey, limit: int, before_id: int | None = None) -> list[SnapshotRecord]:
        """Stored snapshots of a pod, newest first, at most ``limit``, ids below ``before_id``."""

    async def delete_pod(self, key: PodKey) -> bool:
        """Delete the pod and everything stored for it (history, latest and past observations);
        False when it was not known. Findings and baselines naming it are left as they are."""


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
    workload: str | None = None
    status: str | None = None
    reference: str | None = None
    category: str | None = None
    severity: str | None = None
    limit: int = 100
    before_id: int | None = None


class DriftStore(Protocol):
    """What the drift engine's service needs beyond ``Store``: findings, baselines, intents."""

    async def workload_replicas(self, workload: str, since: float, windows: int) -> list[ReplicaRecord]:
        """Pods of ``workload`` seen at or after ``since``, each with its newest ``windows`` observations."""

    async def pod_briefs(self) -> list[PodBrief]: ...

    async def active_findings(self, workload: str) -> list[FindingRecord]:
        """Pending and open findings of a workload."""

    async def apply_findings(self, changes: Sequence[FindingChange]) -> list[FindingRecord]:
        """Write finding changes in one transaction; returns the written rows (new ones with ids)."""

    async def list_findings(self, query: FindingQuery) -> list[FindingRecord]:
        """Newest first."""

    async def get_finding(self, finding_id: int) -> tuple[FindingRecord, list[FindingEvent]] | None: ...

    async def set_finding_note(
        self, finding_id: int, field: str, value: Mapping[str, Any] | None, event: str, at: float
    ) -> FindingRecord | None:
        """Set ``ack`` or ``silence`` of a finding (None clears); None when there is no such finding."""

    async def open_finding_counts(self, now: float | None = None) -> dict[str, dict[str, int]]:
        """workload -> severity -> number of open findings."""

    async def save_baseline(self, baseline: Baseline) -> Baseline: ...

    async def latest_baseline(self, workload: str) -> Baseline | None: ...

    async def list_baselines(self, workload: str | None = None, limit: int = 1000) -> list[Baseline]:
        """Newest first; without ``workload``, the latest of each workload."""

    async def put_intent(self, record: IntentRecord) -> bool:
        """Create or replace; True when it was created."""

    async def delete_intent(self, kind: str, name: str) -> bool: ...

    async def list_intents(self) -> list[IntentRecord]: ...


class FullStore(Store, DriftStore, Protocol):
    """A store the whole collector runs on."""
