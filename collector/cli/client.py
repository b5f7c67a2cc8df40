"""The query commands' HTTP client: ``--collector URL``, ``--timeout``, one JSON call.

Every failure is a ``ClientError`` with a one-line reason that a command prints as
``skewwatch COMMAND: error: …``. A URL that points at the collector's gRPC port (an HTTP/2 server
answering an HTTP/1.1 request) is named as such rather than shown as a protocol error.

A collector with ``--api-tokens`` needs a bearer token (docs/security-api.md): ``--token-file
FILE`` (``SKEWWATCH_TOKEN_FILE``; the file holds the token, e.g. one file of a mounted Secret),
else ``SKEWWATCH_TOKEN``; never a flag with the value itself, which ``ps`` would show.
``credentials(args)`` reads it for each call (``auth=``). An ``https://`` collector is verified
against the system's roots, or ``--ca-file`` (``SKEWWATCH_CA_FILE``). The token is sent only to
the URL asked (not along a redirect) and never printed: a 401 or 403 is one line that says which
role the route needs and where the token came from.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collector.errors import ClientError
from skewwatch.core.net import is_loopback

DEFAULT_COLLECTOR_URL = "http://127.0.0.1:8080"
COLLECTOR_URL_ENV = "SKEWWATCH_COLLECTOR_URL"
DEFAULT_TIMEOUT_S = 10.0
TOKEN_FILE_ENV = "SKEWWATCH_TOKEN_FILE"  # noqa: S105 (a variable name)
TOKEN_ENV = "SKEWWATCH_TOKEN"  # noqa: S105 (a variable name)
CA_FILE_ENV = "SKEWWATCH_CA_FILE"
MAX_TOKEN_FILE_BYTES = 64 * 1024
MAX_RESPONSE_BYTES = 64 * 1024 * 1024
# An HTTP/2 server (gRPC) answers an HTTP/1.1 request with binary frames, or hangs up at once.
_HTTP2_SIGNS = (http.client.BadStatusLine, http.client.RemoteDisconnected)


def grpc_port_message(base: str) -> str:
    host = urllib.parse.urlsplit(base).hostname or "HOST"
    return (
        f"{base} looks like the collector's gRPC port; query commands need its HTTP API URL "
        f"(--collector http://{host}:8080 or {COLLECTOR_URL_ENV})"
    )


def add_client_flags(p: argparse.ArgumentParser, *, inherited: bool = False) -> None:
    """``--collector`` and ``--timeout``; ``inherited``: a sub-subcommand's copy (absent: the parent's)."""

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if inherited else value

    p.add_argument(
        "--collector",
        type=collector_url,
        default=default(os.environ.get(COLLECTOR_URL_ENV) or DEFAULT_COLLECTOR_URL),
        metavar="URL",
        help=f"collector HTTP API base URL (default: ${COLLECTOR_URL_ENV}, else {DEFAULT_COLLECTOR_URL})",
    )
    p.add_argument(
        "--timeout",
        type=positive_float,
        default=default(DEFAULT_TIMEOUT_S),
        metavar="SECONDS",
        help=f"HTTP timeout (default: {DEFAULT_TIMEOUT_S:g})",
    )
    p.add_argument(
        "--token-file",
        type=Path,
        default=default(_env_path(TOKEN_FILE_ENV)),
        metavar="FILE",
        help=f"file holding the bearer token for a collector with --api-tokens (default: ${TOKEN_FILE_ENV}, "
        f"else the token in ${TOKEN_ENV})",
    )
    p.add_argument(
        "--ca-file",
        type=Path,
        default=default(_env_path(CA_FILE_ENV)),
        metavar="FILE",
        help=f"PEM CA certificate(s) to verify an https:// collector with (default: ${CA_FILE_ENV}, "
        "else the system's roots)",
    )


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value) if value else None


@dataclass(frozen=True)
class Credentials:
    """What a call presents: the bearer token (None: none) and where it came from, the CA file."""

    token: str | None = None
    source: str = ""
    ca_file: Path | None = None

    def __repr__(self) -> str:  # never the token
        return f"Credentials(source={self.source!r}, ca_file={self.ca_file!r})"


NO_CREDENTIALS = Credentials()


def credentials(args: argparse.Namespace) -> Credentials:
    """The token of ``--token-file`` (or ``$SKEWWATCH_TOKEN_FILE``), else ``$SKEWWATCH_TOKEN``, and
    ``--ca-file``; ClientError (one line, never the token) when the file cannot be read."""
    ca_file: Path | None = getattr(args, "ca_file", None)
    path: Path | None = getattr(args, "token_file", None)
    if path is not None:
        return Credentials(read_token(path), f"token file {path}", ca_file)
    value = os.environ.get(TOKEN_ENV)
    if value:
        return Credentials(_checked(value.strip(), f"${TOKEN_ENV}"), f"${TOKEN_ENV}", ca_file)
    return Credentials(None, "", ca_file)


def read_token(path: Path) -> str:
    """The token a file holds (surrounding whitespace stripped); ClientError naming the file."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_TOKEN_FILE_BYTES + 1)
    except OSError as e:
        raise ClientError(f"token file {path}: cannot read: {e.strerror or e}") from None
    if len(data) > MAX_TOKEN_FILE_BYTES:
        raise ClientError(f"token file {path}: over {MAX_TOKEN_FILE_BYTES} bytes, not a token")
    return _checked(data.decode("utf-8", "replace").strip(), f"token file {path}")


