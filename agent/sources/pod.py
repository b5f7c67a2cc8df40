"""The ``pod`` source: which pod, namespace, node and workload this replica is.

Read from the agent's own environment (the downward-API variables ``POD_NAME``,
``POD_NAMESPACE``, ``NODE_NAME``, ``POD_UID``, ``POD_IP``) and a downward-API volume
(``/etc/podinfo``: ``name``, ``namespace``, ``uid``, ``labels``, ``annotations``). Outside
Kubernetes the host name stands in for the pod, in namespace ``default``. The workload is
``SKEWWATCH_WORKLOAD`` when set, else derived from well-known labels, else from the pod name with
its generated suffixes removed. Resource requests and limits come from downward-API
``resourceFieldRef`` files (``cpu_request``, ``cpu_limit``, ``mem_request``, ``mem_limit``, …).

Where the agent may read the Kubernetes API (in-cluster service account or ``KUBECONFIG``:
``agent.k8s``), it also GETs its own Pod (images and digests, resources, node selector, affinity,
tolerations), walks the owner chain to the workload (Deployment via its ReplicaSet, StatefulSet,
LeaderWorkerSet, KServe) and GETs the Node's GPU labels (``orchestration.node_gpu_product`` is the
normalised GPU class). Those facts have provenance ``k8s`` and beat the derived workload. The API
answer is cached for ``API_REFRESH_S`` (the Pod and its owners change on rollouts, not every
15 s). Without API access the message says the API part is unavailable and the downward-API facts
stand.

:func:`pod_identity` is the pure-ish helper the agent's stream uses for its Hello; the parsers
(:func:`parse_downward_api`, :func:`derive_workload`) are pure and tested on literals.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from agent.engines import redact_with
from agent.k8s import ClusterView, KubeClient, KubeError, KubeUnavailable, load_config, read_cluster
from agent.sources.base import CollectContext, FactBuilder, SourceResult
from skewwatch.core.errors import FactError
from skewwatch.core.facts import MAX_STRING_LENGTH
from skewwatch.core.identity import PodIdentity
from skewwatch.redact import Redactor

MAX_PODINFO_FILE_BYTES = 1024 * 1024  # Kubernetes caps all annotations of an object at 256 KiB
DEFAULT_NAMESPACE = "default"
API_REFRESH_S = 120.0
API_TIMEOUT_S = 5.0
# Downward-API resourceFieldRef files (the names Kubernetes' own examples use) → resources key.
RESOURCE_FILES: dict[str, str] = {
    "cpu_request": "requests.cpu",
    "cpu_limit": "limits.cpu",
    "mem_request": "requests.memory",
    "mem_limit": "limits.memory",
    "memory_request": "requests.memory",
    "memory_limit": "limits.memory",
    "ephemeral_storage_request": "requests.ephemeral-storage",
    "ephemeral_storage_limit": "limits.ephemeral-storage",
}

# rand.SafeEncodeString's alphabet: pod-template-hash values and generateName suffixes use it.
_SAFE = "[bcdfghjklmnpqrstvwxz2456789]"
_DEPLOYMENT_POD = re.compile(rf"^(?P<name>.+)-{_SAFE}{{6,10}}-{_SAFE}{{5}}$")
_STATEFULSET_POD = re.compile(r"^(?P<name>.+)-\d+$")
_GENERATED_POD = re.compile(rf"^(?P<name>.+)-{_SAFE}{{5}}$")
_WORKLOAD = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[A-Za-z][A-Za-z0-9]*/[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_META_KEY = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._/-]{0,316}[A-Za-z0-9])?$")
_LINE = re.compile(r'^(?P<key>[^=\s]+)="(?P<value>(?:[^"\\]|\\.)*)"$')
_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\", '"': '"'}

# Labels that name the owning workload outright, most specific first.
_WORKLOAD_LABELS: tuple[tuple[str, str], ...] = (
    ("leaderworkerset.sigs.k8s.io/name", "LeaderWorkerSet"),
    ("serving.kserve.io/inferenceservice", "InferenceService"),
    ("batch.kubernetes.io/job-name", "Job"),
    ("job-name", "Job"),
)
# A copy of the whole applied object (env values included): noise, and possibly secrets in clear.
_SKIPPED_ANNOTATIONS = frozenset({"kubectl.kubernetes.io/last-applied-configuration"})


# --- pure parsers -----------------------------------------------------------------------------


def go_unquote(text: str) -> str:
    """Undo Go's strconv.Quote, which the kubelet uses for downward-API label and annotation values."""
    out = bytearray()
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "\\":
            out += ch.encode("utf-8", "surrogateescape")
            i += 1
            continue
        if i + 1 >= len(text):
            raise ValueError("dangling backslash")
        esc = text[i + 1]
        if esc in _ESCAPES:
            out += _ESCAPES[esc].encode()
            i += 2
        elif esc in "xuU":
            width = {"x": 2, "u": 4, "U": 8}[esc]
            digits = text[i + 2 : i + 2 + width]
            if len(digits) != width or not all(c in "0123456789abcdefABCDEF" for c in digits):
                raise ValueError(f"bad \\{esc} escape")
            code = int(digits, 16)
            # \xNN is one raw byte (part of a UTF-8 sequence); \u and \U are code points
            out += bytes([code]) if esc == "x" else chr(code).encode("utf-8", "surrogatepass")
            i += 2 + width
        elif esc in "01234567":
            digits = text[i + 1 : i + 4]
            if len(digits) != 3 or not all(c in "01234567" for c in digits) or int(digits, 8) > 255:
                raise ValueError("bad octal escape")
            out += bytes([int(digits, 8)])
            i += 4
        else:
            raise ValueError(f"unknown escape \\{esc}")
    return out.decode("utf-8", "replace")


