"""What the cluster watch found, held for the evaluation and the queries.

The cluster edge (``collector.cluster.watch``) calls :meth:`ClusterState.update` with one
namespace's workload facts, inference pools and pod-template revisions each time what it watches
there changed. The current facts and pools are kept in memory (the watch rebuilds them after a
restart from a fresh list); revisions are kept in the store, at most ``keep`` per workload, so
that a revision whose ReplicaSet was garbage-collected can still be diffed. A workload whose facts
changed (or a pool whose selector did) is scheduled for evaluation.

``status`` is the watch's own report (per kind: ok / unavailable / error with a message), served
by ``GET /api/v1/cluster``. ``revision_history`` adds to each stored revision when this store first
and last heard of it (the queries' revision list shows both).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from collector.domain.cluster import ClusterFacts, PoolMembers, RevisionTemplate
from collector.store.base import ClusterStore
from collector.store.sql import StoredRevision
from skewwatch.core.fingerprint import canonical

UNAVAILABLE_NOT_STARTED = "the cluster watch has not run yet"


def _signature(cf: ClusterFacts) -> tuple[Any, ...]:
    return (
        tuple(sorted((k, canonical(v)) for k, v in cf.facts.items())),
        cf.status.state.value,
        tuple(sorted(cf.revisions.items())),
        cf.current_revision,
    )


@runtime_checkable
class RevisionHistoryStore(Protocol):
    """A ``ClusterStore`` that also says when each revision was first and last seen (both SQL
    backends are one)."""

    async def revision_history(self, workload: str) -> list[StoredRevision]: ...


class ClusterState:
    """Current cluster facts per workload and inference pools per namespace (in memory), revision
    templates (in the store), and the watch's report."""

    def __init__(
        self,
        store: ClusterStore,
        schedule: Callable[[str], None],
        *,
        keep: int = 20,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.schedule = schedule
        self.keep = keep
        self.clock = clock
        self._facts: dict[str, ClusterFacts] = {}
        self._by_namespace: dict[str, set[str]] = {}
        self._pools: dict[str, list[PoolMembers]] = {}
        self._status: dict[str, Any] = {
            "available": False,
            "message": UNAVAILABLE_NOT_STARTED,
            "namespaces": {},
        }

    # -- what the watch hands in ---------------------------------------------------------------

    async def update(
        self,
        namespace: str,
        facts: Sequence[ClusterFacts],
        pools: Sequence[PoolMembers] = (),
        revisions: Sequence[RevisionTemplate] = (),
    ) -> None:
        """Replace what is known of ``namespace``: every workload there has these facts (one not
        named has none any more), these pools select its pods, these revisions exist."""
        if revisions:
            await self.store.put_revisions(revisions, self.keep)
        seen: set[str] = set()
        for cf in facts:
            seen.add(cf.workload)
            old = self._facts.get(cf.workload)
            self._facts[cf.workload] = cf
            if old is None or _signature(old) != _signature(cf):
                self.schedule(cf.workload)
        for gone in self._by_namespace.get(namespace, set()) - seen:
            del self._facts[gone]
            self.schedule(gone)
        self._by_namespace[namespace] = seen
        old_pools = {p.pool: p for p in self._pools.get(namespace, [])}
        new_pools = {p.pool: p for p in pools}
        for name in sorted(old_pools.keys() | new_pools.keys()):
            if old_pools.get(name) != new_pools.get(name):
                self.schedule(name)
        self._pools[namespace] = list(pools)

    def set_status(self, status: dict[str, Any]) -> None:
        self._status = status

    # -- what the evaluation and the queries read ----------------------------------------------

    def facts(self, workload: str) -> ClusterFacts | None:
        return self._facts.get(workload)

    def pools(self, namespace: str | None = None) -> list[PoolMembers]:
        if namespace is not None:
            return list(self._pools.get(namespace, []))
        return [p for ps in self._pools.values() for p in ps]

    def pool(self, pool_id: str) -> PoolMembers | None:
        return next((p for p in self.pools() if p.pool == pool_id), None)

    def status(self) -> dict[str, Any]:
        return self._status

    async def revisions(self, workload: str) -> list[RevisionTemplate]:
        """The workload's stored revisions, newest first."""
        return await self.store.workload_revisions(workload)

    async def revision_history(
        self, workload: str
    ) -> list[tuple[RevisionTemplate, float | None, float | None]]:
        """The workload's stored revisions, newest first, each with when the store first and last
        heard of it (None from a store that does not keep it)."""
        if isinstance(self.store, RevisionHistoryStore):
            return [
                (s.template, s.first_seen, s.last_seen) for s in await self.store.revision_history(workload)
            ]
        return [(t, None, None) for t in await self.store.workload_revisions(workload)]
