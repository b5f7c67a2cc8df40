"""The query commands' HTTP client: ``--collector URL``, ``--timeout``, one JSON call.

Every failure is a ``ClientError`` with a one-line reason that a command prints as
``skewwatch COMMAND: error: …``. A URL that points at the collector's gRPC port (an HTTP/2 server
answering an HTTP/1.1 request) is named as such rather than shown as a protocol error.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from collector.errors import ClientError

DEFAULT_COLLECTOR_URL = "http://127.0.0.1:8080"
COLLECTOR_URL_ENV = "SKEWWATCH_COLLECTOR_URL"
DEFAULT_TIMEOUT_S = 10.0
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


def get_json(base: str, path: str, timeout_s: float, method: str = "GET", body: bytes | None = None) -> Any:
    """``method base + path`` and decode JSON (None for 204); raises ClientError with a one-line reason."""
    return request_json(base, path, timeout_s, method, body)[1]


def request_json(
    base: str, path: str, timeout_s: float, method: str = "GET", body: bytes | None = None
) -> tuple[int, Any]:
    """``(HTTP status, decoded JSON)`` of ``method base + path``, as ``get_json``."""
    status, data = request_bytes(base, path, timeout_s, method, body)
    if status == 204:
        return status, None  # No Content: a DELETE that succeeded
    try:
        return status, json.loads(data)
    except ValueError as e:
        raise ClientError(
            f"{base} answered with something that is not JSON (is it the collector's API?): {e}"
        ) from e


def request_bytes(
    base: str,
    path: str,
    timeout_s: float,
    method: str = "GET",
    body: bytes | None = None,
    *,
    accept: str = "application/json",
) -> tuple[int, bytes]:
    """``(HTTP status, body)`` of ``method base + path``, at most ``MAX_RESPONSE_BYTES``; a
    ClientError with a one-line reason otherwise (the API's own message for an HTTP error, and
    the gRPC port named when that is what ``base`` is)."""
    url = base + path
    request = urllib.request.Request(  # noqa: S310
        url,
        data=body,
        method=method,
        headers={"Accept": accept, "Content-Type": "application/json"},
    )
    try:
        # The scheme was checked to be http(s) when the URL was parsed from the command line.
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
            data: bytes = response.read(MAX_RESPONSE_BYTES + 1)
            status: int = response.status
    except urllib.error.HTTPError as e:
        raise ClientError(f"{error_message(e)} (HTTP {e.code})") from e
    except urllib.error.URLError as e:
        if isinstance(e.reason, _HTTP2_SIGNS):
            raise ClientError(grpc_port_message(base)) from e
        raise ClientError(f"cannot reach collector at {base}: {e.reason}") from e
    except _HTTP2_SIGNS as e:
        raise ClientError(grpc_port_message(base)) from e
    except (OSError, TimeoutError, http.client.HTTPException) as e:
        raise ClientError(f"cannot reach collector at {base}: {e or type(e).__name__}") from e
    if len(data) > MAX_RESPONSE_BYTES:
        raise ClientError(f"{method} {path}: response larger than {MAX_RESPONSE_BYTES} bytes")
    return status, data


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
