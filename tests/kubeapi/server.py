"""A test Kubernetes API server over real HTTP, faithful to the shapes of the real one.

What it serves, as ``kube-apiserver`` does (API concepts: "Efficient detection of changes",
"Retrieving large results sets in chunks", "Watch bookmarks"):

- objects per installed resource (group, version, plural) and namespace, with one global,
  monotonically increasing ``resourceVersion`` (a decimal string); ``apply`` sets
  ``metadata.uid``, ``creationTimestamp`` and ``generation`` (bumped when ``spec`` changes);
- ``GET`` of a namespaced collection: a ``<Kind>List`` with ``metadata.resourceVersion`` and,
  paged by ``limit``, an opaque ``continue`` token and ``remainingItemCount``; every page is
  served from the snapshot of the first (the token carries its resourceVersion); a token older
  than the compaction point is ``410`` with a ``Status`` of reason ``Expired``. Items of built-in
  groups carry no kind/apiVersion; those of custom resources do, as the real server answers;
- ``?watch=1``: newline-delimited ``{"type", "object"}`` events after ``resourceVersion``
  (none or ``"0"``: the current objects as ADDED first); a resourceVersion older than the
  compacted history is an ``ERROR`` event with a ``Status`` of code 410, reason ``Expired``,
  then the end of the stream, as the watch cache does; ``BOOKMARK`` events (only kind,
  apiVersion, metadata.resourceVersion) every ``bookmark_interval_s`` with
  ``allowWatchBookmarks=true``; the stream ends after ``timeoutSeconds``;
- ``403`` Status (reason Forbidden, the real message naming user, verb, resource, group and
  namespace) for what a test forbids, checked before the resource exists (the authorizer runs
  first), ``404`` NotFound for a group/version not installed (a CRD absent), ``401`` without the
  bearer token.

The control API (plain Python, for tests): :meth:`KubeApiServer.apply`, ``delete``,
``compact`` (forget history: older resourceVersions are 410), ``close_watches`` (drop every open
stream, as an API server restart or a load balancer would), ``forbid``/``allow``,
``install``/``uninstall``, ``load_manifests`` (multi-document YAML) and ``rollout`` (what the
Deployment controller does: a ReplicaSet per pod-template hash, the revision annotation, the
Deployment's status). :func:`serve` runs it on a free loopback port.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import copy
import json
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from collector.cluster.resources import KINDS
from skewwatch.kubeconfig import KubeConfig
from tests.support.kubeapi import TOKEN

USER = "system:serviceaccount:skewwatch:skewwatch-collector"
# Groups served by kube-apiserver itself: their list items carry no kind/apiVersion.
BUILTIN_GROUPS = frozenset({"", "apps", "autoscaling", "networking.k8s.io", "batch", "policy"})
REVISION = "deployment.kubernetes.io/revision"
DISCONNECT_POLL_S = 0.1  # how soon an idle watch notices its client has gone
# Kubernetes' rand.SafeEncodeString alphabet (no vowels, no look-alike digits).
SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
EXPIRED_CONTINUE = (
    "The provided continue parameter is too old to display a consistent list result. You can start "
    "a new list without the continue parameter, or use the continue token in this response to "
    "retrieve the remainder of the results. Continuing with the provided token results in an "
    "inconsistent list - objects that were created, modified, or deleted between the time the "
    "first chunk was returned and now may show up in the list."
)


@dataclass(frozen=True)
class Resource:
    """One served resource: ``kind`` names its objects, ``builtin`` says whether list items
    carry their kind/apiVersion (custom resources' do)."""

    group: str
    version: str
    plural: str
    kind: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def builtin(self) -> bool:
        return self.group in BUILTIN_GROUPS

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.group, self.version, self.plural)


def _default_resources() -> list[Resource]:
    """The built-in kinds of the watch's table plus pods and namespaces; CRDs are installed by tests."""
    out = [Resource("", "v1", "pods", "Pod"), Resource("", "v1", "namespaces", "Namespace")]
    out += [Resource(k.group, k.versions[0], k.plural, k.name) for k in KINDS if not k.optional]
    return out


