"""The periodic missed-injection check: list pods and namespaces, classify, keep the report.

Every ``interval_s`` (``SKEWWATCH_INJECTION_CHECK_INTERVAL``; 0: never) the check loads the
credentials (:func:`collector.cluster.kube.load_config`), lists every pod and namespace, and
asks ``collector.service.injection.classify`` which opted-in pods have no agent reporting to
this collector. Without credentials the report says so (``available: false``) and nothing else
is affected; after a failed check the next waits twice as long (up to ``MAX_BACKOFF_S``), the
report naming the failure.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from collector.cluster.errors import ClusterError, ClusterUnavailable
from collector.cluster.kube import SERVICE_ACCOUNT, KubeClient, load_config
from collector.service.injection import (
    DEFAULT_GRACE_S,
    InjectionReport,
    classify,
    namespace_labels,
    reporting_pods,
    slim_namespace,
    slim_pod,
    unavailable,
)
from collector.service.pods import Pods
from skewwatch.kubeconfig import KubeConfig

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 600.0
CHECK_TIMEOUT_S = 120.0  # one whole check (every page of both lists)
NOT_STARTED = "the first check has not run yet"
OFF = "off (SKEWWATCH_INJECTION_CHECK_INTERVAL=0)"


class InjectionCheck:
    """The latest :class:`InjectionReport` (``report()``), kept fresh by ``start()`` until ``stop()``."""

    def __init__(
        self,
        pods: Pods,
        *,
        interval_s: float = 60.0,
        grace_s: float = DEFAULT_GRACE_S,
        sa_root: Path = SERVICE_ACCOUNT,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
        client: Callable[[KubeConfig], KubeClient] = KubeClient,
    ) -> None:
        self.pods = pods
        self.interval_s = interval_s
        self.grace_s = grace_s
        self.sa_root = sa_root
        self.environ: Mapping[str, str] = environ if environ is not None else {}
        self.clock = clock
        self.client = client
        self._report = unavailable(OFF if interval_s <= 0 else NOT_STARTED)
        self._task: asyncio.Task[None] | None = None
        self.failures = 0

    def report(self) -> InjectionReport:
        return self._report

    async def check(self) -> InjectionReport:
        """Run one check now; the report it returns is also the one ``report()`` gives."""
        try:
            # asyncio.timeout, not wait_for: 3.11's wait_for returns the result of a check that
            # finished as the task was cancelled and drops the cancellation, and the loop then
            # slept its full interval inside Collector.stop().
            async with asyncio.timeout(CHECK_TIMEOUT_S):
                report = await self._check()
            self.failures = 0
        except ClusterUnavailable as e:
            report = unavailable(str(e), self.clock())
            self.failures = 0  # nothing to back off from: credentials are read again next time
        except TimeoutError:
            report = unavailable(f"the check took longer than {CHECK_TIMEOUT_S:g} s", self.clock())
            self.failures += 1
        except ClusterError as e:
            report = unavailable(str(e), self.clock())
            self.failures += 1
        if not report.available and report.reason != self._report.reason:
            # Outside a cluster (no credentials) is a normal state, said once; a failure is a warning.
            level = logging.INFO if self.failures == 0 else logging.WARNING
            log.log(level, "injection check unavailable: %s", report.reason)
        self._report = report
        return report

    async def _check(self) -> InjectionReport:
        config = load_config(self.sa_root, self.environ)
        async with self.client(config) as client:
            namespaces = await client.list_all("/api/v1/namespaces", "list namespaces", slim_namespace)
            pods = await client.list_all("/api/v1/pods", "list pods", slim_pod)
        reporting = await reporting_pods(self.pods)
        return classify(pods, namespace_labels(namespaces), reporting, self.clock(), self.grace_s)

    def next_wait_s(self) -> float:
        """The interval, doubled per consecutive failure, at most ``MAX_BACKOFF_S`` (or the interval)."""
        return min(self.interval_s * 2.0 ** min(self.failures, 16), max(self.interval_s, MAX_BACKOFF_S))

    def start(self) -> None:
        if self.interval_s > 0 and self._task is None:
            self._task = asyncio.create_task(self._run(), name="injection check")

    async def _run(self) -> None:
        while True:
            try:
                await self.check()
            except Exception:  # a bug: log it, keep the collector and the loop alive
                log.exception("injection check failed unexpectedly")
                self.failures += 1
            await asyncio.sleep(self.next_wait_s())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
