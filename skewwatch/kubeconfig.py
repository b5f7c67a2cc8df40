"""Where the Kubernetes API is and how to authenticate to it, for the agent and the collector alike.

The in-cluster service account (token, CA and namespace under an injectable root, the API server
from ``KUBERNETES_SERVICE_HOST``/``_PORT``) first, else ``KUBECONFIG`` (its first file: the
current context, token or ``tokenFile``, CA file or data, or ``insecure-skip-tls-verify``; token
authentication only). No servers here, only files and the environment: each side's client turns
:class:`KubeConfigError` and :class:`KubeConfigUnavailable` into its own error types. Outside
:mod:`skewwatch.core`, which may not import yaml.
"""

from __future__ import annotations

import base64
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class KubeConfigError(ValueError):
    """The credentials are there but unreadable or malformed; the message names the file and field."""


class KubeConfigUnavailable(KubeConfigError):
    """No way to reach the API here: no in-cluster service account and no ``KUBECONFIG``."""


@dataclass(frozen=True)
class KubeConfig:
    server: str
    token: str | None = None
    ca_file: str | None = None
    ca_data: bytes | None = None
    insecure: bool = False
    namespace: str | None = None
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
        namespace = (sa_root / "namespace").read_text().strip() if (sa_root / "namespace").is_file() else None
    except OSError as e:
        raise KubeConfigError(f"cannot read the service account under {sa_root}: {e.strerror or e}") from e
    return KubeConfig(
        server=f"https://{host}:{port}",
        token=token,
        ca_file=str(ca_path) if ca_path.is_file() else None,
        namespace=namespace,
        source=f"in-cluster service account ({sa_root})",
    )


def parse_kubeconfig(text: str, where: str) -> KubeConfig:
    """The current context of a kubeconfig, token auth only; KubeConfigError names the field."""
    import yaml  # only for KUBECONFIG: not worth its memory in every agent

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise KubeConfigError(f"{where}: not valid YAML") from e
    if not isinstance(doc, dict):
        raise KubeConfigError(f"{where}: expected a mapping")

    def named(section: str, name: str) -> dict[str, Any]:
        for item in doc.get(section) or []:
            if isinstance(item, dict) and item.get("name") == name:
                body = item.get(section[:-1])
                if isinstance(body, dict):
                    return body
        raise KubeConfigError(f"{where}: {section} has no entry named {name!r}")

    current = doc.get("current-context")
    if not isinstance(current, str) or not current:
        raise KubeConfigError(f"{where}: no current-context")
    context = named("contexts", current)
    cluster = named("clusters", str(context.get("cluster", "")))
    user = named("users", str(context.get("user", ""))) if context.get("user") else {}
    server = cluster.get("server")
    if not isinstance(server, str) or not server.startswith(("https://", "http://")):
        raise KubeConfigError(f"{where}: cluster {context.get('cluster')!r} has no http(s) server")
    token = user.get("token")
    if not token and user.get("tokenFile"):
        try:
            token = Path(str(user["tokenFile"])).read_text().strip()
        except OSError as e:
            raise KubeConfigError(
                f"{where}: users[{context.get('user')}].tokenFile: {e.strerror or e}"
            ) from e
    if not token and (
        user.get("client-certificate") or user.get("client-certificate-data") or user.get("exec")
    ):
        raise KubeConfigError(
            f"{where}: user {context.get('user')!r}: only token authentication is supported"
        )
    ca_data = cluster.get("certificate-authority-data")
    try:
        ca = base64.b64decode(ca_data, validate=True) if isinstance(ca_data, str) else None
    except ValueError as e:
        raise KubeConfigError(
            f"{where}: clusters[{context.get('cluster')}].certificate-authority-data"
        ) from e
    return KubeConfig(
        server=server.rstrip("/"),
        token=str(token) if token else None,
        ca_file=str(cluster["certificate-authority"]) if cluster.get("certificate-authority") else None,
        ca_data=ca,
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        namespace=str(context["namespace"]) if context.get("namespace") else None,
        source=where,
    )


def load_config(sa_root: Path, environ: Mapping[str, str]) -> KubeConfig:
    """In-cluster first, then ``KUBECONFIG`` (its first file); KubeConfigUnavailable when neither."""
    config = load_in_cluster(sa_root, environ)
    if config is not None:
        return config
    path = environ.get("KUBECONFIG", "").split(os.pathsep)[0]
    if path:
        try:
            text = Path(path).read_text()
        except OSError as e:
            raise KubeConfigError(f"KUBECONFIG {path}: {e.strerror or e}") from e
        return parse_kubeconfig(text, path)
    raise KubeConfigUnavailable(f"no in-cluster service account at {sa_root} and no KUBECONFIG")
