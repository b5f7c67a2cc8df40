"""What injecting the skewwatch agent into one Pod means: the agent container and the JSONPatch.

Pure (no server, no I/O): :func:`find_inference_container` picks the container to watch (the
``skewwatch.io/container`` annotation, else the first whose command line an engine table of the
agent recognises — the same :func:`agent.sources.process.locate` the agent runs, on the command
the kubelet would start, the image's entrypoint standing in for a missing ``command`` as in the
pre-deploy check —, else the first); :func:`agent_container` builds the sidecar;
:func:`injection_patch` gives the RFC 6902 operations that add it, its volumes, the marker
annotation and ``shareProcessNamespace``. The sidecar gets the pod's own emptyDir at /tmp (its
outbox file survives a restart of the agent container there) and, read-only at
:data:`CREDENTIALS_PATH`, the namespace's credentials Secret (the collector's CA and the agent's
token; config ``credentialsSecret``). Every knob a pod may turn is an annotation under
``skewwatch.io/``; a value it cannot take is a :class:`InjectionProblem` naming the annotation.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from agent.engines import Invocation
from agent.engines.base import HUB_CACHE_ENV
from agent.sources.process import locate, parse_args
from skewwatch.core.containers import IMAGE_ENTRYPOINTS, k8s_expand
from skewwatch.webhook.config import SIDECAR_MODES, SidecarMode, WebhookConfig, parse_resources
from skewwatch.webhook.errors import ConfigError, WebhookError

PREFIX = "skewwatch.io/"
INJECT = PREFIX + "inject"  # pod annotation "true" | "false"; namespace label "enabled"
INJECTED = PREFIX + "injected"  # the marker this webhook leaves
CONTAINER = PREFIX + "container"
MODEL_VOLUMES = PREFIX + "model-volumes"
IMAGE = PREFIX + "image"
SIDECAR_MODE = PREFIX + "sidecar-mode"
COLLECTOR = PREFIX + "collector"
COLLECTOR_SECRET = PREFIX + "collector-secret"
CREDENTIALS_SECRET = PREFIX + "credentials-secret"
MATCH = PREFIX + "match"
INTERVAL = PREFIX + "interval"
RESOURCES = {
    PREFIX + "cpu-request": ("requests", "cpu"),
    PREFIX + "memory-request": ("requests", "memory"),
    PREFIX + "cpu-limit": ("limits", "cpu"),
    PREFIX + "memory-limit": ("limits", "memory"),
}
NAMESPACE_LABEL_VALUE = "enabled"

AGENT_CONTAINER = "skewwatch-agent"
PODINFO_VOLUME = "skewwatch-podinfo"
PODINFO_PATH = "/etc/podinfo"
TMP_VOLUME = "skewwatch-tmp"
TMP_PATH = "/tmp"  # noqa: S108  (the agent's own emptyDir)
# The Secret of the agent's TLS CA (ca.crt) and bearer token (token), in the pod's namespace: the
# agent Secret's SKEWWATCH_TLS_CA / SKEWWATCH_TOKEN_FILE name these files. A volume, not env: a
# file is not in `kubectl describe`, crash dumps or child processes, and the kubelet updates it
# in place when the Secret is replaced (no subPath), where the agent re-reads it.
CREDENTIALS_VOLUME = "skewwatch-credentials"
CREDENTIALS_PATH = "/etc/skewwatch/credentials"
CREDENTIALS_MODE = 0o444  # the agent's uid follows the engine's; only the sidecar mounts it
# Unacknowledged messages survive a restart of the agent container in its emptyDir.
OUTBOX_FILE = f"{TMP_PATH}/skewwatch-outbox"
MAX_MATCH_CHARS = 512
_HF_HOME = "HF_HOME"
_INTERVAL = re.compile(r"^\d{1,5}(\.\d{1,3})?$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


class InjectionProblem(WebhookError, ValueError):
    """A pod asks for something the webhook cannot do (an annotation it cannot take, a container
    that is not there); the pod is admitted unchanged with this message as a warning."""


@dataclass(frozen=True)
class Target:
    """The inference container, where it is, and what the agent's engine tables saw in it."""

    index: int
    container: Mapping[str, Any]
    how: str
    invocation: Invocation | None = None
    model_paths: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return str(self.container.get("name") or "")


