"""The collector's metrics: one ``MeterProvider``, read by a Prometheus reader (``GET /metrics``,
on a registry of its own) and, with ``--otlp-endpoint``, a periodic OTLP/gRPC exporter.

``Telemetry`` is a ``ServiceEvents``: the service layer calls it where findings open and
resolve, snapshots arrive, store writes fail and evaluations or ingested messages finish
(counters, histograms). The gauges are observable instruments whose callbacks read ``Gauges``,
an immutable picture ``refresh()`` takes through the service (``Queries``, ``Pods``): the SDK
calls back synchronously (on the exporter's thread, or in the scrape), the service is async, so
the picture is taken before each scrape and every export interval, never inside a callback.

Cardinality: every instrument has a View with its catalogue bound as
``aggregation_cardinality_limit``; attribute values are cut at ``MAX_ATTRIBUTE_CHARS``. Fact
values are attributes only of the identity gauges (``skewwatch.workload.config.*``, the
``CONFIG_FACTS`` and a digest-free image tag and model name), one series per workload and identity.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from collector.baseline.model import performance_ratios
from collector.domain.identity import split_workload
from collector.domain.model import FindingRecord, Replica
from collector.domain.records import FindingQuery
from collector.service.events import ServiceEvents
from collector.service.injection import InjectionReport
from collector.service.pods import Pods
from collector.service.queries import Queries
from collector.settings import CollectorSettings, parse_headers, parse_otlp_endpoint
from collector.telemetry.catalogue import catalogue, spec
from skewwatch import __version__
from skewwatch.core.facts import FactValue
from skewwatch.core.image import image_tag

log = logging.getLogger(__name__)

MAX_ATTRIBUTE_CHARS = 128
OPEN_FINDINGS_READ = 1000  # open findings one refresh reads (the API's page limit)
SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
COUNT_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)  # histograms of a count
Attrs = tuple[tuple[str, str], ...]


def cap(value: object) -> str:
    """An attribute value at most ``MAX_ATTRIBUTE_CHARS`` long (cut values end with '…')."""
    text = str(value)
    return text if len(text) <= MAX_ATTRIBUTE_CHARS else text[: MAX_ATTRIBUTE_CHARS - 1] + "…"


def attrs(**values: object) -> dict[str, str]:
    return {k: cap(v) for k, v in values.items()}


def _workload_attrs(workload: str) -> dict[str, str]:
    return attrs(namespace=split_workload(workload)[0], workload=workload)


def _finding_attrs(f: FindingRecord) -> dict[str, str]:
    return {
        **_workload_attrs(f.workload),
        **attrs(category=f.category, severity=f.severity, reference=f.reference),
    }


# The identity a configuration is labelled with: attribute -> the fact it is read from. Absent
# facts (and nulls) are "unknown"; runtime.quantization null is "none"; image_tag and model are
# derived (``config_attrs``).
CONFIG_FACTS: tuple[tuple[str, str], ...] = (
    ("engine", "runtime.engine"),
    ("runtime_version", "runtime.version"),
    ("dtype", "runtime.dtype"),
    ("quantization", "runtime.quantization"),
    ("kv_cache_dtype", "runtime.kv_cache_dtype"),
    ("gpu_product", "hardware.gpu.product"),
    ("gpu_count", "hardware.gpu.count"),
    ("driver_version", "hardware.driver_version"),
)
UNKNOWN = "unknown"
_DIGEST = re.compile(r"^(sha\d+[:-])?[0-9a-fA-F]{32,}$")


def model_name(model_id: FactValue, model_path: FactValue) -> str:
    """``model.id``, else the last meaningful component of ``model.path``: a hub cache's
    ``models--org--name/snapshots/<commit>`` is ``org/name``, and no hash is ever the name."""
    if isinstance(model_id, str) and model_id.strip():
        return model_id.strip()
    if not isinstance(model_path, str):
        return UNKNOWN
    parts = [p for p in re.split(r"[/\\]+", model_path.split("://", 1)[-1]) if p]
    for part in reversed(parts):
        if part.startswith("models--"):
            return part.removeprefix("models--").replace("--", "/") or UNKNOWN
        if _DIGEST.match(part) or part in ("snapshots", "blobs"):
            continue
        return part
    return UNKNOWN


def _attr_value(value: FactValue) -> str:
    if value is None or value == "":
        return UNKNOWN
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def config_attrs(workload: str, facts: Mapping[str, FactValue]) -> Attrs:
    """The attributes of ``skewwatch.workload.config.info`` / ``.replicas`` for one replica."""
    values = {a: _attr_value(facts.get(k)) for a, k in CONFIG_FACTS}
    if "runtime.quantization" in facts and facts["runtime.quantization"] is None:
        values["quantization"] = "none"
    values["image_tag"] = image_tag(facts.get("orchestration.image"))
    values["model"] = model_name(facts.get("model.id"), facts.get("model.path"))
    return tuple({**_workload_attrs(workload), **attrs(**values)}.items())


def configurations(workload: str, replicas: Iterable[Replica]) -> dict[Attrs, int]:
    """Live replicas per distinct identity (replicas with no snapshot yet have none)."""
    return dict(Tally(config_attrs(workload, r.facts) for r in replicas if r.facts))


def series_counts(gauges: Gauges) -> dict[str, int]:
    """How many series each observable gauge reports from ``gauges``."""
    return {
        "skewwatch.findings.open": len(gauges.findings_open),
        "skewwatch.workload.replicas": len(gauges.replicas),
        "skewwatch.workload.replicas_disagreeing": len(gauges.disagreeing),
        "skewwatch.workload.heartbeat_age": len(gauges.last_seen),
        "skewwatch.performance.baseline_ratio": len(gauges.ratios),
        "skewwatch.workload.config.info": len(gauges.configs),
        "skewwatch.workload.config.replicas": len(gauges.configs),
    }


def overflowing(gauges: Gauges) -> list[tuple[str, int, int]]:
    """(metric, series, bound) for each gauge over its catalogue bound: the SDK keeps ``bound - 1``
    series and folds the rest into one ``otel.metric.overflow="true"`` series."""
    out = []
    for name, n in series_counts(gauges).items():
        bound = spec(name).cardinality
        if n > bound:
            out.append((name, n, bound))
    return out


@dataclass(frozen=True)
class Gauges:
    """What the observable gauges report, as of one ``refresh``."""

    findings_open: Mapping[Attrs, int] = field(default_factory=dict)
    replicas: Mapping[str, int] = field(default_factory=dict)
    disagreeing: Mapping[str, int] = field(default_factory=dict)
    last_seen: Mapping[str, float] = field(default_factory=dict)
    ratios: Mapping[tuple[str, str], float] = field(default_factory=dict)
    configs: Mapping[Attrs, int] = field(default_factory=dict)  # identity -> live replicas on it
    without_intent: int = 0
    without_baseline: int = 0


def resource_for(settings: CollectorSettings, instance_id: str) -> Resource:
    """The stable OTel resource attributes; the k8s ones only when known."""
    values: dict[str, str] = {
        "service.name": "skewwatch-collector",
        "service.version": __version__,
        "service.instance.id": instance_id,
    }
    for key, value in (
        ("k8s.namespace.name", settings.pod_namespace),
        ("k8s.pod.name", settings.pod_name),
        ("k8s.cluster.name", settings.cluster),
    ):
        if value:
            values[key] = value
    return Resource.create(values)


def views() -> list[View]:
    """One View per catalogued instrument: its cardinality bound, seconds (or count) buckets for
    histograms."""
    out = []
    for s in catalogue().values():
        buckets = SECONDS_BUCKETS if s.unit == "s" else COUNT_BUCKETS
        aggregation = ExplicitBucketHistogramAggregation(buckets) if s.kind == "histogram" else None
        out.append(
            View(
                instrument_name=s.name,
                aggregation=aggregation,
                aggregation_cardinality_limit=s.cardinality,
            )
        )
    return out


def otlp_reader(settings: CollectorSettings) -> MetricReader:
    """The periodic OTLP/gRPC exporter the settings describe (``otlp_endpoint`` set)."""
    import grpc
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

    _, endpoint = parse_otlp_endpoint(settings.otlp_endpoint)
    credentials = None
    if settings.otlp_tls:
        ca = settings.otlp_ca_file.read_bytes() if settings.otlp_ca_file is not None else None
        credentials = grpc.ssl_channel_credentials(root_certificates=ca)
    exporter = OTLPMetricExporter(
        endpoint=endpoint,
        insecure=not settings.otlp_tls,
        credentials=credentials,
        headers=parse_headers(settings.otlp_headers) or None,
        timeout=10,
    )
    return PeriodicExportingMetricReader(exporter, export_interval_millis=settings.otlp_interval_s * 1000)


class Telemetry(ServiceEvents):
    """The metrics of one collector; ``bind`` the services, then ``render`` scrapes, ``run``
    keeps the gauges fresh for OTLP, ``shutdown`` flushes and stops the provider."""

    def __init__(
        self, settings: CollectorSettings, *, min_refresh_s: float = 1.0, clock: Any = time.time
    ) -> None:
        self.settings = settings
        self.instance_id = settings.pod_name or str(uuid.uuid4())
        self.registry = CollectorRegistry(auto_describe=True)
        readers: list[MetricReader] = [PrometheusMetricReader(registry=self.registry)]
        self.otlp = bool(settings.otlp_endpoint)
        self._otlp_reader = otlp_reader(settings) if self.otlp else None
        if self._otlp_reader is not None:
            readers.append(self._otlp_reader)
        self.provider = MeterProvider(
            metric_readers=readers, resource=resource_for(settings, self.instance_id), views=views()
        )
        self.min_refresh_s = min_refresh_s
        self.clock = clock
        self.gauges = Gauges()
        self._refreshed_at = -1e18
        self._lock = asyncio.Lock()
        self._queries: Queries | None = None
        self._pods: Pods | None = None
        self._injection: Callable[[], InjectionReport] | None = None
        self._cluster: Callable[[], Mapping[str, Any]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._overflowing: set[str] = set()
        self._instruments()

    def _instruments(self) -> None:
        meter = self.provider.get_meter("skewwatch.collector", __version__)

        def counter(name: str) -> Any:
            s = spec(name)
            return meter.create_counter(name, unit=s.unit, description=s.meaning)

        def histogram(name: str) -> Any:
            s = spec(name)
            return meter.create_histogram(name, unit=s.unit, description=s.meaning)

        self._opened = counter("skewwatch.findings.opened")
        self._resolved = counter("skewwatch.findings.resolved")
        self._snapshots = counter("skewwatch.snapshots.received")
        self._store_errors = counter("skewwatch.store.errors")
        self._ingest = histogram("skewwatch.ingest.duration")
        self._batch = histogram("skewwatch.ingest.batch.size")
        self._shed = counter("skewwatch.ingest.shed")
        self._refused = counter("skewwatch.auth.refused")
        self._limits = counter("skewwatch.limits.exceeded")
        self._evaluation = histogram("skewwatch.evaluation.duration")
        for name, callback in (
            ("skewwatch.findings.open", self._observe_open),
            ("skewwatch.workload.replicas", self._observe_replicas),
            ("skewwatch.workload.replicas_disagreeing", self._observe_disagreeing),
            ("skewwatch.workload.heartbeat_age", self._observe_heartbeat_age),
            ("skewwatch.workload.config.info", self._observe_config_info),
            ("skewwatch.workload.config.replicas", self._observe_config_replicas),
            ("skewwatch.performance.baseline_ratio", self._observe_ratios),
            ("skewwatch.workloads.without_intent", self._observe_without_intent),
            ("skewwatch.workloads.without_baseline", self._observe_without_baseline),
            ("skewwatch.agents.connected", self._observe_agents),
            ("skewwatch.injection.opted_in", self._observe_opted_in),
            ("skewwatch.injection.missed", self._observe_missed),
            ("skewwatch.cluster.available", self._observe_cluster_available),
            ("skewwatch.cluster.kinds", self._observe_cluster_kinds),
        ):
            s = spec(name)
            meter.create_observable_gauge(name, callbacks=[callback], unit=s.unit, description=s.meaning)

    # -- events (ServiceEvents) ------------------------------------------------------------------

    def finding_opened(self, finding: FindingRecord) -> None:
        self._opened.add(1, _finding_attrs(finding))

    def finding_resolved(self, finding: FindingRecord) -> None:
        self._resolved.add(1, {**_finding_attrs(finding), **attrs(resolution=finding.resolution or "fixed")})

    def snapshot_received(self) -> None:
        self._snapshots.add(1)

    def store_failed(self, where: str) -> None:
        self._store_errors.add(1, attrs(operation=where))

    def evaluated(self, duration_s: float) -> None:
        self._evaluation.record(duration_s)

    def ingested(self, kind: str, duration_s: float) -> None:
        self._ingest.record(duration_s, attrs(message=kind))

    def batch_committed(self, writes: int, duration_s: float) -> None:
        self._batch.record(writes)

    def write_shed(self) -> None:
        self._shed.add(1)

    def refused(self, surface: str, reason: str) -> None:
        self._refused.add(1, attrs(surface=surface, reason=reason))

    def limit_exceeded(self, limit: str) -> None:
        self._limits.add(1, attrs(limit=limit))

    # -- gauges ------------------------------------------------------------------------------------

    def _per_workload(self, values: Mapping[str, float]) -> Iterable[Observation]:
        return [Observation(v, _workload_attrs(w)) for w, v in values.items()]

    def _observe_open(self, _: CallbackOptions) -> Iterable[Observation]:
        return [Observation(n, dict(a)) for a, n in self.gauges.findings_open.items()]

    def _observe_replicas(self, _: CallbackOptions) -> Iterable[Observation]:
        return self._per_workload(self.gauges.replicas)

    def _observe_disagreeing(self, _: CallbackOptions) -> Iterable[Observation]:
        return self._per_workload(self.gauges.disagreeing)

    def _observe_heartbeat_age(self, _: CallbackOptions) -> Iterable[Observation]:
        now = self.clock()
        return self._per_workload({w: max(0.0, now - t) for w, t in self.gauges.last_seen.items()})

    def _observe_config_info(self, _: CallbackOptions) -> Iterable[Observation]:
        return [Observation(1, dict(a)) for a in self.gauges.configs]

    def _observe_config_replicas(self, _: CallbackOptions) -> Iterable[Observation]:
        return [Observation(n, dict(a)) for a, n in self.gauges.configs.items()]

    def _observe_ratios(self, _: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(r, {**_workload_attrs(w), **attrs(observation=o)})
            for (w, o), r in self.gauges.ratios.items()
        ]

    def _observe_without_intent(self, _: CallbackOptions) -> Iterable[Observation]:
        return [Observation(self.gauges.without_intent)]

    def _observe_without_baseline(self, _: CallbackOptions) -> Iterable[Observation]:
        return [Observation(self.gauges.without_baseline)]

    def _observe_agents(self, _: CallbackOptions) -> Iterable[Observation]:
        if self._pods is None:
            return []
        return [Observation(int(self._pods.streams_readiness().get("in_use") or 0))]

    def _injection_report(self) -> InjectionReport | None:
        """The latest missed-injection check, when it could read the cluster (else no series)."""
        report = self._injection() if self._injection is not None else None
        return report if report is not None and report.available else None

    def _observe_opted_in(self, _: CallbackOptions) -> Iterable[Observation]:
        report = self._injection_report()
        if report is None:
            return []
        return [Observation(n, attrs(namespace=ns)) for ns, n in report.opted_in_by_namespace.items()]

    def _observe_missed(self, _: CallbackOptions) -> Iterable[Observation]:
        report = self._injection_report()
        if report is None:
            return []
        return [
            Observation(n, attrs(namespace=ns, reason=reason))
            for (ns, reason), n in report.missed_counts().items()
        ]

    def _cluster_status(self) -> Mapping[str, Any] | None:
        return self._cluster() if self._cluster is not None else None

    def _observe_cluster_available(self, _: CallbackOptions) -> Iterable[Observation]:
        status = self._cluster_status()
        if status is None:
            return []
        return [Observation(1 if status.get("available") else 0)]

    def _observe_cluster_kinds(self, _: CallbackOptions) -> Iterable[Observation]:
        """Per kind and state, how many watched namespaces: a kind forbidden or not installed
        anywhere shows as state unavailable, so an alert can say the cluster facts are partial."""
        status = self._cluster_status()
        namespaces = status.get("namespaces") if status is not None else None
        if not isinstance(namespaces, Mapping):
            return []
        counts: dict[tuple[str, str], int] = {}
        for kinds in namespaces.values():
            if not isinstance(kinds, Mapping):
                continue
            for kind, state in kinds.items():
                st = state.get("status") if isinstance(state, Mapping) else None
                key = (str(kind), str(st or "unknown"))
                counts[key] = counts.get(key, 0) + 1
        return [Observation(n, attrs(kind=kind, state=st)) for (kind, st), n in sorted(counts.items())]

    # -- the picture, through the service --------------------------------------------------------

    def bind(self, queries: Queries | None, pods: Pods | None) -> None:
        self._queries, self._pods = queries, pods

    def bind_injection(self, report: Callable[[], InjectionReport]) -> None:
        """Where the ``skewwatch.injection.*`` gauges read the latest check (an immutable report,
        read synchronously in the callback like the agents gauge)."""
        self._injection = report

    def bind_cluster(self, status: Callable[[], Mapping[str, Any]]) -> None:
        """Where the ``skewwatch.cluster.*`` gauges read the cluster watch's report."""
        self._cluster = status

    async def refresh(self, *, force: bool = False) -> None:
        """Take a new ``Gauges`` through the service (at most every ``min_refresh_s``)."""
        async with self._lock:
            if self._queries is None:
                return
            if not force and time.monotonic() - self._refreshed_at < self.min_refresh_s:
                return
            self.gauges = await gauges_from(self._queries)
            self._refreshed_at = time.monotonic()
            self._warn_overflow(self.gauges)

    def _warn_overflow(self, gauges: Gauges) -> None:
        """Say once per metric (until it fits again) that it is past its cardinality bound."""
        over = {name: (n, bound) for name, n, bound in overflowing(gauges)}
        for name, (n, bound) in over.items():
            if name not in self._overflowing:
                log.warning(
                    "telemetry: %s has %d series, over its bound of %d: the rest are folded into "
                    'one otel_metric_overflow="true" series (collector/telemetry/catalogue.yaml)',
                    name,
                    n,
                    bound,
                )
        self._overflowing = set(over)

    async def render(self) -> tuple[bytes, str]:
        """The Prometheus text of a fresh picture: (body, content type)."""
        await self.refresh()
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    async def flush(self) -> None:
        """Refresh, then export to OTLP now (not the Prometheus reader: it would queue a stale
        collection for the next scrape)."""
        await self.refresh(force=True)
        if self._otlp_reader is not None:
            await asyncio.to_thread(self._otlp_reader.force_flush, 10_000)

    def start(self) -> None:
        """Keep the gauges fresh for the OTLP exporter's thread (nothing to do without one)."""
        if self.otlp and self._task is None:
            self._task = asyncio.create_task(self._run(), name="telemetry refresh")

    async def _run(self) -> None:
        while True:
            try:
                await self.refresh(force=True)
            except Exception as e:  # derived data: a failed refresh keeps the last picture
                log.warning("telemetry refresh failed: %s", e)
            await asyncio.sleep(self.settings.otlp_interval_s / 2)

    async def shutdown(self) -> None:
        """Stop refreshing, export once more (OTLP), shut the provider down; safe to call twice."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await asyncio.to_thread(self.provider.shutdown, 10_000)


async def gauges_from(queries: Queries) -> Gauges:
    """Every gauge's values, asked of the service."""
    replicas: dict[str, int] = {}
    disagreeing: dict[str, int] = {}
    last_seen: dict[str, float] = {}
    ratios: dict[tuple[str, str], float] = {}
    configs: dict[Attrs, int] = {}
    without_intent = without_baseline = 0
    for summary in await queries.workloads():
        w = summary.workload
        view = await queries.workload(w)
        replicas[w] = summary.replicas_live
        last_seen[w] = summary.last_seen
        disagreeing[w] = sum(1 for r in view.replicas if r.pod not in view.majority)
        for identity, n in configurations(w, view.replicas).items():  # capped names may meet
            configs[identity] = configs.get(identity, 0) + n
        without_intent += not view.bound
        if view.baseline is None:
            without_baseline += 1
        else:
            for observation, ratio in performance_ratios(view.baseline, view.replicas).items():
                ratios[(w, observation)] = ratio
    page = await queries.findings(FindingQuery(status="open", limit=OPEN_FINDINGS_READ))
    open_counts: Tally[Attrs] = Tally()
    for f in page.findings:
        open_counts[tuple({**_finding_attrs(f), **attrs(key=f.key)}.items())] += 1
    return Gauges(
        findings_open=dict(open_counts),
        replicas=replicas,
        disagreeing=disagreeing,
        last_seen=last_seen,
        ratios=ratios,
        configs=configs,
        without_intent=without_intent,
        without_baseline=without_baseline,
    )