def _checked(token: str, where: str) -> str:
    if not token or not all("\x21" <= c <= "\x7e" for c in token):
        raise ClientError(f"{where}: not a token (one line of printable ASCII without spaces)")
    return token


def collector_url(value: str) -> str:
    parsed = urllib.parse.urlsplit(value)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        hint = " (the HTTP API URL, like http://HOST:8080)" if "://" not in value else ""
        raise argparse.ArgumentTypeError(f"must be an http(s) URL, got {value!r}{hint}")
    return value.rstrip("/")


def positive_float(value: str) -> float:
    try:
        out = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not 0 < out <= 3600:
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most 3600, got {value}")
    return out


def get_json(
    base: str,
    path: str,
    timeout_s: float,
    method: str = "GET",
    body: bytes | None = None,
    *,
    auth: Credentials = NO_CREDENTIALS,
) -> Any:
    """``method base + path`` and decode JSON (None for 204); raises ClientError with a one-line reason."""
    return request_json(base, path, timeout_s, method, body, auth=auth)[1]


def request_json(
    base: str,
    path: str,
    timeout_s: float,
    method: str = "GET",
    body: bytes | None = None,
    *,
    auth: Credentials = NO_CREDENTIALS,
) -> tuple[int, Any]:
    """``(HTTP status, decoded JSON)`` of ``method base + path``, as ``get_json``."""
    status, data = request_bytes(base, path, timeout_s, method, body, auth=auth)
    if status == 204:
        return status, None  # No Content: a DELETE that succeeded
    try:
        return status, json.loads(data)
    except ValueError as e:
        raise ClientError(
            f"{base} answered with something that is not JSON (is it the collector's API?): {e}"
        ) from e


_warned: set[str] = set()


