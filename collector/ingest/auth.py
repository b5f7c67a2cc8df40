"""Who an agent stream speaks for: bearer tokens, client-certificate identity, and the TLS
credentials of the gRPC port, re-read from disk when they change (docs/security-transport.md).

A stream is checked twice. When it opens (``AgentAuth.authenticate``): with ``--agent-tokens``
its ``authorization: Bearer <token>`` metadata must name a configured token, else
UNAUTHENTICATED (``AuthRefused``, reason ``unauthenticated``). When its Hello is known
(``AgentAuth.authorize``): the pod it names must be one its credentials cover, else
PERMISSION_DENIED (reason ``identity``):

- a token labelled ``_all`` covers the cluster, one labelled with a namespace that namespace (the
  same token under several labels covers each of them);
- a client certificate with a URI SAN ``spiffe://<trust-domain>/ns/<namespace>/sa/<sa>`` (Istio,
  cert-manager's csi-driver-spiffe) covers that namespace; one with ``urn:skewwatch:pod:<ns>/<pod>``
  that pod; one with neither is a cluster-wide agent identity. A ``spiffe://`` ID or a skewwatch
  URN that does not parse covers nothing (fail closed: a mesh CA signs every workload's ID).

Token and certificate both apply when both are configured. A token removed from the file while
its streams are open: each ends with UNAUTHENTICATED at its next message (``AgentAuth.recheck``).

The details sent back never contain a token; the log names a token by where it is configured
(``FILE:LINE`` or the Secret key), never by its value.

``ServerCredentialFiles`` serves the gRPC port's certificate, key and client CA with
``grpc.dynamic_ssl_server_credentials``: gRPC calls its fetcher before every new connection's
handshake, and the fetcher re-reads the files when their mtime, size or inode changed. A
replaced certificate is used by new connections; open ones keep the one they were made with. A
pair that does not load (half-written, a key that is not the certificate's) keeps the previous
one and is logged. gRPC's Python API can only require a client certificate (and verify it) or
not ask for one: a client with no certificate, or one the CA did not sign, fails the TLS
handshake. It sees UNAVAILABLE, and the collector never sees the connection (nothing is counted).
"""

from __future__ import annotations

import hmac
import logging
import re
import ssl
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast
from urllib.parse import unquote, urlsplit

import grpc

from collector.errors import SettingsError
from collector.tokens import TokenFile, bearer, digest
from skewwatch.core.filestamp import stamp as file_stamp
from skewwatch.core.identity import PodIdentity

log = logging.getLogger(__name__)

ALL_NAMESPACES = "_all"
REASON_UNAUTHENTICATED = "unauthenticated"
REASON_IDENTITY = "identity"
AUTHORIZATION = "authorization"
POD_URN_PREFIX = "urn:skewwatch:pod:"
# RFC 1123 label, as Kubernetes names namespaces.
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
# A pod name: an RFC 1123 subdomain.
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
SHOWN_SCOPES = 8  # namespaces named in a refusal at most


def agent_token_label(label: str) -> bool:
    """Whether ``label`` may label an agent token: ``_all`` or a namespace name (DNS-1123 label)."""
    return label == ALL_NAMESPACES or bool(_DNS_LABEL.match(label))


