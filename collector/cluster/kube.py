"""A small read-only Kubernetes API client: paged lists, under a timeout and size caps.

Credentials come from the in-cluster service account (token, CA under an injectable root, the
API server from ``KUBERNETES_SERVICE_HOST``/``_PORT``) or, outside a pod, from ``KUBECONFIG``
(its first file: token or tokenFile, CA file or data, or ``insecure-skip-tls-verify``). Neither
present is :class:`ClusterUnavailable`. This loading repeats ``agent/k8s.py``'s on purpose: the
agent and the collector never import each other, and ``skewwatch.core`` may not import yaml.

:meth:`KubeClient.list_all` follows ``limit``/``continue`` pages; each request has a timeout,
each page a byte cap and the whole list an item cap, and a 403 names the verb and resource the
collector's RBAC (``deploy/base``) lacks.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

import aiohttp
import yaml

from collector.cluster.errors import ClusterError, ClusterForbidden, ClusterUnavailable

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
DEFAULT_TIMEOUT_S = 10.0
PAGE_LIMIT = 250  # items per list page
MAX_PAGE_BYTES = 32 * 1024 * 1024  # 250 pods with managedFields are a few MiB
MAX_ITEMS = 100_000  # a list past this is refused, not held
MAX_PAGES = 1000
RBAC = "deploy/base (ClusterRole skewwatch-collector)"

T = TypeVar("T")


@dataclass(frozen=True)
class KubeConfig:
    server: str
    token: str | None = None
    ca_file: str | None = None
    ca_data: bytes | None = None
    insecure: bool = False
    source: str = ""  # "in-cluster service account (…)" or the kubeconfig path

    def ssl_context(self) -> ssl.SSLContext | bool:
        if not self.server.startswith("https://"):
            return False
        if self.insecure:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            return ctx
        if self.ca_data is not None:
            return ssl.create_default_context(cadata=self.ca_data.decode("ascii", "replace"))
        return ssl.create_default_context(cafile=self.ca_file)


def load_in_cluster(sa_root: Path, environ: Mapping[str, str]) -> KubeConfig | None:
    """The in-cluster config from the service-account mount and the service env, else None."""
    host, port = environ.get("KUBERNETES_SERVICE_HOST", ""), environ.get("KUBERNETES_SERVICE_PORT", "")
    token_path, ca_path = sa_root / "token", sa_root / "ca.crt"
    if not host or not port or not token_path.is_file():
        return None
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    try:
        token = token_path.read_text().strip()
    except OSError as e:
        raise ClusterError(f"cannot read the service account under {sa_root}: {e.strerror or e}") from e
    return KubeConfig(
        server=f"https://{host}:{port}",
        token=token,
        ca_file=str(ca_path) if ca_path.is_file() else None,
        source=f"in-cluster service account ({sa_root})",
    )


def parse_kubeconfig(text: str, where: str) -> KubeConfig:
    """The current context of a kubeconfig, token auth only. Pure; ClusterError names the field."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ClusterError(f"{where}: not valid YAML") from e
    if not isinstance(doc, dict):
        raise ClusterError(f"{where}: expected a mapping")

    def named(section: str, name: str) -> dict[str, Any]:
        for item in doc.get(section) or []:
            if isinstance(item, dict) and item.get("name") == name:
                body = item.get(section[:-1])
                if isinstance(body, dict):
                    return body
        raise ClusterError(f"{where}: {section} has no entry named {name!r}")

    current = doc.get("current-context")
    if not isinstance(current, str) or not current:
        raise ClusterError(f"{where}: no current-context")
    context = named("contexts", current)
    cluster = named("clusters", str(context.get("cluster", "")))
    user = named("users", str(context.get("user", ""))) if context.get("user") else {}
    server = cluster.get("server")
    if not isinstance(server, str) or not server.startswith(("https://", "http://")):
        raise ClusterError(f"{where}: cluster {context.get('cluster')!r} has no http(s) server")
    token = user.get("token")
    if not token and user.get("tokenFile"):
        try:
            token = Path(str(user["tokenFile"])).read_text().strip()
        except OSError as e:
            raise ClusterError(f"{where}: users[{context.get('user')}].tokenFile: {e.strerror or e}") from e
    if not token and (
        user.get("client-certificate") or user.get("client-certificate-data") or user.get("exec")
    ):
        raise ClusterError(f"{where}: user {context.get('user')!r}: only token authentication is supported")
    ca_data = cluster.get("certificate-authority-data")
    try:
        ca = base64.b64decode(ca_data, validate=True) if isinstance(ca_data, str) else None
    except ValueError as e:
        raise ClusterError(f"{where}: clusters[{context.get('cluster')}].certificate-authority-data") from e
    return KubeConfig(
        server=server.rstrip("/"),
        token=str(token) if token else None,
        ca_file=str(cluster["certificate-authority"]) if cluster.get("certificate-authority") else None,
        ca_data=ca,
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        source=where,
    )


def load_config(sa_root: Path, environ: Mapping[str, str]) -> KubeConfig:
    """In-cluster first, then ``KUBECONFIG`` (its first file); ClusterUnavailable when neither."""
    config = load_in_cluster(sa_root, environ)
    if config is not None:
        return config
    path = environ.get("KUBECONFIG", "").split(os.pathsep)[0]
    if path:
        try:
            text = Path(path).read_text()
        except OSError as e:
            raise ClusterError(f"KUBECONFIG {path}: {e.strerror or e}") from e
        return parse_kubeconfig(text, path)
    raise ClusterUnavailable(f"no in-cluster service account at {sa_root} and no KUBECONFIG")


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
