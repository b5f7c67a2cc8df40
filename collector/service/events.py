"""What the service layer tells an observer as it happens: findings opened and resolved,
snapshots received, store failures, how long an evaluation or an ingested message took.

``ServiceEvents`` does nothing; ``collector.telemetry`` subclasses it to count and time, and
``collector.main`` hands its instance to the ``DriftService`` and the ``Recorder``. Each method
must be cheap and must not raise: it runs on the ingest and evaluation paths.
"""

from __future__ import annotations

from collector.domain.model import FindingRecord


class ServiceEvents:
    """The no-op observer; override what you count."""

    def finding_opened(self, finding: FindingRecord) -> None:
        """A finding went open (past its debounce)."""

    def finding_resolved(self, finding: FindingRecord) -> None:
        """An open finding resolved (``finding.resolution``: fixed | gone)."""

    def snapshot_received(self) -> None:
        """A snapshot was committed."""

    def store_failed(self, where: str) -> None:
        """A store operation raised ``StoreError`` (``where``: ingest | evaluation)."""

    def evaluated(self, duration_s: float) -> None:
        """One workload evaluation (load, evaluate, reconcile, write) took ``duration_s``."""

    def ingested(self, kind: str, duration_s: float) -> None:
        """One agent message of ``kind`` was handled (decoded, stored, hooked) in ``duration_s``."""

    def batch_committed(self, writes: int, duration_s: float) -> None:
        """One group-commit transaction of ``writes`` agent messages took ``duration_s``."""

    def write_shed(self) -> None:
        """An agent message was refused unstored because too many waited for the store."""

    def refused(self, surface: str, reason: str) -> None:
        """A stream or request was refused for its credentials (``surface``: grpc | api;
        ``reason``: unauthenticated | forbidden | identity)."""

    def limit_exceeded(self, limit: str) -> None:
        """An input was refused for being over the limit named ``limit`` (docs/collector-limits.md)."""


NO_EVENTS = ServiceEvents()