class AuthRefused(Exception):
    """A stream is refused for its credentials: ``code`` to send, ``reason`` to count
    (``unauthenticated`` | ``identity``); the message (sent as the details) names no secret."""

    def __init__(self, code: grpc.StatusCode, reason: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason


def unauthenticated(message: str) -> AuthRefused:
    return AuthRefused(grpc.StatusCode.UNAUTHENTICATED, REASON_UNAUTHENTICATED, message)


def denied(message: str) -> AuthRefused:
    return AuthRefused(grpc.StatusCode.PERMISSION_DENIED, REASON_IDENTITY, message)


@dataclass(frozen=True)
class CertIdentity:
    """What a verified client certificate says its agent is for. Empty ``namespaces`` and ``pods``
    with no ``unusable`` URI: cluster-wide. ``unusable``: a SPIFFE ID or skewwatch URN that does not
    parse (it covers nothing)."""

    subject: str
    uris: tuple[str, ...] = ()
    namespaces: frozenset[str] = frozenset()
    pods: frozenset[tuple[str, str]] = frozenset()
    unusable: tuple[str, ...] = ()

    @property
    def cluster_wide(self) -> bool:
        return not (self.namespaces or self.pods or self.unusable)

    def refusal(self, namespace: str, pod: str) -> str | None:
        """Why this certificate does not cover ``namespace/pod``, else None."""
        where = f"client certificate {self.subject or '(no subject)'}"
        if self.unusable:
            return f"{where}: URI SAN {self.unusable[0]!r} names no namespace this collector can check"
        if self.namespaces and namespace not in self.namespaces:
            return f"{where} is for namespace {_names(self.namespaces)}; the hello names {namespace}/{pod}"
        if self.pods and (namespace, pod) not in self.pods:
            pods = _names({f"{n}/{p}" for n, p in self.pods})
            return f"{where} is for pod {pods}; the hello names {namespace}/{pod}"
        return None


def _names(values: set[str] | frozenset[str]) -> str:
    shown = sorted(values)
    text = ", ".join(shown[:SHOWN_SCOPES])
    return text + (f" and {len(shown) - SHOWN_SCOPES} more" if len(shown) > SHOWN_SCOPES else "")


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def spiffe_namespace(uri: str) -> str | None:
    """The namespace of a Kubernetes SPIFFE ID ``spiffe://<td>/ns/<ns>/sa/<sa>``, else None."""
    parts = urlsplit(uri)
    if parts.scheme.lower() != "spiffe" or not parts.netloc or parts.query or parts.fragment:
        return None
    segments = parts.path.split("/")
    if len(segments) != 5 or segments[0] != "" or segments[1] != "ns" or segments[3] != "sa":
        return None
    namespace, sa = unquote(segments[2]), unquote(segments[4])
    if not _DNS_LABEL.match(namespace) or not sa:
        return None
    return namespace


def pod_urn(uri: str) -> tuple[str, str] | None:
    """(namespace, pod) of ``urn:skewwatch:pod:<namespace>/<pod>``, else None."""
    if not uri.lower().startswith(POD_URN_PREFIX):
        return None
    namespace, slash, pod = uri[len(POD_URN_PREFIX) :].partition("/")
    if not slash or not _DNS_LABEL.match(namespace) or not _DNS_SUBDOMAIN.match(pod):
        return None
    return namespace, pod


def cert_identity(auth_context: Mapping[str, Iterable[bytes]]) -> CertIdentity | None:
    """The identity of the verified client certificate in a gRPC ``auth_context()``, else None
    (no TLS, or no client certificate)."""
    if [_text(v) for v in auth_context.get("transport_security_type", ())] != ["ssl"]:
        return None
    subject = ", ".join(_text(v) for v in auth_context.get("x509_subject", ()))
    uris = tuple(_text(v) for v in auth_context.get("peer_uri", ()))
    if not subject and not uris and not list(auth_context.get("x509_pem_cert", ())):
        return None  # TLS without a client certificate
    namespaces: set[str] = set()
    pods: set[tuple[str, str]] = set()
    unusable: list[str] = []
    for uri in uris:
        lower = uri.lower()
        if lower.startswith("spiffe:"):
            ns = spiffe_namespace(uri)
            if ns is None:
                unusable.append(uri)
            else:
                namespaces.add(ns)
        elif lower.startswith("urn:skewwatch:"):
            pod = pod_urn(uri)
            if pod is None:
                unusable.append(uri)
            else:
                pods.add(pod)
    return CertIdentity(subject, uris, frozenset(namespaces), frozenset(pods), tuple(unusable))


@dataclass(frozen=True)
class Principal:
    """Who opened a stream: the matching tokens (their configured names and labels), the
    certificate identity, and the token file's reload count when the token was checked."""

    token_names: tuple[str, ...] = ()
    scopes: frozenset[str] = frozenset()
    token_digest: bytes | None = None
    cert: CertIdentity | None = None
    reloads: int = 0

    def describe(self) -> str:
        parts = []
        if self.token_names:
            parts.append(f"token {', '.join(self.token_names)}")
        if self.cert is not None:
            parts.append(f"certificate {self.cert.subject or ', '.join(self.cert.uris) or '(no subject)'}")
        return " and ".join(parts) or "anonymous"


def metadata_value(metadata: Sequence[tuple[str, str | bytes]] | None, key: str) -> list[str]:
    """Every value of ``key`` (case-insensitive) in gRPC invocation metadata."""
    return [_text(v) for k, v in (metadata or ()) if k.lower() == key]


class AgentAuth:
    """Checks agent streams against ``tokens`` (None: no token needed) and, with ``mtls``, against
    the identity of their client certificate."""

    def __init__(self, tokens: TokenFile | None = None, *, mtls: bool = False) -> None:
        self.tokens = tokens
        self.mtls = mtls

    @property
    def enabled(self) -> bool:
        return self.tokens is not None or self.mtls

    def authenticate(
        self,
        metadata: Sequence[tuple[str, str | bytes]] | None,
        auth_context: Mapping[str, Iterable[bytes]],
    ) -> Principal:
        """The principal of a new stream; AuthRefused (UNAUTHENTICATED) when its credentials are missing
        or unknown."""
        cert = cert_identity(auth_context) if self.mtls else None
        if self.mtls and cert is None:
            # Not reachable through gRPC's TLS, which refuses such a handshake: kept for safety.
            raise unauthenticated("no verified client certificate: this collector requires mutual TLS")
        if self.tokens is None:
            return Principal(cert=cert)
        headers = metadata_value(metadata, AUTHORIZATION)
        if not headers:
            raise unauthenticated(
                "no bearer token: this collector needs 'authorization: Bearer <token>' metadata "
                "(the agent's --token-file)"
            )
        if len(headers) > 1:
            raise unauthenticated("more than one authorization metadata entry")
        presented = bearer(headers[0])
        if presented is None:
            raise unauthenticated("the authorization metadata is not 'Bearer <token>'")
        tokens = self.tokens
        tokens.refresh()
        want = digest(presented)
        reloads = tokens.reloads
        matched = [t for t in tokens.tokens if hmac.compare_digest(t.digest, want)]  # each compared
        if not matched:
            raise unauthenticated("the bearer token is not one this collector accepts (unknown or revoked)")
        return Principal(
            token_names=tuple(t.name for t in matched),
            scopes=frozenset(t.label for t in matched),
            token_digest=want,
            cert=cert,
            reloads=reloads,
        )

    def authorize(self, principal: Principal, identity: PodIdentity) -> None:
        """AuthRefused (PERMISSION_DENIED) unless the principal covers the pod the Hello names."""
        namespace, pod = identity.namespace, identity.pod
        scopes = principal.scopes
        if self.tokens is not None and ALL_NAMESPACES not in scopes and namespace not in scopes:
            raise denied(
                f"the bearer token is for namespace {_names(scopes)}; the hello names {namespace}/{pod}"
            )
        if principal.cert is not None:
            why = principal.cert.refusal(namespace, pod)
            if why is not None:
                raise denied(why)

    def recheck(self, principal: Principal, identity: PodIdentity | None) -> Principal:
        """The principal again after a token reload (the same one when nothing was reloaded);
        AuthRefused when its token was removed, or no longer covers the stream's pod."""
        tokens = self.tokens
        if tokens is None or principal.token_digest is None:
            return principal
        tokens.refresh()
        if tokens.reloads == principal.reloads:
            return principal
        want = principal.token_digest
        matched = [t for t in tokens.tokens if hmac.compare_digest(t.digest, want)]
        if not matched:
            raise unauthenticated("the bearer token was revoked")
        renewed = Principal(
            tuple(t.name for t in matched),
            frozenset(t.label for t in matched),
            want,
            principal.cert,
            tokens.reloads,
        )
        if identity is not None:
            self.authorize(renewed, identity)
        return renewed


def agent_auth(tokens: Path | None, client_ca: Path | None) -> AgentAuth | None:
    """The checks ``--agent-tokens`` and ``--grpc-client-ca`` ask for (None: neither); a token file
    that does not parse is a SettingsError naming ``--agent-tokens``."""
    if tokens is None and client_ca is None:
        return None
    token_file = TokenFile(tokens, "--agent-tokens", agent_token_label) if tokens is not None else None
    return AgentAuth(token_file, mtls=client_ca is not None)


class ServerCredentialFiles:
    """The gRPC port's TLS credentials from ``cert``/``key`` (PEM) and, for mutual TLS, the
    ``client_ca`` bundle, re-read when a file changes (see the module docstring)."""

    def __init__(self, cert: Path, key: Path, client_ca: Path | None = None) -> None:
        self.cert, self.key, self.client_ca = cert, key, client_ca
        self.paths = tuple(p for p in (cert, key, client_ca) if p is not None)
        self.reloads = 0
        self.error = ""
        self._lock = threading.Lock()
        stamp = file_stamp(self.paths)
        self._stamp = stamp
        self.initial = self._load(stamp)  # a bad file at start is a start error (SettingsError)

    def credentials(self) -> grpc.ServerCredentials:
        # grpc's stubs say the fetcher returns a configuration; None ("unchanged") is what it documents.
        fetch = cast(Callable[[], grpc.ServerCertificateConfiguration], self.fetch)
        return grpc.dynamic_ssl_server_credentials(
            self.initial, fetch, require_client_authentication=self.client_ca is not None
        )

    def _read(self, path: Path, flag: str) -> bytes:
        try:
            return path.read_bytes()
        except OSError as e:
            raise SettingsError(flag, f"{path}: cannot read: {e.strerror or e}") from e

    def _load(self, stamp: tuple[object, ...]) -> grpc.ServerCertificateConfiguration:
        """Read and check the files; SettingsError naming the flag at fault."""
        cert = self._read(self.cert, "--grpc-tls-cert")
        key = self._read(self.key, "--grpc-tls-key")
        ca = self._read(self.client_ca, "--grpc-client-ca") if self.client_ca is not None else None
        if file_stamp(self.paths) != stamp:
            raise SettingsError("--grpc-tls-cert", "the files changed while being read; trying again")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_cert_chain(self.cert, self.key)
        except (ssl.SSLError, ValueError) as e:
            raise SettingsError(
                "--grpc-tls-cert", f"{self.cert} with key {self.key}: not a PEM certificate and its key: {e}"
            ) from e
        if ca is not None:
            try:
                context.load_verify_locations(cadata=ca.decode("ascii", "replace"))
            except (ssl.SSLError, ValueError) as e:
                raise SettingsError(
                    "--grpc-client-ca", f"{self.client_ca}: not PEM CA certificates: {e}"
                ) from e
        return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """gRPC's fetcher, called before each new connection's handshake: new credentials when the
        files changed and load, else None (keep the current ones). Never raises."""
        with self._lock:
            stamp = file_stamp(self.paths)
            if stamp == self._stamp:
                return None
            try:
                config = self._load(stamp)
            except SettingsError as e:
                if str(e) != self.error:
                    log.error("gRPC TLS: kept the previous certificate: %s", e)
                self.error = str(e)
                return None
            except Exception as e:  # the fetcher runs inside gRPC's handshake: nothing may escape
                log.exception("gRPC TLS: kept the previous certificate: %s", type(e).__name__)
                return None
            self._stamp, self.error = stamp, ""
            self.reloads += 1
            log.info("gRPC TLS: certificate reloaded from %s", self.cert)
            return config
