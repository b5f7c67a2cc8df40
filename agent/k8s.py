"""The Kubernetes API, as far as the agent reads it: its own Pod, the Pod's owners, its Node.

Credentials come from the in-cluster service account (token, CA and namespace under an
injectable root, the API server from ``KUBERNETES_SERVICE_HOST``/``_PORT``) or, outside a pod,
from ``KUBECONFIG`` (token or token file, CA file or data, or ``insecure-skip-tls-verify``).
Neither present is :class:`KubeUnavailable`: the pod source then says the API part is
unavailable and still reports the downward API. Every request has a timeout and a size cap; a
403 names the verb and resource the agent's RBAC lacks (``deploy/base/agent-rbac.yaml``, bound
per namespace by ``deploy/overlays/agent-namespace``).

Reading (:class:`KubeClient`, :func:`read_cluster`) is kept apart from interpreting: the pure
functions :func:`pod_view`, :func:`resolve_workload` and :func:`node_view` turn API objects (plain
JSON, as the API server sends them) into facts. What each owner kind is and where it is read from
is a table (:data:`OWNER_KINDS`), as are the node labels reported (:data:`NODE_LABEL_PREFIXES`).
"""

from __future__ import annotations

import json
import re
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from agent.errors import SourceFailed, SourceUnavailable
from skewwatch import kubeconfig
from skewwatch.core.facts import FactValue
from skewwatch.core.gpu import gpu_class_name
from skewwatch.kubeconfig import KubeConfig

DEFAULT_TIMEOUT_S = 5.0
MAX_OBJECT_BYTES = 4 * 1024 * 1024  # a Pod with its managedFields is tens of KiB
MAX_OWNER_DEPTH = 5
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")

# Owner kinds the agent follows further up, and where each is read (namespace filled in).
OWNER_KINDS: dict[str, str] = {
    "ReplicaSet": "/apis/apps/v1/namespaces/{namespace}/replicasets/{name}",
    "Deployment": "/apis/apps/v1/namespaces/{namespace}/deployments/{name}",
    "StatefulSet": "/apis/apps/v1/namespaces/{namespace}/statefulsets/{name}",
    "LeaderWorkerSet": "/apis/leaderworkerset.x-k8s.io/v1/namespaces/{namespace}/leaderworkersets/{name}",
}
# Labels the controllers of higher-level workloads set on their pods; they name the workload the
# user wrote where the owner chain stops below it (KServe serverless: … → Knative Revision;
# an owner the agent may not read) — but not over a custom resource the chain reached itself
# (an LLMInferenceService that owns a LeaderWorkerSet).
WORKLOAD_LABELS: tuple[tuple[str, str], ...] = (
    ("serving.kserve.io/inferenceservice", "InferenceService"),
    ("leaderworkerset.sigs.k8s.io/name", "LeaderWorkerSet"),
)
# Owner kinds that are machinery between a pod and what the user wrote.
INTERMEDIATE_KINDS: frozenset[str] = frozenset({*OWNER_KINDS, "Revision", "Configuration"})
# Node labels worth reporting: GPU feature discovery, accelerators named by clouds, instance type.
NODE_LABEL_PREFIXES: tuple[str, ...] = (
    "nvidia.com/",
    "amd.com/gpu",
    "cloud.google.com/gke-accelerator",
    "cloud.google.com/gke-gpu",
    "karpenter.k8s.aws/instance-gpu",
    "node.kubernetes.io/instance-type",
    "topology.kubernetes.io/zone",
    "topology.kubernetes.io/region",
)
GPU_PRODUCT_LABELS: tuple[str, ...] = (
    "nvidia.com/gpu.product",
    "cloud.google.com/gke-accelerator",
    "karpenter.k8s.aws/instance-gpu-name",
)
GPU_RESOURCE = re.compile(r"^(nvidia\.com|amd\.com)/gpu$")
AGENT_CONTAINER = re.compile(r"skewwatch", re.IGNORECASE)


class KubeUnavailable(SourceUnavailable):
    """No way to reach the API here (not in a cluster, no KUBECONFIG)."""


class KubeError(SourceFailed):
    """The API answered with an error or something that is not the object asked for."""


class KubeForbidden(KubeError):
    """403: the agent's service account may not read this; the message names verb and resource."""


class KubeNotFound(KubeError):
    """404: the object does not exist (yet, or any more)."""


# --- configuration -------------------------------------------------------------------------------
# The files and variables are read by skewwatch.kubeconfig, shared with the collector; here its
# errors become the pod source's (a KubeError fails the API part, KubeUnavailable skips it).


