"""The cluster watch: every kind of ``KINDS`` in every watched namespace, kept current, derived
into workload facts, revisions and pools, and handed to :class:`ClusterState`.

``ClusterWatch.start()`` loads the credentials (:func:`collector.cluster.kube.load_config`: the
in-cluster service account, else ``KUBECONFIG``); without them the status says so
(``available: false``) and they are looked for again every ``credentials_retry_s``, nothing
else affected. With them it runs, per namespace, one :class:`Reflector` per kind — the
namespaces a fixed list, or asked of a provider every ``namespaces_poll_s`` (those where agents
report) — and a namespace no longer wanted has its reflectors stopped and its facts cleared. One
kind unavailable (a CRD not installed, a 403) never stops the others: derive hears each kind's
status.

A change in a namespace marks it dirty; a debounce task (``debounce_s``) then calls
``derive(namespace, objects, kinds, redactor, now)`` and
``await state.update(namespace, facts, pools, revisions)``; a namespace is first derived once
each kind has listed (or ``initial_wait_s`` passed), not once per kind. ``state.set_status`` is
kept current::

    {"available": bool, "message": str,
     "namespaces": {ns: {kind: {"status", "message", "group_version", "resource_version", "relists"}}}}

The credentials are read again every ``reload_s``: a rotated token is used by the next requests;
another server or CA restarts every reflector with a new client.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collector.cluster import objects
from collector.cluster.errors import ClusterError
from collector.cluster.kube import SERVICE_ACCOUNT, KubeClient, load_config
from collector.cluster.resources import KINDS, Kind
from collector.cluster.watch import (
    BACKOFF_BASE_S,
    BACKOFF_CAP_S,
    DEFAULT_RESYNC_S,
    MAX_OBJECTS,
    WATCH_TIMEOUT_S,
    Keep,
    Reflector,
)
from collector.service.cluster import ClusterState
from skewwatch.core.facts import SourceState, SourceStatus
from skewwatch.kubeconfig import KubeConfig
from skewwatch.redact import Redactor

log = logging.getLogger(__name__)

NamespaceProvider = Callable[[], Awaitable[set[str]]]
Derive = Callable[
    [str, Mapping[str, Mapping[str, Mapping[str, Any]]], Mapping[str, SourceStatus], Redactor, float],
    objects.Derived,
]
STATUS_KEYS = ("status", "message", "group_version", "resource_version", "relists")
NOT_STARTED = "the cluster watch has not started"


@dataclass
class _Namespace:
    reflectors: dict[str, Reflector]
    started_at: float
    error: str = ""  # the last derive / update failure, "" once one succeeded


@dataclass
class _Status:
    available: bool = False
    message: str = NOT_STARTED
    namespaces: dict[str, _Namespace] = field(default_factory=dict)


class ClusterWatch:
    """Watches the cluster for ``state`` from ``start()`` until ``stop()``."""

    def __init__(
        self,
        state: ClusterState,
        *,
        namespaces: Iterable[str] | NamespaceProvider,
        redactor: Redactor,
        resync_s: float = DEFAULT_RESYNC_S,
        sa_root: Path = SERVICE_ACCOUNT,
        environ: Mapping[str, str] | None = None,
        client: Callable[[KubeConfig], KubeClient] = KubeClient,
        clock: Callable[[], float] = time.time,
        kinds: Iterable[Kind] = KINDS,
        derive: Derive = objects.derive,
        keep: Keep = objects.slim,
        debounce_s: float = 0.2,
        namespaces_poll_s: float = 5.0,
        credentials_retry_s: float = 60.0,
        reload_s: float = 60.0,
        initial_wait_s: float = 10.0,
        watch_timeout_s: float = WATCH_TIMEOUT_S,
        max_objects: int = MAX_OBJECTS,
        backoff_base_s: float = BACKOFF_BASE_S,
        backoff_cap_s: float = BACKOFF_CAP_S,
    ) -> None:
        self.state = state
        if callable(namespaces):
            self._provider: NamespaceProvider | None = namespaces
            self._fixed: frozenset[str] = frozenset()
        else:
            self._provider = None
            self._fixed = frozenset(namespaces)
        self.redactor = redactor
        self.resync_s = resync_s
        self.sa_root = sa_root
        self.environ: Mapping[str, str] = environ if environ is not None else {}
        self.client = client
        self.clock = clock
        self.kinds = tuple(kinds)
        self.derive = derive
        # The default keep holds containers' env values and arguments already redacted.
        self.keep = functools.partial(objects.slim, redactor=redactor) if keep is objects.slim else keep
        self.debounce_s = debounce_s
        self.namespaces_poll_s = namespaces_poll_s
        self.credentials_retry_s = credentials_retry_s
        self.reload_s = reload_s
        self.initial_wait_s = initial_wait_s
        self.reflector_options: dict[str, Any] = {
            "resync_s": resync_s,
            "watch_timeout_s": watch_timeout_s,
            "max_objects": max_objects,
            "backoff_base_s": backoff_base_s,
            "backoff_cap_s": backoff_cap_s,
        }
        self._status = _Status()
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.derived = 0  # namespaces derived and handed to the state, all told

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="cluster watch")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def status(self) -> dict[str, Any]:
        """What ``state.set_status`` was last given."""
        s = self._status
        failed = [f"deriving {ns} failed: {n.error}" for ns, n in sorted(s.namespaces.items()) if n.error]
        return {
            "available": s.available,
            "message": "; ".join([s.message, *failed]),
            "namespaces": {
                ns: {
                    kind: {k: v for k, v in r.status.as_dict().items() if k in STATUS_KEYS}
                    for kind, r in sorted(n.reflectors.items())
                }
                for ns, n in sorted(s.namespaces.items())
            },
        }

    def _publish(self, available: bool | None = None, message: str | None = None) -> None:
        if available is not None:
            self._status.available = available
        if message is not None:
            self._status.message = message
        self.state.set_status(self.status())

    # -- credentials and the client -----------------------------------------------------------

    async def _run(self) -> None:
        reason = ""
        while True:
            try:
                config = load_config(self.sa_root, self.environ)
                async with self.client(config) as client:
                    reason = ""
                    await self._serve(client)
                continue  # other credentials: a new client at once
            except ClusterError as e:  # ClusterUnavailable (none here) included
                message = f"no cluster access: {e}"
            except Exception as e:  # a bug: logged, reported, retried; never the end of the collector
                log.exception("cluster watch failed unexpectedly")
                message = f"internal error: {type(e).__name__}: {e}"
            finally:
                await self._stop_all()
            if message != reason:
                log.info("cluster watch unavailable: %s", message)
                reason = message
            self._publish(False, message)
            await asyncio.sleep(self.credentials_retry_s)

    async def _serve(self, client: KubeClient) -> None:
        """Run until the credentials point elsewhere (returns) or the task is cancelled."""
        flusher = asyncio.create_task(self._flush_loop(), name="cluster watch derive")
        loop = asyncio.get_running_loop()
        reload_at = loop.time() + self.reload_s
        try:
            while True:
                wanted = await self._wanted()
                await self._reconcile(client, wanted)
                watching = len(self._status.namespaces)
                message = (
                    f"watching {len(self.kinds)} kinds in {watching} namespaces"
                    if watching
                    else "no namespace to watch yet (none where agents report)"
                )
                self._publish(True, message)
                await asyncio.sleep(self.namespaces_poll_s)
                if loop.time() >= reload_at:
                    reload_at = loop.time() + self.reload_s
                    if not self._reload(client):
                        return
        finally:
            flusher.cancel()
            await asyncio.gather(flusher, return_exceptions=True)

    def _reload(self, client: KubeClient) -> bool:
        """Read the credentials again: a new token is taken up in place (True); another server
        or CA needs a new client (False)."""
        try:
            config = load_config(self.sa_root, self.environ)
        except ClusterError as e:
            log.warning("cluster watch: reading the credentials again failed (keeping the current): %s", e)
            return True
        old = client.config
        if (config.server, config.ca_file, config.ca_data, config.insecure) != (
            old.server,
            old.ca_file,
            old.ca_data,
            old.insecure,
        ):
            log.info("cluster watch: the API server or its CA changed: reconnecting")
            return False
        client.config = config
        return True

    # -- namespaces ----------------------------------------------------------------------------

    async def _wanted(self) -> set[str]:
        if self._provider is None:
            return set(self._fixed)
        try:
            return set(await self._provider())
        except Exception:  # the provider's failure keeps what is watched, and is logged
            log.exception("cluster watch: the namespace provider failed; keeping the current namespaces")
            return set(self._status.namespaces)

    async def _reconcile(self, client: KubeClient, wanted: set[str]) -> None:
        current = self._status.namespaces
        for ns in sorted(set(current) - wanted):
            n = current.pop(ns)
            self._dirty.discard(ns)
            await asyncio.gather(*(r.stop() for r in n.reflectors.values()))
            try:
                await self.state.update(ns, [], [], [])  # nothing is known of it any more
            except Exception:  # a store failure: its facts stay until the next start
                log.exception("cluster watch: clearing namespace %s failed", ns)
            log.info("cluster watch: stopped watching namespace %s", ns)
        loop = asyncio.get_running_loop()
        for ns in sorted(wanted - set(current)):
            reflectors = {
                k.name: Reflector(
                    client, k, ns, keep=self.keep, on_change=self._marker(ns), **self.reflector_options
                )
                for k in self.kinds
            }
            current[ns] = _Namespace(reflectors, loop.time())
            for r in reflectors.values():
                r.start()
            # Derived once every kind has listed; at the latest after initial_wait_s.
            loop.call_later(self.initial_wait_s, self._marker(ns))
            log.info("cluster watch: watching namespace %s", ns)

    def _marker(self, ns: str) -> Callable[[], None]:
        def mark() -> None:
            self._dirty.add(ns)
            self._wake.set()

        return mark

    async def _stop_all(self) -> None:
        namespaces, self._status.namespaces = self._status.namespaces, {}
        self._dirty.clear()
        await asyncio.gather(*(r.stop() for n in namespaces.values() for r in n.reflectors.values()))

    # -- derive --------------------------------------------------------------------------------

    async def _flush_loop(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(self.debounce_s)  # changes arriving together are derived once
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        """Derive every dirty namespace whose kinds have all listed (or waited long enough) and
        hand the result to the state; then publish the status."""
        loop = asyncio.get_running_loop()
        for ns in sorted(self._dirty):
            n = self._status.namespaces.get(ns)
            if n is None:
                self._dirty.discard(ns)
                continue
            statuses = {k: r.status for k, r in n.reflectors.items()}
            pending = any(s.state is SourceState.PENDING for s in statuses.values())
            if pending and loop.time() - n.started_at < self.initial_wait_s:
                continue  # stays dirty: the last kind's list marks it again
            self._dirty.discard(ns)
            kinds = {k: s.source_status() for k, s in statuses.items()}
            found = {k: r.objects for k, r in n.reflectors.items()}
            try:
                d = self.derive(ns, found, kinds, self.redactor, self.clock())
                await self.state.update(ns, d.facts, d.pools, d.revisions)
            except (
                Exception
            ) as e:  # a bug in derive, a store failure: this namespace waits for its next change
                log.exception("cluster watch: deriving namespace %s failed", ns)
                n.error = f"{type(e).__name__}: {e}"
                continue
            n.error = ""
            self.derived += 1
        self._publish()