def parse_downward_api(text: str, where: str = "podinfo") -> tuple[dict[str, str], list[str]]:
    """``key="value"`` lines of a downward-API ``labels``/``annotations`` file, and problems."""
    values: dict[str, str] = {}
    problems: list[str] = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        m = _LINE.match(line.strip())
        if not m:
            problems.append(f'{where} line {n}: expected key="value"')
            continue
        try:
            values[m.group("key")] = go_unquote(m.group("value"))
        except ValueError as e:
            problems.append(f"{where} line {n}: {e}")
    return values, problems


def derive_workload(namespace: str, pod: str, labels: Mapping[str, str]) -> tuple[str, str]:
    """``namespace/kind/name`` of the pod's owner, guessed without the API, and how it was guessed."""
    for label, kind in _WORKLOAD_LABELS:
        if labels.get(label):
            return f"{namespace}/{kind}/{labels[label]}", "labels"
    template_hash = labels.get("pod-template-hash")
    if template_hash:
        m = re.match(rf"^(?P<name>.+)-{re.escape(template_hash)}-{_SAFE}{{5}}$", pod)
        if m:
            return f"{namespace}/Deployment/{m.group('name')}", "labels"
    if "statefulset.kubernetes.io/pod-name" in labels:
        m = _STATEFULSET_POD.match(pod)
        if m:
            return f"{namespace}/StatefulSet/{m.group('name')}", "labels"
    for pattern, kind in (
        (_DEPLOYMENT_POD, "Deployment"),
        (_STATEFULSET_POD, "StatefulSet"),
        # a bare generateName suffix: a ReplicaSet, DaemonSet or Job; the API will tell them apart
        (_GENERATED_POD, "ReplicaSet"),
    ):
        m = pattern.match(pod)
        if m:
            return f"{namespace}/{kind}/{m.group('name')}", "pod-name"
    return f"{namespace}/Pod/{pod}", "pod-name"


# --- reading ----------------------------------------------------------------------------------


@dataclass
class _Value:
    value: str
    method: str
    detail: str


@dataclass
class PodFacts:
    """Everything the pod source learnt, with where each piece came from."""

    namespace: _Value
    pod: _Value
    node: _Value | None
    workload: _Value
    workload_source: str
    in_kubernetes: bool
    uid: _Value | None = None
    ip: _Value | None = None
    host: _Value | None = None
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    resources: dict[str, _Value] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)


