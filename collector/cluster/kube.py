"""A small read-only Kubernetes API client: paged lists, under a timeout and size caps.

Credentials come from the in-cluster service account (token, CA under an injectable root, the
API server from ``KUBERNETES_SERVICE_HOST``/``_PORT``) or, outside a pod, from ``KUBECONFIG``
(its first file: token or tokenFile, CA file or data, or ``insecure-skip-tls-verify``), read by
:mod:`skewwatch.kubeconfig` as the agent reads them. Neither present is
:class:`ClusterUnavailable`.

:meth:`KubeClient.list_all` follows ``limit``/``continue`` pages; each request has a timeout,
each page a byte cap and the whole list an item cap, and a 403 names the verb and resource the
collector's RBAC (``deploy/base``) lacks.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

import aiohttp

from collector.cluster.errors import ClusterError, ClusterForbidden, ClusterUnavailable
from skewwatch import kubeconfig
from skewwatch.kubeconfig import KubeConfig

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
DEFAULT_TIMEOUT_S = 10.0
PAGE_LIMIT = 250  # items per list page
MAX_PAGE_BYTES = 32 * 1024 * 1024  # 250 pods with managedFields are a few MiB
MAX_ITEMS = 100_000  # a list past this is refused, not held
MAX_PAGES = 1000
RBAC = "deploy/base (ClusterRole skewwatch-collector)"

T = TypeVar("T")


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
    ) -> None:
        self.config = config
        self.timeout_s = timeout_s
        self.page_limit = page_limit
        self.max_page_bytes = max_page_bytes
        self.max_items = max_items
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> KubeClient:
        headers = {"Accept": "application/json", "User-Agent": "skewwatch-collector"}
        if self.config.token:
            headers["Authorization"] = f"Bearer {self.config.token}"
        try:
            ssl_ctx = self.config.ssl_context()
        except (OSError, ssl.SSLError) as e:
            raise ClusterError(f"{self.config.source}: cannot load the CA: {e}") from e
        self._session = aiohttp.ClientSession(
            headers=headers,
            connector=aiohttp.TCPConnector(ssl=ssl_ctx),
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
        out: list[T] = []
        token = ""
        for _ in range(MAX_PAGES):
            query = {"limit": str(self.page_limit), **({"continue": token} if token else {})}
            doc = await self._get(f"{path}?{urlencode(query)}", what)
            items = doc.get("items")
            if not isinstance(items, list):
                raise ClusterError(f"{what}: {path}: the answer has no items list (kind {doc.get('kind')!r})")
            if len(out) + len(items) > self.max_items:
                raise ClusterError(f"{what}: more than {self.max_items} items: refused (too many to hold)")
            out.extend(keep(item) for item in items if isinstance(item, dict))
            meta = doc.get("metadata")
            token = str(meta.get("continue") or "") if isinstance(meta, dict) else ""
            if not token:
                return out
        raise ClusterError(f"{what}: still more after {MAX_PAGES} pages: refused")

    async def _get(self, path_query: str, what: str) -> dict[str, Any]:
        assert self._session is not None, "use KubeClient as an async context manager"
        url = self.config.server + path_query
        try:
            async with self._session.get(url) as resp:
                if resp.status == 403:
                    raise ClusterForbidden(
                        f"{what}: forbidden: the collector's service account may not {what!r} "
                        f"cluster-wide (grant it as {RBAC} does)"
                    )
                if resp.status == 401:
                    raise ClusterError(f"{what}: unauthorized (token rejected by {self.config.server})")
                if resp.status == 410:
                    raise ClusterError(f"{what}: the list changed too much while paging (410 Gone)")
                if resp.status != 200:
                    raise ClusterError(f"{what}: HTTP {resp.status} from {self.config.server}")
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

    async def _read_capped(self, resp: aiohttp.ClientResponse, what: str) -> bytes:
        """The whole body, refused as soon as it passes ``max_page_bytes`` (``read(n)`` returns
        whatever one chunk holds, so it is read until the end)."""
        if resp.content_length is not None and resp.content_length > self.max_page_bytes:
            raise ClusterError(f"{what}: a page over {self.max_page_bytes} bytes: refused")
        chunks: list[bytes] = []
        size = 0
        while chunk := await resp.content.read(64 * 1024):
            size += len(chunk)
            if size > self.max_page_bytes:
                raise ClusterError(f"{what}: a page over {self.max_page_bytes} bytes: refused")
            chunks.append(chunk)
        return b"".join(chunks)