def parse_kubeconfig(text: str, where: str) -> KubeConfig:
    """The current context of a kubeconfig, token auth only. Pure; KubeError names the field."""
    try:
        return kubeconfig.parse_kubeconfig(text, where)
    except kubeconfig.KubeConfigError as e:
        raise KubeError(str(e)) from e


def load_config(sa_root: Path, environ: Mapping[str, str]) -> KubeConfig:
    """In-cluster first, then ``KUBECONFIG`` (its first file); KubeUnavailable when neither."""
    try:
        return kubeconfig.load_config(sa_root, environ)
    except kubeconfig.KubeConfigUnavailable as e:
        raise KubeUnavailable(str(e)) from e
    except kubeconfig.KubeConfigError as e:
        raise KubeError(str(e)) from e


# --- the client ----------------------------------------------------------------------------------


async def _read_capped(resp: aiohttp.ClientResponse, cap: int) -> bytes:
    """The body, read to its end or until it holds ``cap`` bytes (``read(n)`` returns only what
    has arrived: one read of a large object sent in several writes cut it short, "not JSON")."""
    chunks: list[bytes] = []
    size = 0
    while size < cap and (chunk := await resp.content.read(min(64 * 1024, cap - size))):
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


class KubeClient:
    """GETs of single objects, under a timeout and a size cap, with the config's credentials."""

    def __init__(self, config: KubeConfig, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.config = config
        self.timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> KubeClient:
        headers = {"Accept": "application/json", "User-Agent": "skewwatch-agent"}
        if self.config.token:
            headers["Authorization"] = f"Bearer {self.config.token}"
        try:
            ssl_ctx = self.config.ssl_context()
        except (OSError, ssl.SSLError) as e:
            raise KubeError(f"{self.config.source}: cannot load the CA: {e}") from e
        self._session = aiohttp.ClientSession(
            headers=headers,
            connector=aiohttp.TCPConnector(ssl=ssl_ctx),
            timeout=aiohttp.ClientTimeout(total=self.timeout_s),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def get(self, path: str, what: str) -> dict[str, Any]:
        """The object at ``path``; ``what`` ("get nodes") names it in errors."""
        assert self._session is not None, "use KubeClient as an async context manager"
        url = self.config.server + path
        try:
            async with self._session.get(url) as resp:
                if resp.status == 403:
                    raise KubeForbidden(f"{what}: forbidden (the agent's RBAC must allow {what!r}): {path}")
                if resp.status == 404:
                    raise KubeNotFound(f"{what}: not found: {path}")
                if resp.status == 401:
                    raise KubeError(f"{what}: unauthorized (token rejected by {self.config.server})")
                if resp.status != 200:
                    raise KubeError(f"{what}: HTTP {resp.status} from {url}")
                body = await _read_capped(resp, MAX_OBJECT_BYTES + 1)
        except aiohttp.ClientError as e:
            raise KubeError(f"{what}: {url}: {type(e).__name__}: {e}") from e
        except TimeoutError as e:
            raise KubeError(f"{what}: {url}: no answer within {self.timeout_s:g} s") from e
        if len(body) > MAX_OBJECT_BYTES:
            raise KubeError(f"{what}: {url}: object over {MAX_OBJECT_BYTES} bytes")
        try:
            doc = json.loads(body)
        except ValueError as e:
            raise KubeError(f"{what}: {url}: not JSON") from e
        if not isinstance(doc, dict):
            raise KubeError(f"{what}: {url}: not a JSON object")
        return doc


# --- interpreting (pure) -------------------------------------------------------------------------


@dataclass
class ClusterFact:
    key: str
    value: FactValue
    detail: str


@dataclass
class ClusterView:
    """What the API said, as facts, and what it could not say."""

    facts: list[ClusterFact] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    workload: str | None = None

    def add(self, key: str, value: FactValue, detail: str) -> None:
        self.facts.append(ClusterFact(key, value, detail))


def image_digest(image_id: str) -> str | None:
    """``sha256:…`` from a container status ``imageID`` in any runtime's spelling."""
    m = _DIGEST.search(image_id or "")
    return m.group(0) if m else None


def engine_container(
    spec: Mapping[str, Any], preferred: str | None = None
) -> tuple[dict[str, Any], str] | None:
    """The inference container of a Pod spec, and why it was chosen."""
    containers = [c for c in spec.get("containers") or [] if isinstance(c, dict)]
    if preferred:
        for c in containers:
            if c.get("name") == preferred:
                return c, f"container {preferred!r} (SKEWWATCH_CONTAINER)"
    for c in containers:
        res = c.get("resources") or {}
        if any(GPU_RESOURCE.match(str(k)) for part in ("limits", "requests") for k in (res.get(part) or {})):
            return c, f"container {c.get('name')!r} (requests GPUs)"
    for c in containers:
        if not AGENT_CONTAINER.search(str(c.get("name", ""))):
            return c, f"container {c.get('name')!r} (first that is not the agent)"
    return None


REVISION_LABELS = ("pod-template-hash", "controller-revision-hash")
REVISION_HASH = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")


def pod_view(pod: Mapping[str, Any], view: ClusterView, preferred_container: str | None = None) -> None:
    """Facts of the Pod object itself: images and digests, resources, placement constraints."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    where = f"Pod {meta.get('namespace', '')}/{meta.get('name', '')}"
    statuses: dict[str, Any] = {
        str(s["name"]): s
        for s in (status.get("containerStatuses") or [])
        if isinstance(s, dict) and s.get("name")
    }
    if meta.get("uid"):
        view.add("orchestration.pod_uid", str(meta["uid"]), f"{where} metadata.uid")
    raw_labels = meta.get("labels")
    labels: Mapping[str, Any] = raw_labels if isinstance(raw_labels, dict) else {}
    for label in REVISION_LABELS:
        # Which revision of its workload the pod runs (the collector maps it to the ReplicaSet's or
        # ControllerRevision's number): from the Pod when no downward-API labels file says it.
        if isinstance(labels.get(label), str) and REVISION_HASH.match(labels[label]):
            view.add(f"orchestration.labels.{label}", labels[label], f"{where} metadata.labels[{label}]")
    if spec.get("nodeName"):
        view.add("orchestration.node", str(spec["nodeName"]), f"{where} spec.nodeName")
    _container_images(spec, statuses, view, where)
    chosen = engine_container(spec, preferred_container)
    if chosen is None:
        view.problems.append(f"{where}: no containers")
    else:
        _engine_container(chosen, statuses, view, where)
    _placement(spec, view, where)
    if status.get("qosClass"):
        view.add("orchestration.qos_class", str(status["qosClass"]), f"{where} status.qosClass")


def _container_images(
    spec: Mapping[str, Any], statuses: Mapping[str, Any], view: ClusterView, where: str
) -> None:
    """Every container's image, and its digest once it has started."""
    for c in spec.get("containers") or []:
        if not isinstance(c, dict) or not c.get("name"):
            continue
        name = str(c["name"])
        view.add(
            f"orchestration.containers.{name}.image",
            str(c.get("image", "")),
            f"{where} spec.containers[{name}].image",
        )
        digest = image_digest(str((statuses.get(name) or {}).get("imageID", "")))
        if digest:
            view.add(
                f"orchestration.containers.{name}.image_digest",
                digest,
                f"{where} status.containerStatuses[{name}].imageID",
            )


def _engine_container(
    chosen: tuple[Mapping[str, Any], str], statuses: Mapping[str, Any], view: ClusterView, where: str
) -> None:
    """The engine's container: ``orchestration.image``, its digest and its resources."""
    c, why = chosen
    name = str(c.get("name"))
    view.add("orchestration.image", str(c.get("image", "")), f"{where} {why} image")
    digest = image_digest(str((statuses.get(name) or {}).get("imageID", "")))
    if digest:
        view.add("orchestration.image_digest", digest, f"{where} status.containerStatuses[{name}].imageID")
    else:
        view.problems.append(f"{where}: container {name!r} has no image digest yet (not started?)")
    resources = c.get("resources") or {}
    for part in ("requests", "limits"):
        for res, qty in sorted((resources.get(part) or {}).items()):
            view.add(f"orchestration.resources.{part}.{res}", str(qty), f"{where} {why} resources.{part}")


def _placement(spec: Mapping[str, Any], view: ClusterView, where: str) -> None:
    """Where and how the pod may be scheduled: selectors, affinity, tolerations, classes."""
    view.add(
        "orchestration.node_selector", dict(spec.get("nodeSelector") or {}), f"{where} spec.nodeSelector"
    )
    view.add("orchestration.affinity", _json_value(spec.get("affinity") or {}), f"{where} spec.affinity")
    view.add(
        "orchestration.tolerations", _json_value(spec.get("tolerations") or []), f"{where} spec.tolerations"
    )
    for key, field_name in (
        ("orchestration.service_account", "serviceAccountName"),
        ("orchestration.runtime_class", "runtimeClassName"),
        ("orchestration.priority_class", "priorityClassName"),
        ("orchestration.scheduler", "schedulerName"),
    ):
        if spec.get(field_name):
            view.add(key, str(spec[field_name]), f"{where} spec.{field_name}")


def _json_value(value: object) -> FactValue:
    return json.loads(json.dumps(value))  # type: ignore[no-any-return]  # JSON in, JSON out


def controller_of(obj: Mapping[str, Any]) -> dict[str, Any] | None:
    """The owner reference with ``controller: true`` (else the only one), or None."""
    refs = [r for r in (obj.get("metadata") or {}).get("ownerReferences") or [] if isinstance(r, dict)]
    for ref in refs:
        if ref.get("controller"):
            return ref
    return refs[0] if len(refs) == 1 else None


def resolve_workload(
    namespace: str, pod_name: str, chain: Sequence[tuple[str, str]], labels: Mapping[str, str]
) -> tuple[str, str]:
    """``namespace/kind/name`` of the workload, and why: the top of the owner chain, unless a label
    names the higher-level workload a controller made it for and the chain stopped below it."""
    if not chain or chain[-1][0] in INTERMEDIATE_KINDS:
        for label, kind in WORKLOAD_LABELS:
            if labels.get(label):
                via = " (owner chain " + " → ".join(f"{k}/{n}" for k, n in chain) + ")" if chain else ""
                return f"{namespace}/{kind}/{labels[label]}", f"label {label}{via}"
    if chain:
        kind, name = chain[-1]
        return f"{namespace}/{kind}/{name}", "owner chain " + " → ".join(f"{k}/{n}" for k, n in chain)
    return f"{namespace}/Pod/{pod_name}", "no owner"


def node_view(node: Mapping[str, Any], view: ClusterView) -> None:
    """The node's GPU and placement labels, and its GPU class."""
    meta = node.get("metadata") or {}
    labels: Mapping[str, str] = meta.get("labels") or {}
    where = f"Node {meta.get('name', '')}"
    for key in sorted(labels):
        if key.startswith(NODE_LABEL_PREFIXES):
            view.add(f"orchestration.node_labels.{key}", str(labels[key]), f"{where} label {key}")
    for label in GPU_PRODUCT_LABELS:
        if labels.get(label):
            view.add(
                "orchestration.node_gpu_product",
                gpu_class_name(str(labels[label])),
                f"{where} label {label}={labels[label]!r}",
            )
            break
    allocatable = (node.get("status") or {}).get("allocatable") or {}
    for res, qty in sorted(allocatable.items()):
        if GPU_RESOURCE.match(str(res)):
            view.add(f"orchestration.node_allocatable.{res}", str(qty), f"{where} status.allocatable")


# --- reading -------------------------------------------------------------------------------------


async def read_cluster(
    client: KubeClient,
    namespace: str,
    pod_name: str,
    node_name: str | None,
    preferred_container: str | None = None,
) -> ClusterView:
    """GET the Pod, walk its owners, GET its Node. Only the Pod GET is required; a forbidden
    owner or node loses only its own facts."""
    view = ClusterView()
    pod = await client.get(f"/api/v1/namespaces/{namespace}/pods/{pod_name}", "get pods")
    pod_view(pod, view, preferred_container)
    labels: Mapping[str, str] = (pod.get("metadata") or {}).get("labels") or {}

    chain: list[tuple[str, str]] = []
    obj: Mapping[str, Any] = pod
    for _ in range(MAX_OWNER_DEPTH):
        ref = controller_of(obj)
        if ref is None:
            break
        kind, name = str(ref.get("kind", "")), str(ref.get("name", ""))
        chain.append((kind, name))
        template = OWNER_KINDS.get(kind)
        if template is None:
            break  # a kind the agent does not read (InferenceService, a Knative Revision …): the top
        resource = template.rsplit("/", 2)[-2]
        try:
            obj = await client.get(template.format(namespace=namespace, name=name), f"get {resource}")
        except (KubeForbidden, KubeNotFound) as e:
            view.problems.append(str(e))
            break
    workload, why = resolve_workload(namespace, pod_name, chain, labels)
    view.workload = workload
    view.add("orchestration.workload", workload, why)
    view.add(
        "orchestration.owner_chain", [f"{k}/{n}" for k, n in chain], "metadata.ownerReferences (controller)"
    )

    node = node_name or str((pod.get("spec") or {}).get("nodeName") or "")
    if node:
        try:
            node_view(await client.get(f"/api/v1/nodes/{node}", "get nodes"), view)
        except (KubeForbidden, KubeNotFound) as e:
            view.problems.append(str(e))
    return view
