"""A small read-only Kubernetes API client: paged lists, under a timeout and size caps.

Credentials come from the in-cluster service account (token, CA under an injectable root, the
API server from ``KUBERNETES_SERVICE_HOST``/``_PORT``) or, outside a pod, from ``KUBECONFIG``
(its first file: token or tokenFile, CA file or data, or ``insecure-skip-tls-verify``), read by
:mod:`skewwatch.kubeconfig` as the agent reads them. Neither present is
:class:`ClusterUnavailable`.

:meth:`KubeClient.list_all` follows ``limit``/``continue`` pages; each request has a timeout,
each page a byte cap and the whole list an item cap, and a 403 names the verb and resource the
collector's RBAC (``deploy/base``) lacks. :meth:`KubeClient.list_with_version` also returns the
list's ``metadata.resourceVersion``, from which :meth:`KubeClient.watch` streams the changes
(newline-delimited JSON events, read line by line under a per-line byte cap).

The API server's answers become typed errors: 403 :class:`ClusterForbidden`, 404
:class:`ClusterNotFound` (a group/version not served: a CRD not installed), 410 — an HTTP answer
or a watch ``ERROR`` event carrying a ``Status`` with code 410 — :class:`ClusterGone`, a cap
passed :class:`ClusterTooLarge`, anything else :class:`ClusterError`.
"""

from __future__ import annotations

import contextlib
import json
import re
import ssl
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

import aiohttp

from collector.cluster.errors import (
    ClusterError,
    ClusterForbidden,
    ClusterGone,
    ClusterNotFound,
    ClusterTooLarge,
    ClusterUnavailable,
)
from skewwatch import kubeconfig
from skewwatch.kubeconfig import KubeConfig

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
DEFAULT_TIMEOUT_S = 10.0
PAGE_LIMIT = 250  # items per list page
MAX_PAGE_BYTES = 32 * 1024 * 1024  # 250 pods with managedFields are a few MiB
MAX_ITEMS = 100_000  # a list past this is refused, not held
MAX_PAGES = 1000
RBAC = "deploy/base (ClusterRole skewwatch-collector)"
MAX_LINE_BYTES = 8 * 1024 * 1024  # one watch event (one object): far above any sane object
# A watch's socket may stay silent until the server ends it after timeoutSeconds; only silence
# past that by this margin means the connection is dead.
WATCH_READ_MARGIN_S = 15.0
MAX_ERROR_BODY = 64 * 1024  # what is read of an error answer, for its Status message
# One connection per open watch (HTTP/1.1): room for every kind of every watched namespace.
MAX_CONNECTIONS = 1000
WATCH_TYPES = frozenset({"ADDED", "MODIFIED", "DELETED", "BOOKMARK"})

T = TypeVar("T")
_NAMESPACED = re.compile(r"/namespaces/([^/?]+)/")


@dataclass(frozen=True)
class WatchEvent:
    """One watch event: ``type`` ADDED, MODIFIED, DELETED or BOOKMARK (an ERROR event is raised
    instead), ``object`` the object (for a BOOKMARK only kind, apiVersion and
    metadata.resourceVersion)."""

    type: str
    object: dict[str, Any]

    @property
    def resource_version(self) -> str:
        meta = self.object.get("metadata")
        rv = meta.get("resourceVersion") if isinstance(meta, dict) else None
        return rv if isinstance(rv, str) else ""


# The files and variables are read by skewwatch.kubeconfig, shared with the agent; here its
# errors become the cluster check's.


def parse_kubeconfig(text: str, where: str) -> KubeConfig:
    """The current context of a kubeconfig, token auth only. Pure; ClusterError names the field."""
    try:
        return kubeconfig.parse_kubeconfig(text, where)
    except kubeconfig.KubeConfigError as e:
        raise ClusterError(str(e)) from e


def load_config(sa_root: Path, environ: Mapping[str, str]) -> KubeConfig:
    """In-cluster first, then ``KUBECONFIG`` (its first file); ClusterUnavailable when neither."""
    try:
        return kubeconfig.load_config(sa_root, environ)
    except kubeconfig.KubeConfigUnavailable as e:
        raise ClusterUnavailable(str(e)) from e
    except kubeconfig.KubeConfigError as e:
        raise ClusterError(str(e)) from e


