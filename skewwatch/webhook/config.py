"""The webhook's settings: what an injected agent looks like unless a pod's annotations say otherwise.

Read from the YAML file given by ``--config`` (every field optional; defaults below, documented
in docs/webhook.md). :func:`parse_config` is pure (text in, :class:`WebhookConfig` or a
:class:`~skewwatch.webhook.errors.ConfigError` naming the field out); :func:`load_config` reads
the file with a size cap.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import yaml

from skewwatch.webhook.errors import ConfigError

SidecarMode = Literal["native", "container"]
SIDECAR_MODES: tuple[SidecarMode, ...] = ("native", "container")
MAX_CONFIG_BYTES = 256 * 1024
# Kubernetes resource quantities: "100m", "128Mi", "1.5", "2e3".
_QUANTITY = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|[numkKMGTPE]i?|m)?$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def _default_resources() -> dict[str, dict[str, str]]:
    return {
        "requests": {"cpu": "50m", "memory": "128Mi"},
        "limits": {"cpu": "1", "memory": "512Mi"},
    }


@dataclass(frozen=True)
class WebhookConfig:
    """Defaults of the injected agent and of who is never injected.

    ``image``: the agent image. ``collector``: the collector's gRPC ``HOST:PORT``; empty (the
    default) leaves it to the Secret, which must then hold ``SKEWWATCH_COLLECTOR``.
    ``collector_secret``: the Secret whose keys become the agent's environment (``envFrom``,
    optional: a pod still starts without it). ``credentials_secret``: the Secret in the pod's
    namespace mounted read-only into the agent at ``/etc/skewwatch/credentials`` (``ca.crt``: the
    collector's CA, ``token``: the namespace's agent token; optional too); empty mounts none.
    ``sidecar_mode``: ``native`` (an init container
    with ``restartPolicy: Always``) or ``container``. ``excluded_namespaces``: never injected,
    whatever a pod asks; the webhook's own ``namespace`` is always among them.
    ``interval_s``: the agent's ``--interval``. ``run_as_user``: the agent's uid when neither
    the inference container nor the pod sets one (the agent image's numeric USER).
    """

    image: str = "ghcr.io/skewwatch/agent:0.1.0"
    image_pull_policy: str = "IfNotPresent"
    collector: str = ""
    collector_secret: str = "skewwatch-agent"  # noqa: S105  (a Secret's name)
    credentials_secret: str = "skewwatch-agent-credentials"  # noqa: S105  (a Secret's name)
    sidecar_mode: SidecarMode = "native"
    namespace: str = "skewwatch"
    excluded_namespaces: tuple[str, ...] = ("kube-system", "kube-public", "kube-node-lease")
    resources: dict[str, dict[str, str]] = field(default_factory=_default_resources)
    interval_s: float = 15.0
    run_as_user: int = 65532

    def excluded(self, namespace: str) -> bool:
        return namespace == self.namespace or namespace in self.excluded_namespaces


_KEYS = {
    "image": "image",
    "imagePullPolicy": "image_pull_policy",
    "collector": "collector",
    "collectorSecret": "collector_secret",
    "credentialsSecret": "credentials_secret",
    "sidecarMode": "sidecar_mode",
    "namespace": "namespace",
    "excludedNamespaces": "excluded_namespaces",
    "resources": "resources",
    "interval": "interval_s",
    "runAsUser": "run_as_user",
}
assert set(_KEYS.values()) == {f.name for f in fields(WebhookConfig)}


def parse_resources(value: Any, where: str) -> dict[str, dict[str, str]]:
    """``{requests: {cpu: 50m}, limits: {...}}`` with every quantity checked."""
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping with requests and/or limits")
    out: dict[str, dict[str, str]] = {}
    for part, items in value.items():
        if part not in ("requests", "limits"):
            raise ConfigError(f"{where}.{part}: unknown; expected requests or limits")
        if not isinstance(items, dict):
            raise ConfigError(f"{where}.{part}: expected a mapping of resource to quantity")
        out[part] = {}
        for name, qty in items.items():
            text = str(qty)
            if not _QUANTITY.match(text):
                raise ConfigError(f"{where}.{part}.{name}: {text[:40]!r} is not a Kubernetes quantity")
            out[part][str(name)] = text
    return out


def _field(key: str, value: Any) -> Any:
    where = key
    if key in ("image", "imagePullPolicy", "collector", "collectorSecret", "credentialsSecret", "namespace"):
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string")
        if key == "imagePullPolicy" and value not in ("Always", "IfNotPresent", "Never"):
            raise ConfigError(f"{where}: expected Always, IfNotPresent or Never, got {value[:40]!r}")
        if key == "credentialsSecret" and value == "":
            return value  # no credentials volume
        if key in ("collectorSecret", "credentialsSecret", "namespace") and not _DNS_LABEL.match(value):
            raise ConfigError(f"{where}: {value[:63]!r} is not a DNS label")
        if key == "image" and not value.strip():
            raise ConfigError(f"{where}: must not be empty")
        return value
    if key == "sidecarMode":
        if value not in SIDECAR_MODES:
            raise ConfigError(f"{where}: expected native or container, got {str(value)[:40]!r}")
        return value
    if key == "excludedNamespaces":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: expected a list of namespace names")
        return tuple(value)
    if key == "resources":
        return parse_resources(value, where)
    if key == "interval":
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 86400:
            raise ConfigError(f"{where}: expected seconds, more than 0 and at most 86400")
        return float(value)
    # runAsUser
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**31:
        raise ConfigError(f"{where}: expected a non-root uid (1 … 2147483647)")
    return value


def parse_config(text: str, file: str = "<config>") -> WebhookConfig:
    """The config a YAML document describes; an empty document is the defaults."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{file}{line}: not valid YAML: {getattr(e, 'problem', None) or e}") from e
    if data is None:
        return WebhookConfig()
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: expected a mapping at the top level")
    values: dict[str, Any] = {}
    for key, value in data.items():
        name = _KEYS.get(str(key))
        if name is None:
            raise ConfigError(f"{file}: {str(key)[:60]}: unknown field; known: {', '.join(sorted(_KEYS))}")
        try:
            values[name] = _field(str(key), value)
        except ConfigError as e:
            raise ConfigError(f"{file}: {e}") from None
    return WebhookConfig(**values)


def load_config(path: Path | None) -> WebhookConfig:
    """The config in ``path`` (the defaults when None)."""
    if path is None:
        return WebhookConfig()
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror or e}") from e
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 (byte {e.start})") from e
    return parse_config(text, str(path))
