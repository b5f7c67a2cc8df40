"""Missed injections: the pure classification on recorded-shape Pod objects, the cluster client
against a fake API server over real HTTP, and a real collector reporting an opted-in pod with no
agent in GET /api/v1/injection and /metrics until its agent streams."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from collector.api import body as api_body
from collector.api.app import create_app
from collector.cluster.errors import ClusterError, ClusterForbidden, ClusterUnavailable
from collector.cluster.injection import InjectionCheck
from collector.cluster.kube import KubeClient, load_config, parse_kubeconfig
from collector.errors import SettingsError
from collector.main import Collector
from collector.service.injection import (
    NO_AGENT,
    NOT_INJECTED,
    InjectionReport,
    MissedPod,
    classify,
    namespace_labels,
    slim_pod,
)
from collector.service.pods import Pods
from collector.settings import CollectorSettings
from skewwatch.core.identity import PodKey
from skewwatch.kubeconfig import KubeConfig
from tests.support.collector import AgentStream, hello_msg, make_snapshot, settings_for, snapshot_msg
from tests.support.kubeapi import TOKEN, FakeKubeApi, kubeconfig, namespace, pod, serve

NOW = 1_780_000_000.0
OLD = NOW - 3600  # started an hour ago: past any grace period
INJECT = {"skewwatch.io/inject": "true"}
NAMESPACES = namespace_labels(
    [
        namespace("ml"),
        namespace("serving", {"skewwatch.io/inject": "enabled"}),
        namespace("kube-system", {"skewwatch.io/inject": "enabled"}),
    ]
)


def report(*pods: dict[str, Any], reporting: dict[PodKey, float | None] | None = None,
           grace_s: float = 120.0) -> InjectionReport:  # fmt: skip
    return classify(pods, NAMESPACES, reporting or {}, NOW, grace_s)


def missed(r: InjectionReport) -> list[tuple[str, str, str | None, str]]:
    return [(m.namespace, m.pod, m.workload, m.why) for m in r.missed]


# -- classification (pure) -----------------------------------------------------------------------


def test_pod_annotated_inject_without_agent_is_missed_not_injected() -> None:
    r = report(pod("ml", "llm-0", annotations=INJECT, started=OLD))
    assert (r.available, r.opted_in, r.injected, r.reporting) == (True, 1, 0, 0)
    assert missed(r) == [("ml", "llm-0", "ReplicaSet/llm-7d9f8b6c5", NOT_INJECTED)]
    assert r.missed[0].since == OLD


def test_pod_of_labelled_namespace_opts_in_unless_annotated_false() -> None:
    r = report(
        pod("serving", "a", started=OLD),
        pod("serving", "b", annotations={"skewwatch.io/inject": "false"}, started=OLD),
        pod("ml", "c", started=OLD),  # neither annotated nor in a labelled namespace
    )
    assert r.opted_in == 1
    assert missed(r) == [("serving", "a", "ReplicaSet/llm-7d9f8b6c5", NOT_INJECTED)]
    assert dict(r.opted_in_by_namespace) == {"serving": 1}


def test_system_namespaces_never_count_even_annotated_or_labelled() -> None:
    r = report(
        pod("kube-system", "coredns-0", started=OLD),
        pod("kube-public", "x", annotations=INJECT, started=OLD),
    )
    assert (r.opted_in, r.missed) == (0, ())


def test_pending_pod_is_opted_in_but_not_yet_missed() -> None:
    r = report(pod("ml", "llm-0", annotations=INJECT, phase="Pending"))
    assert (r.opted_in, r.missed) == (1, ())


def test_running_pod_within_the_grace_period_is_not_missed_yet() -> None:
    young = pod("ml", "llm-0", annotations=INJECT, started=NOW - 60)
    assert report(young).missed == ()
    assert missed(report(young, grace_s=30)) == [("ml", "llm-0", "ReplicaSet/llm-7d9f8b6c5", NOT_INJECTED)]


def test_injected_pod_with_its_agent_reporting_is_not_missed() -> None:
    r = report(
        pod("ml", "llm-0", annotations=INJECT, agent=True, started=OLD),
        reporting={PodKey("ml", "llm-0"): NOW - 5},
    )
    assert (r.opted_in, r.injected, r.reporting, r.missed) == (1, 1, 1, ())


def test_injected_pod_with_no_agent_reporting_is_missed_so() -> None:
    r = report(
        pod("ml", "llm-0", annotations=INJECT, agent=True, started=OLD, owner=None),
        pod("ml", "llm-1", annotations={**INJECT, "skewwatch.io/injected": "0.3.0"}, started=OLD),
        reporting={PodKey("ml", "other"): NOW},
    )
    assert (r.injected, r.reporting) == (2, 0)
    assert missed(r) == [
        ("ml", "llm-0", None, NO_AGENT),
        ("ml", "llm-1", "ReplicaSet/llm-7d9f8b6c5", NO_AGENT),
    ]
    assert r.missed_counts() == {("ml", "not_injected"): 0, ("ml", "no_agent_reporting"): 2}


def test_agent_as_init_container_counts_as_injected() -> None:
    p = pod("ml", "llm-0", annotations=INJECT, started=OLD)
    p["spec"]["initContainers"] = [{"name": "skewwatch-agent", "image": "skewwatch/agent:0.3.0",
                                    "restartPolicy": "Always"}]  # fmt: skip
    assert missed(report(p))[0][3] == NO_AGENT


def test_slim_pod_classifies_exactly_as_the_full_object() -> None:
    pods = [
        pod("ml", "llm-0", annotations=INJECT, agent=True, started=OLD),
        pod("serving", "s-0", started=OLD),
        pod("serving", "s-1", phase="Pending"),
    ]
    full, slim = report(*pods), report(*[slim_pod(p) for p in pods])
    assert full == slim and len(full.missed) == 2
    assert len(str(slim_pod(pods[0]))) < len(str(pods[0])) / 4


# -- the client, against a fake API server over HTTP ----------------------------------------------


@contextlib.asynccontextmanager
async def api_at(api: FakeKubeApi) -> AsyncIterator[KubeConfig]:
    async with serve(api) as url:
        yield KubeConfig(server=url, token=TOKEN, source="test")


async def test_list_follows_continue_pages_to_the_end() -> None:
    api = FakeKubeApi(pods=[pod("ml", f"llm-{i}", started=OLD) for i in range(5)])
    async with api_at(api) as config, KubeClient(config, page_limit=2) as client:
        names = await client.list_all("/api/v1/pods", "list pods", lambda p: p["metadata"]["name"])
    assert names == [f"llm-{i}" for i in range(5)]
    assert [q.get("limit") for _, q in api.requests] == ["2", "2", "2"]
    assert "continue" not in api.requests[0][1] and all("continue" in q for _, q in api.requests[1:])


async def test_forbidden_list_names_verb_and_resource() -> None:
    api = FakeKubeApi(forbidden={"/api/v1/namespaces"})
    async with api_at(api) as config, KubeClient(config) as client:
        with pytest.raises(ClusterForbidden, match="may not 'list namespaces' cluster-wide"):
            await client.list_all("/api/v1/namespaces", "list namespaces", dict)


async def test_api_that_does_not_answer_in_time_is_a_clear_error() -> None:
    api = FakeKubeApi(stall_s=2.0)
    async with api_at(api) as config, KubeClient(config, timeout_s=0.2) as client:
        with pytest.raises(ClusterError, match=r"no answer within 0.2 s"):
            await client.list_all("/api/v1/pods", "list pods", dict)


async def test_oversized_page_is_refused_unread() -> None:
    api = FakeKubeApi(pods=[pod("ml", "llm-0")], pad_bytes=300_000)
    async with api_at(api) as config, KubeClient(config, max_page_bytes=256 * 1024) as client:
        with pytest.raises(ClusterError, match="a page over 262144 bytes"):
            await client.list_all("/api/v1/pods", "list pods", dict)


async def test_list_past_the_item_cap_is_refused() -> None:
    api = FakeKubeApi(namespaces=[namespace(f"ns-{i}") for i in range(5)])
    async with api_at(api) as config, KubeClient(config, page_limit=2, max_items=3) as client:
        with pytest.raises(ClusterError, match="more than 3 items"):
            await client.list_all("/api/v1/namespaces", "list namespaces", dict)


async def test_rejected_token_is_unauthorized() -> None:
    async with serve(FakeKubeApi()) as url:
        config = KubeConfig(server=url, token="wrong", source="test")
        async with KubeClient(config) as client:
            with pytest.raises(ClusterError, match="unauthorized"):
                await client.list_all("/api/v1/pods", "list pods", dict)


def test_no_credentials_is_unavailable_and_a_broken_kubeconfig_names_its_fault(tmp_path: Path) -> None:
    with pytest.raises(ClusterUnavailable, match="no KUBECONFIG"):
        load_config(tmp_path / "no-sa", {})
    with pytest.raises(ClusterError, match="no current-context"):
        parse_kubeconfig("apiVersion: v1\nkind: Config\n", "kc")
    cert_user = (
        kubeconfig(tmp_path, "https://10.0.0.1:6443")
        .read_text()
        .replace('token: "' + TOKEN + '"', "client-certificate-data: AAAA")
    )
    with pytest.raises(ClusterError, match="only token authentication"):
        parse_kubeconfig(cert_user, "kc")


def test_in_cluster_service_account_wins_over_kubeconfig(tmp_path: Path) -> None:
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "token").write_text(TOKEN + "\n")
    env = {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443", "KUBECONFIG": "/nope"}
    config = load_config(sa, env)
    assert (config.server, config.token) == ("https://[fd00::1]:443", TOKEN)


async def test_check_without_credentials_reports_unavailable_then_forbidden_names_rbac(
    tmp_path: Path,
) -> None:
    pods = Pods(_NoPods())  # type: ignore[arg-type]
    check = InjectionCheck(pods, sa_root=tmp_path / "no-sa", environ={})
    r = await check.check()
    assert not r.available and r.reason is not None and "no KUBECONFIG" in r.reason
    assert check.failures == 0 and check.next_wait_s() == 60.0
    api = FakeKubeApi(namespaces=[namespace("ml")], forbidden={"/api/v1/pods"})
    async with serve(api) as url:
        env = {"KUBECONFIG": str(kubeconfig(tmp_path, url))}
        check = InjectionCheck(pods, sa_root=tmp_path / "no-sa", environ=env)
        r = await check.check()
        assert not r.available and "may not 'list pods' cluster-wide" in str(r.reason)
        assert check.failures == 1 and check.next_wait_s() == 120.0  # backs off
        await check.check()
        assert check.next_wait_s() == 240.0


class _NoPods:
    """A pod store that knows no pods (the check's side of Pods only lists)."""

    async def list_pods(self) -> list[Any]:
        return []


def test_interval_setting_is_zero_or_at_least_a_second() -> None:
    assert (
        CollectorSettings.from_env({"SKEWWATCH_INJECTION_CHECK_INTERVAL": "0"}).injection_check_interval_s
        == 0
    )
    with pytest.raises(SettingsError, match="SKEWWATCH_INJECTION_CHECK_INTERVAL"):
        CollectorSettings(injection_check_interval_s=0.5).validate()
    with pytest.raises(SettingsError, match="SKEWWATCH_INJECTION_GRACE"):
        CollectorSettings(injection_grace_s=-1).validate()


# -- a real collector ------------------------------------------------------------------------------


def _samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name:
                labels = {k: v for k, v in s.labels.items() if not k.startswith("otel_scope_")}
                out[tuple(sorted(labels.items()))] = s.value
    return out


async def test_collector_reports_opted_in_pod_without_agent_until_its_agent_streams(tmp_path: Path) -> None:
    started = time.time() - 600
    api = FakeKubeApi(
        pods=[
            pod("ml", "llm-0", annotations=INJECT, agent=True, started=started),
            pod("ml", "llm-1", annotations=INJECT, agent=True, phase="Pending"),
            pod("serving", "s-0", started=started, owner=("StatefulSet", "s")),
            pod("other", "x-0", started=started),
        ],
        namespaces=[
            namespace("ml"),
            namespace("serving", {"skewwatch.io/inject": "enabled"}),
            namespace("other"),
        ],
    )
    settings = settings_for(tmp_path, shutdown_grace_s=0.5, injection_check_interval_s=3600)
    async with serve(api) as url:
        env = {"KUBECONFIG": str(kubeconfig(tmp_path, url))}
        collector = Collector(settings, environ=env, serviceaccount=tmp_path / "no-sa")
        ports = await collector.start()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{ports.grpc}")
        http = aiohttp.ClientSession(f"http://127.0.0.1:{ports.http}", timeout=aiohttp.ClientTimeout(10))
        try:
            assert collector.injection is not None
            await collector.injection.check()
            async with http.get("/api/v1/injection") as resp:
                assert resp.status == 200
                body = await resp.json()
            counts = [body[k] for k in ("available", "reason", "opted_in", "injected", "reporting")]
            assert counts == [True, None, 3, 2, 0]
            assert body["missed"] == [
                {"namespace": "ml", "pod": "llm-0", "workload": "ReplicaSet/llm-7d9f8b6c5",
                 "why": "injected, no agent reporting", "since": pytest.approx(started, abs=1)},
                {"namespace": "serving", "pod": "s-0", "workload": "StatefulSet/s", "why": "not injected",
                 "since": pytest.approx(started, abs=1)},
            ]  # fmt: skip
            async with http.get("/metrics") as resp:
                text = await resp.text()
            assert _samples(text, "skewwatch_injection_missed") == {
                (("namespace", "ml"), ("reason", "no_agent_reporting")): 1.0,
                (("namespace", "ml"), ("reason", "not_injected")): 0.0,
                (("namespace", "serving"), ("reason", "no_agent_reporting")): 0.0,
                (("namespace", "serving"), ("reason", "not_injected")): 1.0,
            }
            assert _samples(text, "skewwatch_injection_opted_in") == {
                (("namespace", "ml"),): 2.0,
                (("namespace", "serving"),): 1.0,
            }

            stream = AgentStream(channel)  # llm-0's agent reports: a real gRPC stream
            await stream.exchange(hello_msg(1, namespace="ml", pod="llm-0"))
            await stream.exchange(snapshot_msg(2, make_snapshot()))
            r = await collector.injection.check()
            assert [m.pod for m in r.missed] == ["s-0"] and r.reporting == 1
            async with http.get("/api/v1/injection") as resp:
                assert [m["pod"] for m in (await resp.json())["missed"]] == ["s-0"]
            async with http.get("/metrics") as resp:
                after = _samples(await resp.text(), "skewwatch_injection_missed")
            assert after[(("namespace", "ml"), ("reason", "no_agent_reporting"))] == 0.0
        finally:
            await http.close()
            await channel.close()
            await collector.stop()


async def test_collector_without_credentials_says_unavailable_and_serves_the_rest(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, shutdown_grace_s=0.5)
    collector = Collector(settings, environ={}, serviceaccount=tmp_path / "no-sa")
    ports = await collector.start()
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{ports.http}") as http:
            assert collector.injection is not None
            await collector.injection.check()
            async with http.get("/api/v1/injection") as resp:
                body = await resp.json()
            assert (resp.status, body["available"], body["missed"]) == (200, False, [])
            assert "no in-cluster service account" in body["reason"]
            async with http.get("/metrics") as resp:
                text = await resp.text()
            assert "skewwatch_injection_missed" not in _names(text)
            async with http.get("/api/v1/pods") as resp:
                assert resp.status == 200
    finally:
        await collector.stop()


def _names(text: str) -> set[str]:
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


async def test_a_collector_stopped_during_its_first_injection_check_stops_at_once(tmp_path: Path) -> None:
    # The first check runs as the collector starts (here it finds no cluster at once). Python
    # 3.11's wait_for dropped a cancellation that met a finished check, and stop() then waited
    # out the check's whole interval (60 s).
    for i in range(5):
        settings = CollectorSettings(
            grpc="127.0.0.1:0", http="127.0.0.1:0", store=f"sqlite:///{tmp_path}/{i}.db"
        )
        collector = Collector(settings, environ={})
        await collector.start()
        began = time.monotonic()
        await asyncio.wait_for(collector.stop(), 10)
        assert time.monotonic() - began < 5


async def test_the_missed_list_is_cut_at_max_list_items_and_says_so() -> None:
    missed = tuple(MissedPod("ml", f"llm-{i}", "Deployment/llm", NOT_INJECTED, 1.0) for i in range(3))
    report = InjectionReport(True, checked_at=2.0, opted_in=3, missed=missed)
    limits = replace(api_body.DEFAULT_LIMITS, max_list_items=2)
    app = create_app(Pods(_NoPods()), injection=lambda: report, limits=limits)  # type: ignore[arg-type]
    async with TestClient(TestServer(app)) as client:
        answer = await (await client.get("/api/v1/injection")).json()
    assert [m["pod"] for m in answer["missed"]] == ["llm-0", "llm-1"]
    assert answer["truncated"] == {"limit": 2, "total": 3} and answer["opted_in"] == 3