@dataclass
class Plan:
    """One injection: the agent container, where it goes, and the volumes it brings."""

    target: Target
    mode: SidecarMode
    agent: dict[str, Any]
    volumes: list[dict[str, Any]] = field(default_factory=list)


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def annotations_of(pod: Mapping[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in _dict(_dict(pod.get("metadata")).get("annotations")).items()}


# The fields injection reads, and their JSON types: (field, type, required).
_CONTAINER_FIELDS: tuple[tuple[str, type, bool], ...] = (
    ("name", str, True),
    ("image", str, False),
    ("command", list, False),
    ("args", list, False),
    ("env", list, False),
    ("volumeMounts", list, False),
    ("securityContext", dict, False),
)


def _typed(obj: Mapping[str, Any], fields: Sequence[tuple[str, type, bool]], where: str) -> str | None:
    for name, kind, needed in fields:
        if name not in obj or obj[name] is None:
            if needed:
                return f"{where}.{name}: missing"
            continue
        value = obj[name]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            return f"{where}.{name}: expected {kind.__name__ if kind is not dict else 'an object'}"
    return None


def _items(items: Sequence[Any], kind: type, where: str) -> str | None:
    for i, item in enumerate(items):
        if not isinstance(item, kind):
            return f"{where}[{i}]: expected {'an object' if kind is dict else 'a string'}"
    return None


def _container_problem(c: Any, where: str) -> str | None:
    if not isinstance(c, dict):
        return f"{where}: expected an object"
    problem = _typed(c, _CONTAINER_FIELDS, where)
    for part in ("command", "args"):
        problem = problem or _items(c.get(part) or [], str, f"{where}.{part}")
    for part in ("env", "volumeMounts"):
        problem = problem or _items(c.get(part) or [], dict, f"{where}.{part}")
    if problem:
        return problem  # the lists below are lists of objects from here on
    for i, e in enumerate(c.get("env") or []):
        problem = problem or _typed(e, (("name", str, True), ("value", str, False)), f"{where}.env[{i}]")
    for i, m in enumerate(c.get("volumeMounts") or []):
        mount_fields = (("name", str, True), ("mountPath", str, True), ("subPath", str, False))
        problem = problem or _typed(m, mount_fields, f"{where}.volumeMounts[{i}]")
    sc = c.get("securityContext") or {}
    return problem or _typed(sc, (("runAsUser", int, False),), f"{where}.securityContext")


def pod_problem(pod: Mapping[str, Any]) -> str | None:
    """The first field injection reads that does not have its Kubernetes type, else None. The
    API server hands in a decoded Pod, so this is only ever a hostile or broken caller."""
    problem = _typed(pod, (("metadata", dict, False), ("spec", dict, True)), "request.object")
    if problem:
        return problem
    meta, spec = pod.get("metadata") or {}, pod["spec"]
    problem = _typed(meta, (("annotations", dict, False),), "metadata")
    if problem is None and not all(isinstance(v, str) for v in (meta.get("annotations") or {}).values()):
        problem = "metadata.annotations: values must be strings"
    pod_fields = (
        ("containers", list, True),
        ("initContainers", list, False),
        ("volumes", list, False),
        ("securityContext", dict, False),
        ("hostPID", bool, False),
    )
    problem = problem or _typed(spec, pod_fields, "spec")
    if problem:
        return problem
    for part in ("containers", "initContainers"):
        for i, c in enumerate(spec.get(part) or []):
            problem = problem or _container_problem(c, f"spec.{part}[{i}]")
    for i, v in enumerate(spec.get("volumes") or []):
        problem = problem or (
            _typed(v, (("name", str, True),), f"spec.volumes[{i}]")
            if isinstance(v, dict)
            else f"spec.volumes[{i}]: expected an object"
        )
    sc = spec.get("securityContext") or {}
    return problem or _typed(sc, (("runAsUser", int, False),), "spec.securityContext")


def has_agent(pod: Mapping[str, Any]) -> bool:
    """The pod already carries the agent: the marker, or a container of the agent's name."""
    if INJECTED in annotations_of(pod):
        return True
    spec = _dict(pod.get("spec"))
    names = {_dict(c).get("name") for part in ("containers", "initContainers") for c in _list(spec.get(part))}
    return AGENT_CONTAINER in names


def _literal_env(container: Mapping[str, Any]) -> dict[str, str]:
    """The container's ``env`` literals, ``$(VAR)`` expanded in order as the kubelet does."""
    env: dict[str, str] = {}
    for raw in _list(container.get("env")):
        item = _dict(raw)
        if item.get("name") and "value" in item:
            env[str(item["name"])] = k8s_expand(str(item["value"] or ""), env)
    return env


def command_line(container: Mapping[str, Any]) -> tuple[list[str], dict[str, str]]:
    """The argv the kubelet starts (``command`` or the image's known entrypoint, then ``args``)
    and the literal environment it expands them with."""
    env = _literal_env(container)
    words = [k8s_expand(str(w), env) for w in _list(container.get("command"))]
    if not words:
        image = str(container.get("image") or "")
        repo = image.split("@", 1)[0].rsplit("/", 1)[-1].split(":", 1)[0]
        words = list(IMAGE_ENTRYPOINTS.get(repo, ()))
    words += [k8s_expand(str(w), env) for w in _list(container.get("args"))]
    return words, env


def _model_paths(inv: Invocation, argv: Sequence[str], env: Mapping[str, str]) -> tuple[str, ...]:
    """Absolute paths where the engine reads its model: the model argument when it is a path,
    the download dir, the Hugging Face cache variables."""
    parsed = parse_args(inv.spec, argv, env)
    candidates = [parsed.model_arg, parsed.download_dir]
    candidates += [env.get(name) for name in (_HF_HOME, *HUB_CACHE_ENV)]
    return tuple(dict.fromkeys(p for p in candidates if p and p.startswith("/")))


def find_inference_container(pod: Mapping[str, Any]) -> Target:
    """The container the agent watches; :class:`InjectionProblem` when the pod has none or the
    ``skewwatch.io/container`` annotation names one it does not have."""
    containers = [_dict(c) for c in _list(_dict(pod.get("spec")).get("containers"))]
    if not containers:
        raise InjectionProblem("the pod has no containers")
    wanted = annotations_of(pod).get(CONTAINER)
    for i, c in enumerate(containers):
        if wanted is not None and c.get("name") != wanted:
            continue
        argv, env = command_line(c)
        inv = locate(argv, env=env)
        how = f"named by {CONTAINER}" if wanted is not None else "its command line starts an engine"
        if inv is not None:
            return Target(i, c, how, inv, _model_paths(inv, argv, env))
        if wanted is not None:
            return Target(i, c, how)
    if wanted is not None:
        raise InjectionProblem(f"{CONTAINER}: the pod has no container named {wanted[:63]!r}")
    return Target(0, containers[0], "the first container (no engine command line recognised)")


def _under(path: str, mount: str) -> bool:
    p, m = PurePosixPath(path), PurePosixPath(mount)
    return p == m or m in p.parents


def model_mounts(
    target: Target, annotations: Mapping[str, str], volume_names: set[str]
) -> list[dict[str, Any]]:
    """The inference container's mounts the agent shares, read-only at the same path: those the
    model paths lie under, or the volumes ``skewwatch.io/model-volumes`` names."""
    mounts = [_dict(m) for m in _list(target.container.get("volumeMounts"))]
    named = annotations.get(MODEL_VOLUMES)
    if named is not None:
        names = [n.strip() for n in named.split(",") if n.strip()]
        for name in names:
            if name not in volume_names:
                raise InjectionProblem(f"{MODEL_VOLUMES}: the pod has no volume named {name[:63]!r}")
            if not any(m.get("name") == name for m in mounts):
                raise InjectionProblem(
                    f"{MODEL_VOLUMES}: container {target.name} does not mount volume {name[:63]!r}"
                )
        chosen = [m for m in mounts if m.get("name") in names]
    else:
        chosen = [
            m
            for m in mounts
            if m.get("mountPath") and any(_under(p, str(m["mountPath"])) for p in target.model_paths)
        ]
    out: list[dict[str, Any]] = []
    for m in chosen:
        mount = {"name": m["name"], "mountPath": m["mountPath"], "readOnly": True}
        for key in ("subPath", "subPathExpr"):
            if key in m:
                mount[key] = m[key]
        if not _under(PODINFO_PATH, str(m["mountPath"])) and mount not in out:
            out.append(mount)
    return out


def engine_match(inv: Invocation | None) -> str | None:
    """A regex over the engine's command line for the agent's ``--match``: its entrypoint."""
    if inv is None:
        return None
    ep = inv.entrypoint
    sub = rf" {re.escape(ep.subcommand)}" if ep.subcommand else ""
    if ep.kind == "module":
        return rf"-m ?{re.escape(ep.name)}{sub}( |$)"
    return rf"(^|/){re.escape(ep.name)}{sub}( |$)"


def _match_of(target: Target, annotations: Mapping[str, str]) -> str | None:
    value = annotations.get(MATCH)
    if value is None:
        return engine_match(target.invocation)
    if not value or len(value) > MAX_MATCH_CHARS:
        raise InjectionProblem(f"{MATCH}: expected a regex of 1 … {MAX_MATCH_CHARS} characters")
    try:
        re.compile(value)
    except re.error as e:
        raise InjectionProblem(f"{MATCH}: not a regex: {e}") from None
    return value


def _resources(config: WebhookConfig, annotations: Mapping[str, str]) -> dict[str, dict[str, str]]:
    out = {part: dict(items) for part, items in config.resources.items()}
    for key, (part, name) in RESOURCES.items():
        if key in annotations:
            try:
                parse_resources({part: {name: annotations[key]}}, key)
            except ConfigError as e:
                raise InjectionProblem(str(e)) from None
            out.setdefault(part, {})[name] = annotations[key]
    return out


def _uid(pod: Mapping[str, Any], target: Target, config: WebhookConfig) -> int | None:
    """The agent's uid: the inference container's ``runAsUser`` (reading its /proc/<pid>/environ
    needs the same uid or CAP_SYS_PTRACE), else none set here when the pod sets one (inherited),
    else the config's."""
    own = _dict(target.container.get("securityContext")).get("runAsUser")
    if isinstance(own, int) and not isinstance(own, bool):
        return own
    pod_uid = _dict(_dict(pod.get("spec")).get("securityContext")).get("runAsUser")
    if isinstance(pod_uid, int) and not isinstance(pod_uid, bool):
        return None
    return config.run_as_user


def _security_context(uid: int | None) -> dict[str, Any]:
    ctx: dict[str, Any] = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"], "add": ["SYS_PTRACE"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if uid != 0:
        ctx["runAsNonRoot"] = True  # an engine that runs as root is watched by a root agent
    if uid is not None:
        ctx["runAsUser"] = uid
    return ctx


_DOWNWARD_ENV = (
    ("POD_NAME", "metadata.name"),
    ("POD_NAMESPACE", "metadata.namespace"),
    ("POD_UID", "metadata.uid"),
    ("NODE_NAME", "spec.nodeName"),
)


def _env(collector: str | None) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}} for name, path in _DOWNWARD_ENV
    ]
    env.append({"name": "SKEWWATCH_OUTBOX_FILE", "value": OUTBOX_FILE})
    if collector:
        env.append({"name": "SKEWWATCH_COLLECTOR", "value": collector})
    return env


