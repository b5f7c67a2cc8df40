"""One kind in one namespace, kept current from the Kubernetes API: list, then watch.

A :class:`Reflector` does what client-go's reflector does, for the collector's needs:

1. it finds which of the kind's (group, version) candidates the server serves — the first whose
   list is not 404 (``Kind.candidates()``: HTTPRoute ``v1`` then ``v1beta1``, InferencePool's two
   groups); when none is, the kind is *unavailable* ("… not installed (tried …)") and asked
   again every ``resync_s``;
2. it lists the collection (paged) into a dict name → what ``keep`` keeps of each object, so
   that memory holds only slimmed objects, at most ``max_objects`` of them;
3. it watches from the list's resourceVersion: ADDED / MODIFIED / DELETED update the dict, a
   BOOKMARK advances the resourceVersion; a stream the server ended (its ``timeoutSeconds``, a
   restart, a load balancer) is watched again from the last resourceVersion — nothing was
   missed, so nothing is listed again; a 410 Gone (the resourceVersion was compacted away) lists
   again; a connection error waits with exponential backoff and full jitter; a 403 is
   *unavailable* with the grant it lacks, retried with backoff; and the whole is listed again at
   the latest every ``resync_s``.

After every change of what it holds, or of its state, it calls ``on_change()``. ``status`` is
its report (:class:`ReflectorStatus`, which converts to the core's :class:`SourceStatus`).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from collector.cluster.errors import (
    ClusterError,
    ClusterForbidden,
    ClusterGone,
    ClusterNotFound,
    ClusterTooLarge,
)
from collector.cluster.kube import WATCH_READ_MARGIN_S, KubeClient, WatchEvent
from collector.cluster.resources import Kind
from skewwatch.core.facts import SourceState, SourceStatus

log = logging.getLogger(__name__)

DEFAULT_RESYNC_S = 600.0
WATCH_TIMEOUT_S = 300.0  # one watch request; the server ends it, and it is made again from its RV
MAX_OBJECTS = 10_000  # per kind and namespace
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 60.0
MIN_WATCH_S = 1.0  # a stream that ends empty sooner is backed off from
NOT_LISTED = "not listed yet"
RBAC_ROLE = "deploy/base ClusterRole skewwatch-collector"

# What is kept of one object: ``keep(kind_name, obj)``, None when it is not kept at all.
Keep = Callable[[str, Mapping[str, Any]], "dict[str, Any] | None"]


@dataclass(frozen=True)
class ReflectorStatus:
    """Where one reflector stands: ``state`` ok / unavailable / error / pending and why."""

    kind: str
    namespace: str
    state: SourceState
    message: str = ""
    group_version: str = ""  # "apps/v1", "v1" for the core group; "" before discovery
    resource_version: str = ""
    relists: int = 0  # lists after the first (410 Gone, resync, after an error)
    expired: int = 0  # of which after a 410 Gone
    events: int = 0  # watch events seen, bookmarks included
    objects: int = 0

    def source_status(self) -> SourceStatus:
        return SourceStatus(self.kind, self.state, self.message)

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.state.value,
            "message": self.message,
            "group_version": self.group_version,
            "resource_version": self.resource_version,
            "relists": self.relists,
            "events": self.events,
            "objects": self.objects,
        }


def group_version(group: str, version: str) -> str:
    return f"{group}/{version}" if group else version


def resource_name(kind: Kind, group: str) -> str:
    """RBAC's name of the resource: ``deployments.apps``, ``services`` for the core group."""
    return f"{kind.plural}.{group}" if group else kind.plural


class _Resync(Exception):
    """The resync interval is over: list again."""


class _NotInstalled(ClusterNotFound):
    """No candidate (group, version) of the kind is served."""


