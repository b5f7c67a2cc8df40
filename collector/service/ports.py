"""What the service layer reads of an edge, declared here so that it imports none.

``LiveStreams`` is what the pod queries read of the ingest's live streams
(``collector.ingest.registry.StreamRegistry`` satisfies it; ``collector.main`` hands it in). The
store's interfaces, one protocol per role, are ``collector.store.base``'s.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from skewwatch.core.identity import PodKey


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


class Ownership(Protocol):
    """Which collector evaluates a workload when several share one store
    (``collector.store.postgresql``: session advisory locks, NOTIFY to the owner).

    A workload is owned by one collector at a time; the others hand their changes of it over to
    the owner. An owner that dies loses its locks with its database session, and the next
    collector to try takes them."""

    async def own(self, workloads: Sequence[str]) -> set[str]:
        """Those of ``workloads`` this collector owns now (taking free ones)."""

    async def hand_over(self, workload: str) -> None:
        """Tell the collector owning ``workload`` that it changed (it evaluates it)."""

    def listen(self, changed: Callable[[str], None]) -> None:
        """Call ``changed(workload)`` on the event loop when another collector hands one over."""

    async def check(self) -> None:
        """Verify the ownership session still holds; if it was lost, own nothing (raises StoreError)."""

    def owned(self) -> set[str]: ...
