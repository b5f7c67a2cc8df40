"""Cluster facts judged: the evaluation service joins each workload's cluster facts (autoscaler,
Services, Ingresses, ConfigMaps) to its replicas, so baselines hold them and a change of them is
a finding; the agent's own facts win, and equal cluster facts add no peer noise (real SQLite store,
real DriftService and ClusterState, replicas from the recorded vLLM snapshot)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from collector.domain.cluster import CLUSTER_METHOD, CLUSTER_SOURCE, ClusterFacts, PoolMembers
from collector.domain.model import Reference
from collector.intent.directory import IntentRegistry
from collector.service.cluster import ClusterState
from collector.service.evaluation import DriftService, DriftSettings
from collector.service.recording import Recorder
from collector.store.sqlite import SqliteStore
from skewwatch.core.facts import FactValue, Provenance, SourceState, SourceStatus
from skewwatch.core.identity import PodIdentity
from tests.support.collector import BASE_FACTS, H100_FACTS, make_snapshot

NS = "ml"
WL = "ml/Deployment/llm"
HPA = "HorizontalPodAutoscaler/ml/llm"
INGRESS = "Ingress/ml/llm"
SERVICE = "Service/ml/llm"


def pod_facts(
    pod: str, workload: str = WL, base: Mapping[str, Any] = BASE_FACTS, **extra: Any
) -> dict[str, Any]:
    """The recorded vLLM snapshot's facts as pod ``pod`` of ``workload``, with its labels."""
    name = workload.rsplit("/", 1)[-1]
    return {
        **base,
        "orchestration.pod": pod,
        "orchestration.workload": workload,
        "orchestration.labels.app": name,
        "orchestration.labels.pod-template-hash": f"{name}-7d9f",
        **{k.replace("__", "."): v for k, v in extra.items()},
    }


def cluster_facts(
    workload: str,
    facts: Mapping[str, tuple[FactValue, str, str]],
    *,
    rv: str = "4711",
    status: SourceStatus | None = None,
    revisions: Mapping[str, str] | None = None,
) -> ClusterFacts:
    """A workload's facts as the cluster watch gives them: key -> (value, object, field), each with
    the provenance detail ``Kind/namespace/name@resourceVersion: field``."""
    return ClusterFacts(
        workload,
        facts={k: v for k, (v, _, _) in facts.items()},
        provenance={
            k: Provenance(CLUSTER_SOURCE, CLUSTER_METHOD, f"{obj}@{rv}: {fld}")
            for k, (_, obj, fld) in facts.items()
        },
        status=status or SourceStatus(CLUSTER_SOURCE, SourceState.OK),
        revisions=revisions or {},
    )


def autoscaled(
    max_replicas: int = 8,
    timeout_s: float = 300.0,
    more: Mapping[str, tuple[FactValue, str, str]] | None = None,
) -> dict[str, Any]:
    """The cluster facts of an llm Deployment under an HPA, behind a Service and an Ingress."""
    return {
        "orchestration.autoscaling.kind": ("HorizontalPodAutoscaler", HPA, "kind"),
        "orchestration.autoscaling.min": (2, HPA, "spec.minReplicas"),
        "orchestration.autoscaling.max": (max_replicas, HPA, "spec.maxReplicas"),
        "orchestration.autoscaling.metric_type": ("Pods", HPA, "spec.metrics[0].type"),
        "orchestration.replicas.desired": (3, "Deployment/ml/llm", "spec.replicas"),
        "orchestration.replicas.ready": (3, "Deployment/ml/llm", "status.readyReplicas"),
        "serving.timeout_seconds": (
            timeout_s,
            INGRESS,
            "metadata.annotations[nginx.ingress.kubernetes.io/proxy-read-timeout]",
        ),
        "serving.service.port": (8000, SERVICE, "spec.ports[http].targetPort"),
        "serving.service.protocol": ("http", SERVICE, "spec.ports[http].appProtocol"),
        **(more or {}),
    }


@dataclass
class Env:
    store: SqliteStore
    drift: DriftService
    cluster: ClusterState
    recorder: Recorder

    async def send(self, facts: Mapping[str, Any]) -> None:
        """One agent's hello and snapshot, committed (the worker is not started: tests evaluate)."""
        pod, workload = str(facts["orchestration.pod"]), str(facts["orchestration.workload"])
        identity = PodIdentity(NS, pod, "gpu-node-1", workload, "env", f"agent-{pod}", "0.1.0")
        snap = make_snapshot(facts)
        await self.recorder.hello(identity, 1, time.time())
        await self.recorder.record_snapshot(
            identity,
            2,
            facts={k: f.value for k, f in snap.facts.items()},
            provenance={k: f.provenance for k, f in snap.facts.items()},
            sources=snap.sources,
            fingerprint=snap.fingerprint,
            collected_at=snap.collected_at,
            received_at=time.time(),
        )

    async def watch(self, facts: list[ClusterFacts], pools: list[PoolMembers] | None = None) -> None:
        await self.cluster.update(NS, facts, pools or [])


