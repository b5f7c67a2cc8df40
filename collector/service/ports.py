"""What the service layer reads of an edge, declared here so that it imports none.

``LiveStreams`` is what the pod queries read of the ingest's live streams
(``collector.ingest.registry.StreamRegistry`` satisfies it; ``collector.main`` hands it in). The
store's interfaces, one protocol per role, are ``collector.store.base``'s.
"""

from __future__ import annotations

from collections.abc import Sequence
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
