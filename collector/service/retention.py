"""Retention in the background: the store drops history past its bounds every interval.

``Pruner`` calls the store's ``prune`` (short transactions of bounded size) until it reports
done, yielding between calls so ingest's group commits interleave, then sleeps for the
interval. A failure is logged and counted, never fatal: history is bounded again on the next
pass, and nothing a pass deletes is what a live pod's current state needs (the store keeps each
pod's current snapshot row; pods are deleted only once not heard from for ``pod_days``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from collector.domain.records import PruneResult, Retention
from collector.errors import StoreError
from collector.service.events import NO_EVENTS, ServiceEvents
from collector.store.base import RetentionStore

log = logging.getLogger(__name__)


class Pruner:
    def __init__(
        self,
        store: RetentionStore,
        retention: Retention,
        interval_s: float,
        *,
        max_rows: int = 5000,
        clock: Callable[[], float] = time.time,
        events: ServiceEvents = NO_EVENTS,
    ) -> None:
        self.store = store
        self.retention = retention
        self.interval_s = interval_s
        self.max_rows = max_rows
        self.clock = clock
        self.events = events
        self.deleted = PruneResult()
        self.passes = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="skewwatch-retention")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def prune_once(self) -> PruneResult:
        """One full pass: prune until the store says done; the rows deleted, per table."""
        total = PruneResult()
        while True:
            total += await self.store.prune(self.clock(), self.retention, self.max_rows)
            if total.done:
                break
            await asyncio.sleep(0)  # let queued ingest batches commit between short transactions
        self.passes += 1
        self.deleted += total
        if total.snapshots or total.observations or total.pods:
            log.info(
                "retention: deleted %d snapshot rows, %d observation windows and %d pods gone for "
                "longer than the retention",
                total.snapshots,
                total.observations,
                total.pods,
            )
        return total

    async def _run(self) -> None:
        while True:
            try:
                await self.prune_once()
            except StoreError as e:
                self.events.store_failed("retention")
                log.warning("retention: prune failed, retried in %g s: %s", self.interval_s, e)
            await asyncio.sleep(self.interval_s)
