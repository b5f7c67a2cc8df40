"""The collector's telemetry for real: recorded agent snapshots over gRPC into a running collector,
``GET /metrics`` scraped over HTTP and OTLP/gRPC exported to an in-process MetricsService; every
metric emitted is in the catalogue and every catalogued metric is emitted; attribute values stay
bounded even for a hostile workload name."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as ms
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc as ms_grpc
from prometheus_client.parser import text_string_to_metric_families

from collector.cli import collector_settings
from collector.domain.records import EventIn, Write, WriteResult
from collector.errors import SettingsError, StoreError
from collector.main import Collector
from collector.settings import CollectorSettings, parse_headers
from collector.store.sqlite import SqliteStore
from collector.telemetry.catalogue import catalogue
from collector.telemetry.metrics import MAX_ATTRIBUTE_CHARS, cap, model_name
from proto.skewwatch.v1 import skewwatch_pb2 as pb
from skewwatch.cli import build_parser
from skewwatch.core.image import image_tag
from tests.support.collector import (
    A100_40GB_FACTS,
    BASE_FACTS,
    H100_FACTS,
    AgentStream,
    hello_msg,
    make_snapshot,
    observations_msg,
    settings_for,
    wait_until,
)
from tests.support.kubeapi import opted_in_cluster  # noqa: F401  (a fixture)
from tests.support.tls import self_signed

HOSTILE = "ml/Deployment/" + 'évil"\\{x}=' * 45  # 464 characters: quotes, backslash, braces, '='
OBS = {"generation_tokens_per_s": 100.0, "requests_per_s": 2.0, "e2e_latency_seconds_count": 50.0,
       "requests_running": 4.0}  # fmt: skip


class Receiver(ms_grpc.MetricsServiceServicer):
    """An OTLP/gRPC metrics receiver keeping every request and its metadata."""

    def __init__(self) -> None:
        self.requests: list[ms.ExportMetricsServiceRequest] = []
        self.metadata: list[dict[str, str]] = []

    async def Export(self, request: Any, context: Any) -> ms.ExportMetricsServiceResponse:
        self.requests.append(request)
        self.metadata.append({k: v for k, v in context.invocation_metadata()})
        return ms.ExportMetricsServiceResponse()

    def points(self) -> dict[str, list[tuple[dict[str, str], float]]]:
        """Metric name -> (attributes, value) of the last export that carried it."""
        out: dict[str, list[tuple[dict[str, str], float]]] = {}
        for req in self.requests:
            for rm in req.resource_metrics:
                for sm in rm.scope_metrics:
                    for m in sm.metrics:
                        data = getattr(m, m.WhichOneof("data") or "gauge")
                        out[m.name] = [
                            ({a.key: a.value.string_value for a in p.attributes}, _value(p))
                            for p in data.data_points
                        ]
        return out

    def resource(self) -> dict[str, str]:
        rm = self.requests[-1].resource_metrics[0]
        return {a.key: a.value.string_value for a in rm.resource.attributes}


def _value(p: Any) -> float:
    if hasattr(p, "bucket_counts"):
        return float(p.count)
    return float(p.as_int if p.WhichOneof("value") == "as_int" else p.as_double)


class FlakyStore(SqliteStore):
    """The real store, whose next batch with an event fails once (a store error on the ingest path)."""

    fail_next = False

    async def record_batch(self, writes: Sequence[Write]) -> list[WriteResult | StoreError]:
        if self.fail_next and any(isinstance(w, EventIn) for w in writes):
            self.fail_next = False
            raise StoreError("disk full (test)")
        return await super().record_batch(writes)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, int]]:
    rec = Receiver()
    server = grpc.aio.server()
    ms_grpc.add_MetricsServiceServicer_to_server(rec, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield rec, port
    await server.stop(0)


async def _pod(channel: grpc.aio.Channel, name: str, facts: dict[str, Any], workload: str | None = None,
               obs: bool = True) -> AgentStream:  # fmt: skip
    s = AgentStream(channel)
    kw = {"workload": workload} if workload else {}
    await s.exchange(hello_msg(1, pod=name, **kw))
    snap = make_snapshot(
        {**facts, "orchestration.pod": name, **({"orchestration.workload": workload} if workload else {})}
    )
    await s.exchange(pb.AgentMessage(sequence=2, snapshot=_snap(snap)))
    if obs:
        for seq in (3, 4, 5):
            await s.exchange(observations_msg(seq, OBS))
    return s


def _snap(snap: Any) -> Any:
    from skewwatch.wire import snapshot_to_proto

    return snapshot_to_proto(snap)


async def _scrape(http: aiohttp.ClientSession) -> dict[str, list[tuple[dict[str, str], float]]]:
    async with http.get("/metrics") as r:
        assert r.status == 200 and r.content_type == "text/plain"
        return _samples(await r.text())


def _samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((dict(s.labels), float(s.value)))
    return out


async def test_scenario_exports_every_catalogued_metric_over_otlp_and_metrics(
    tmp_path: Path,
    receiver: tuple[Receiver, int],
    opted_in_cluster: dict[str, str],  # noqa: F811
) -> None:
    rec, port = receiver
    admin = "admin-" + "a" * 24
    (tmp_path / "api-tokens").write_text(f"admin {admin}\n")
    settings = settings_for(
        tmp_path, drift_tick_s=0.1, baseline_stable_s=0, shutdown_grace_s=0.5,
        api_tokens=tmp_path / "api-tokens",
        otlp_endpoint=f"127.0.0.1:{port}", otlp_insecure=True, otlp_interval_s=3600,
        otlp_headers="x-team=ml,Authorization=Bearer t0ken", cluster="prod-1", cluster_namespaces="ml",
        pod_namespace="skewwatch", pod_name="collector-0",
    )  # fmt: skip
    store = FlakyStore(tmp_path / "collector.db")
    # A Kubernetes API (fake, over real HTTP) with an opted-in pod no agent reports: the
    # injection gauges have something to say.
    collector = Collector(settings, store=store, environ=opted_in_cluster, serviceaccount=tmp_path / "no-sa")
    ports = await collector.start()
    assert collector.telemetry is not None and collector.drift is not None
    assert collector.injection is not None and (await collector.injection.check()).missed
    telemetry = collector.telemetry
    telemetry.min_refresh_s = 0
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{ports.grpc}")
    http = aiohttp.ClientSession(
        base_url=f"http://127.0.0.1:{ports.http}",
        timeout=aiohttp.ClientTimeout(10),
        headers={"Authorization": f"Bearer {admin}"},
    )
    try:
        # A request without a token: refused, counted (skewwatch.auth.refused{surface=api}).
        async with (
            aiohttp.ClientSession() as anonymous,
            anonymous.get(f"http://127.0.0.1:{ports.http}/api/v1/pods") as r,
        ):
            assert r.status == 401
        h100 = {**BASE_FACTS, **H100_FACTS}
        streams = [await _pod(channel, f"llm-{i}", h100) for i in range(3)]
        await _pod(channel, "evil-0", BASE_FACTS, workload=HOSTILE, obs=False)
        await collector.drift.settled()
        async with http.post("/api/v1/baselines/ml/llm") as r:
            assert r.status == 201, await r.text()
        # llm-2 lands on an A100 node: one peers finding opens, then the fix resolves it.
        bad = make_snapshot({**BASE_FACTS, **A100_40GB_FACTS, "orchestration.pod": "llm-2"})
        await streams[2].exchange(pb.AgentMessage(sequence=6, snapshot=_snap(bad)))
        await collector.drift.settled()
        during = await _scrape(http)
        await telemetry.flush()  # an export while the finding is open
        mid = rec.points()
        good = make_snapshot({**h100, "orchestration.pod": "llm-2"})
        await streams[2].exchange(pb.AgentMessage(sequence=7, snapshot=_snap(good)))
        await collector.drift.settled()
        # A store failure on ingest: the stream ends UNAVAILABLE, the counter counts it.
        store.fail_next = True
        failing = await _pod(channel, "llm-9", h100, obs=False)
        await failing.send(pb.AgentMessage(sequence=3, event=pb.Event(at=_now(), kind="restart")))
        code, _ = await failing.status()
        assert code == grpc.StatusCode.UNAVAILABLE
        # A shed message: the write queue is full (max_pending 0 here), the stream ends
        # RESOURCE_EXHAUSTED, the counter counts it.
        assert collector.ingest is not None
        group = collector.ingest.recorder.group
        kept, group.settings = group.settings, replace(group.settings, max_pending=0)
        shed = AgentStream(channel)
        await shed.send(hello_msg(1, pod="llm-8"))
        assert (await shed.status())[0] == grpc.StatusCode.RESOURCE_EXHAUSTED
        group.settings = kept
        # The cluster watch of "ml" on that API (pods and namespaces only): every kind it watches
        # is reported, as unavailable there (not served).
        cluster = collector.cluster
        assert cluster is not None
        await wait_until(
            "the cluster watch's report of ml",
            lambda: len(cluster.status().get("namespaces", {}).get("ml", {})) >= 10,
        )
        after = await _scrape(http)
        await telemetry.flush()
    finally:
        await http.close()
        await channel.close()
        await collector.stop()

    # /metrics, as Prometheus reads it
    wl = {"namespace": "ml", "workload": "ml/Deployment/llm"}
    opened = [v for a, v in during["skewwatch_findings_open"] if a.get("key") == "hardware.gpu.product"]
    assert opened == [1.0], during["skewwatch_findings_open"]
    assert _one(during, "skewwatch_workload_replicas_disagreeing", wl) == 1.0
    assert _one(after, "skewwatch_workload_replicas_disagreeing", wl) == 0.0
    assert _one(after, "skewwatch_workload_replicas", wl) == 4.0  # llm-9's hello and snapshot count
    assert _one(after, "skewwatch_findings_opened_total", wl) == 1.0
    assert _one(after, "skewwatch_findings_resolved_total", {**wl, "resolution": "fixed"}) == 1.0
    assert _one(after, "skewwatch_store_errors_total", {"operation": "ingest"}) == 1.0
    assert _one(after, "skewwatch_ingest_shed_total", {}) == 1.0
    assert _one(after, "skewwatch_cluster_available", {}) == 1.0
    assert _one(after, "skewwatch_cluster_kinds", {"kind": "Deployment", "state": "unavailable"}) == 1.0
    assert _one(after, "skewwatch_auth_refused_total", {"surface": "api", "reason": "unauthenticated"}) == 1.0
    assert sum(v for a, v in after["skewwatch_ingest_batch_size_count"]) >= 10
    ratio = _one(
        after, "skewwatch_performance_baseline_ratio", {**wl, "observation": "generation_tokens_per_s"}
    )
    assert ratio == pytest.approx(1.0)
    assert not [
        a for a, _ in after.get("skewwatch_findings_open", []) if a.get("key") == "hardware.gpu.product"
    ]
    identity = {**wl, "engine": "vllm", "dtype": "float16", "gpu_product": "h100-80gb", "model": "llama"}
    assert _one(during, "skewwatch_workload_config_replicas", {**identity, "gpu_product": "a100-40gb"}) == 1.0
    assert _one(during, "skewwatch_workload_config_replicas", identity) == 2.0
    assert _one(after, "skewwatch_workload_config_info", identity) == 1.0
    assert _one(after, "skewwatch_workload_config_replicas", identity) == 4.0
    for series in after.values():
        for labels, _ in series:
            assert all(len(v) <= MAX_ATTRIBUTE_CHARS for v in labels.values()), labels
    hostile = [
        a
        for a, _ in after["skewwatch_workload_replicas"]
        if a["namespace"] == "ml" and a["workload"] != wl["workload"]
    ]
    assert [a["workload"] for a in hostile] == [cap(HOSTILE)]

    # OTLP, as an OpenTelemetry Collector receives it
    points = rec.points()
    assert set(points) == set(catalogue()), set(points) ^ set(catalogue())
    for name, spec in catalogue().items():
        for attributes, _ in points[name]:
            assert set(attributes) <= set(spec.attributes), (name, attributes)
    assert rec.metadata[-1]["x-team"] == "ml" and rec.metadata[-1]["authorization"] == "Bearer t0ken"
    resource = rec.resource()
    assert resource["service.name"] == "skewwatch-collector" and resource["service.version"]
    assert resource["service.instance.id"] == "collector-0"
    assert (resource["k8s.namespace.name"], resource["k8s.pod.name"], resource["k8s.cluster.name"]) == (
        "skewwatch", "collector-0", "prod-1",
    )  # fmt: skip
    assert [v for a, v in points["skewwatch.findings.opened"] if a["workload"] == wl["workload"]] == [1.0]
    assert [v for _, v in mid["skewwatch.agents.connected"]] == [4.0]  # 3 replicas and evil-0
    assert [v for _, v in points["skewwatch.agents.connected"]] == [0.0]  # the last export, on stop
    assert sum(v for _, v in points["skewwatch.snapshots.received"]) >= 6


IDENTITY = ("namespace", "workload", "engine", "runtime_version", "dtype", "quantization", "kv_cache_dtype",
            "gpu_product", "gpu_count", "driver_version", "image_tag", "model")  # fmt: skip


async def test_config_info_has_one_series_per_configuration_and_counts_its_replicas(tmp_path: Path) -> None:
    collector = Collector(settings_for(tmp_path, drift_tick_s=0.1))
    ports = await collector.start()
    assert collector.telemetry is not None and collector.drift is not None
    collector.telemetry.min_refresh_s = 0
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{ports.grpc}")
    http = aiohttp.ClientSession(base_url=f"http://127.0.0.1:{ports.http}", timeout=aiohttp.ClientTimeout(10))
    facts = {**BASE_FACTS, **H100_FACTS, "runtime.quantization": None,
             "orchestration.image": "vllm/vllm-openai:v0.8.5@sha256:" + "ab" * 32}  # fmt: skip
    float32 = {**facts, "runtime.args.dtype": "float32", "runtime.dtype": "float32"}
    try:
        streams = [
            await _pod(channel, "llm-a", facts, obs=False),
            await _pod(channel, "llm-b", float32, obs=False),
        ]
        await collector.drift.settled()
        split = await _scrape(http)
        back = make_snapshot({**facts, "orchestration.pod": "llm-b"})
        await streams[1].exchange(pb.AgentMessage(sequence=3, snapshot=_snap(back)))
        await collector.drift.settled()
        joined = await _scrape(http)
    finally:
        await http.close()
        await channel.close()
        await collector.stop()

    expected = {"namespace": "ml", "workload": "ml/Deployment/llm", "engine": "vllm",
                "runtime_version": "0.0.0.dev0+skewwatch.standin", "quantization": "none",
                "kv_cache_dtype": "float16", "gpu_product": "h100-80gb", "gpu_count": "1",
                "driver_version": "590.48.01", "image_tag": "v0.8.5", "model": "llama"}  # fmt: skip

    def series(samples: dict[str, list[tuple[dict[str, str], float]]], name: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for labels, value in samples[name]:
            identity = {k: v for k, v in labels.items() if not k.startswith("otel_")}
            assert set(identity) == set(IDENTITY), labels
            assert {k: v for k, v in identity.items() if k != "dtype"} == expected, labels
            out[identity["dtype"]] = value
        return out

    assert series(split, "skewwatch_workload_config_info") == {"float16": 1.0, "float32": 1.0}
    assert series(split, "skewwatch_workload_config_replicas") == {"float16": 1.0, "float32": 1.0}
    assert series(joined, "skewwatch_workload_config_info") == {"float16": 1.0}
    assert series(joined, "skewwatch_workload_config_replicas") == {"float16": 2.0}


def test_image_tag_and_model_name_carry_no_digest() -> None:
    digest = "sha256:" + "0f" * 32
    assert image_tag(f"registry.local:5000/vllm/vllm-openai:v0.8.5@{digest}") == "v0.8.5"
    assert image_tag("registry.local:5000/vllm/vllm-openai") == "latest"
    assert image_tag(f"vllm/vllm-openai@{digest}") == "unknown"
    assert image_tag(None) == image_tag("") == "unknown"
    assert model_name("meta-llama/Llama-3.1-8B", "/models/x") == "meta-llama/Llama-3.1-8B"
    assert model_name(None, "/models/llama/") == "llama"
    assert model_name(None, "s3://bucket/models/qwen2") == "qwen2"
    snapshot = "/root/.cache/huggingface/hub/models--Qwen--Qwen2-7B/snapshots/" + "3" * 40
    assert model_name(None, snapshot) == "Qwen/Qwen2-7B"
    assert model_name(None, None) == model_name(None, "/") == "unknown"


def _now() -> Any:
    import time

    from skewwatch.wire import timestamp

    return timestamp(time.time())


def _one(samples: dict[str, list[tuple[dict[str, str], float]]], name: str, match: dict[str, str]) -> float:
    found = [v for a, v in samples.get(name, []) if match.items() <= a.items()]
    assert len(found) == 1, (name, match, samples.get(name))
    return found[0]


async def test_two_collectors_in_one_process_serve_their_own_metrics(tmp_path: Path) -> None:
    a = Collector(settings_for(tmp_path / "a"))
    b = Collector(settings_for(tmp_path / "b"))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    pa, pb_ = await a.start(), await b.start()
    try:
        async with aiohttp.ClientSession() as http:
            for port in (pa.http, pb_.http):
                async with http.get(f"http://127.0.0.1:{port}/metrics") as r:
                    text = await r.text()
                samples = _samples(text)
                assert [v for _, v in samples["skewwatch_workloads_without_baseline"]] == [0.0]
                assert "target_info" in samples
    finally:
        await a.stop()
        await b.stop()


def test_attribute_values_are_capped() -> None:
    assert (
        cap("x" * 500) == "x" * (MAX_ATTRIBUTE_CHARS - 1) + "…" and len(cap("x" * 500)) == MAX_ATTRIBUTE_CHARS
    )
    assert cap("short") == "short"


@pytest.mark.parametrize(
    ("change", "flag"),
    [
        ({"otlp_endpoint": "not an endpoint"}, "--otlp-endpoint"),
        ({"otlp_endpoint": "grpc://collector:4317"}, "--otlp-endpoint"),
        ({"otlp_endpoint": "collector:0"}, "--otlp-endpoint"),
        ({"otlp_headers": "novalue"}, "--otlp-headers"),
        ({"otlp_headers": "bad key=v"}, "--otlp-headers"),
        ({"otlp_interval_s": 0.0}, "--otlp-interval"),
        ({"otlp_ca_file": Path("/nonexistent/ca.pem")}, "--otlp-ca-file"),
    ],
)
def test_bad_otlp_settings_name_their_flag(change: dict[str, Any], flag: str) -> None:
    with pytest.raises(SettingsError) as e:
        CollectorSettings(**change).validate()
    assert e.value.flag == flag and str(e.value).startswith(flag)


def test_otlp_flags_and_variables(tmp_path: Path) -> None:
    parser: argparse.ArgumentParser = build_parser()
    env = {"SKEWWATCH_OTLP_ENDPOINT": "https://otel:4317", "SKEWWATCH_OTLP_HEADERS": "a=1",
           "SKEWWATCH_OTLP_INTERVAL": "15", "SKEWWATCH_CLUSTER": "c", "POD_NAME": "p"}  # fmt: skip
    s = collector_settings(parser.parse_args(["collector"]), env)
    assert (s.otlp_endpoint, s.otlp_headers, s.otlp_interval_s, s.otlp_tls) == (
        "https://otel:4317",
        "a=1",
        15.0,
        True,
    )
    assert (s.cluster, s.pod_name) == ("c", "p")
    args = parser.parse_args(
        ["collector", "--otlp-endpoint", "otel:4317", "--otlp-insecure", "--otlp-headers", "k=v,k2=v2"]
    )
    s = collector_settings(args, env)
    assert (s.otlp_endpoint, s.otlp_tls) == ("otel:4317", False)
    assert parse_headers(s.otlp_headers) == (("k", "v"), ("k2", "v2"))
    with pytest.raises(SettingsError, match="SKEWWATCH_OTLP_INSECURE"):
        CollectorSettings.from_env({"SKEWWATCH_OTLP_INSECURE": "maybe"})
    assert CollectorSettings(otlp_endpoint="http://otel:4317").otlp_tls is False


def test_a_gauge_past_its_bound_is_said_once_until_it_fits(caplog: pytest.LogCaptureFixture) -> None:
    from collector.telemetry.metrics import Gauges, Telemetry, overflowing

    bound = catalogue()["skewwatch.workload.replicas"].cardinality
    many = Gauges(replicas={f"ns/w{i}": 1 for i in range(bound + 5)})
    assert overflowing(many) == [("skewwatch.workload.replicas", bound + 5, bound)]
    assert overflowing(Gauges(replicas={"ns/w": 1})) == []
    telemetry = Telemetry(CollectorSettings().validate())
    with caplog.at_level("WARNING", logger="collector.telemetry.metrics"):
        telemetry._warn_overflow(many)
        telemetry._warn_overflow(many)  # still over: not said again
        telemetry._warn_overflow(Gauges())
        telemetry._warn_overflow(many)  # over again after it fitted: said again
    telemetry.provider.shutdown()
    said = [r.getMessage() for r in caplog.records if "over its bound" in r.getMessage()]
    assert len(said) == 2 and f"{bound + 5} series, over its bound of {bound}" in said[0]


def _self_signed(tmp_path: Path) -> tuple[bytes, bytes, Path]:
    """A certificate for localhost/127.0.0.1 made by the openssl CLI: (key, cert, cert file)."""
    cert, key = self_signed(tmp_path, "otlp", "localhost")
    return key.read_bytes(), cert.read_bytes(), cert


async def _tls_receiver(key: bytes, cert: bytes) -> tuple[Receiver, grpc.aio.Server, int]:
    """A started OTLP receiver serving TLS with ``cert``: (receiver, server, port)."""
    rec = Receiver()
    server = grpc.aio.server()
    ms_grpc.add_MetricsServiceServicer_to_server(rec, server)  # type: ignore[no-untyped-call]
    port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([(key, cert)]))
    await server.start()
    return rec, server, port


async def test_otlp_export_over_tls_with_a_ca_file_and_headers(tmp_path: Path) -> None:
    key, cert, cert_file = _self_signed(tmp_path)
    rec, server, port = await _tls_receiver(key, cert)
    settings = settings_for(
        tmp_path, otlp_endpoint=f"https://localhost:{port}", otlp_ca_file=cert_file, otlp_interval_s=3600,
        otlp_headers="x-team=ml", shutdown_grace_s=0.5,
    )  # fmt: skip
    collector = Collector(settings)
    await collector.start()
    try:
        assert collector.telemetry is not None and collector.telemetry.otlp
        await collector.telemetry.flush()
        assert rec.requests, "nothing arrived over TLS"
        assert "skewwatch.workloads.without_baseline" in rec.points()
        assert rec.metadata[-1].get("x-team") == "ml"
    finally:
        await collector.stop()
        await server.stop(0)


async def test_otlp_over_tls_refuses_a_certificate_it_was_not_given(tmp_path: Path) -> None:
    key, cert, _ = _self_signed(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    _, _, unrelated_ca = _self_signed(other)
    rec, server, port = await _tls_receiver(key, cert)
    settings = settings_for(
        tmp_path, otlp_endpoint=f"https://localhost:{port}", otlp_ca_file=unrelated_ca, otlp_interval_s=3600,
        shutdown_grace_s=0.5,
    )  # fmt: skip
    collector = Collector(settings)
    await collector.start()
    try:
        assert collector.telemetry is not None
        await collector.telemetry.flush()  # the export fails (logged by the SDK), the collector goes on
        assert rec.requests == []
    finally:
        await collector.stop()
        await server.stop(0)