def _read_text(path: Path, problems: list[str]) -> str | None:
    try:
        with path.open("rb") as f:
            data = f.read(MAX_PODINFO_FILE_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as e:
        problems.append(f"cannot read {path}: {e.strerror or e}")
        return None
    if len(data) > MAX_PODINFO_FILE_BYTES:
        problems.append(f"{path}: larger than {MAX_PODINFO_FILE_BYTES} bytes, ignored")
        return None
    return data.decode("utf-8", "replace")


def _env_or_file(
    environ: Mapping[str, str], env_name: str, podinfo: Path, file_names: tuple[str, ...], problems: list[str]
) -> _Value | None:
    value = environ.get(env_name, "").strip()
    if value:
        return _Value(value, "env", f"{env_name} (downward API)")
    for name in file_names:
        text = _read_text(podinfo / name, problems)
        if text is not None and text.strip():
            return _Value(text.strip(), "file", str(podinfo / name))
    return None


def _metadata_files(podinfo: Path, problems: list[str]) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """The downward-API ``labels`` and ``annotations`` files, and which of them were there."""
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    files: list[str] = []
    for name, target in (("labels", labels), ("annotations", annotations)):
        text = _read_text(podinfo / name, problems)
        if text is None:
            continue
        files.append(name)
        parsed, bad = parse_downward_api(text, str(podinfo / name))
        target.update(parsed)
        problems.extend(bad)
    return labels, annotations, files


def _resources(podinfo: Path, problems: list[str]) -> dict[str, _Value]:
    resources: dict[str, _Value] = {}
    for name, key in RESOURCE_FILES.items():
        text = _read_text(podinfo / name, problems)
        if text is not None and text.strip():
            resources[key] = _Value(text.strip(), "file", str(podinfo / name))
    return resources


def _workload(
    environ: Mapping[str, str],
    namespace: _Value,
    pod: _Value,
    labels: Mapping[str, str],
    *,
    in_kubernetes: bool,
    problems: list[str],
) -> tuple[_Value, str]:
    """The workload and where it came from: SKEWWATCH_WORKLOAD, else the pod labels or name
    (in Kubernetes), else the host."""
    workload_env = environ.get("SKEWWATCH_WORKLOAD", "").strip()
    if workload_env:
        if _WORKLOAD.match(workload_env):
            return _Value(workload_env, "env", "SKEWWATCH_WORKLOAD"), "env"
        problems.append(f"SKEWWATCH_WORKLOAD: expected namespace/kind/name, got {workload_env[:100]!r}")
    if in_kubernetes:
        value, source = derive_workload(namespace.value, pod.value, labels)
        detail = "derived from pod labels" if source == "labels" else "derived from the pod name"
    else:
        value, source, detail = (
            f"{namespace.value}/Host/{pod.value}",
            "hostname",
            "the host (not in Kubernetes)",
        )
    return _Value(value, "derived", detail), source


def read_pod(environ: Mapping[str, str], podinfo: Path) -> PodFacts:
    """Read the pod's identity, labels and annotations from env and the downward-API volume."""
    problems: list[str] = []
    pod = _env_or_file(environ, "POD_NAME", podinfo, ("name", "pod_name"), problems)
    namespace = _env_or_file(environ, "POD_NAMESPACE", podinfo, ("namespace", "pod_namespace"), problems)
    node = _env_or_file(environ, "NODE_NAME", podinfo, ("node_name", "nodename"), problems)
    uid = _env_or_file(environ, "POD_UID", podinfo, ("uid", "pod_uid"), problems)
    ip = _env_or_file(environ, "POD_IP", podinfo, ("pod_ip",), problems)
    labels, annotations, files = _metadata_files(podinfo, problems)
    resources = _resources(podinfo, problems)

    in_kubernetes = pod is not None or bool(environ.get("KUBERNETES_SERVICE_HOST"))
    hostname = environ.get("HOSTNAME", "").strip() or socket.gethostname()
    host: _Value | None = None
    if pod is None:
        # In Kubernetes a container's host name is its pod's name; outside it, the host is the replica.
        how = (
            "HOSTNAME (Kubernetes sets it to the pod name)"
            if in_kubernetes
            else "host name (not in Kubernetes)"
        )
        pod = _Value(hostname, "derived", how)
        if not in_kubernetes:
            host = _Value(hostname, "derived", "host name")
            node = node or _Value(hostname, "derived", "host name (not in Kubernetes)")
    if namespace is None:
        namespace = _Value(DEFAULT_NAMESPACE, "default", "no POD_NAMESPACE or podinfo namespace")
    workload, source = _workload(
        environ, namespace, pod, labels, in_kubernetes=in_kubernetes, problems=problems
    )

    return PodFacts(
        namespace=namespace,
        pod=pod,
        node=node,
        workload=workload,
        workload_source=source,
        in_kubernetes=in_kubernetes,
        uid=uid,
        ip=ip,
        host=host,
        labels=labels,
        annotations=annotations,
        resources=resources,
        problems=problems,
        files=files,
    )


def pod_identity(environ: Mapping[str, str], podinfo_dir: Path) -> PodIdentity:
    """Who this pod is, for the agent's Hello (agent id and version are the stream's to add)."""
    info = read_pod(environ, podinfo_dir)
    return PodIdentity(
        namespace=info.namespace.value,
        pod=info.pod.value,
        node=info.node.value if info.node else "",
        workload=info.workload.value,
        workload_source=info.workload_source,
    )


# --- the source -------------------------------------------------------------------------------


class PodSource:
    """Reports the pod's identity, workload, labels, annotations and, with API access, its Pod
    object, owners and node. Keeps the last API answer for ``API_REFRESH_S``."""

    name = "pod"
    needs: tuple[str, ...] = ()

    def __init__(
        self,
        refresh_s: float = API_REFRESH_S,
        timeout_s: float = API_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.refresh_s = refresh_s
        self.timeout_s = timeout_s
        self.clock = clock
        self._cached: tuple[float, tuple[str, str], ClusterView | None, str] | None = None

    async def collect(self, ctx: CollectContext) -> SourceResult:
        # A handful of small files under /etc/podinfo: not worth a thread.
        info = read_pod(ctx.environ, ctx.paths.podinfo)
        view, api_message = await self._cluster(ctx, info)
        return build_pod_result(ctx, info, view, api_message)

    async def _cluster(self, ctx: CollectContext, info: PodFacts) -> tuple[ClusterView | None, str]:
        """The API's view of this pod (cached), and a message on how it went."""
        key = (info.namespace.value, info.pod.value)
        now = self.clock()
        if self._cached is not None and self._cached[1] == key and now < self._cached[0]:
            return self._cached[2], self._cached[3]
        view: ClusterView | None = None
        try:
            config = load_config(ctx.paths.serviceaccount, ctx.environ)
            async with KubeClient(config, self.timeout_s) as client:
                node = info.node.value if info.node is not None and info.node.method != "derived" else None
                view = await read_cluster(
                    client, key[0], key[1], node, ctx.environ.get("SKEWWATCH_CONTAINER") or None
                )
            message = f"Kubernetes API ({config.source}): ok"
            if view.problems:
                message += "; " + "; ".join(view.problems[:5])
        except KubeUnavailable as e:
            message = f"Kubernetes API unavailable: {e}"
        except KubeError as e:
            message = f"Kubernetes API error: {e}"
        self._cached = (now + self.refresh_s, key, view, message)
        return view, message


def build_pod_result(
    ctx: CollectContext, info: PodFacts, view: ClusterView | None, api_message: str
) -> SourceResult:
    redact = redact_with(Redactor(ctx.settings.redaction_salt))
    fb = FactBuilder("pod")
    problems = list(info.problems)

    def add(key: str, v: _Value | None) -> None:
        if v is not None:
            _add(fb, problems, key, v)

    add("orchestration.namespace", info.namespace)
    add("orchestration.pod", info.pod)
    add("orchestration.node", info.node)
    add("orchestration.workload", info.workload)
    add("orchestration.pod_uid", info.uid)
    add("orchestration.pod_ip", info.ip)
    add("orchestration.host", info.host)
    for resource, amount in sorted(info.resources.items()):
        add(f"orchestration.resources.{resource}", amount)
    labels_file = str(ctx.paths.podinfo / "labels")
    annotations_file = str(ctx.paths.podinfo / "annotations")
    for key, value in sorted(info.labels.items()):
        if _meta_key_ok(key, "label", problems):
            _add(fb, problems, f"orchestration.labels.{key}", _Value(redact(key, value), "file", labels_file))
    for key, value in sorted(info.annotations.items()):
        if key in _SKIPPED_ANNOTATIONS or not _meta_key_ok(key, "annotation", problems):
            continue
        safe = redact(key, value)
        _add(fb, problems, f"orchestration.annotations.{key}", _Value(safe, "file", annotations_file))
    if view is not None:
        from_file = {f"orchestration.labels.{k}" for k in info.labels}
        for cf in view.facts:
            if cf.key in from_file:
                continue  # the downward-API file said it first
            try:
                fb.add(cf.key, cf.value, "k8s", cf.detail)
            except FactError as e:
                problems.append(str(e))

    if info.in_kubernetes:
        found = "downward API" + (f" (podinfo: {', '.join(info.files)})" if info.files else "")
        source = (
            "the Kubernetes API (owner chain)" if view is not None and view.workload else info.workload_source
        )
        message = f"identity from the {found}; workload from {source}"
    else:
        message = "not in Kubernetes: the host name stands in for the pod"
    message += "; " + api_message
    if problems:
        return SourceResult.error(message + "; " + "; ".join(problems[:5]), fb.facts)
    return SourceResult.ok(fb.facts, message=message)


def _meta_key_ok(key: str, what: str, problems: list[str]) -> bool:
    if _META_KEY.match(key):
        return True
    problems.append(f"{what} key {key[:60]!r} is not a valid Kubernetes key")
    return False


def _add(fb: FactBuilder, problems: list[str], key: str, v: _Value) -> None:
    if len(v.value) > MAX_STRING_LENGTH:
        problems.append(f"{key}: value of {len(v.value)} characters is over {MAX_STRING_LENGTH}, left out")
        return
    try:
        fb.add(key, v.value, v.method, v.detail)
    except FactError as e:
        problems.append(str(e))
