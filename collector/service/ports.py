"""What the service layer needs from the outside, declared here so it imports no store and no edge.

Each service states the store methods it calls (``RecordingStore``, ``PodStore``,
``EvaluationStore``, ``QueryStore``); ``collector.store``'s backends satisfy them structurally
(``collector.main`` hands one in, and mypy checks that it fits). ``LiveStreams`` is what the pod
queries read of the ingest's live streams (``collector.ingest.registry.StreamRegistry``).
The edges import this module, never ``collector.store``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from collector.domain.baseline import Baseline
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
    ReplicaRecord,
    SnapshotRecord,
    SnapshotWrite,
)
from skewwatch.core.facts import FactValue, Fingerprint, Observation, Provenance, SourceStatus
from skewwatch.core.identity import PodIdentity, PodKey


class RecordingStore(Protocol):
    """The writes of agent messages; each one transaction, committed when it returns."""

    async def hello(self, identity: PodIdentity, sequence: int, received_at: float) -> None: ...

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
    ) -> SnapshotWrite: ...

    async def record_heartbeat(
        self, key: PodKey, sequence: int, overall_fingerprint: str, received_at: float
    ) -> HeartbeatResult: ...

    async def record_engine_state(
        self, identity: PodIdentity, sequence: int, engine: EngineState, received_at: float
    ) -> None: ...

    async def record_event(
        self, identity: PodIdentity, sequence: int, at: float, kind: str, detail: Mapping[str, Any]
    ) -> None: ...

    async def record_observations(
        self,
        identity: PodIdentity,
        sequence: int,
        *,
        items: Mapping[str, Observation],
        at: float,
        window_s: float,
        received_at: float,
    ) -> None: ...


class PodStore(Protocol):
    """The reads (and the delete) of the pod routes, and the readiness ping."""

    async def ping(self) -> None: ...

    async def list_pods(self) -> list[PodRecord]: ...

    async def get_pod(self, key: PodKey) -> PodRecord | None: ...

    async def latest_observations(self, key: PodKey) -> ObservationsRecord | None: ...

    async def history(
        self, key: PodKey, limit: int, before_id: int | None = None
    ) -> list[SnapshotRecord]: ...

    async def get_snapshot(self, snapshot_id: int) -> SnapshotRecord | None: ...

    async def pod_events(self, key: PodKey, limit: int) -> list[PodEvent]: ...

    async def delete_pod(self, key: PodKey) -> bool: ...


class EvaluationStore(Protocol):
    """What evaluation on ingest reads and writes: replicas, findings, baselines, stored intents."""

    async def workload_replicas(self, workload: str, since: float, windows: int) -> list[ReplicaRecord]: ...

    async def pod_briefs(self) -> list[PodBrief]: ...

    async def active_findings(self, workload: str) -> list[FindingRecord]: ...

    async def apply_findings(self, changes: Sequence[FindingChange]) -> list[FindingRecord]: ...

    async def save_baseline(self, baseline: Baseline) -> Baseline: ...

    async def latest_baseline(self, workload: str) -> Baseline | None: ...

    async def list_intents(self) -> list[IntentRecord]: ...


class QueryStore(PodStore, EvaluationStore, Protocol):
    """What the drift queries read and write beyond evaluation's: findings, baselines, intents."""

    async def list_findings(self, query: FindingQuery) -> list[FindingRecord]: ...

    async def get_finding(self, finding_id: int) -> tuple[FindingRecord, list[FindingEvent]] | None: ...

    async def set_finding_note(
        self, finding_id: int, field: str, value: Mapping[str, Any] | None, event: str, at: float
    ) -> FindingRecord | None: ...

    async def open_finding_counts(self, now: float | None = None) -> dict[str, dict[str, int]]: ...

    async def list_baselines(self, workload: str | None = None, limit: int = 1000) -> list[Baseline]: ...

    async def put_intent(self, record: IntentRecord) -> bool: ...

    async def delete_intent(self, kind: str, name: str) -> bool: ...


class Described(Protocol):
    """One live stream of a pod (``collector.ingest.registry.Claim``)."""

    def describe(self) -> str: ...

    def as_dict(self) -> dict[str, Any]: ...


class AsDict(Protocol):
    def as_dict(self) -> dict[str, Any]: ...


class LiveStreams(Protocol):
    """The ingest's live streams as the pod queries read them (``StreamRegistry``)."""

    def live(self, key: PodKey) -> Sequence[Described]: ...

    def conflicts(self, key: PodKey) -> AsDict: ...

    def forget(self, key: PodKey) -> None: ...

    def readiness(self) -> dict[str, Any]: ...
