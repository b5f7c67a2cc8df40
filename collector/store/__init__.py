"""Where the collector keeps pods, snapshots and observations: a Protocol and its backends."""

from collector.domain.records import (
    HeartbeatResult,
    ObservationsRecord,
    PodRecord,
    SnapshotRecord,
    SnapshotWrite,
)
from collector.store.base import Store
from collector.store.url import parse_store_url
from skewwatch.core.identity import PodIdentity, PodKey

__all__ = [
    "HeartbeatResult",
    "ObservationsRecord",
    "PodIdentity",
    "PodKey",
    "PodRecord",
    "SnapshotRecord",
    "SnapshotWrite",
    "Store",
    "parse_store_url",
]
