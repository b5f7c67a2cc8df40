"""The store interface the collector talks to, and the records it reads back.

Every backend (SQLite now, PostgreSQL later) implements ``Store``. Methods are async because the
collector is asyncio; a backend runs its blocking work off the event loop. Each write method is
one transaction: when it returns, the write is committed (so the ingest layer may acknowledge);
when it raises ``StoreError``, nothing stored was changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

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
class PodRecord:
    identity: PodIdentity
    first_seen: float
    last_seen: float
    last_sequence: int
    # The history row holding this configuration; None until the first snapshot.
    current_snapshot_id: int | None
    current: CurrentState | None

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