def known_kind(plural: str) -> str:
    """The kind of a plural the watch's table knows (for ``install`` without a kind)."""
    for k in KINDS:
        if k.plural == plural:
            return k.name
    raise KeyError(f"no kind known for {plural!r}: pass kind=")


@dataclass
class _Event:
    rv: int
    type: str
    resource: tuple[str, str, str]
    namespace: str
    name: str
    object: dict[str, Any]  # the object after the change (for DELETED: its last state)
    prev: dict[str, Any] | None  # the object before (None: it did not exist)


@dataclass(eq=False)
class _Watcher:
    """One open watch: the events of its collection wait in ``queue`` until its stream sends
    them (a compaction does not touch what an open watch has yet to send, as in etcd)."""

    resource: tuple[str, str, str]
    namespace: str
    queue: list[_Event] = field(default_factory=list)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    closed: bool = False
    abrupt: bool = True


def rfc3339(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def status_body(
    code: int, reason: str, message: str, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A ``metav1.Status`` as the API server writes it."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details is not None:
        body["details"] = details
    return body


def template_hash(template: Any, collision_count: int = 0) -> str:
    """The Deployment controller's pod-template-hash shape: FNV-1a 32 of the template (here its
    canonical JSON, where the controller hashes a spew dump), the decimal digits mapped through
    rand.SafeEncodeString's alphabet."""
    h = 0x811C9DC5
    data = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    if collision_count:
        data += str(collision_count).encode()
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return "".join(SAFE_ALPHABET[int(c) % len(SAFE_ALPHABET)] for c in str(h))


class KubeApiServer:
    """The objects, their history and the open watches; ``app`` serves them over HTTP."""

    def __init__(
        self,
        *,
        token: str | None = TOKEN,
        bookmark_interval_s: float = 60.0,
        resources: Iterable[Resource] | None = None,
        expired_watch_as_http: bool = False,
    ) -> None:
        self.token = token
        self.bookmark_interval_s = bookmark_interval_s
        # The watch cache answers a too old resourceVersion with an ERROR event; a server reading
        # etcd directly (--watch-cache=false) with HTTP 410. Either way a client must relist.
        self.expired_watch_as_http = expired_watch_as_http
        self.resources: dict[tuple[str, str, str], Resource] = {
            r.key: r for r in (resources if resources is not None else _default_resources())
        }
        self.rv = 1000  # as a fresh cluster's, not 0: "0" means "any" to a watch
        self.compacted = self.rv  # history kept for resourceVersions >= this
        self.objects: dict[tuple[tuple[str, str, str], str], dict[str, dict[str, Any]]] = {}
        self.history: list[_Event] = []
        self.forbidden: set[tuple[str, str | None]] = set()
        self.watchers: set[_Watcher] = set()
        self.requests: list[tuple[str, dict[str, str]]] = []  # (path, query) of every request
        self.skipped: list[str] = []  # what load_manifests did not load, and why
        self.app = web.Application()
        self.app.router.add_get("/api/{version}/namespaces/{namespace}/{plural}", self._handle)
        self.app.router.add_get("/apis/{group}/{version}/namespaces/{namespace}/{plural}", self._handle)
        # One object by name: what the agent GETs (its own Pod, then the owner chain).
        self.app.router.add_get("/api/{version}/namespaces/{namespace}/{plural}/{name}", self._get_one)
        self.app.router.add_get(
            "/apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}", self._get_one
        )
        self.app.router.add_get("/{tail:.*}", self._not_found)

    # -- control API ---------------------------------------------------------------------------

    def install(self, group: str, version: str, plural: str, kind: str | None = None) -> Resource:
        """Serve a resource (a CRD installed): its collection answers from now on."""
        r = Resource(group, version, plural, kind or known_kind(plural))
        self.resources[r.key] = r
        return r

    def uninstall(self, group: str, version: str, plural: str) -> None:
        """Stop serving a resource (a CRD deleted): its objects go and its watches end."""
        key = (group, version, plural)
        self.resources.pop(key, None)
        for k in [k for k in self.objects if k[0] == key]:
            del self.objects[k]
        for w in self.watchers:
            if w.resource == key:
                w.closed = True
                w.wake.set()

    def forbid(self, plural: str, namespace: str | None = None) -> None:
        """403 for list and watch of ``plural`` (in ``namespace``, or everywhere)."""
        self.forbidden.add((plural, namespace))  # open watches go on; new requests see it

    def allow(self, plural: str, namespace: str | None = None) -> None:
        self.forbidden.discard((plural, namespace))

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create or update ``obj`` (its apiVersion and kind must be served; namespace default
        "default"): a new resourceVersion, an ADDED or MODIFIED event. Returns the stored copy."""
        res = self._resource_of(obj)
        meta = obj.get("metadata") or {}
        name, ns = meta.get("name"), meta.get("namespace") or "default"
        if not isinstance(name, str) or not name:
            raise ValueError(f"{obj.get('kind')}: metadata.name missing")
        store = self.objects.setdefault((res.key, ns), {})
        prev = store.get(name)
        new = copy.deepcopy(obj)
        new["apiVersion"], new["kind"] = res.api_version, res.kind
        m = new.setdefault("metadata", {})
        m["namespace"], m["name"] = ns, name
        if prev is None:
            m["uid"] = str(uuid.uuid4())
            m["creationTimestamp"] = rfc3339(datetime.now(UTC))
            m["generation"] = 1
        else:
            pm = prev["metadata"]
            m["uid"], m["creationTimestamp"] = pm["uid"], pm["creationTimestamp"]
            m["generation"] = pm["generation"] + (1 if new.get("spec") != prev.get("spec") else 0)
        m.pop("managedFields", None)
        self.rv += 1
        m["resourceVersion"] = str(self.rv)
        store[name] = new
        self._record("ADDED" if prev is None else "MODIFIED", res.key, ns, name, new, prev)
        return copy.deepcopy(new)

    def delete(self, kind: str, namespace: str, name: str, api_version: str | None = None) -> None:
        """Delete the object from every served version of ``kind`` holding it (a DELETED event
        each, with a new resourceVersion); KeyError when none does."""
        found = False
        for res in list(self.resources.values()):
            if res.kind != kind or (api_version is not None and res.api_version != api_version):
                continue
            store = self.objects.get((res.key, namespace), {})
            prev = store.pop(name, None)
            if prev is None:
                continue
            found = True
            self.rv += 1
            gone = copy.deepcopy(prev)
            gone["metadata"]["resourceVersion"] = str(self.rv)
            self._record("DELETED", res.key, namespace, name, gone, prev)
        if not found:
            raise KeyError(f"{kind} {namespace}/{name} not found")

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        for res in self.resources.values():
            if res.kind == kind and (obj := self.objects.get((res.key, namespace), {}).get(name)):
                return copy.deepcopy(obj)
        return None

    def names(self, group: str, version: str, plural: str, namespace: str) -> dict[str, str]:
        """name -> resourceVersion of what the collection holds now (for comparing with a cache)."""
        store = self.objects.get(((group, version, plural), namespace), {})
        return {n: o["metadata"]["resourceVersion"] for n, o in store.items()}

    def compact(self) -> None:
        """Forget the history: a watch or continue token from before now is 410 Expired."""
        self.compacted = self.rv
        self.history.clear()

    def close_watches(self, abrupt: bool = True) -> int:
        """End every open watch stream now: ``abrupt``, the connection drops mid-body (a restart,
        a load balancer); else the body ends cleanly, as at ``timeoutSeconds``. Returns how many."""
        for w in self.watchers:
            w.closed = True
            w.abrupt = abrupt
            w.wake.set()
        return len(self.watchers)

    def load_manifests(self, paths: Iterable[Path], namespace: str = "default") -> list[dict[str, Any]]:
        """Apply every document of these multi-document YAML files (a Helm template, ``.tpl``,
        is not YAML: skipped); documents of kinds not served are skipped, each noted in
        ``skipped``. Returns the stored objects."""
        out: list[dict[str, Any]] = []
        for path in sorted(paths):
            if path.suffix == ".tpl":
                self.skipped.append(f"{path.name}: a Helm template, not YAML")
                continue
            for doc in yaml.safe_load_all(path.read_text()):
                if not isinstance(doc, dict):
                    continue
                doc.setdefault("metadata", {}).setdefault("namespace", namespace)
                try:
                    self._resource_of(doc)
                except KeyError as e:
                    self.skipped.append(f"{path.name}: {e.args[0]}")
                    continue
                out.append(self.apply(doc))
        return out

    def rollout(self, namespace: str, name: str) -> dict[str, Any]:
        """What the Deployment controller does for the Deployment's current template: the
        ReplicaSet ``<name>-<pod-template-hash>`` (created, or made current again on a rollback)
        with the next ``deployment.kubernetes.io/revision``, older ones scaled to 0, and the
        Deployment's revision annotation and status. Returns the current ReplicaSet."""
        dep = self.get("Deployment", namespace, name)
        if dep is None:
            raise KeyError(f"Deployment {namespace}/{name} not found")
        template = dep["spec"]["template"]
        replicas = int(dep["spec"].get("replicas", 1))
        h = template_hash(template)
        owned = self._owned_replicasets(namespace, dep["metadata"]["uid"])
        revision = 1 + max(
            (int(rs["metadata"].get("annotations", {}).get(REVISION, "0")) for rs in owned), default=0
        )
        current = next((rs for rs in owned if rs["metadata"]["name"] == f"{name}-{h}"), None)
        if current is not None and current["metadata"]["annotations"].get(REVISION) == str(revision - 1):
            revision -= 1  # already the newest: the controller leaves its revision
        rs = current or self._new_replicaset(dep, h)
        rs["metadata"].setdefault("annotations", {})[REVISION] = str(revision)
        rs["spec"]["replicas"] = replicas
        rs["status"] = {
            "replicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
            "fullyLabeledReplicas": replicas,
            "observedGeneration": rs["metadata"].get("generation", 1),
        }
        stored = self.apply(rs)
        for old in owned:
            if old["metadata"]["name"] != stored["metadata"]["name"] and old["spec"].get("replicas", 0):
                old["spec"]["replicas"] = 0
                old["status"] = {"replicas": 0, "observedGeneration": old["metadata"]["generation"] + 1}
                self.apply(old)
        dep["metadata"].setdefault("annotations", {})[REVISION] = str(revision)
        dep["status"] = {
            "observedGeneration": dep["metadata"]["generation"],
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
            "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                {
                    "type": "Progressing",
                    "status": "True",
                    "reason": "NewReplicaSetAvailable",
                    "message": f'ReplicaSet "{stored["metadata"]["name"]}" has successfully progressed.',
                },
            ],
        }
        self.apply(dep)
        return stored

    def config(self, url: str) -> KubeConfig:
        return KubeConfig(server=url, token=self.token or "", source="test")

    # -- internals -----------------------------------------------------------------------------

    def _resource_of(self, obj: dict[str, Any]) -> Resource:
        api_version, kind = str(obj.get("apiVersion", "")), str(obj.get("kind", ""))
        group, _, version = api_version.rpartition("/")
        for r in self.resources.values():
            if (r.group, r.version, r.kind) == (group, version, kind):
                return r
        raise KeyError(f'no matches for kind "{kind}" in version "{api_version}"')

    def _record(
        self,
        type_: str,
        key: tuple[str, str, str],
        ns: str,
        name: str,
        obj: dict[str, Any],
        prev: dict[str, Any] | None,
    ) -> None:
        ev = _Event(self.rv, type_, key, ns, name, copy.deepcopy(obj), prev)
        self.history.append(ev)
        for w in self.watchers:
            if (w.resource, w.namespace) == (key, ns):
                w.queue.append(ev)
                w.wake.set()

    def _owned_replicasets(self, namespace: str, uid: str) -> list[dict[str, Any]]:
        store = self.objects.get((("apps", "v1", "replicasets"), namespace), {})
        return [
            copy.deepcopy(rs)
            for rs in store.values()
            if any(o.get("uid") == uid for o in rs["metadata"].get("ownerReferences", []))
        ]

    @staticmethod
    def _new_replicaset(dep: dict[str, Any], h: str) -> dict[str, Any]:
        template = copy.deepcopy(dep["spec"]["template"])
        labels = {**template.get("metadata", {}).get("labels", {}), "pod-template-hash": h}
        template.setdefault("metadata", {})["labels"] = labels
        selector = copy.deepcopy(dep["spec"].get("selector", {}))
        selector.setdefault("matchLabels", {})["pod-template-hash"] = h
        meta = dep["metadata"]
        replicas = int(dep["spec"].get("replicas", 1))
        return {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": f"{meta['name']}-{h}",
                "namespace": meta["namespace"],
                "labels": labels,
                "annotations": {
                    "deployment.kubernetes.io/desired-replicas": str(replicas),
                    "deployment.kubernetes.io/max-replicas": str(replicas + 1),
                },
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "name": meta["name"],
                        "uid": meta["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": {"replicas": replicas, "selector": selector, "template": template},
        }

    def _state_at(self, key: tuple[str, str, str], ns: str, rv: int) -> dict[str, dict[str, Any]]:
        """The collection as it was at ``rv`` (>= the compaction point): now, with later changes undone."""
        state = dict(self.objects.get((key, ns), {}))
        for ev in reversed(self.history):
            if ev.rv <= rv:
                break
            if (ev.resource, ev.namespace) != (key, ns):
                continue
            if ev.prev is None:
                state.pop(ev.name, None)
            else:
                state[ev.name] = ev.prev
        return state

    async def _not_found(self, request: web.Request) -> web.Response:
        self.requests.append((request.path, dict(request.query)))
        return self._404()

    @staticmethod
    def _404() -> web.Response:
        return web.json_response(
            status_body(404, "NotFound", "the server could not find the requested resource"), status=404
        )

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.path, dict(request.query)))
        if self.token is not None and request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response(status_body(401, "Unauthorized", "Unauthorized"), status=401)
        info = request.match_info
        group, version, ns, plural = info.get("group", ""), info["version"], info["namespace"], info["plural"]
        watching = request.query.get("watch") in ("1", "true")
        if (plural, None) in self.forbidden or (plural, ns) in self.forbidden:
            verb = "watch" if watching else "list"
            resource = f"{plural}.{group}" if group else plural
            msg = (
                f'{resource} is forbidden: User "{USER}" cannot {verb} resource "{plural}" '
                f'in API group "{group}" in the namespace "{ns}"'
            )
            details = {"group": group, "kind": plural}
            return web.json_response(status_body(403, "Forbidden", msg, details), status=403)
        res = self.resources.get((group, version, plural))
        if res is None:
            return self._404()
        if watching:
            return await self._watch(request, res, ns)
        return self._list(request, res, ns)

    async def _get_one(self, request: web.Request) -> web.Response:
        """``GET`` of one object: the object with kind and apiVersion, or a NotFound ``Status``."""
        self.requests.append((request.path, dict(request.query)))
        if self.token is not None and request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response(status_body(401, "Unauthorized", "Unauthorized"), status=401)
        info = request.match_info
        res = self.resources.get((info.get("group", ""), info["version"], info["plural"]))
        if res is None:
            return self._404()
        obj = self.objects.get((res.key, info["namespace"]), {}).get(info["name"])
        if obj is None:
            msg = f'{info["plural"]} "{info["name"]}" not found'
            return web.json_response(status_body(404, "NotFound", msg), status=404)
        return web.json_response({"kind": res.kind, "apiVersion": res.api_version, **copy.deepcopy(obj)})

    def _list(self, request: web.Request, res: Resource, ns: str) -> web.Response:
        q = request.query
        limit = int(q.get("limit", "0") or 0)
        rv, start = self.rv, ""
        if q.get("continue"):
            try:
                token = json.loads(base64.urlsafe_b64decode(q["continue"]))
                rv, start = int(token["rv"]), str(token["start"])
            except (ValueError, KeyError, TypeError, binascii.Error):
                msg = "continue key is not valid: incorrect encoded start resourceVersion"
                return web.json_response(status_body(400, "BadRequest", msg), status=400)
            if rv < self.compacted:
                return web.json_response(status_body(410, "Expired", EXPIRED_CONTINUE), status=410)
        state = self._state_at(res.key, ns, rv) if rv != self.rv else self.objects.get((res.key, ns), {})
        names = sorted(n for n in state if n > start)
        page = names[:limit] if limit > 0 else names
        items = []
        for n in page:
            item = copy.deepcopy(state[n])
            if res.builtin:  # built-in lists drop kind/apiVersion from their items
                item.pop("kind", None)
                item.pop("apiVersion", None)
            items.append(item)
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        if len(page) < len(names):
            token = {"v": "meta.k8s.io/v1", "rv": rv, "start": page[-1] + "\x00"}
            meta["continue"] = base64.urlsafe_b64encode(json.dumps(token).encode()).decode()
            meta["remainingItemCount"] = len(names) - len(page)
        body = {"kind": f"{res.kind}List", "apiVersion": res.api_version, "metadata": meta, "items": items}
        return web.json_response(body)

    async def _watch(self, request: web.Request, res: Resource, ns: str) -> web.StreamResponse:
        q = request.query
        timeout_s = float(q.get("timeoutSeconds", "1800"))
        bookmarks = q.get("allowWatchBookmarks") == "true"
        rv_param = q.get("resourceVersion", "")
        w = _Watcher(res.key, ns)
        # From here to the registration nothing awaits: no change can fall between the catch-up
        # and the queue.
        initial: list[tuple[str, dict[str, Any]]] = []
        expired = ""
        if rv_param in ("", "0"):  # "any": the current state as ADDED, then the changes
            initial = [("ADDED", copy.deepcopy(o)) for o in self.objects.get((res.key, ns), {}).values()]
        elif int(rv_param) < self.compacted:
            expired = f"too old resource version: {rv_param} ({self.compacted})"
        else:
            w.queue = [
                e for e in self.history if e.rv > int(rv_param) and (e.resource, e.namespace) == (res.key, ns)
            ]
        if expired and self.expired_watch_as_http:
            return web.json_response(status_body(410, "Expired", expired), status=410)
        self.watchers.add(w)
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        next_bookmark = loop.time() + self.bookmark_interval_s
        try:
            await resp.prepare(request)
            if expired:
                await self._send(resp, "ERROR", status_body(410, "Expired", expired))
                deadline = 0.0  # then the end of the stream
            for type_, obj in initial:
                await self._send(resp, type_, obj)
            while not w.closed and loop.time() < deadline:
                while w.queue and not w.closed:
                    ev = w.queue.pop(0)
                    await self._send(resp, ev.type, ev.object)
                if w.closed:
                    break
                now = loop.time()
                if bookmarks and now >= next_bookmark and not w.queue:
                    # The queue is empty now: every change up to the latest resourceVersion was sent.
                    meta = {"resourceVersion": str(self.rv)}
                    await self._send(
                        resp, "BOOKMARK", {"kind": res.kind, "apiVersion": res.api_version, "metadata": meta}
                    )
                    next_bookmark = now + self.bookmark_interval_s
                w.wake.clear()
                if w.queue or w.closed:
                    continue
                if request.transport is None or request.transport.is_closing():
                    break  # the client went away (aiohttp does not cancel the handler for it)
                wait = min(deadline, next_bookmark) if bookmarks else deadline
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        w.wake.wait(), min(max(wait - loop.time(), 0.0), DISCONNECT_POLL_S)
                    )
        except ConnectionError:
            return resp  # the client went away: nothing to write to
        finally:
            self.watchers.discard(w)
        if w.closed and w.abrupt and request.transport is not None:
            request.transport.close()  # dropped mid-stream: no clean end of the chunked body
            return resp
        with contextlib.suppress(ConnectionError):
            await resp.write_eof()
        return resp

    @staticmethod
    async def _send(resp: web.StreamResponse, type_: str, obj: dict[str, Any]) -> None:
        await resp.write(json.dumps({"type": type_, "object": obj}).encode() + b"\n")


@contextlib.asynccontextmanager
async def serve(server: KubeApiServer) -> AsyncIterator[str]:
    """Serve on a free loopback port; yields the base URL."""
    runner = web.AppRunner(server.app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        server.close_watches()
        await runner.cleanup()
