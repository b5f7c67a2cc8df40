"""Pod queries: the pods the collector knows, one pod with its latest observations, its stored
history page with the restarts beside it, deleting a pod, and the readiness of the store, the
ingest's streams and its write queue. Results are typed (``PodView``, ``PodHistory``); ``collector.api.views``
serialises them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from collector.domain.records import ObservationsRecord, PodEvent, PodRecord, SnapshotRecord
from collector.errors import ConflictError, NotFoundError
from collector.service.evaluation import DriftService, DriftSettings
from collector.service.ports import AsDict, Described, LiveStreams
from collector.service.recording import GroupCommit
from collector.store.base import PodStore
from skewwatch.core.identity import PodKey

log = logging.getLogger(__name__)

JSON = dict[str, Any]
MAX_HISTORY_LIMIT = 1000

NO_CONFLICTS: JSON = {
    "count": 0,
    "last_refused_at": None,
    "last_claimant_peer": None,
    "last_claimant_agent_id": None,
    "last_claimant_instance_id": None,
}


@dataclass(frozen=True)
class Liveness:
    """A pod's liveness as the collector sees it now (not stored)."""

    now: float
    stale_s: float
    # The pod's live agent streams, oldest first: agent_id, instance_id, peer, since.
    streams: Sequence[JSON] = ()
    conflicts: JSON = field(default_factory=lambda: dict(NO_CONFLICTS))

    def fields(self, rec: PodRecord) -> JSON:
        age = max(0.0, self.now - rec.last_seen)
        return {"stale": age > self.stale_s, "last_seen_age_s": round(age, 3)}


@dataclass(frozen=True)
class PodView:
    """One pod: its stored record, its liveness now and (for the detail) its latest observations."""

    record: PodRecord
    liveness: Liveness
    observations: ObservationsRecord | None = None


@dataclass(frozen=True)
class PodHistory:
    """A page of a pod's stored configurations, newest first, with the events beside them.

    ``rows`` holds up to ``limit + 1`` rows: the extra, oldest one is only the base the oldest
    shown row's changes are computed against."""

    key: PodKey
    rows: Sequence[SnapshotRecord]
    limit: int
    events: Sequence[PodEvent]
    include_facts: bool = False

    @property
    def shown(self) -> Sequence[SnapshotRecord]:
        return self.rows[: self.limit]

    @property
    def next_before(self) -> int | None:
        """Pass as ``?before=`` to page further back; None when this page reaches the first."""
        shown = self.shown
        return shown[-1].id if len(self.rows) > self.limit and shown else None


class _Conflicts:
    def as_dict(self) -> JSON:
        return dict(NO_CONFLICTS)


class NoStreams:
    """``LiveStreams`` of an API served without ingest (tests, tools): nothing ever streams."""

    def live(self, key: PodKey) -> Sequence[Described]:
        return ()

    def conflicts(self, key: PodKey) -> AsDict:
        return _Conflicts()

    def forget(self, key: PodKey) -> None:
        pass

    def readiness(self) -> JSON:
        return {
            "in_use": 0,
            "limit": None,
            "per_address_limit": None,
            "headroom": None,
            "saturated": False,
            "addresses": 0,
            "busiest_address": None,
            "refused": {"max_streams": 0, "max_streams_per_address": 0},
            "cut": {"hello_timeout": 0, "first_report_timeout": 0, "idle_timeout": 0},
            "identity_conflicts": 0,
        }


class Pods:
    """Pod queries over a store and the ingest's live streams; with ``drift``, its clock and stale
    threshold, and a deleted pod's workload evaluated again."""

    def __init__(
        self,
        store: PodStore,
        streams: LiveStreams | None = None,
        drift: DriftService | None = None,
        writes: GroupCommit | None = None,
    ) -> None:
        self.store = store
        self.writes = writes  # the ingest's group commit: its queue tells /readyz of overload
        self.streams: LiveStreams = streams if streams is not None else NoStreams()
        self.drift = drift
        self.clock: Callable[[], float] = drift.clock if drift is not None else time.time
        self.stale_s = (drift.settings if drift is not None else DriftSettings()).replica_stale_s

    # -- readiness -------------------------------------------------------------------------------

    async def ping(self, timeout_s: float) -> None:
        """Raise StoreError (or TimeoutError) unless the store answers within ``timeout_s``."""
        await asyncio.wait_for(self.store.ping(), timeout=timeout_s)

    def streams_readiness(self) -> JSON:
        return self.streams.readiness()

    def writes_readiness(self) -> JSON | None:
        """The ingest's write queue (``GroupCommit.readiness``); None without ingest."""
        return self.writes.readiness() if self.writes is not None else None

    # -- queries ---------------------------------------------------------------------------------

    def liveness(self, key: PodKey) -> Liveness:
        return Liveness(
            now=self.clock(),
            stale_s=self.stale_s,
            streams=[c.as_dict() for c in self.streams.live(key)],
            conflicts=self.streams.conflicts(key).as_dict(),
        )

    async def list(self) -> list[PodView]:
        return [PodView(p, self.liveness(p.key)) for p in await self.store.list_pods()]

    async def _known(self, key: PodKey) -> PodRecord:
        rec = await self.store.get_pod(key)
        if rec is None:
            raise NotFoundError(f"pod {key} is not known to this collector")
        return rec

    async def get(self, key: PodKey) -> PodView:
        rec = await self._known(key)
        obs = await self.store.latest_observations(key)
        return PodView(rec, self.liveness(key), obs)

    async def history(
        self, key: PodKey, limit: int, before: int | None = None, *, include_facts: bool = False
    ) -> PodHistory:
        await self._known(key)
        # One extra, older row: the base the oldest shown snapshot's changes are computed against.
        rows = await self.store.history(key, limit + 1, before_id=before)
        # Restarts are events beside the configurations: a page shows those from its oldest snapshot
        # up to the snapshot it pages back from (the newer page's oldest).
        shown = rows[:limit]
        lo = shown[-1].received_at if len(rows) > limit and shown else 0.0
        newer = await self.store.get_snapshot(before) if before is not None else None
        hi = newer.received_at if newer is not None else float("inf")
        page = [e for e in await self.store.pod_events(key, MAX_HISTORY_LIMIT) if lo <= e.at < hi]
        return PodHistory(key, rows, limit, page, include_facts)

    async def observations(self, key: PodKey, limit: int) -> Sequence[ObservationsRecord]:
        """The pod's last ``limit`` stored observation windows, newest first (its time series)."""
        await self._known(key)
        return await self.store.observation_history(key, limit)

    # -- mutations -------------------------------------------------------------------------------

    async def delete(self, key: PodKey) -> None:
        """Delete a pod and its stored history; refused (ConflictError) while an agent streams for it."""
        rec = await self.store.get_pod(key)
        # No await between this check and queueing the delete: a Hello registers its stream before
        # its own write is queued, so either it is seen here (409) or its write lands after ours.
        live = self.streams.live(key)
        if live:
            raise ConflictError(
                f"pod {key} has a live agent stream right now ({live[0].describe()}); deleted, it would "
                "come back at once: stop that agent first, then delete"
            )
        if rec is None or not await self.store.delete_pod(key):
            raise NotFoundError(f"pod {key} is not known to this collector")
        self.streams.forget(key)
        log.info("pod %s deleted with its stored history", key)
        if self.drift is not None:
            self.drift.notify(rec.identity, "snapshot")  # its workload lost a replica: evaluate it again
