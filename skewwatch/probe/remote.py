"""The probe's two calls to a collector: fetch a workload's baseline, store a result with it.

Both go through the client commands' HTTP client (:mod:`collector.cli.client`: the URL check, the
bearer token from ``--token-file`` / ``$SKEWWATCH_TOKEN_FILE`` / ``$SKEWWATCH_TOKEN``, ``--ca-file``,
timeouts, one-line errors naming a 401's missing token or the gRPC port), not a client of its
own. The probe sits above the collector (``pyproject.toml``'s import-linter contracts forbid only
the other direction), as ``skewwatch check`` does. They run outside the probe's event loop: the
baseline before the first request, the result after the verdict.

``GET /api/v1/baselines/{namespace}/{name}`` answers ``{"workload", "baseline": {...}, "history"}``
(``BaselineDetail`` in the OpenAPI document); ``POST /api/v1/workloads/{namespace}/{name}/probes``
takes the result document and answers 201 ``{"probe": {"id", ...}}``. The document carries no
API key (only where it came from), so none can reach the collector.
"""

from __future__ import annotations

import argparse
import json
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collector.cli.client import (
    CA_FILE_ENV,
    COLLECTOR_URL_ENV,
    DEFAULT_COLLECTOR_URL,
    TOKEN_FILE_ENV,
    Credentials,
    collector_url,
    credentials,
    request_json,
)
from collector.errors import ClientError
from skewwatch.probe.plan import ProbeError, ProbeUsageError

MAX_SEGMENT = 253  # a Kubernetes name (DNS subdomain) at most


class ProbeCollectorError(ProbeError):
    """A call to the collector failed (unreachable, refused, not found, a bad answer): exit 2."""


@dataclass(frozen=True)
class WorkloadRef:
    """``NAMESPACE/NAME``: the workload a baseline belongs to and a result is stored with."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"

    def path(self, prefix: str, suffix: str = "") -> str:
        ns, name = (urllib.parse.quote(s, safe="") for s in (self.namespace, self.name))
        return f"{prefix}/{ns}/{name}{suffix}"


def workload_ref(value: str, flag: str) -> WorkloadRef:
    """``NAMESPACE/NAME``; ProbeUsageError naming the flag otherwise."""
    parts = value.split("/")
    if len(parts) != 2 or not all(
        p and len(p) <= MAX_SEGMENT and p.isprintable() and " " not in p for p in parts
    ):
        raise ProbeUsageError(
            f"{flag}: expected NAMESPACE/NAME (the workload's namespace and name), got {value!r}"
        )
    return WorkloadRef(parts[0], parts[1])


@dataclass(frozen=True)
class CollectorTarget:
    """Where the collector's HTTP API is, what a call presents, and how long one may take."""

    url: str
    auth: Credentials
    timeout_s: float


def target(args: argparse.Namespace, env: Mapping[str, str]) -> CollectorTarget:
    """``--collector`` (else ``$SKEWWATCH_COLLECTOR_URL``, else the client commands' default), the
    token and CA as every client command reads them; ProbeUsageError naming a bad URL or file."""
    raw = args.collector or env.get(COLLECTOR_URL_ENV) or DEFAULT_COLLECTOR_URL
    try:
        url = collector_url(raw)
    except argparse.ArgumentTypeError as e:
        raise ProbeUsageError(f"--collector: {e}") from None
    token_file = args.token_file or (Path(env[TOKEN_FILE_ENV]) if env.get(TOKEN_FILE_ENV) else None)
    ca_file = args.ca_file or (Path(env[CA_FILE_ENV]) if env.get(CA_FILE_ENV) else None)
    try:
        auth = credentials(argparse.Namespace(token_file=token_file, ca_file=ca_file))
    except ClientError as e:
        raise ProbeUsageError(str(e)) from None
    return CollectorTarget(url, auth, float(args.collector_timeout))


def fetch_baseline(t: CollectorTarget, ref: WorkloadRef) -> dict[str, Any]:
    """The workload's current baseline as the API answers it; ProbeCollectorError naming it."""
    path = ref.path("/api/v1/baselines")
    try:
        _status, answer = request_json(t.url, path, t.timeout_s, auth=t.auth)
    except ClientError as e:
        raise ProbeCollectorError(f"--baseline {ref}: {e}") from None
    return checked_answer(answer, f"--baseline {ref}: GET {t.url}{path}")


def checked_answer(answer: object, where: str) -> dict[str, Any]:
    """The GET answer's shape, as far as the comparison reads it; ProbeCollectorError naming the field."""
    if not isinstance(answer, dict) or not isinstance(answer.get("baseline"), dict):
        raise ProbeCollectorError(f"{where}: answer without a baseline object (is it the collector's API?)")
    b = answer["baseline"]
    for key in ("performance", "load"):
        value = b.get(key)
        if not isinstance(value, dict) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in value.values()
        ):
            raise ProbeCollectorError(f"{where}: baseline.{key}: expected a map of numbers")
    return answer


@dataclass(frozen=True)
class Stored:
    """Where a result was stored: the probe's id on the collector, for which workload."""

    id: Any
    workload: str
    url: str

    def line(self) -> str:
        return f"stored: probe {self.id} of workload {self.workload} on {self.url}"


def store_result(t: CollectorTarget, ref: WorkloadRef, doc: Mapping[str, Any]) -> Stored:
    """POST the result document to the workload's probes; ProbeCollectorError with the reason."""
    path = ref.path("/api/v1/workloads", "/probes")
    body = json.dumps(doc, ensure_ascii=False).encode()
    try:
        status, answer = request_json(t.url, path, t.timeout_s, "POST", body, auth=t.auth)
    except ClientError as e:
        raise ProbeCollectorError(f"result not stored with {ref}: {e}") from None
    probe = answer.get("probe") if isinstance(answer, dict) else None
    if status != 201 or not isinstance(probe, dict) or "id" not in probe:
        raise ProbeCollectorError(
            f"result not stored with {ref}: POST {t.url}{path} answered HTTP {status} without probe.id"
        )
    return Stored(probe["id"], str(probe.get("workload") or answer.get("workload") or ref), t.url)
