"""Run the collector: open the store, serve gRPC ingest and the HTTP API, stop cleanly.

``Collector`` is the in-process handle (tests, embedding); ``serve`` runs one until SIGTERM,
SIGINT or cancellation. Shutdown order matters: stop accepting streams (letting in-flight
messages finish and be acknowledged within the grace period), then the API, then close the store.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc
from aiohttp import web

from collector.api.app import create_app
from collector.api.auth import load_tokens
from collector.cluster.clusterwatch import ClusterWatch
from collector.cluster.injection import InjectionCheck
from collector.cluster.kube import SERVICE_ACCOUNT
from collector.domain.records import Retention
from collector.drift.engine import Debounce
from collector.errors import CollectorError, SettingsError
from collector.ingest.auth import ServerCredentialFiles, agent_auth
from collector.ingest.registry import StreamLimits
from collector.ingest.server import IngestService, StreamTimeouts
from collector.intent.directory import IntentRegistry
from collector.service.cluster import ClusterState
from collector.service.evaluation import DriftService, DriftSettings
from collector.service.events import NO_EVENTS
from collector.service.pods import Pods
from collector.service.queries import Queries
from collector.service.recording import CommitSettings, Recorder
from collector.service.retention import Pruner
from collector.settings import CollectorSettings, split_hostport
from collector.store.base import FullStore
from collector.store.ownership import PostgresOwnership
from collector.store.postgresql import PostgresStore
from collector.store.url import parse_store_url
from collector.telemetry.metrics import Telemetry
from collector.tokens import TokenFile
from skewwatch.core.net import is_loopback
from skewwatch.redact import Redactor
from skewwatch.tls import ReloadingTLS, TLSFilesError

log = logging.getLogger(__name__)

MAX_SEND_MESSAGE_BYTES = 64 * 1024  # replies are Ack/Resync only


class AddressInUseError(CollectorError):
    """A listen address is already taken (another collector, or any other process, holds it)."""

    def __init__(self, flag: str, address: str) -> None:
        super().__init__(
            f"{flag}: cannot listen on {address}: address already in use "
            "(another collector or process holds it)"
        )
        self.flag = flag
        self.address = address


def address_in_use(host: str, port: int) -> bool:
    """Whether binding ``host:port`` fails with EADDRINUSE (what a failed gRPC bind does not say)."""
    if port == 0:
        return False
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError:
        return False
    for family, kind, proto, _, sockaddr in infos:
        try:
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind(sockaddr)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                return True
    return False


def retention_of(s: CollectorSettings) -> Retention:
    """What the store keeps (``Pruner``): the settings' bounds; a pod retention of 0 keeps pods."""
    return Retention(
        snapshot_rows=s.snapshot_history_rows,
        snapshot_days=s.snapshot_history_days,
        observation_rows=s.observation_history_rows,
        observation_days=s.observation_history_days,
        pod_days=s.pod_retention_days or None,
    )


def pending_requests_limit(max_streams: int) -> int:
    """gRPC core's backlog of calls not yet handed to the server (soft limit; hard: twice)."""
    return max(10_000, 4 * max_streams)


@dataclass(frozen=True)
class BoundPorts:
    grpc: int
    http: int