class KubeClient:
    """Paged GET lists with the config's credentials; use as an async context manager."""

    def __init__(
        self,
        config: KubeConfig,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        page_limit: int = PAGE_LIMIT,
        max_page_bytes: int = MAX_PAGE_BYTES,
        max_items: int = MAX_ITEMS,
        max_line_bytes: int = MAX_LINE_BYTES,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        # ``config`` may be replaced while the client is open (a rotated service-account token):
        # every request takes its token from the config of the moment.
        self.config = config
        self.timeout_s = timeout_s
        self.page_limit = page_limit
        self.max_page_bytes = max_page_bytes
        self.max_items = max_items
        self.max_line_bytes = max_line_bytes
        self.max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.config.token}"} if self.config.token else {}

    async def __aenter__(self) -> KubeClient:
        headers = {"Accept": "application/json", "User-Agent": "skewwatch-collector"}
        try:
            ssl_ctx = self.config.ssl_context()
        except (OSError, ssl.SSLError) as e:
            raise ClusterError(f"{self.config.source}: cannot load the CA: {e}") from e
        self._session = aiohttp.ClientSession(
            headers=headers,
            connector=aiohttp.TCPConnector(ssl=ssl_ctx, limit=self.max_connections),
            timeout=aiohttp.ClientTimeout(total=self.timeout_s),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def list_all(self, path: str, what: str, keep: Callable[[dict[str, Any]], T]) -> list[T]:
        """Every item of the list at ``path`` (``/api/v1/pods``), page by page, each passed through
        ``keep`` (so that only what is needed of each object is held); ``what`` ("list pods")
        names the request in errors."""
        items, _ = await self.list_with_version(path, what, keep)
        return items

    async def list_with_version(
        self, path: str, what: str, keep: Callable[[dict[str, Any]], T], *, max_items: int | None = None
    ) -> tuple[list[T], str]:
        """As :meth:`list_all`, with the list's ``metadata.resourceVersion`` (that of its first
        page: the continue pages are served from the same snapshot), the point a watch starts
        from. ``max_items`` (default the client's) caps the items."""
        cap = self.max_items if max_items is None else max_items
        out: list[T] = []
        token = ""
        version = ""
        for _ in range(MAX_PAGES):
            query = {"limit": str(self.page_limit), **({"continue": token} if token else {})}
            doc = await self._get(f"{path}?{urlencode(query)}", what)
            items = doc.get("items")
            if not isinstance(items, list):
                raise ClusterError(f"{what}: {path}: the answer has no items list (kind {doc.get('kind')!r})")
            if len(out) + len(items) > cap:
                raise ClusterTooLarge(f"{what}: more than {cap} items: refused (too many to hold)")
            out.extend(keep(item) for item in items if isinstance(item, dict))
            meta = doc.get("metadata")
            meta = meta if isinstance(meta, dict) else {}
            if not version:
                rv = meta.get("resourceVersion")
                version = rv if isinstance(rv, str) else ""
            token = str(meta.get("continue") or "")
            if not token:
                return out, version
        raise ClusterError(f"{what}: still more after {MAX_PAGES} pages: refused")

    @contextlib.asynccontextmanager
    async def watch(
        self, path: str, resource_version: str, timeout_s: float, what: str
    ) -> AsyncIterator[AsyncIterator[WatchEvent]]:
        """Watch the collection at ``path`` from ``resource_version`` (events after it), with
        bookmarks; the server ends the stream after ``timeout_s``. Use as
        ``async with client.watch(...) as events: async for ev in events``: entering it sends the
        request and raises the answer's error (403, 404, 410, …); the events then come one line
        at a time, each at most ``max_line_bytes``, with no total timeout but a read timeout of
        ``timeout_s`` plus a margin. An ERROR event with a 410 Status is :class:`ClusterGone`."""
        assert self._session is not None, "use KubeClient as an async context manager"
        query = {
            "watch": "1",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(max(1, int(timeout_s))),
        }
        read_s = max(1, int(timeout_s)) + WATCH_READ_MARGIN_S
        timeout = aiohttp.ClientTimeout(total=None, connect=self.timeout_s, sock_read=read_s)
        url = f"{self.config.server}{path}?{urlencode(query)}"
        try:
            resp = await self._session.get(url, timeout=timeout, headers=self._headers())
        except aiohttp.ClientError as e:
            raise ClusterError(f"{what}: {self.config.server}: {type(e).__name__}: {e}") from e
        except TimeoutError as e:
            raise ClusterError(f"{what}: {self.config.server}: no answer within {self.timeout_s:g} s") from e
        try:
            if resp.status != 200:
                await self._raise_for(resp, path, what)
            yield self._events(resp, what, read_s)
        finally:
            # A stream the server ended keeps its connection; one cut short (a relist, a
            # cancellation) is closed rather than handed back half read.
            if resp.content.at_eof():
                resp.release()
            else:
                resp.close()

    async def _events(
        self, resp: aiohttp.ClientResponse, what: str, read_s: float
    ) -> AsyncIterator[WatchEvent]:
        n = 0
        try:
            async for line in self._lines(resp, what):
                n += 1
                if line.strip():
                    yield self._event(line, what, n)
        except aiohttp.ClientError as e:
            raise ClusterError(f"{what}: the watch stream broke: {type(e).__name__}: {e}") from e
        except TimeoutError as e:
            raise ClusterError(f"{what}: the watch stream was silent for {read_s:g} s") from e

    async def _lines(self, resp: aiohttp.ClientResponse, what: str) -> AsyncIterator[bytes]:
        """The body's lines, each refused as soon as it passes ``max_line_bytes`` (aiohttp's own
        readline stops at 128 KiB, below a large object)."""
        cap = self.max_line_bytes
        buf = bytearray()
        async for chunk in resp.content.iter_any():
            start = 0
            while (nl := chunk.find(b"\n", start)) >= 0:
                if len(buf) + nl - start > cap:
                    raise ClusterTooLarge(f"{what}: a watch event over {cap} bytes: refused")
                buf += chunk[start:nl]
                yield bytes(buf)
                buf.clear()
                start = nl + 1
            buf += chunk[start:]
            if len(buf) > cap:
                raise ClusterTooLarge(f"{what}: a watch event over {cap} bytes: refused")
        if buf.strip():
            raise ClusterError(f"{what}: the watch stream ended inside an event")

    @staticmethod
    def _event(line: bytes, what: str, n: int) -> WatchEvent:
        try:
            doc = json.loads(line)
        except ValueError as e:
            raise ClusterError(f"{what}: watch event {n} is not JSON") from e
        if not isinstance(doc, dict) or not isinstance(doc.get("object"), dict):
            raise ClusterError(f"{what}: watch event {n} has no object")
        kind, obj = doc.get("type"), doc["object"]
        if kind == "ERROR":
            code, reason = obj.get("code"), obj.get("reason", "")
            message = f"{what}: {obj.get('message', 'watch error')} ({code} {reason})".rstrip()
            if code == 410:
                raise ClusterGone(message)
            raise ClusterError(message)
        if kind not in WATCH_TYPES:
            raise ClusterError(f"{what}: watch event {n} has type {kind!r}")
        return WatchEvent(str(kind), obj)

    async def _get(self, path_query: str, what: str) -> dict[str, Any]:
        assert self._session is not None, "use KubeClient as an async context manager"
        url = self.config.server + path_query
        try:
            async with self._session.get(url, headers=self._headers()) as resp:
                if resp.status != 200:
                    await self._raise_for(resp, path_query, what)
                body = await self._read_capped(resp, what)
        except aiohttp.ClientError as e:
            raise ClusterError(f"{what}: {self.config.server}: {type(e).__name__}: {e}") from e
        except TimeoutError as e:
            raise ClusterError(f"{what}: {self.config.server}: no answer within {self.timeout_s:g} s") from e
        try:
            doc = json.loads(body)
        except ValueError as e:
            raise ClusterError(f"{what}: {self.config.server}: the answer is not JSON") from e
        if not isinstance(doc, dict):
            raise ClusterError(f"{what}: {self.config.server}: the answer is not a JSON object")
        return doc

    async def _raise_for(self, resp: aiohttp.ClientResponse, path: str, what: str) -> None:
        """The typed error of a non-200 answer, with the server's Status message where it gave one."""
        status = resp.status
        if status == 403:
            m = _NAMESPACED.search(path)
            scope = f"in namespace {m.group(1)}" if m else "cluster-wide"
            raise ClusterForbidden(
                f"{what}: forbidden: the collector's service account may not {what!r} "
                f"{scope} (grant it as {RBAC} does)"
            )
        if status == 401:
            raise ClusterError(f"{what}: unauthorized (token rejected by {self.config.server})")
        detail = await self._status_message(resp)
        if status == 404:
            raise ClusterNotFound(f"{what}: not served by {self.config.server} (404{detail})")
        if status == 410:
            raise ClusterGone(f"{what}: the resourceVersion or continue token is too old (410 Gone{detail})")
        raise ClusterError(f"{what}: HTTP {status} from {self.config.server}{detail}")

    @staticmethod
    async def _status_message(resp: aiohttp.ClientResponse) -> str:
        """``": <message>"`` of the answer's Status body, or "" (a body that is no Status)."""
        try:
            body = await resp.content.read(MAX_ERROR_BODY)
            doc = json.loads(body)
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return ""  # the status code alone is the error: its body is only a detail
        msg = doc.get("message") if isinstance(doc, dict) else None
        return f": {msg[:500]}" if isinstance(msg, str) and msg else ""

    async def _read_capped(self, resp: aiohttp.ClientResponse, what: str) -> bytes:
        """The whole body, refused as soon as it passes ``max_page_bytes`` (``read(n)`` returns
        whatever one chunk holds, so it is read until the end)."""
        if resp.content_length is not None and resp.content_length > self.max_page_bytes:
            raise ClusterTooLarge(f"{what}: a page over {self.max_page_bytes} bytes: refused")
        chunks: list[bytes] = []
        size = 0
        while chunk := await resp.content.read(64 * 1024):
            size += len(chunk)
            if size > self.max_page_bytes:
                raise ClusterTooLarge(f"{what}: a page over {self.max_page_bytes} bytes: refused")
            chunks.append(chunk)
        return b"".join(chunks)
