"""The store interface the collector talks to (its records are ``collector.domain.records``).

One protocol per role, so each service names what it calls: ``RecordingStore`` (ingest's writes,
through the service's recorder), ``PodStore`` (the pod queries), ``EvaluationStore`` (evaluation on
ingest) and ``QueryStore`` (the drift queries); ``FullStore`` is what a backend implements.

Every backend (SQLite and PostgreSQL, both running ``collector.store.sql``) implements
``Store``. Methods are async because the collector is asyncio; a backend runs its blocking work
off the event loop. Each write method is one transaction: when it returns, the write is
committed (so the ingest layer may acknowledge); when it raises ``StoreError``, nothing stored
was changed. ``record_batch`` is many such writes in one transaction, each answered apart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from collector.domain.baseline import Baseline
from collector.domain.cluster import RevisionTemplate
from collector.domain.model import FindingChange, FindingRecord
from collector.domain.records import (
    EngineState,
    FindingEvent,
    FindingQuery,
    HeartbeatResult,
    IntentRecord,
    ObservationsRecord,
    PodBrief,
    PodEvent,
    PodRecord,
    PruneResult,
    ReplicaRecord,
    Retention,
    SnapshotRecord,
    SnapshotWrite,
    Write,
    WriteResult,
)
from collector.errors import StoreError
from skewwatch.core.facts import FactValue, Fingerprint, Observation, Provenance, SourceStatus
from skewwatch.core.identity import PodIdentity, PodKey


class RecordingStore(Protocol):
    """The writes of agent messages; each one transaction, committed when it returns."""

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
        """Keep as the pod's latest observations and append to its history (bounded by ``prune``)."""

    async def record_batch(self, writes: Sequence[Write]) -> list[WriteResult | StoreError]:
        """Apply ``writes`` in order in one transaction (group commit), each in its own savepoint.

        Answers one item per write, in order: what the single-write method returns, or the
        ``StoreError`` of a write whose statements failed (that write alone was rolled back; the
        others still commit). Raises ``StoreError`` when the transaction cannot commit: then no
        write of the batch is stored. When it returns, every write it answered without an error
        is committed, so ingest may acknowledge them."""


class PodStore(Protocol):
    """The reads (and the delete) of the pod routes, and the readiness ping."""

    async def ping(self) -> None:
        """Raise StoreError unless the store answers a trivial read."""

    async def list_pods(self) -> list[PodRecord]:
        """Every known pod, ordered by namespace then pod."""

    async def get_pod(self, key: PodKey) -> PodRecord | None: ...

    async def latest_observations(self, key: PodKey) -> ObservationsRecord | None: ...

    async def observation_history(self, key: PodKey, limit: int) -> list[ObservationsRecord]:
        """Newest first."""

    async def history(self, key: PodKey, limit: int, before_id: int | None = None) -> list[SnapshotRecord]:
        """Stored snapshots of a pod, newest first, at most ``limit``, ids below ``before_id``."""

    async def get_snapshot(self, snapshot_id: int) -> SnapshotRecord | None:
        """One stored history row by id."""

    async def pod_events(self, key: PodKey, limit: int) -> list[PodEvent]:
        """The pod's events, newest first."""

    async def delete_pod(self, key: PodKey) -> bool:
        """Delete the pod and everything stored for it (history, latest and past observations);
        False when it was not known. Findings and baselines naming it are left as they are."""


class EvaluationStore(Protocol):
    """What evaluation on ingest reads and writes: replicas, findings, baselines, stored intents."""

    async def workload_replicas(self, workload: str, since: float, windows: int) -> list[ReplicaRecord]:
        """Pods of ``workload`` seen at or after ``since``, each with its newest ``windows`` observations."""

    async def pod_briefs(self) -> list[PodBrief]: ...

    async def active_findings(self, workload: str) -> list[FindingRecord]:
        """Pending and open findings of a workload."""

    async def apply_findings(self, changes: Sequence[FindingChange]) -> list[FindingRecord]:
        """Write finding changes in one transaction; returns the written rows (new ones with ids)."""

    async def save_baseline(self, baseline: Baseline) -> Baseline: ...

    async def latest_baseline(self, workload: str) -> Baseline | None: ...

    async def list_intents(self) -> list[IntentRecord]: ...