class Collector:
    """A running collector. ``await start()`` → bound ports; ``await stop()`` releases everything."""

    def __init__(
        self,
        settings: CollectorSettings,
        *,
        store: FullStore | None = None,
        environ: Mapping[str, str] | None = None,
        serviceaccount: Path = SERVICE_ACCOUNT,
    ) -> None:
        self.settings = settings
        self._store = store
        # Where the missed-injection check finds the Kubernetes API (KUBECONFIG, the service env).
        self.environ: Mapping[str, str] = environ if environ is not None else os.environ
        self.serviceaccount = serviceaccount
        self.injection: InjectionCheck | None = None
        self.cluster: ClusterState | None = None
        self.cluster_watch: ClusterWatch | None = None
        self._grpc: grpc.aio.Server | None = None
        self._runner: web.AppRunner | None = None
        self._serving = False
        self.ingest: IngestService | None = None
        self.drift: DriftService | None = None
        self._pods: Pods | None = None
        self._queries: Queries | None = None
        self.telemetry: Telemetry | None = None
        self.pruner: Pruner | None = None
        self.ownership: PostgresOwnership | None = None
        self.ports: BoundPorts | None = None

    @property
    def store(self) -> FullStore:
        if self._store is None:
            raise CollectorError("collector not started")
        return self._store

    @property
    def pods(self) -> Pods:
        """The pod queries the API serves (the HTTP side started)."""
        if self._pods is None:
            raise CollectorError("collector not started")
        return self._pods

    @property
    def queries(self) -> Queries:
        """The drift queries the API serves (the HTTP side started)."""
        if self._queries is None:
            raise CollectorError("collector not started")
        return self._queries

    def serving(self) -> bool:
        return self._serving

    def _schedule_evaluation(self, workload: str) -> None:
        if self.drift is not None:
            self.drift.schedule(workload)

    def _cluster_watch(self, s: CollectorSettings, state: ClusterState) -> ClusterWatch:
        """The cluster watch over the namespaces given, else those agents have reported from."""
        fixed = [n.strip() for n in s.cluster_namespaces.split(",") if n.strip()]

        async def reporting() -> set[str]:
            return {b.key.namespace for b in await self.store.pod_briefs()}

        return ClusterWatch(
            state,
            namespaces=fixed or reporting,
            redactor=Redactor(s.redaction_salt),
            resync_s=s.cluster_resync_s,
            sa_root=self.serviceaccount,
            environ=self.environ,
        )

    async def start(self) -> BoundPorts:
        s = self.settings.validate()
        http_host, http_port = split_hostport(s.http, "--http")
        if self._store is None:
            self._store = parse_store_url(s.store, timeout_s=s.store_timeout_s, pool_max=s.store_pool_size)
        await self._store.open()
        try:
            if isinstance(self._store, PostgresStore):
                # Other collectors may share this database: one owner evaluates each workload.
                self.ownership = self._store.ownership()
                await self.ownership.open()
            self.telemetry = Telemetry(s)
            # What the Kubernetes API says of each workload; a change schedules its evaluation.
            self.cluster = ClusterState(
                self._store, schedule=self._schedule_evaluation, keep=s.cluster_revisions_keep
            )
            self.drift = DriftService(
                self._store,
                IntentRegistry(s.intents, events=self.telemetry),
                drift_settings(s),
                events=self.telemetry,
                ownership=self.ownership,
                cluster=self.cluster,
            )
            await self.drift.start()
            grpc_port = await self._start_grpc(s)
            http_bound = await self._start_http(http_host, http_port)
            self.telemetry.bind(self._queries, self._pods)
            self.telemetry.start()
            assert self.injection is not None
            self.injection.start()
            self.telemetry.bind_cluster(self.cluster.status)
            if s.cluster_watch:
                self.cluster_watch = self._cluster_watch(s, self.cluster)
                self.cluster_watch.start()
            else:
                self.cluster.set_status(
                    {"available": False, "message": "off (SKEWWATCH_CLUSTER_WATCH=false)", "namespaces": {}}
                )
            self.pruner = Pruner(self._store, retention_of(s), s.prune_interval_s, events=self.telemetry)
            self.pruner.start()
        except BaseException:
            await self.stop()
            raise
        self._serving = True
        self.ports = BoundPorts(grpc=grpc_port, http=http_bound)
        log.info(
            "collector serving: gRPC ingest on %s (port %d), HTTP API on %s (port %d), store %s",
            s.grpc,
            grpc_port,
            s.http,
            http_bound,
            self._store.url,
        )
        return self.ports

    async def _start_grpc(self, s: CollectorSettings) -> int:
        assert self._store is not None
        # Certificates and tokens are read now: a bad file is a start error naming its flag.
        tls = None
        if s.tls_cert_file is not None and s.tls_key_file is not None:
            tls = ServerCredentialFiles(s.tls_cert_file, s.tls_key_file, s.tls_client_ca_file)
        self.ingest = IngestService(
            Recorder(
                self._store,
                on_commit=self.drift.notify if self.drift is not None else None,
                events=self.telemetry if self.telemetry is not None else NO_EVENTS,
                commit=CommitSettings(
                    max_batch=s.commit_max_batch,
                    max_wait_s=s.commit_max_wait_s,
                    max_pending=s.commit_max_pending,
                    retry_after_s=max(1, round(s.retry_after_s)),
                ),
            ),
            max_message_bytes=s.max_message_bytes,
            limits=StreamLimits(
                max_streams=s.max_streams,
                max_per_address=s.max_streams_per_address,
                retry_after_s=s.retry_after_s,
            ),
            timeouts=StreamTimeouts(
                hello_s=s.hello_timeout_s, first_report_s=s.first_report_timeout_s, idle_s=s.idle_timeout_s
            ),
            auth=agent_auth(s.agent_tokens, s.tls_client_ca_file),
        )
        # No ``maximum_concurrent_rpcs``: IngestService admits streams itself (overall and per
        # client address), refusing with RESOURCE_EXHAUSTED and a retry hint (gRPC's own limiter
        # gives neither a hint nor a per-address rule).
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", s.grpc_receive_limit),
                ("grpc.max_send_message_length", MAX_SEND_MESSAGE_BYTES),
                # Dead agents (node gone, network split) must not hold streams forever.
                ("grpc.keepalive_time_ms", 60_000),
                ("grpc.keepalive_timeout_ms", 20_000),
                ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
                # gRPC sets SO_REUSEPORT by default: a second collector on the same port would
                # start and silently share the agents. A port in use must fail the start.
                ("grpc.so_reuseport", 0),
                # Calls core holds until this process picks them up: past 1000 (gRPC's default)
                # core refuses a burst of new streams at random, a refusal its Python client
                # reports as INTERNAL; IngestService refuses cleanly instead.
                ("grpc.server.max_pending_requests", pending_requests_limit(s.max_streams)),
                ("grpc.server.max_pending_requests_hard_limit", 2 * pending_requests_limit(s.max_streams)),
            ],
        )
        server.add_generic_rpc_handlers([self.ingest.handler()])
        self._grpc = server
        host, port_wanted = split_hostport(s.grpc, "--grpc")
        try:
            if tls is not None:
                # Reloaded on change: gRPC asks ServerCredentialFiles before every new handshake.
                port = server.add_secure_port(s.grpc, tls.credentials())
            else:
                port = server.add_insecure_port(s.grpc)
        except RuntimeError as e:
            if address_in_use(host, port_wanted):
                raise AddressInUseError("--grpc", s.grpc) from e
            raise CollectorError(f"--grpc: cannot listen on {s.grpc}: {e}") from e
        if port == 0:
            if address_in_use(host, port_wanted):
                raise AddressInUseError("--grpc", s.grpc)
            raise CollectorError(f"--grpc: cannot listen on {s.grpc}")
        await server.start()
        if tls is None:
            log.warning(
                "gRPC ingest on %s is plaintext: agents' snapshots%s cross the network unencrypted "
                "(give --grpc-tls-cert and --grpc-tls-key)",
                s.grpc,
                " and bearer tokens" if s.agent_tokens is not None else "",
            )
        else:
            log.info(
                "gRPC ingest is TLS (%s)%s%s",
                s.tls_cert_file,
                ", client certificates required" if s.tls_client_ca_file is not None else "",
                ", agent tokens required" if s.agent_tokens is not None else "",
            )
        return port

    async def _start_http(self, host: str, port: int) -> int:
        """The HTTP API on ``host:port``: HTTPS with --http-tls-cert/--http-tls-key (the pair
        re-read when it changes), bearer tokens and roles with --api-tokens (docs/security-api.md)."""
        assert self._store is not None
        tls, tokens = http_security(self.settings, host)
        self._pods = Pods(
            self._store,
            streams=self.ingest.registry if self.ingest is not None else None,
            drift=self.drift,
            writes=self.ingest.recorder.group if self.ingest is not None else None,
        )
        self._queries = (
            Queries(self._store, self.drift, redactor=Redactor(self.settings.redaction_salt))
            if self.drift is not None
            else None
        )
        self.injection = InjectionCheck(
            self._pods,
            interval_s=self.settings.injection_check_interval_s,
            grace_s=self.settings.injection_grace_s,
            sa_root=self.serviceaccount,
            environ=self.environ,
        )
        if self.telemetry is not None:
            self.telemetry.bind_injection(self.injection.report)
        app = create_app(
            self._pods,
            queries=self._queries,
            grpc_serving=self.serving,
            metrics=self.telemetry.render if self.telemetry is not None else None,
            injection=self.injection.report,
            events=self.telemetry,
            tokens=tokens,
            metrics_auth=self.settings.metrics_auth,
            ui=True,
        )
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=self.settings.shutdown_grace_s)
        await runner.setup()
        self._runner = runner
        site = web.TCPSite(runner, host or None, port, ssl_context=tls.context if tls is not None else None)
        try:
            await site.start()
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise AddressInUseError("--http", self.settings.http) from e
            raise CollectorError(f"--http: cannot listen on {self.settings.http}: {e}") from e
        addresses = runner.addresses
        return int(addresses[0][1]) if addresses else port

    async def stop(self) -> None:
        """Stop serving and close the store; safe to call twice or after a failed start."""
        self._serving = False
        grace = self.settings.shutdown_grace_s
        server, self._grpc = self._grpc, None
        runner, self._runner = self._runner, None
        injection, self.injection = self.injection, None
        cluster_watch, self.cluster_watch = self.cluster_watch, None
        pruner, self.pruner = self.pruner, None
        try:
            if pruner is not None:
                await pruner.stop()
            if injection is not None:
                await injection.stop()
            if cluster_watch is not None:
                await cluster_watch.stop()
            if server is not None:
                await server.stop(grace)
            if self.ingest is not None:
                await self.ingest.recorder.close()  # what the last streams queued is committed
            if runner is not None:
                await runner.cleanup()
            if self.drift is not None:
                await self.drift.stop()
            telemetry, self.telemetry = self.telemetry, None
            if telemetry is not None:
                await telemetry.shutdown()  # the last OTLP export, while the store still answers
        finally:
            ownership, self.ownership = self.ownership, None
            if ownership is not None:
                await ownership.close()  # its session ends: another collector may take over
            if self._store is not None:
                await self._store.close()
        log.info("collector stopped")

    async def __aenter__(self) -> Collector:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def http_security(s: CollectorSettings, host: str) -> tuple[ReloadingTLS | None, TokenFile | None]:
    """The HTTP API's TLS (reloading) and bearer tokens per the settings; SettingsError naming
    the flag when a file does not load. Tokens over plain HTTP beyond loopback: a warning."""
    if s.metrics_auth and s.api_tokens is None:
        raise SettingsError(
            "SKEWWATCH_METRICS_AUTH", "needs --api-tokens: /metrics would need a token none has"
        )
    tls = None
    if s.http_tls_cert_file is not None and s.http_tls_key_file is not None:
        try:
            tls = ReloadingTLS(s.http_tls_cert_file, s.http_tls_key_file, label="HTTP API TLS")
        except TLSFilesError as e:
            raise SettingsError("--http-tls-cert", str(e)) from None
    tokens = load_tokens(s.api_tokens) if s.api_tokens is not None else None
    if tokens is not None and tls is None and not is_loopback(host):
        log.warning(
            "--api-tokens on plain HTTP at %s, not a loopback address: bearer tokens cross the network "
            "unencrypted; give --http-tls-cert and --http-tls-key (or terminate TLS in front)",
            s.http,
        )
    return tls, tokens


def drift_settings(s: CollectorSettings) -> DriftSettings:
    return DriftSettings(
        debounce=Debounce(
            snapshots=s.debounce_snapshots,
            seconds=s.debounce_seconds,
            performance_snapshots=s.performance_debounce_snapshots,
        ),
        replica_stale_s=s.replica_stale_s,
        observation_interval_s=s.observation_eval_interval_s,
        tick_s=s.drift_tick_s,
        baseline_stable_s=s.baseline_stable_s or None,
        claim_interval_s=s.claim_interval_s,
        coalesce_s=s.evaluation_coalesce_s,
    )


async def serve(settings: CollectorSettings) -> None:
    """Run a collector until SIGTERM/SIGINT or cancellation; always closes the store."""
    collector = Collector(settings)
    await collector.start()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
        except (NotImplementedError, RuntimeError) as e:
            # Not the main thread (embedded) or no signal support: cancellation still stops us.
            log.debug("cannot handle %s here: %s", sig.name, e)
    try:
        await stop.wait()
        log.info("signal received, shutting down")
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        await collector.stop()