def _warn_plaintext(url: str) -> None:
    """Say once per host, on stderr, that a token goes to a collector over plain HTTP off loopback."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme == "http" and not is_loopback(host) and host not in _warned:
        _warned.add(host)
        print(
            f"skewwatch: warning: sending a bearer token to {host} over plain HTTP; use an https:// "
            "--collector (the collector's --http-tls-cert) so it cannot be read on the way",
            file=sys.stderr,
        )


def request_bytes(
    base: str,
    path: str,
    timeout_s: float,
    method: str = "GET",
    body: bytes | None = None,
    *,
    accept: str = "application/json",
    auth: Credentials = NO_CREDENTIALS,
) -> tuple[int, bytes]:
    """``(HTTP status, body)`` of ``method base + path``, at most ``MAX_RESPONSE_BYTES``; a
    ClientError with a one-line reason otherwise (the API's own message for an HTTP error, and
    the gRPC port named when that is what ``base`` is). ``auth``: the bearer token to present
    and the CA file an https:// collector is verified with."""
    url = base + path
    request = urllib.request.Request(  # noqa: S310
        url,
        data=body,
        method=method,
        headers={"Accept": accept, "Content-Type": "application/json"},
    )
    if auth.token is not None:
        # Unredirected: urllib does not carry it along a redirect to wherever that points.
        request.add_unredirected_header("Authorization", f"Bearer {auth.token}")
        _warn_plaintext(url)
    handlers: list[urllib.request.BaseHandler] = []
    if url.startswith("https://"):
        handlers.append(urllib.request.HTTPSHandler(context=tls_context(auth.ca_file)))
    try:
        # The scheme was checked to be http(s) when the URL was parsed from the command line.
        with urllib.request.build_opener(*handlers).open(request, timeout=timeout_s) as response:
            data: bytes = response.read(MAX_RESPONSE_BYTES + 1)
            status: int = response.status
    except urllib.error.HTTPError as e:
        raise ClientError(f"{error_message(e)}{_auth_hint(e.code, auth)} (HTTP {e.code})") from e
    except urllib.error.URLError as e:
        if isinstance(e.reason, _HTTP2_SIGNS):
            raise ClientError(grpc_port_message(base)) from e
        if isinstance(e.reason, ssl.SSLCertVerificationError):
            hint = "" if auth.ca_file else f" (give the CA that signed it: --ca-file FILE or ${CA_FILE_ENV})"
            raise ClientError(
                f"cannot reach collector at {base}: its certificate is not trusted: "
                f"{e.reason.verify_message or e.reason.reason}{hint}"
            ) from e
        raise ClientError(f"cannot reach collector at {base}: {e.reason}") from e
    except _HTTP2_SIGNS as e:
        raise ClientError(grpc_port_message(base)) from e
    except (OSError, TimeoutError, http.client.HTTPException) as e:
        raise ClientError(f"cannot reach collector at {base}: {e or type(e).__name__}") from e
    if len(data) > MAX_RESPONSE_BYTES:
        raise ClientError(f"{method} {path}: response larger than {MAX_RESPONSE_BYTES} bytes")
    return status, data


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """Verifying TLS: the system's roots, or only ``ca_file``'s; ClientError naming a bad file."""
    try:
        return ssl.create_default_context(cafile=str(ca_file) if ca_file is not None else None)
    except FileNotFoundError:
        raise ClientError(f"--ca-file {ca_file}: no such file") from None
    except (ssl.SSLError, OSError) as e:
        reason = getattr(e, "reason", None) or getattr(e, "strerror", None) or type(e).__name__
        raise ClientError(f"--ca-file {ca_file}: not a PEM CA certificate ({reason})") from None


def _auth_hint(status: int, auth: Credentials) -> str:
    """What to do about a 401 (no token, or a refused one); a 403's message names the role."""
    if status != 401:
        return ""
    if auth.token is None:
        return f" (give one: --token-file FILE, ${TOKEN_FILE_ENV} or ${TOKEN_ENV})"
    return f" (the token from {auth.source} was refused)"


def error_message(e: urllib.error.HTTPError) -> str:
    """The API's own error message of an HTTP error answer, else its reason phrase."""
    try:
        data = json.loads(e.read(64 * 1024))
        return str(data["error"]["message"])
    except (ValueError, KeyError, TypeError, OSError):
        return str(e.reason)


def add_namespace_flags(p: argparse.ArgumentParser) -> None:
    """``-n/--namespace NS`` and ``-A/--all-namespaces`` (the default: no kube context to take one from)."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("-n", "--namespace", metavar="NS", help="only this namespace")
    g.add_argument(
        "-A", "--all-namespaces", action="store_true", help="every namespace (the default without -n)"
    )


def in_namespace(args: argparse.Namespace, namespace: str | None) -> bool:
    """Whether an object in ``namespace`` passes ``-n``."""
    wanted = getattr(args, "namespace", None)
    return wanted is None or namespace == wanted


def workload_namespace(workload: str | None) -> str | None:
    return workload.split("/", 1)[0] if workload else None