class Reflector:
    """The objects of one kind in one namespace (``objects``: name → kept object), and ``status``."""

    def __init__(
        self,
        client: KubeClient,
        kind: Kind,
        namespace: str,
        *,
        keep: Keep,
        on_change: Callable[[], None] = lambda: None,
        resync_s: float = DEFAULT_RESYNC_S,
        watch_timeout_s: float = WATCH_TIMEOUT_S,
        max_objects: int = MAX_OBJECTS,
        backoff_base_s: float = BACKOFF_BASE_S,
        backoff_cap_s: float = BACKOFF_CAP_S,
        rng: random.Random | None = None,
    ) -> None:
        self.client = client
        self.kind = kind
        self.namespace = namespace
        self.keep = keep
        self.on_change = on_change
        self.resync_s = resync_s
        self.watch_timeout_s = watch_timeout_s
        self.max_objects = max_objects
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not crypto
        self._objects: dict[str, dict[str, Any]] = {}
        self._gv: tuple[str, str] | None = None
        self._rv = ""
        self._need_list = True
        self._lists = 0
        self._expired = 0
        self._events = 0
        self._failures = 0
        self._listed_at = 0.0
        self._state = SourceState.PENDING
        self._message = NOT_LISTED
        self._task: asyncio.Task[None] | None = None

    # -- what others read ----------------------------------------------------------------------

    @property
    def objects(self) -> Mapping[str, Mapping[str, Any]]:
        return MappingProxyType(self._objects)

    @property
    def status(self) -> ReflectorStatus:
        return ReflectorStatus(
            kind=self.kind.name,
            namespace=self.namespace,
            state=self._state,
            message=self._message,
            group_version=group_version(*self._gv) if self._gv else "",
            resource_version=self._rv,
            relists=max(0, self._lists - 1),
            expired=self._expired,
            events=self._events,
            objects=len(self._objects),
        )

    # -- running -------------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name=f"watch {self.kind.name} in {self.namespace}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def run(self) -> None:
        """List and watch until cancelled; every failure is a state and a wait, never the end."""
        while True:
            delay = await self._step()
            if delay > 0:
                await asyncio.sleep(delay)

    async def _step(self) -> float:
        """One list-and-watch cycle; the seconds to wait before the next."""
        try:
            if self._gv is None:
                await self._discover()
            elif self._need_list:
                await self._list(*self._gv)
            gv = self._gv
            assert gv is not None, "set by the list above"
            await self._watch(*gv)
        except _Resync:
            self._need_list = True
            return 0.0
        except ClusterGone as e:
            # The resourceVersion fell out of the server's history: only a new list catches up.
            self._expired += 1
            self._need_list = True
            log.info("%s: %s: listing again", self._what(), e)
            return self._backoff() if self._failures else self._first_retry()
        except _NotInstalled as e:
            self._gv = None
            self._need_list = True
            self._clear(SourceState.UNAVAILABLE, str(e))
            return self.resync_s
        except ClusterNotFound as e:
            # The version served until now is gone (a CRD deleted or upgraded): find which is now.
            log.info("%s: %s: discovering again", self._what(), e)
            self._gv = None
            self._need_list = True
            return self._backoff()  # short, but no busy loop should list and watch disagree
        except ClusterForbidden as e:
            self._need_list = True
            group = self._gv[0] if self._gv else self.kind.group
            msg = f"forbidden: grant list/watch {resource_name(self.kind, group)} ({RBAC_ROLE})"
            log.debug("%s: %s", self._what(), e)
            self._clear(SourceState.UNAVAILABLE, msg)
            return self._backoff()
        except ClusterTooLarge as e:
            self._need_list = True
            self._clear(SourceState.ERROR, str(e))
            return self._backoff()
        except ClusterError as e:
            # A connection error, a stream that broke, a bad answer: what is held stays (the watch
            # resumes from its resourceVersion), the state says why it is not current.
            self._set(SourceState.ERROR, str(e))
            return self._backoff()
        except Exception as e:  # a bug (in keep, say): logged, reported, retried; never the end
            log.exception("%s: unexpected failure", self._what())
            self._need_list = True
            self._set(SourceState.ERROR, f"internal error: {type(e).__name__}: {e}")
            return self._backoff()
        return 0.0

    def _first_retry(self) -> float:
        self._failures += 1  # a second 410 in a row backs off
        return 0.0

    def _backoff(self) -> float:
        """Full jitter: uniform in [0, min(cap, base · 2^failures)]."""
        self._failures += 1
        ceiling = min(self.backoff_cap_s, self.backoff_base_s * 2.0 ** min(self._failures - 1, 32))
        return self.rng.uniform(0.0, ceiling)

    # -- list ----------------------------------------------------------------------------------

    async def _discover(self) -> None:
        tried: list[str] = []
        for group, version in self.kind.candidates():
            try:
                await self._list(group, version)
            except ClusterNotFound:
                tried.append(group_version(group, version))
                continue
            except ClusterForbidden:
                self._gv = (group, version)  # the grant it lacks names this group
                raise
            self._gv = (group, version)
            return
        raise _NotInstalled(f"{self.kind.name} not installed (tried {', '.join(tried)})")

    async def _list(self, group: str, version: str) -> None:
        gv = group_version(group, version)
        path = self.kind.path(group, version, self.namespace)

        def kept(obj: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
            # List items of built-in groups carry no kind/apiVersion; watch events' objects do.
            obj.setdefault("kind", self.kind.name)
            obj.setdefault("apiVersion", gv)
            meta = obj.get("metadata")
            name = meta.get("name") if isinstance(meta, dict) else None
            return (name, self.keep(self.kind.name, obj)) if isinstance(name, str) else ("", None)

        items, rv = await self.client.list_with_version(
            path,
            f"list {resource_name(self.kind, group)} in {self.namespace}",
            kept,
            max_items=self.max_objects,
        )
        new = {name: obj for name, obj in items if name and obj is not None}
        changed = new != self._objects
        self._objects = new
        self._rv = rv
        self._gv = (group, version)
        self._lists += 1
        self._failures = 0
        self._need_list = False
        self._listed_at = asyncio.get_running_loop().time()
        if not self._set(SourceState.OK, "") and changed:
            self.on_change()

    # -- watch ---------------------------------------------------------------------------------

    async def _watch(self, group: str, version: str) -> None:
        """Watch from the last resourceVersion, again each time a stream ends, until the resync."""
        path = self.kind.path(group, version, self.namespace)
        what = f"watch {resource_name(self.kind, group)} in {self.namespace}"
        loop = asyncio.get_running_loop()
        resync_at = self._listed_at + self.resync_s
        while (remaining := resync_at - loop.time()) > 0:
            timeout_s = min(self.watch_timeout_s, remaining)
            deadline = asyncio.timeout_at(resync_at + WATCH_READ_MARGIN_S)
            try:
                # A server that ignores timeoutSeconds still cannot hold off the resync.
                async with deadline, self.client.watch(path, self._rv, timeout_s, what) as events:
                    self._set(SourceState.OK, "")
                    started, seen = loop.time(), self._events
                    async for ev in events:
                        self._apply(ev)
            except TimeoutError:
                if not deadline.expired():
                    raise
                break
            if self._events == seen and loop.time() - started < MIN_WATCH_S:
                # A stream ended at once, empty (a proxy cutting it): not a reason to hammer the server.
                await asyncio.sleep(self._backoff())
            else:
                self._failures = 0
        raise _Resync

    def _apply(self, ev: WatchEvent) -> None:
        self._events += 1
        self._rv = ev.resource_version or self._rv
        if ev.type == "BOOKMARK":
            return
        meta = ev.object.get("metadata")
        name = meta.get("name") if isinstance(meta, dict) else None
        if not isinstance(name, str) or not name:
            raise ClusterError(
                f"watch {self.kind.name} in {self.namespace}: a {ev.type} event without a name"
            )
        if ev.type == "DELETED":
            changed = self._objects.pop(name, None) is not None
        else:
            kept = self.keep(self.kind.name, ev.object)
            if kept is None:
                changed = self._objects.pop(name, None) is not None
            else:
                if name not in self._objects and len(self._objects) >= self.max_objects:
                    what = f"watch {self.kind.name} in {self.namespace}"
                    raise ClusterTooLarge(f"{what}: more than {self.max_objects} objects: refused")
                changed = self._objects.get(name) != kept
                self._objects[name] = kept
        if changed:
            self.on_change()

    # -- state ---------------------------------------------------------------------------------

    def _set(self, state: SourceState, message: str) -> bool:
        """Set the state; True (and ``on_change()``) when it changed."""
        if (state, message) == (self._state, self._message):
            return False
        if state is not SourceState.OK:
            level = logging.INFO if state is SourceState.UNAVAILABLE else logging.WARNING
            log.log(level, "%s: %s: %s", self._what(), state.value, message)
        self._state, self._message = state, message
        self.on_change()
        return True

    def _clear(self, state: SourceState, message: str) -> None:
        """What is held can no longer be trusted (not served, forbidden, refused): drop it."""
        had = bool(self._objects)
        self._objects = {}
        self._rv = ""
        if not self._set(state, message) and had:
            self.on_change()

    def _what(self) -> str:
        return f"cluster watch {self.kind.name} in {self.namespace}"