@contextlib.asynccontextmanager
async def running(tmp_path: Path, *, start: bool = False, **settings: Any) -> AsyncIterator[Env]:
    store = SqliteStore(tmp_path / "cluster.db")
    await store.open()
    drift: DriftService | None = None

    def schedule(workload: str) -> None:
        assert drift is not None
        drift.schedule(workload)

    cluster = ClusterState(store, schedule)
    drift = DriftService(
        store, IntentRegistry(None), DriftSettings(**{"baseline_stable_s": None, **settings}), cluster=cluster
    )
    recorder = Recorder(store, on_commit=drift.notify if start else None)
    if start:
        await drift.start()
    try:
        yield Env(store, drift, cluster, recorder)
    finally:
        await drift.stop()
        await recorder.close()
        await store.close()


async def test_cluster_facts_join_each_replica_and_the_agents_own_facts_win(tmp_path: Path) -> None:
    async with running(tmp_path) as env:
        for pod in ("llm-0", "llm-1"):
            await env.send(pod_facts(pod))
        # The Service says 9000 for serving.port; the engine in the pod says 8000 (its own truth).
        service_port = {"serving.port": (9000, SERVICE, "spec.ports[http].port")}
        await env.watch([cluster_facts(WL, autoscaled(more=service_port), revisions={"llm-7d9f": "3"})])
        replicas = await env.drift.replicas(WL)
        assert [r.pod for r in replicas] == ["llm-0", "llm-1"]
        for r in replicas:
            assert r.facts["orchestration.autoscaling.max"] == 8
            assert r.provenance["orchestration.autoscaling.max"].detail == f"{HPA}@4711: spec.maxReplicas"
            assert r.facts["serving.port"] == 8000 and r.provenance["serving.port"].source == "process"
            assert r.facts["orchestration.revision"] == "3"
            assert r.sources[CLUSTER_SOURCE].state is SourceState.OK


async def test_cluster_facts_add_no_peer_findings(tmp_path: Path) -> None:
    async with running(tmp_path) as env:
        # Two pods of the current template, one of the previous: the revision is identity.
        await env.send(pod_facts("llm-0"))
        await env.send(pod_facts("llm-1"))
        await env.send({**pod_facts("llm-2"), "orchestration.labels.pod-template-hash": "llm-6c1a"})
        await env.watch([cluster_facts(WL, autoscaled(), revisions={"llm-7d9f": "3", "llm-6c1a": "2"})])
        replicas = await env.drift.replicas(WL)
        assert {r.facts["orchestration.revision"] for r in replicas} == {"2", "3"}
        assert all("serving.timeout_seconds" in r.facts for r in replicas)
        ev = await env.drift.evaluate_and_store(WL)
        assert ev.drifts == []
        # The same three replicas with one engine flag changed do disagree (the peers still judge).
        await env.send(pod_facts("llm-2", runtime__max_model_len=4096))
        ev = await env.drift.evaluate_and_store(WL)
        assert [(d.key, sorted(d.pods)) for d in ev.drifts] == [("runtime.max_model_len", ["llm-2"])]


async def test_a_baseline_holds_cluster_facts_and_their_change_is_a_finding_naming_the_object(
    tmp_path: Path,
) -> None:
    async with running(tmp_path) as env:
        for pod in ("llm-0", "llm-1"):
            await env.send(pod_facts(pod))
        await env.watch([cluster_facts(WL, autoscaled(max_replicas=8, timeout_s=300.0))])
        baseline = await env.drift.record(WL)
        assert baseline.facts["orchestration.autoscaling.max"] == 8
        assert baseline.facts["serving.timeout_seconds"] == 300.0
        assert "orchestration.replicas.desired" not in baseline.facts  # autoscaler state, stored only
        assert baseline.sources[CLUSTER_SOURCE] == "ok"
        assert (await env.drift.evaluate_and_store(WL)).drifts == []

        # Someone lowers the HPA's maxReplicas and the Ingress timeout; the replicas scale 3 -> 2.
        await env.watch([cluster_facts(WL, autoscaled(max_replicas=4, timeout_s=60.0), rv="4802")])
        ev = await env.drift.evaluate_and_store(WL)
        found = {d.key: d for d in ev.drifts}
        assert set(found) == {"orchestration.autoscaling.max", "serving.timeout_seconds"}
        hpa = found["orchestration.autoscaling.max"]
        assert hpa.reference is Reference.BASELINE and hpa.category == "orchestration"
        assert (hpa.expected, hpa.actual) == (8, 4) and sorted(hpa.pods) == ["llm-0", "llm-1"]
        assert hpa.hint == (
            "the HorizontalPodAutoscaler ml/llm allows maxReplicas 4, the baseline 8: align spec.maxReplicas"
        )
        timeout = found["serving.timeout_seconds"]
        assert timeout.category == "serving" and timeout.severity == "medium"
        assert timeout.hint.startswith(
            "the Ingress ml/llm sets metadata.annotations[nginx.ingress.kubernetes.io/proxy-read-timeout] "
            "60 s; the baseline expects 300 s"
        )
        assert timeout.evidence["by_pod"]["llm-0"]["detail"].startswith(f"{INGRESS}@4802: ")
        stored = {f.key: f for f in await env.store.active_findings(WL)}
        assert set(stored) == set(found) and stored["serving.timeout_seconds"].category == "serving"


