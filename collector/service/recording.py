"""Recording agent messages: group-committed store writes, each followed by its evaluation hook.

``Recorder`` is what an ingest session calls (so the edge imports no store). Each method returns
once its write is committed; for a snapshot, a matching heartbeat and observations it then calls
``on_commit(identity, kind)`` (the drift service's ``notify``, which only schedules: evaluation
runs later, coalesced per workload, and never holds up the acknowledgement). A write that
raises calls nothing and nothing is acknowledged.

Group commit (``GroupCommit``): the writes of every stream go to one queue; one task takes up to
``max_batch`` of them, waiting at most ``max_wait_s`` for a batch to fill, and hands them to the
store's ``record_batch``, one transaction. Each write's caller is answered only once that
transaction committed; a write the store refused alone fails alone, a failed commit fails the
whole batch with ``StoreError`` (the streams end UNAVAILABLE, their agents retry, nothing was
acknowledged). While one batch commits the next one fills, so under load a commit (one fsync on
SQLite) carries hundreds of messages instead of one.

Shedding: when ``max_pending`` writes already wait, a new one is refused at once with
``WriteShedError`` (the stream ends RESOURCE_EXHAUSTED with a retry hint) rather than queued:
a rollout or a collector restart must not grow memory and latency without bound. ``readiness``
reports the queue and says overloaded while it is nearly full or shed recently.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from collector.domain.records import (
    EngineState,
    EngineStateIn,
    EventIn,
    HeartbeatIn,
    HeartbeatResult,
    HelloWrite,
    ObservationsIn,
    SnapshotIn,
    SnapshotWrite,
    Write,
    WriteResult,
)
from collector.errors import StoreError, WriteShedError
from collector.service.events import NO_EVENTS, ServiceEvents
from collector.store.base import RecordingStore
from skewwatch.core.facts import FactValue, Fingerprint, Observation, Provenance, SourceStatus
from skewwatch.core.identity import PodIdentity

log = logging.getLogger(__name__)

# Called after a snapshot, heartbeat or observations message is committed, with the pod and the
# message kind ("snapshot" | "heartbeat" | "observations"); the drift service schedules its
# evaluation there. It must not block: it runs before the ack is sent.
CommitHook = Callable[[PodIdentity, str], None]


@dataclass(frozen=True)
class CommitSettings:
    """Group commit bounds (``SKEWWATCH_COMMIT_*``, docs/scale.md)."""

    max_batch: int = 512  # writes per transaction
    max_wait_s: float = 0.005  # longest a first write waits for its batch to fill
    max_pending: int = 8192  # queued writes beyond which new ones are shed
    retry_after_s: int = 5  # the hint sent with a shed write (seconds)
    overloaded_for_s: float = 10.0  # /readyz says overloaded this long after a shed write


class GroupCommit:
    """One queue of writes, committed in batches by one task that runs while there is work."""

    def __init__(
        self,
        store: RecordingStore,
        settings: CommitSettings = CommitSettings(),
        events: ServiceEvents = NO_EVENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.settings = settings
        self.events = events
        self.clock = clock
        self._queue: deque[tuple[Write, asyncio.Future[WriteResult]]] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None  # the committing task (done once idle)
        self._closed = False
        self.batches = 0
        self.committed = 0
        self.shed = 0
        self.largest_batch = 0
        self._shed_at: float | None = None

    @property
    def pending(self) -> int:
        return len(self._queue)

    async def submit(self, write: Write) -> WriteResult:
        """Queue ``write``; its result once its batch committed. Raises ``WriteShedError`` when
        the queue is full, ``StoreError`` when the store refused it or its batch failed."""
        if self._closed:
            raise StoreError("the collector is stopping: write not stored")
        s = self.settings
        if len(self._queue) >= s.max_pending:
            self.shed += 1
            self._shed_at = self.clock()
            self.events.write_shed()
            raise WriteShedError(
                f"collector overloaded: {len(self._queue)} writes wait for the store (max_pending "
                f"{s.max_pending}); retry after {s.retry_after_s} s",
                retry_after_s=s.retry_after_s,
            )
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="skewwatch-group-commit")
        future: asyncio.Future[WriteResult] = asyncio.get_running_loop().create_future()
        self._queue.append((write, future))
        self._wake.set()
        return await future

    def readiness(self) -> dict[str, Any]:
        s = self.settings
        recently_shed = self._shed_at is not None and self.clock() - self._shed_at < s.overloaded_for_s
        return {
            "pending": len(self._queue),
            "max_pending": s.max_pending,
            "shed": self.shed,
            "batches": self.batches,
            "committed": self.committed,
            "largest_batch": self.largest_batch,
            "overloaded": recently_shed or (bool(self._queue) and len(self._queue) >= 0.9 * s.max_pending),
        }

    async def close(self) -> None:
        """Commit what is queued, then stop; later writes are refused."""
        self._closed = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _take(self) -> list[tuple[Write, asyncio.Future[WriteResult]]]:
        batch: list[tuple[Write, asyncio.Future[WriteResult]]] = []
        while self._queue and len(batch) < self.settings.max_batch:
            item = self._queue.popleft()
            if not item[1].done():  # a caller cancelled before its batch: not written
                batch.append(item)
        return batch

    async def _run(self) -> None:
        """Commit batches until the queue is empty, then end (``submit`` starts it again): an idle
        collector keeps no task, and one that stops leaves none behind."""
        s = self.settings
        while True:
            if not self._queue:
                return  # no await since the check: a write queued from now on starts a new task
            if len(self._queue) < s.max_batch and not self._closed:
                # Let the streams that are mid-message join this batch (bounded: an ack waits
                # at most max_wait_s more, and only while a batch is not yet full).
                deadline = self.clock() + s.max_wait_s
                while len(self._queue) < s.max_batch and not self._closed:
                    left = deadline - self.clock()
                    if left <= 0:
                        break
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), left)
            batch = self._take()
            if batch:
                await self._commit(batch)

    async def _commit(self, batch: list[tuple[Write, asyncio.Future[WriteResult]]]) -> None:
        started = time.perf_counter()
        try:
            results = await self.store.record_batch([w for w, _ in batch])
        except Exception as e:  # every caller must get an answer, whatever failed
            error = (
                e if isinstance(e, StoreError) else StoreError(f"batch write failed: {type(e).__name__}: {e}")
            )
            if not isinstance(e, StoreError):
                log.error("group commit: %d writes failed", len(batch), exc_info=e)
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        self.batches += 1
        self.largest_batch = max(self.largest_batch, len(batch))
        self.events.batch_committed(len(batch), time.perf_counter() - started)
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, StoreError):
                future.set_exception(result)
            else:
                self.committed += 1
                future.set_result(result)


class Recorder:
    """Agent messages recorded in a store through one ``GroupCommit``; ``on_commit`` after each
    write evaluation depends on."""

    def __init__(
        self,
        store: RecordingStore,
        on_commit: CommitHook | None = None,
        events: ServiceEvents = NO_EVENTS,
        commit: CommitSettings = CommitSettings(),
    ) -> None:
        self.store = store
        self.on_commit = on_commit
        self.events = events  # what the ingest reports of each message (durations, store failures)
        self.group = GroupCommit(store, commit, events)

    async def close(self) -> None:
        await self.group.close()

    def _committed(self, identity: PodIdentity, kind: str) -> None:
        if self.on_commit is not None:
            self.on_commit(identity, kind)

    async def hello(self, identity: PodIdentity, sequence: int, received_at: float) -> None:
        await self.group.submit(HelloWrite(identity, sequence, received_at))

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
        result = await self.group.submit(
            SnapshotIn(identity, sequence, facts, provenance, sources, fingerprint, collected_at, received_at)
        )
        assert isinstance(result, SnapshotWrite)
        self.events.snapshot_received()
        self._committed(identity, "snapshot")
        return result

    async def record_heartbeat(
        self, identity: PodIdentity, sequence: int, overall_fingerprint: str, received_at: float
    ) -> HeartbeatResult:
        """Only a heartbeat that matched the stored configuration is a commit worth evaluating."""
        outcome = await self.group.submit(HeartbeatIn(identity, sequence, overall_fingerprint, received_at))
        assert isinstance(outcome, HeartbeatResult)
        if outcome is HeartbeatResult.OK:
            self._committed(identity, "heartbeat")
        return outcome

    async def record_engine_state(
        self, identity: PodIdentity, sequence: int, engine: EngineState, received_at: float
    ) -> None:
        await self.group.submit(EngineStateIn(identity, sequence, engine, received_at))

    async def record_event(
        self, identity: PodIdentity, sequence: int, at: float, kind: str, detail: Mapping[str, Any]
    ) -> None:
        await self.group.submit(EventIn(identity, sequence, at, kind, detail))

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
        await self.group.submit(ObservationsIn(identity, sequence, items, at, window_s, received_at))
        self._committed(identity, "observations")
