"""Recording agent messages: the store writes of the ingest, each followed by its evaluation hook.

``Recorder`` is what an ingest session calls (so the edge imports no store). Each method returns
once its write is committed; for a snapshot, a matching heartbeat and observations it then calls
``on_commit(identity, kind)`` (the drift service's ``notify``), before the session sends its ack.
A write that raises calls nothing and nothing is acknowledged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from collector.domain.records import EngineState, HeartbeatResult, SnapshotWrite
from collector.service.events import NO_EVENTS, ServiceEvents
from collector.store.base import RecordingStore
from skewwatch.core.facts import FactValue, Fingerprint, Observation, Provenance, SourceStatus
from skewwatch.core.identity import PodIdentity

# Called after a snapshot, heartbeat or observations message is committed, with the pod and the
# message kind ("snapshot" | "heartbeat" | "observations"); the drift service schedules its
# evaluation there. It must not block: it runs before the ack is sent.
CommitHook = Callable[[PodIdentity, str], None]


class Recorder:
    """Agent messages recorded in a store; ``on_commit`` after each write evaluation depends on."""

    def __init__(
        self, store: RecordingStore, on_commit: CommitHook | None = None, events: ServiceEvents = NO_EVENTS
    ) -> None:
        self.store = store
        self.on_commit = on_commit
        self.events = events  # what the ingest reports of each message (durations, store failures)

    def _committed(self, identity: PodIdentity, kind: str) -> None:
        if self.on_commit is not None:
            self.on_commit(identity, kind)

    async def hello(self, identity: PodIdentity, sequence: int, received_at: float) -> None:
        await self.store.hello(identity, sequence, received_at)

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
        result = await self.store.record_snapshot(
            identity,
            sequence,
            facts=facts,
            provenance=provenance,
            sources=sources,
            fingerprint=fingerprint,
            collected_at=collected_at,
            received_at=received_at,
        )
        self.events.snapshot_received()
        self._committed(identity, "snapshot")
        return result

    async def record_heartbeat(
        self, identity: PodIdentity, sequence: int, overall_fingerprint: str, received_at: float
    ) -> HeartbeatResult:
        """Only a heartbeat that matched the stored configuration is a commit worth evaluating."""
        outcome = await self.store.record_heartbeat(identity.key, sequence, overall_fingerprint, received_at)
        if outcome is HeartbeatResult.OK:
            self._committed(identity, "heartbeat")
        return outcome

    async def record_engine_state(
        self, identity: PodIdentity, sequence: int, engine: EngineState, received_at: float
    ) -> None:
        await self.store.record_engine_state(identity, sequence, engine, received_at)

    async def record_event(
        self, identity: PodIdentity, sequence: int, at: float, kind: str, detail: Mapping[str, Any]
    ) -> None:
        await self.store.record_event(identity, sequence, at, kind, detail)

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
        await self.store.record_observations(
            identity, sequence, items=items, at=at, window_s=window_s, received_at=received_at
        )
        self._committed(identity, "observations")