@dataclass(frozen=True)
class ProbeRecord:
    """One stored probe result: the probe's document (``skewwatch.probe/v1``, redacted) as posted
    for ``workload``, and when the collector received it (its own clock)."""

    id: int
    workload: str
    recorded_at: float
    verdict: str
    document: Mapping[str, Any]


class ProbeStore(Protocol):
    """The probe results of each workload (``probe_results``), bounded per workload."""

    async def add_probe_result(
        self, workload: str, recorded_at: float, verdict: str, document: Mapping[str, Any], keep: int
    ) -> ProbeRecord:
        """Store one result, then keep only the ``keep`` newest of ``workload``; one transaction.
        Returns the stored row (with its id)."""

    async def probe_results(self, workload: str, limit: int) -> list[ProbeRecord]:
        """The newest ``limit`` results of ``workload``, newest (highest id) first."""

    async def get_probe_result(self, probe_id: int) -> ProbeRecord | None: ...


class QueryStore(PodStore, EvaluationStore, ProbeStore, Protocol):
    """What the drift queries read and write beyond evaluation's: findings, baselines, intents."""

    async def list_findings(self, query: FindingQuery) -> list[FindingRecord]:
        """At most ``query.limit`` findings matching every filter of it, newest (highest id) first."""

    async def get_finding(self, finding_id: int) -> tuple[FindingRecord, list[FindingEvent]] | None: ...

    async def set_finding_note(
        self, finding_id: int, field: str, value: Mapping[str, Any] | None, event: str, at: float
    ) -> FindingRecord | None:
        """Set ``ack`` or ``silence`` of a finding (None clears); None when there is no such finding."""

    async def open_finding_counts(self, now: float | None = None) -> dict[str, dict[str, int]]:
        """workload -> severity -> number of open findings."""

    async def list_baselines(
        self, workload: str | None = None, limit: int = 1000, namespace: str | None = None
    ) -> list[Baseline]:
        """Newest first; without ``workload``, the latest of each workload (ordered by workload);
        with ``namespace``, only workloads in it."""

    async def delete_baselines(self, workload: str) -> list[Baseline]:
        """Delete every baseline of ``workload`` (nothing else); the deleted rows, newest first."""

    async def put_intent(self, record: IntentRecord) -> bool:
        """Create or replace; True when it was created."""

    async def delete_intent(self, kind: str, name: str) -> bool: ...


class ClusterStore(Protocol):
    """What the cluster watch keeps: each workload's pod-template revisions (collector.domain.cluster)."""

    async def put_revisions(self, revisions: Sequence[RevisionTemplate], keep: int) -> int:
        """Insert or refresh (by workload and template hash) these revisions, then keep only the
        ``keep`` newest of each workload they name; returns how many were new."""

    async def workload_revisions(self, workload: str) -> list[RevisionTemplate]:
        """The stored revisions of ``workload``, newest first."""


class RetentionStore(Protocol):
    """The bound on history: the collector's retention task calls it, never ingest."""

    async def prune(self, now: float, retention: Retention, max_rows: int = 5000) -> PruneResult:
        """Delete what ``retention`` no longer keeps, at most about ``max_rows`` rows per table in
        short transactions (ingest is never held for long); ``done`` False when more is left."""


class Store(RecordingStore, PodStore, RetentionStore, Protocol):
    """A backend's lifecycle, ingest's writes and the pod reads. All writes are single transactions."""

    url: str

    async def open(self) -> None:
        """Connect and migrate the schema; raises StoreError."""

    async def close(self) -> None:
        """Release every connection and thread; idempotent."""


class FullStore(Store, QueryStore, ClusterStore, Protocol):
    """Everything a backend implements (SQLite and PostgreSQL)."""