def _credentials_secret(annotations: Mapping[str, str], config: WebhookConfig) -> str:
    """The Secret mounted at CREDENTIALS_PATH ("" for none): the annotation, else the config's."""
    name = annotations.get(CREDENTIALS_SECRET)
    if name is None:
        return config.credentials_secret
    if not _DNS_LABEL.match(name):
        raise InjectionProblem(f"{CREDENTIALS_SECRET}: {name[:63]!r} is not a Secret name (a DNS label)")
    return name


def _choice(annotations: Mapping[str, str], config: WebhookConfig) -> SidecarMode:
    mode = annotations.get(SIDECAR_MODE, config.sidecar_mode)
    for m in SIDECAR_MODES:
        if mode == m:
            return m
    raise InjectionProblem(f"{SIDECAR_MODE}: expected native or container, got {mode[:40]!r}")


def _interval(annotations: Mapping[str, str], config: WebhookConfig) -> str:
    value = annotations.get(INTERVAL)
    if value is None:
        return f"{config.interval_s:g}"
    if not _INTERVAL.match(value) or float(value) <= 0:
        raise InjectionProblem(f"{INTERVAL}: expected seconds such as 15 or 2.5, got {value[:20]!r}")
    return value


def agent_container(pod: Mapping[str, Any], target: Target, config: WebhookConfig) -> Plan:
    """The agent sidecar for ``pod`` watching ``target``, as config and annotations say."""
    ann = annotations_of(pod)
    mode = _choice(ann, config)
    spec = _dict(pod.get("spec"))
    volume_names = {str(_dict(v).get("name")) for v in _list(spec.get("volumes"))}
    args = ["--collector", "$(SKEWWATCH_COLLECTOR)", "--interval", _interval(ann, config)]
    match = _match_of(target, ann)
    if match is not None:
        # The kubelet expands $(VAR) in args; $$ is its literal $, so the agent gets the regex as is.
        args += ["--match", match.replace("$", "$$")]
    mounts = model_mounts(target, ann, volume_names)
    mounts += [
        {"name": PODINFO_VOLUME, "mountPath": PODINFO_PATH, "readOnly": True},
        {"name": TMP_VOLUME, "mountPath": TMP_PATH},
    ]
    credentials = _credentials_secret(ann, config)
    if credentials:
        mounts.append({"name": CREDENTIALS_VOLUME, "mountPath": CREDENTIALS_PATH, "readOnly": True})
    agent: dict[str, Any] = {
        "name": AGENT_CONTAINER,
        "image": ann.get(IMAGE, config.image),
        "imagePullPolicy": config.image_pull_policy,
        "command": ["skewwatch", "agent"],
        "args": args,
        "env": _env(ann.get(COLLECTOR, config.collector)),
        "envFrom": [
            {"secretRef": {"name": ann.get(COLLECTOR_SECRET, config.collector_secret), "optional": True}}
        ],
        "resources": _resources(config, ann),
        "securityContext": _security_context(_uid(pod, target, config)),
        "volumeMounts": mounts,
    }
    if mode == "native":
        agent["restartPolicy"] = "Always"
    volumes = [
        {
            "name": PODINFO_VOLUME,
            "downwardAPI": {
                "items": [
                    {"path": name, "fieldRef": {"fieldPath": f"metadata.{name}"}}
                    for name in ("name", "namespace", "uid", "labels", "annotations")
                ]
            },
        },
        {"name": TMP_VOLUME, "emptyDir": {"sizeLimit": "64Mi"}},
    ]
    if credentials:
        # optional: a pod starts without it (then the agent, told to use TLS, says what is missing).
        secret = {"secretName": credentials, "optional": True, "defaultMode": CREDENTIALS_MODE}
        volumes.append({"name": CREDENTIALS_VOLUME, "secret": secret})
    for v in volumes:
        if v["name"] in volume_names:
            raise InjectionProblem(f"the pod already has a volume named {v['name']}: not injected")
    return Plan(target, mode, agent, volumes)


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def injection_patch(pod: Mapping[str, Any], plan: Plan) -> list[dict[str, Any]]:
    """RFC 6902 operations turning ``pod`` into the injected pod (every parent is created first,
    so the patch applies to any pod the API server hands in)."""
    meta = _dict(pod.get("metadata"))
    spec = _dict(pod.get("spec"))
    ops: list[dict[str, Any]] = []
    if not isinstance(pod.get("metadata"), dict):
        ops.append({"op": "add", "path": "/metadata", "value": {}})
    if not isinstance(meta.get("annotations"), dict):
        ops.append({"op": "add", "path": "/metadata/annotations", "value": {}})
    ops.append(
        {
            "op": "add",
            "path": f"/metadata/annotations/{_escape(INJECTED)}",
            "value": plan.target.name or "true",
        }
    )
    if spec.get("hostPID") is not True:  # with the host's pid namespace the agent sees the engine already
        ops.append({"op": "add", "path": "/spec/shareProcessNamespace", "value": True})
    if isinstance(spec.get("volumes"), list):
        ops += [{"op": "add", "path": "/spec/volumes/-", "value": v} for v in plan.volumes]
    else:
        ops.append({"op": "add", "path": "/spec/volumes", "value": plan.volumes})
    if plan.mode == "native":
        if isinstance(spec.get("initContainers"), list):
            # Last: after the init containers that fetch the model, so the model is there when it starts.
            ops.append({"op": "add", "path": "/spec/initContainers/-", "value": plan.agent})
        else:
            ops.append({"op": "add", "path": "/spec/initContainers", "value": [plan.agent]})
    else:
        ops.append({"op": "add", "path": f"/spec/containers/{plan.target.index + 1}", "value": plan.agent})
    return ops
