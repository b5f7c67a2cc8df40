"""A fake Kubernetes API server over real HTTP on loopback, for the collector's cluster reads.

It serves ``GET /api/v1/pods`` and ``GET /api/v1/namespaces`` as the API server does: a
``PodList`` / ``NamespaceList`` (items without kind and apiVersion, ``metadata.resourceVersion``),
paged by ``limit`` with an opaque ``continue`` token and ``remainingItemCount``; it checks the
bearer token, and can forbid a path (the real 403 ``Status`` body), stall, or pad its answers.
Pods are built from the recorded-shape Pod of ``tests/fixtures/k8s/deployment/pod.json``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

POD_FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "k8s" / "deployment" / "pod.json"
TOKEN = (
    "eyJhbGciOiJSUzI1NiIsImtpZCI6InRlc3QifQ"
    ".eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6c2tld3dhdGNoOmNvbGxlY3RvciJ9.c2lnbmF0dXJl"
)


def rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod(
    namespace: str,
    name: str,
    *,
    annotations: dict[str, str] | None = None,
    agent: bool = False,
    phase: str = "Running",
    started: float | None = None,
    owner: tuple[str, str] | None = ("ReplicaSet", "llm-7d9f8b6c5"),
) -> dict[str, Any]:
    """A Pod as a PodList item: the recorded Pod renamed, with or without the agent container."""
    obj: dict[str, Any] = json.loads(POD_FIXTURE.read_text())
    del obj["kind"], obj["apiVersion"]  # list items carry neither
    meta = obj["metadata"]
    meta.update(namespace=namespace, name=name, annotations=dict(annotations or {}))
    if owner is None:
        del meta["ownerReferences"]
    else:
        meta["ownerReferences"][0].update(kind=owner[0], name=owner[1])
    if not agent:
        obj["spec"]["containers"] = [c for c in obj["spec"]["containers"] if c["name"] != "skewwatch-agent"]
        statuses = obj["status"].get("containerStatuses") or []
        obj["status"]["containerStatuses"] = [s for s in statuses if s["name"] != "skewwatch-agent"]
    obj["status"]["phase"] = phase
    if started is not None:
        obj["status"]["startTime"] = rfc3339(started)
    if phase == "Pending":
        obj["status"].pop("startTime", None)
        obj["status"].pop("containerStatuses", None)
    return obj


def namespace(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    """A Namespace as a NamespaceList item (the API server's own metadata.name label included)."""
    return {
        "metadata": {
            "name": name,
            "uid": f"0b6d1c2e-{abs(hash(name)) % 10**4:04d}-4c1e-9f0a-7b2d3e4f5a6b",
            "resourceVersion": "1187",
            "creationTimestamp": "2025-05-30T08:00:00Z",
            "labels": {"kubernetes.io/metadata.name": name, **(labels or {})},
            "managedFields": [
                {"manager": "kubectl-create", "operation": "Update", "apiVersion": "v1",
                 "time": "2025-05-30T08:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {}}}
            ],
        },
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    }  # fmt: skip


@dataclass
class FakeKubeApi:
    """Lists pods and namespaces in pages; records each request's path and query."""

    pods: list[dict[str, Any]] = field(default_factory=list)
    namespaces: list[dict[str, Any]] = field(default_factory=list)
    forbidden: set[str] = field(default_factory=set)
    stall_s: float = 0.0
    pad_bytes: int = 0
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    resource_version: int = 48213377

    def _list(self, path: str) -> tuple[str, list[dict[str, Any]]] | None:
        return {
            "/api/v1/pods": ("PodList", self.pods),
            "/api/v1/namespaces": ("NamespaceList", self.namespaces),
        }.get(path)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.path, dict(request.query)))
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return _status(401, "Unauthorized", "Unauthorized")
        resource = request.path.rsplit("/", 1)[-1]
        if request.path in self.forbidden:
            return _status(
                403,
                "Forbidden",
                f'{resource} is forbidden: User "system:serviceaccount:skewwatch:skewwatch-collector" '
                f'cannot list resource "{resource}" in API group "" at the cluster scope',
            )
        found = self._list(request.path)
        if found is None:
            return _status(404, "NotFound", "the server could not find the requested resource")
        if self.stall_s:
            await asyncio.sleep(self.stall_s)
        kind, items = found
        limit = int(request.query.get("limit", "0") or 0) or len(items) or 1
        start = int(base64.b64decode(request.query["continue"])) if "continue" in request.query else 0
        page = copy.deepcopy(items[start : start + limit])
        meta: dict[str, Any] = {"resourceVersion": str(self.resource_version)}
        if start + limit < len(items):
            meta["continue"] = base64.b64encode(str(start + limit).encode()).decode()
            meta["remainingItemCount"] = len(items) - start - limit
        body: dict[str, Any] = {"kind": kind, "apiVersion": "v1", "metadata": meta, "items": page}
        if self.pad_bytes:
            body["padding"] = "x" * self.pad_bytes
        return web.json_response(body)


def _status(code: int, reason: str, message: str) -> web.Response:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}  # fmt: skip
    return web.json_response(body, status=code)


@contextlib.asynccontextmanager
async def serve(api: FakeKubeApi) -> AsyncIterator[str]:
    """Serve ``api`` on a free loopback port; yields its base URL."""
    app = web.Application()
    app.router.add_get("/{tail:.*}", api.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def kubeconfig(
    tmp_path: Path, server: str, token: str = TOKEN, user: str = "collector", namespace: str | None = None
) -> Path:
    """A kubeconfig file whose current context is ``server`` with ``token`` as ``user`` (and a
    default ``namespace``, when given)."""
    path = tmp_path / "kubeconfig"
    ns = f", namespace: {namespace}" if namespace else ""
    path.write_text(
        f"""apiVersion: v1
kind: Config
current-context: test
contexts:
- name: test
  context: {{cluster: test, user: {user}{ns}}}
clusters:
- name: test
  cluster: {{server: "{server}"}}
users:
- name: {user}
  user: {{token: "{token}"}}
"""
    )
    return path


@pytest.fixture
async def opted_in_cluster(tmp_path: Path) -> AsyncIterator[dict[str, str]]:
    """An environment whose KUBECONFIG reaches a fake API with one opted-in pod of namespace ml
    running for 10 minutes without the agent (missed: not injected); for ``Collector(environ=)``."""
    api = FakeKubeApi(
        pods=[
            pod("ml", "unpatched-0", annotations={"skewwatch.io/inject": "true"}, started=time.time() - 600)
        ],
        namespaces=[namespace("ml")],
    )
    async with serve(api) as url:
        yield {"KUBECONFIG": str(kubeconfig(tmp_path, url))}