async def test_a_baseline_recorded_before_the_cluster_watch_opens_nothing_for_cluster_facts(
    tmp_path: Path,
) -> None:
    async with running(tmp_path) as env:
        for pod in ("llm-0", "llm-1"):
            await env.send(pod_facts(pod))
        before = await env.drift.record(WL)  # the watch has not listed the namespace yet
        assert CLUSTER_SOURCE not in before.sources
        assert not any(k.startswith("orchestration.autoscaling.") for k in before.facts)
        await env.watch([cluster_facts(WL, autoscaled())])
        assert (await env.drift.evaluate_and_store(WL)).drifts == []
        # A real change of the pods since that baseline still is one.
        await env.send(pod_facts("llm-1", runtime__max_model_len=4096))
        ev = await env.drift.evaluate_and_store(WL)
        assert [d.key for d in ev.drifts] == ["runtime.max_model_len"]


async def test_a_baseline_recorded_while_the_watch_failed_opens_nothing_when_it_recovers(
    tmp_path: Path,
) -> None:
    async with running(tmp_path) as env:
        await env.send(pod_facts("llm-0"))
        failed = SourceStatus(CLUSTER_SOURCE, SourceState.ERROR, "HorizontalPodAutoscaler: 403 forbidden")
        await env.watch([cluster_facts(WL, {}, status=failed)])
        assert (await env.drift.record(WL)).sources[CLUSTER_SOURCE] == "error"
        await env.watch([cluster_facts(WL, autoscaled())])
        assert (await env.drift.evaluate_and_store(WL)).drifts == []


@pytest.mark.parametrize("why", ["watch restarted", "watch failing"])
async def test_cluster_facts_the_watch_cannot_say_now_are_unknown_not_removed(
    tmp_path: Path, why: str
) -> None:
    async with running(tmp_path) as env:
        # On a GPU node every agent source is ok: only the cluster source can say a fact is unknown.
        for pod in ("llm-0", "llm-1"):
            await env.send(pod_facts(pod, WL, {**BASE_FACTS, **H100_FACTS}))
        await env.watch([cluster_facts(WL, autoscaled())])
        await env.drift.record(WL)
        assert all(
            s.state is SourceState.OK for r in await env.drift.replicas(WL) for s in r.sources.values()
        )
        if why == "watch restarted":  # the workload is not (yet) known to the watch: no cluster source
            await env.watch([])
        else:
            failed = SourceStatus(CLUSTER_SOURCE, SourceState.ERROR, "Ingress: connection refused")
            await env.watch([cluster_facts(WL, {}, status=failed)])
        assert (await env.drift.evaluate_and_store(WL)).drifts == []
        # Removed while the watch reads the workload fine: a drift (the Ingress is gone).
        await env.watch(
            [cluster_facts(WL, {k: v for k, v in autoscaled().items() if k != "serving.timeout_seconds"})]
        )
        ev = await env.drift.evaluate_and_store(WL)
        assert [(d.key, d.actual) for d in ev.drifts] == [("serving.timeout_seconds", None)]


async def test_automatic_promotion_waits_for_the_cluster_facts_to_be_stable_too(tmp_path: Path) -> None:
    now = [1000.0]
    async with running(tmp_path, baseline_stable_s=60.0) as env:
        env.drift.clock = lambda: now[0]
        env.drift.settings = DriftSettings(baseline_stable_s=60.0, replica_stale_s=1e12)
        await env.send(pod_facts("llm-0"))
        await env.watch([cluster_facts(WL, autoscaled(max_replicas=8))])
        await env.drift.evaluate_and_store(WL)
        now[0] += 50
        await env.watch([cluster_facts(WL, autoscaled(max_replicas=4))])  # the pods unchanged
        await env.drift.evaluate_and_store(WL)
        now[0] += 50  # 100 s since the first evaluation, 50 s since the HPA changed
        await env.drift.evaluate_and_store(WL)
        assert await env.store.latest_baseline(WL) is None
        now[0] += 20
        await env.drift.evaluate_and_store(WL)
        promoted = await env.store.latest_baseline(WL)
        assert promoted is not None and promoted.facts["orchestration.autoscaling.max"] == 4
