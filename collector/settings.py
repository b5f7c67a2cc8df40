"""Collector settings: one documented, frozen dataclass; every field has a flag and a variable.

| field                    | flag                | variable                           | default           |
|--------------------------|---------------------|------------------------------------|-------------------|
| grpc                     | --grpc              | SKEWWATCH_GRPC                     | 127.0.0.1:50051   |
| http                     | --http              | SKEWWATCH_HTTP                     | 127.0.0.1:8080    |
| store                    | --store             | SKEWWATCH_STORE                    | sqlite:///./skewwatch.db
| intents                  | --intents           | SKEWWATCH_INTENTS                  | none              |
| max_message_bytes        | --max-message-bytes | SKEWWATCH_MAX_MESSAGE_BYTES        | 4194304 (4 MiB)   |
| max_streams              | --max-streams       | SKEWWATCH_MAX_STREAMS              | 1000              |
| max_streams_per_address  | (none)              | SKEWWATCH_MAX_STREAMS_PER_ADDRESS  | 128               |
| hello_timeout_s          | (none)              | SKEWWATCH_HELLO_TIMEOUT            | 10 s              |
| first_report_timeout_s   | (none)              | SKEWWATCH_FIRST_REPORT_TIMEOUT     | 30 s              |
| idle_timeout_s           | (none)              | SKEWWATCH_IDLE_TIMEOUT             | 60 s (3x15 s + 15) |
| retry_after_s            | (none)              | SKEWWATCH_RETRY_AFTER              | 15 s              |
| observation_history_rows | (none)              | SKEWWATCH_OBSERVATION_HISTORY_ROWS | 2000 per pod      |
| observation_history_days | (none)              | SKEWWATCH_OBSERVATION_HISTORY_DAYS | 7 days            |
| snapshot_history_rows    | (none)              | SKEWWATCH_SNAPSHOT_HISTORY_ROWS    | 1000 per pod      |
| snapshot_history_days    | (none)              | SKEWWATCH_SNAPSHOT_HISTORY_DAYS    | 30 days           |
| pod_retention_days       | (none)              | SKEWWATCH_POD_RETENTION_DAYS       | 3 days (0: keep)  |
| prune_interval_s         | (none)              | SKEWWATCH_PRUNE_INTERVAL           | 60 s              |
| store_timeout_s          | (none)              | SKEWWATCH_STORE_TIMEOUT            | 10 s (busy wait)  |
| store_pool_size          | (none)              | SKEWWATCH_STORE_POOL               | 8 connections     |
| commit_max_batch         | (none)              | SKEWWATCH_COMMIT_MAX_BATCH         | 512 writes        |
| commit_max_wait_s        | (none)              | SKEWWATCH_COMMIT_MAX_WAIT          | 0.005 s           |
| commit_max_pending       | (none)              | SKEWWATCH_COMMIT_MAX_PENDING       | 8192 writes       |
| shutdown_grace_s         | (none)              | SKEWWATCH_SHUTDOWN_GRACE           | 5 s               |
| debounce_snapshots       | --debounce-snapshots| SKEWWATCH_DEBOUNCE_SNAPSHOTS       | 1 evaluation      |
| debounce_seconds         | --debounce-seconds  | SKEWWATCH_DEBOUNCE_SECONDS         | 0 s               |
| performance_debounce_snapshots | (none) | SKEWWATCH_PERFORMANCE_DEBOUNCE_SNAPSHOTS | 2 evaluations |
| baseline_stable_s        | --baseline-stable-seconds | SKEWWATCH_BASELINE_STABLE | 600 s (0: never) |
| replica_stale_s          | (none)              | SKEWWATCH_REPLICA_STALE            | 300 s             |
| observation_eval_interval_s | (none)           | SKEWWATCH_OBSERVATION_EVAL_INTERVAL | 5 s              |
| drift_tick_s             | (none)              | SKEWWATCH_DRIFT_TICK               | 2 s               |
| claim_interval_s         | (none)              | SKEWWATCH_CLAIM_INTERVAL           | 10 s              |
| evaluation_coalesce_s    | (none)              | SKEWWATCH_EVALUATION_COALESCE      | 0.25 s            |
| otlp_endpoint            | --otlp-endpoint     | SKEWWATCH_OTLP_ENDPOINT            | none (no push)    |
| otlp_insecure            | --otlp-insecure     | SKEWWATCH_OTLP_INSECURE            | false (TLS)       |
| otlp_ca_file             | --otlp-ca-file      | SKEWWATCH_OTLP_CA_FILE             | system roots      |
| otlp_headers             | --otlp-headers      | SKEWWATCH_OTLP_HEADERS             | none              |
| otlp_interval_s          | --otlp-interval     | SKEWWATCH_OTLP_INTERVAL            | 30 s              |
| cluster                  | (none)              | SKEWWATCH_CLUSTER                  | none              |
| injection_check_interval_s | (none)            | SKEWWATCH_INJECTION_CHECK_INTERVAL | 60 s (0: off)    |
| injection_grace_s        | (none)              | SKEWWATCH_INJECTION_GRACE          | 120 s             |
| cluster_watch            | (none)              | SKEWWATCH_CLUSTER_WATCH            | true (off: false) |
| cluster_namespaces       | (none)              | SKEWWATCH_CLUSTER_NAMESPACES       | where agents report |
| cluster_revisions_keep   | (none)              | SKEWWATCH_CLUSTER_REVISIONS_KEEP   | 20 per workload   |
| cluster_resync_s         | (none)              | SKEWWATCH_CLUSTER_RESYNC           | 600 s             |
| redaction_salt           | (none)              | SKEWWATCH_REDACTION_SALT           | agent's default   |
| tls_cert_file            | --grpc-tls-cert     | SKEWWATCH_GRPC_TLS_CERT            | none (plaintext)  |
| tls_key_file             | --grpc-tls-key      | SKEWWATCH_GRPC_TLS_KEY             | none              |
| tls_client_ca_file       | --grpc-client-ca    | SKEWWATCH_GRPC_CLIENT_CA           | none (no mTLS)    |
| http_tls_cert_file       | --http-tls-cert     | SKEWWATCH_HTTP_TLS_CERT            | none (plain HTTP) |
| http_tls_key_file        | --http-tls-key      | SKEWWATCH_HTTP_TLS_KEY             | none              |
| agent_tokens             | --agent-tokens      | SKEWWATCH_AGENT_TOKENS             | none (no tokens)  |
| insecure                 | --insecure          | SKEWWATCH_INSECURE                 | false             |
| api_tokens               | --api-tokens        | SKEWWATCH_API_TOKENS               | none (open API)   |
| metrics_auth             | (none)              | SKEWWATCH_METRICS_AUTH             | false (open)      |
| pod_namespace            | (none)              | POD_NAMESPACE                      | none              |
| pod_name                 | (none)              | POD_NAME                           | none              |

Store and scale (docs/scale.md explains each): ``store`` is ``sqlite:///PATH`` or a
``postgresql://`` URL (password from the URL, ``SKEWWATCH_STORE_PASSWORD`` or the file named by
``SKEWWATCH_STORE_PASSWORD_FILE``; TLS options such as ``sslmode`` pass through to libpq), with at
most ``store_pool_size`` PostgreSQL connections. Ingest group-commits: at most
``commit_max_batch`` agent messages per transaction, a first message waiting at most
``commit_max_wait_s`` for its batch to fill; past ``commit_max_pending`` queued messages new ones
are shed with RESOURCE_EXHAUSTED and a ``retry_after_s`` hint. Every ``prune_interval_s`` the store
drops history past its bounds: per pod ``snapshot_history_rows`` / ``snapshot_history_days``
(the current configuration's row is always kept) and ``observation_history_rows`` /
``observation_history_days``; a pod not heard from for ``pod_retention_days`` is deleted.

Drift settings (docs/drift.md explains each): a drift opens a finding once seen in
``debounce_snapshots`` evaluations and ``debounce_seconds`` after it was first seen (performance
drifts: ``performance_debounce_snapshots``); a workload with no baseline is promoted one after
``baseline_stable_s`` of unchanged majority configuration with no open finding; a pod not heard
from for ``replica_stale_s`` no longer counts as a replica; observations trigger an evaluation at
most every ``observation_eval_interval_s`` per workload; the intents directory is polled and
time-based debounces are checked every ``drift_tick_s``. With several collectors on one
PostgreSQL, each looks for workloads no collector owns (their owner died) every
``claim_interval_s`` (docs/scale.md). A change is evaluated ``evaluation_coalesce_s`` after it
woke the evaluation worker, together with every other change that arrived meanwhile.

Telemetry (docs/telemetry.md): ``GET /metrics`` on the HTTP port always serves the Prometheus
text; with ``otlp_endpoint`` (``HOST:PORT`` or ``http[s]://HOST:PORT``) the same metrics are also
pushed over OTLP/gRPC every ``otlp_interval_s``, over TLS (``otlp_ca_file``, else the system roots)
unless ``otlp_insecure`` (or an ``http://`` endpoint), with ``otlp_headers`` (``k=v,k2=v2``) on
every export. ``cluster``, ``pod_namespace`` and ``pod_name`` (the downward API's variables) become
the ``k8s.*`` resource attributes when set.

Missed injections (docs/webhook.md): every ``injection_check_interval_s`` the collector lists
pods and namespaces through the Kubernetes API (in-cluster service account, else ``KUBECONFIG``)
and reports opted-in pods running for longer than ``injection_grace_s`` with no agent reporting
(``GET /api/v1/injection``, ``skewwatch.injection.*``).

Cluster facts (docs/cluster.md): with ``cluster_watch`` the collector lists and watches, through
the same credentials, the workloads, autoscalers, Services, Ingresses, routes, inference pools
and mounted ConfigMaps of the namespaces where agents report (or ``cluster_namespaces``, a
comma-separated list), joins their facts to each workload (provenance ``k8s``), and keeps at
most ``cluster_revisions_keep`` pod-template revisions per workload. A watch is relisted at the
latest every ``cluster_resync_s``. Without credentials, or for a kind not installed, that part
reports itself unavailable and nothing else is affected. Literal env values and arguments of the
pod templates are redacted as the agent redacts them, with ``redaction_salt`` (give the agents'
``SKEWWATCH_REDACTION_SALT`` so that their digests of one secret agree).

Security (docs/security.md, SECURITY.md): with ``tls_cert_file`` and ``tls_key_file`` (PEM) gRPC
ingest is TLS; with ``tls_client_ca_file`` too, agents must present a client certificate that CA
signed (mutual TLS), and a certificate naming a namespace or pod may only speak for it. With
``agent_tokens`` (a file or a mounted Secret directory) every agent stream must carry a bearer
token, each scoped to the whole cluster or to namespaces. Certificates and tokens are re-read
when their files change. With ``http_tls_cert_file`` and ``http_tls_key_file`` the HTTP API is
HTTPS (reloaded on change too). Plaintext gRPC is served on a loopback address, with a warning; on any
other address only with ``insecure``. With ``api_tokens`` every ``/api/v1`` route needs a bearer
token of role ``read`` (reads) or ``admin`` (writes); ``/healthz`` and ``/readyz`` stay open,
``/metrics`` too unless ``metrics_auth``.

``grpc`` and ``http`` are ``HOST:PORT`` (``[::1]:PORT`` for IPv6); port 0 picks a free port, and the
bound ports are logged and returned by ``Collector.start``. A gRPC message larger than
``max_message_bytes`` ends its stream with INVALID_ARGUMENT; gRPC's own receive limit is set a
little above it so the collector, not the transport, names the problem.

Stream limits (docs/collector-limits.md explains each): at most ``max_streams`` agent streams at
once, and at most ``max_streams_per_address`` from one client IP address (the port is ignored;
the default, 128, is above Kubernetes' 110 pods per node, so a whole node behind one SNAT address
fits). A stream over either limit is refused with RESOURCE_EXHAUSTED, a retry hint of
``retry_after_s`` in its details and the ``retry-after-seconds`` trailing metadata. A stream must
send its Hello within ``hello_timeout_s`` of connecting, its first snapshot or heartbeat (a
state-only heartbeat of a starting engine counts) within ``first_report_timeout_s`` of the Hello,
and then some message at least every ``idle_timeout_s``: otherwise it ends with
DEADLINE_EXCEEDED. The idle default is 3 x the agent's default 15 s interval + 15 s of slack (a
collection cycle's source timeout); agents run with a longer ``--interval`` need
``idle_timeout_s`` of at least 3 x that interval. Only time spent waiting for the agent counts,
never the collector's own store writes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from collector.errors import SettingsError
from skewwatch.core.net import is_loopback
from skewwatch.redact import DEFAULT_SALT

MIB = 1024 * 1024
_OTLP_ENDPOINT = re.compile(r"^(?:(https?)://)?(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.\-_]+):(\d{1,5})/?$")
_HEADER_KEY = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
_HOSTPORT = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.\-_]*):(\d{1,5})$")


@dataclass(frozen=True)
class CollectorSettings:
    """Everything the collector needs to run; see the module docstring for flags and variables."""

    grpc: str = "127.0.0.1:50051"
    http: str = "127.0.0.1:8080"
    store: str = "sqlite:///./skewwatch.db"
    intents: Path | None = None
    max_message_bytes: int = 4 * MIB
    max_streams: int = 1000
    max_streams_per_address: int = 128
    hello_timeout_s: float = 10.0
    first_report_timeout_s: float = 30.0
    idle_timeout_s: float = 60.0
    retry_after_s: float = 15.0
    observation_history_rows: int = 2000
    observation_history_days: float = 7.0
    snapshot_history_rows: int = 1000
    snapshot_history_days: float = 30.0
    pod_retention_days: float = 3.0
    prune_interval_s: float = 60.0
    store_timeout_s: float = 10.0
    store_pool_size: int = 8
    commit_max_batch: int = 512
    commit_max_wait_s: float = 0.005
    commit_max_pending: int = 8192
    shutdown_grace_s: float = 5.0
    debounce_snapshots: int = 1
    debounce_seconds: float = 0.0
    performance_debounce_snapshots: int = 2
    baseline_stable_s: float = 600.0
    replica_stale_s: float = 300.0
    observation_eval_interval_s: float = 5.0
    drift_tick_s: float = 2.0
    claim_interval_s: float = 10.0
    evaluation_coalesce_s: float = 0.25
    otlp_endpoint: str = ""
    otlp_insecure: bool = False
    otlp_ca_file: Path | None = None
    otlp_headers: str = ""
    otlp_interval_s: float = 30.0
    cluster: str = ""
    injection_check_interval_s: float = 60.0
    injection_grace_s: float = 120.0
    cluster_watch: bool = True
    cluster_namespaces: str = ""
    cluster_revisions_keep: int = 20
    cluster_resync_s: float = 600.0
    redaction_salt: str = DEFAULT_SALT
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_client_ca_file: Path | None = None
    http_tls_cert_file: Path | None = None
    http_tls_key_file: Path | None = None
    agent_tokens: Path | None = None
    insecure: bool = False
    api_tokens: Path | None = None
    metrics_auth: bool = False
    pod_namespace: str = ""
    pod_name: str = ""

    def validate(self) -> CollectorSettings:
        """Return self when every field is valid, else raise SettingsError naming the flag."""
        split_hostport(self.grpc, "--grpc")
        split_hostport(self.http, "--http")
        if not self.store.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise SettingsError("--store", f"must be sqlite:///PATH or postgresql://..., got {self.store!r}")
        if self.intents is not None and not self.intents.is_dir():
            raise SettingsError("--intents", f"{str(self.intents)!r} is not a directory")
        if not 1024 <= self.max_message_bytes <= 256 * MIB:
            raise SettingsError(
                "--max-message-bytes", f"must be between 1024 and {256 * MIB}, got {self.max_message_bytes}"
            )
        if not 1 <= self.max_streams <= 100_000:
            raise SettingsError("--max-streams", f"must be between 1 and 100000, got {self.max_streams}")
        if not 1 <= self.max_streams_per_address <= 100_000:
            raise SettingsError(
                "SKEWWATCH_MAX_STREAMS_PER_ADDRESS",
                f"must be between 1 and 100000, got {self.max_streams_per_address}",
            )
        self._validate_store()
        if not 0 <= self.shutdown_grace_s <= 600:
            raise SettingsError(
                "SKEWWATCH_SHUTDOWN_GRACE", f"must be between 0 and 600 s, got {self.shutdown_grace_s}"
            )
        for flag, value, low, high in (
            ("--debounce-snapshots", self.debounce_snapshots, 1, 1000),
            ("SKEWWATCH_PERFORMANCE_DEBOUNCE_SNAPSHOTS", self.performance_debounce_snapshots, 1, 1000),
            ("SKEWWATCH_CLUSTER_REVISIONS_KEEP", self.cluster_revisions_keep, 1, 1000),
        ):
            if not low <= value <= high:
                raise SettingsError(flag, f"must be between {low} and {high}, got {value}")
        for flag, seconds, low_s, high_s in (
            ("--debounce-seconds", self.debounce_seconds, 0.0, 86_400.0),
            ("--baseline-stable-seconds", self.baseline_stable_s, 0.0, 30 * 86_400.0),
            ("SKEWWATCH_REPLICA_STALE", self.replica_stale_s, 1.0, 30 * 86_400.0),
            ("SKEWWATCH_OBSERVATION_EVAL_INTERVAL", self.observation_eval_interval_s, 0.0, 3600.0),
            ("SKEWWATCH_DRIFT_TICK", self.drift_tick_s, 0.05, 3600.0),
            ("SKEWWATCH_CLAIM_INTERVAL", self.claim_interval_s, 0.05, 3600.0),
            ("SKEWWATCH_EVALUATION_COALESCE", self.evaluation_coalesce_s, 0.0, 60.0),
            ("SKEWWATCH_HELLO_TIMEOUT", self.hello_timeout_s, 0.05, 3600.0),
            ("SKEWWATCH_FIRST_REPORT_TIMEOUT", self.first_report_timeout_s, 0.05, 86_400.0),
            ("SKEWWATCH_IDLE_TIMEOUT", self.idle_timeout_s, 0.05, 7 * 86_400.0),
            ("SKEWWATCH_RETRY_AFTER", self.retry_after_s, 1.0, 3600.0),
            ("SKEWWATCH_INJECTION_GRACE", self.injection_grace_s, 0.0, 86_400.0),
            ("SKEWWATCH_PRUNE_INTERVAL", self.prune_interval_s, 0.1, 86_400.0),
            ("SKEWWATCH_CLUSTER_RESYNC", self.cluster_resync_s, 1.0, 86_400.0),
        ):
            if not low_s <= seconds <= high_s:
                raise SettingsError(flag, f"must be between {low_s:g} and {high_s:g} s, got {seconds}")
        if self.injection_check_interval_s != 0 and not 1 <= self.injection_check_interval_s <= 86_400:
            raise SettingsError(
                "SKEWWATCH_INJECTION_CHECK_INTERVAL",
                f"must be 0 (off) or between 1 and 86400 s, got {self.injection_check_interval_s}",
            )
        self._validate_otlp()
        self._validate_security()
        return self

    def _validate_security(self) -> None:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise SettingsError("--grpc-tls-cert", "--grpc-tls-cert and --grpc-tls-key go together")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise SettingsError("--grpc-client-ca", "mutual TLS needs --grpc-tls-cert and --grpc-tls-key")
        if (self.http_tls_cert_file is None) != (self.http_tls_key_file is None):
            raise SettingsError("--http-tls-cert", "--http-tls-cert and --http-tls-key go together")
        for flag, path in (
            ("--http-tls-cert", self.http_tls_cert_file),
            ("--http-tls-key", self.http_tls_key_file),
            ("--grpc-tls-cert", self.tls_cert_file),
            ("--grpc-tls-key", self.tls_key_file),
            ("--grpc-client-ca", self.tls_client_ca_file),
        ):
            if path is not None and not path.is_file():
                raise SettingsError(flag, f"{str(path)!r} is not a readable file")
        for flag, path in (("--agent-tokens", self.agent_tokens), ("--api-tokens", self.api_tokens)):
            if path is not None and not path.exists():
                raise SettingsError(flag, f"{str(path)!r} does not exist (a token file or a directory)")
        host, _ = split_hostport(self.grpc, "--grpc")
        if not self.tls and not self.insecure and not is_loopback(host):
            raise SettingsError(
                "--grpc",
                f"plaintext gRPC on {self.grpc}, which is not a loopback address: give --tls-cert and "
                "--tls-key, or --insecure to serve agents without TLS on purpose",
            )

    @property
    def tls(self) -> bool:
        """Whether gRPC ingest is served over TLS."""
        return self.tls_cert_file is not None

    def _validate_store(self) -> None:
        if not 1 <= self.observation_history_rows <= 1_000_000:
            raise SettingsError(
                "SKEWWATCH_OBSERVATION_HISTORY_ROWS",
                f"must be between 1 and 1000000, got {self.observation_history_rows}",
            )
        if not 0 < self.observation_history_days <= 3650:
            raise SettingsError(
                "SKEWWATCH_OBSERVATION_HISTORY_DAYS",
                f"must be more than 0 and at most 3650, got {self.observation_history_days}",
            )
        for flag, count, low, high in (
            ("SKEWWATCH_SNAPSHOT_HISTORY_ROWS", self.snapshot_history_rows, 1, 1_000_000),
            ("SKEWWATCH_STORE_POOL", self.store_pool_size, 1, 1000),
            ("SKEWWATCH_COMMIT_MAX_BATCH", self.commit_max_batch, 1, 100_000),
            ("SKEWWATCH_COMMIT_MAX_PENDING", self.commit_max_pending, 1, 10_000_000),
        ):
            if not low <= count <= high:
                raise SettingsError(flag, f"must be between {low} and {high}, got {count}")
        if not 0 < self.snapshot_history_days <= 3650:
            raise SettingsError(
                "SKEWWATCH_SNAPSHOT_HISTORY_DAYS",
                f"must be more than 0 and at most 3650, got {self.snapshot_history_days}",
            )
        if not 0 <= self.pod_retention_days <= 3650:
            raise SettingsError(
                "SKEWWATCH_POD_RETENTION_DAYS",
                f"must be 0 (keep) or more, at most 3650, got {self.pod_retention_days}",
            )
        if not 0 <= self.commit_max_wait_s <= 1:
            raise SettingsError(
                "SKEWWATCH_COMMIT_MAX_WAIT", f"must be between 0 and 1 s, got {self.commit_max_wait_s}"
            )
        if not 0.01 <= self.store_timeout_s <= 600:
            raise SettingsError(
                "SKEWWATCH_STORE_TIMEOUT", f"must be between 0.01 and 600 s, got {self.store_timeout_s}"
            )

    def _validate_otlp(self) -> None:
        if self.otlp_endpoint:
            parse_otlp_endpoint(self.otlp_endpoint)
        parse_headers(self.otlp_headers)
        if self.otlp_ca_file is not None and not self.otlp_ca_file.is_file():
            raise SettingsError("--otlp-ca-file", f"{str(self.otlp_ca_file)!r} is not a readable file")
        if not 0.1 <= self.otlp_interval_s <= 86_400:
            raise SettingsError(
                "--otlp-interval", f"must be between 0.1 and 86400 s, got {self.otlp_interval_s}"
            )

    @property
    def otlp_tls(self) -> bool:
        """Whether OTLP export uses TLS: not with --otlp-insecure, nor an ``http://`` endpoint."""
        scheme, _ = parse_otlp_endpoint(self.otlp_endpoint) if self.otlp_endpoint else ("", "")
        return not self.otlp_insecure and scheme != "http"

    @property
    def grpc_receive_limit(self) -> int:
        """gRPC's own limit: above ours so an oversized message reaches us and gets a clear error."""
        return self.max_message_bytes + max(64 * 1024, self.max_message_bytes // 4)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> CollectorSettings:
        """Defaults overridden by the ``SKEWWATCH_*`` variables present (and non-empty) in ``environ``."""
        changes: dict[str, Any] = {}
        for name, (variable, parse) in ENV.items():
            raw = environ.get(variable, "").strip()
            if not raw:
                continue
            try:
                changes[name] = parse(raw)
            except ValueError as e:
                raise SettingsError(variable, f"cannot parse {raw!r}: {e}") from e
        return replace(cls(), **changes)


def _int(raw: str) -> int:
    return int(raw, 10)


def _bool(raw: str) -> bool:
    text = raw.strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false")


def parse_otlp_endpoint(value: str) -> tuple[str, str]:
    """``[http[s]://]HOST:PORT`` → (scheme or "", ``HOST:PORT``); SettingsError naming --otlp-endpoint."""
    m = _OTLP_ENDPOINT.match(value.strip())
    if not m or int(m.group(3)) > 65535 or int(m.group(3)) == 0:
        raise SettingsError(
            "--otlp-endpoint", f"must be HOST:PORT or http[s]://HOST:PORT (OTLP/gRPC), got {value!r}"
        )
    return m.group(1) or "", f"{m.group(2)}:{m.group(3)}"


def parse_headers(value: str) -> tuple[tuple[str, str], ...]:
    """``k=v,k2=v2`` → pairs, keys lower-cased (gRPC metadata); SettingsError naming --otlp-headers."""
    pairs = []
    for item in value.split(","):
        if not item.strip():
            continue
        key, sep, val = item.partition("=")
        key, val = key.strip().lower(), val.strip()
        if not sep or not _HEADER_KEY.match(key) or any(ord(c) < 32 or ord(c) == 127 for c in val):
            # The value is never echoed: headers carry credentials.
            raise SettingsError(
                "--otlp-headers", f"each header must be KEY=VALUE, got a bad one named {key[:40]!r}"
            )
        pairs.append((key, val))
    return tuple(pairs)


# field -> (environment variable, parser); the single place flags' env defaults come from.
ENV: dict[str, tuple[str, Callable[[str], Any]]] = {
    "grpc": ("SKEWWATCH_GRPC", str),
    "http": ("SKEWWATCH_HTTP", str),
    "store": ("SKEWWATCH_STORE", str),
    "intents": ("SKEWWATCH_INTENTS", Path),
    "max_message_bytes": ("SKEWWATCH_MAX_MESSAGE_BYTES", _int),
    "max_streams": ("SKEWWATCH_MAX_STREAMS", _int),
    "max_streams_per_address": ("SKEWWATCH_MAX_STREAMS_PER_ADDRESS", _int),
    "hello_timeout_s": ("SKEWWATCH_HELLO_TIMEOUT", float),
    "first_report_timeout_s": ("SKEWWATCH_FIRST_REPORT_TIMEOUT", float),
    "idle_timeout_s": ("SKEWWATCH_IDLE_TIMEOUT", float),
    "retry_after_s": ("SKEWWATCH_RETRY_AFTER", float),
    "observation_history_rows": ("SKEWWATCH_OBSERVATION_HISTORY_ROWS", _int),
    "observation_history_days": ("SKEWWATCH_OBSERVATION_HISTORY_DAYS", float),
    "snapshot_history_rows": ("SKEWWATCH_SNAPSHOT_HISTORY_ROWS", _int),
    "snapshot_history_days": ("SKEWWATCH_SNAPSHOT_HISTORY_DAYS", float),
    "pod_retention_days": ("SKEWWATCH_POD_RETENTION_DAYS", float),
    "prune_interval_s": ("SKEWWATCH_PRUNE_INTERVAL", float),
    "store_timeout_s": ("SKEWWATCH_STORE_TIMEOUT", float),
    "store_pool_size": ("SKEWWATCH_STORE_POOL", _int),
    "commit_max_batch": ("SKEWWATCH_COMMIT_MAX_BATCH", _int),
    "commit_max_wait_s": ("SKEWWATCH_COMMIT_MAX_WAIT", float),
    "commit_max_pending": ("SKEWWATCH_COMMIT_MAX_PENDING", _int),
    "shutdown_grace_s": ("SKEWWATCH_SHUTDOWN_GRACE", float),
    "debounce_snapshots": ("SKEWWATCH_DEBOUNCE_SNAPSHOTS", _int),
    "debounce_seconds": ("SKEWWATCH_DEBOUNCE_SECONDS", float),
    "performance_debounce_snapshots": ("SKEWWATCH_PERFORMANCE_DEBOUNCE_SNAPSHOTS", _int),
    "baseline_stable_s": ("SKEWWATCH_BASELINE_STABLE", float),
    "replica_stale_s": ("SKEWWATCH_REPLICA_STALE", float),
    "observation_eval_interval_s": ("SKEWWATCH_OBSERVATION_EVAL_INTERVAL", float),
    "drift_tick_s": ("SKEWWATCH_DRIFT_TICK", float),
    "claim_interval_s": ("SKEWWATCH_CLAIM_INTERVAL", float),
    "evaluation_coalesce_s": ("SKEWWATCH_EVALUATION_COALESCE", float),
    "otlp_endpoint": ("SKEWWATCH_OTLP_ENDPOINT", str),
    "otlp_insecure": ("SKEWWATCH_OTLP_INSECURE", _bool),
    "otlp_ca_file": ("SKEWWATCH_OTLP_CA_FILE", Path),
    "otlp_headers": ("SKEWWATCH_OTLP_HEADERS", str),
    "otlp_interval_s": ("SKEWWATCH_OTLP_INTERVAL", float),
    "cluster": ("SKEWWATCH_CLUSTER", str),
    "injection_check_interval_s": ("SKEWWATCH_INJECTION_CHECK_INTERVAL", float),
    "injection_grace_s": ("SKEWWATCH_INJECTION_GRACE", float),
    "cluster_watch": ("SKEWWATCH_CLUSTER_WATCH", _bool),
    "cluster_namespaces": ("SKEWWATCH_CLUSTER_NAMESPACES", str),
    "cluster_revisions_keep": ("SKEWWATCH_CLUSTER_REVISIONS_KEEP", int),
    "cluster_resync_s": ("SKEWWATCH_CLUSTER_RESYNC", float),
    "redaction_salt": ("SKEWWATCH_REDACTION_SALT", str),
    "tls_cert_file": ("SKEWWATCH_GRPC_TLS_CERT", Path),
    "tls_key_file": ("SKEWWATCH_GRPC_TLS_KEY", Path),
    "tls_client_ca_file": ("SKEWWATCH_GRPC_CLIENT_CA", Path),
    "http_tls_cert_file": ("SKEWWATCH_HTTP_TLS_CERT", Path),
    "http_tls_key_file": ("SKEWWATCH_HTTP_TLS_KEY", Path),
    "agent_tokens": ("SKEWWATCH_AGENT_TOKENS", Path),
    "insecure": ("SKEWWATCH_INSECURE", _bool),
    "api_tokens": ("SKEWWATCH_API_TOKENS", Path),
    "metrics_auth": ("SKEWWATCH_METRICS_AUTH", _bool),
    "pod_namespace": ("POD_NAMESPACE", str),
    "pod_name": ("POD_NAME", str),
}
assert set(ENV) == {f.name for f in fields(CollectorSettings)}, "every setting needs a variable"


def split_hostport(value: str, flag: str) -> tuple[str, int]:
    """``HOST:PORT`` → (host, port); an empty host means all interfaces. Raises SettingsError."""
    m = _HOSTPORT.match(value)
    if not m:
        raise SettingsError(flag, f"must be HOST:PORT (or [IPv6]:PORT), got {value!r}")
    port = int(m.group(2))
    if port > 65535:
        raise SettingsError(flag, f"port {port} is over 65535")
    return m.group(1).strip("[]"), port
