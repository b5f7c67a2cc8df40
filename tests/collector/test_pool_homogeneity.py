"""InferencePool homogeneity: the pods one pool routes to, of whatever workload, are peers on what a
pool assumes equal, and a minority is a peer finding of the pool naming the workloads of its pods
(real SQLite store, DriftService and ClusterState; pods from the recorded vLLM snapshots)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from collector.domain.baseline import BaselineError
from collector.domain.cluster import PoolMembers
from collector.domain.model import Reference, Replica, Status
from collector.domain.records import FindingQuery
from collector.drift.engine import PoolInput, evaluate_pool
from collector.peers.pools import POOL_HINT, POOL_HOMOGENEOUS_KEYS, PoolPod, select_pods
from collector.service.queries import Queries
from tests.collector.test_cluster_evaluation import NS, pod_facts, running
from tests.support.collector import A100_40GB_FACTS, BASE_FACTS, H100_FACTS, recorded_snapshot

POOL = "ml/InferencePool/llama"
A = "ml/Deployment/llama-a"
B = "ml/Deployment/llama-b"
C = "ml/Deployment/other"
SELECTOR = {"pool": "llama"}
FLOAT32: dict[str, Any] = {k: f.value for k, f in recorded_snapshot("vllm-float32").facts.items()}


def pooled(pod: str, workload: str, base: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """The recorded snapshot as a pod of ``workload`` carrying the pool's label."""
    return {
        **pod_facts(pod, workload, base if base is not None else BASE_FACTS, **extra),
        "orchestration.labels.pool": "llama",
    }


def pool_members(selector: dict[str, str] | None = None) -> PoolMembers:
    return PoolMembers(POOL, NS, SELECTOR if selector is None else selector, "InferencePool/ml/llama@91")


async def test_a_deployment_with_another_dtype_and_context_is_one_finding_per_root_cause_on_the_pool(
    tmp_path: Path,
) -> None:
    async with running(tmp_path) as env:
        await env.send(pooled("llama-a-0", A))
        await env.send(pooled("llama-a-1", A))
        # The second Deployment runs the recorded float32 launch with a longer context.
        await env.send(pooled("llama-b-0", B, FLOAT32, runtime__max_model_len=4096))
        await env.watch([], [pool_members()])
        ev = await env.drift.evaluate_and_store(POOL)
        found = {d.key: d for d in ev.drifts}
        # The KV-cache dtype follows the dtype (its provenance says so): one root cause, one finding.
        assert set(found) == {"runtime.dtype", "runtime.max_model_len"}
        dtype = found["runtime.dtype"]
        assert dtype.reference is Reference.PEERS and dtype.pods == {"llama-b-0": "float32"}
        assert (dtype.expected, dtype.severity) == ("float16", "high")
        assert [r["key"] for r in dtype.evidence["related"]] == ["runtime.kv_cache_dtype"]
        assert dtype.message == (
            f"{POOL} mixes runtime.dtype across 3 pods: float32 on 1 pod of {B} (llama-b-0); "
            f"float16 on 2 pods of {A} (llama-a-0, llama-a-1); with runtime.kv_cache_dtype"
        )
        assert dtype.hint.startswith(
            POOL_HINT + f"the pods of {B} run runtime.dtype = float32 where those of {A}"
        )
        assert "--dtype" in dtype.hint and f"out of {POOL}'s selector" in dtype.hint
        context = found["runtime.max_model_len"]
        assert context.pods == {"llama-b-0": 4096} and context.expected == 2048
        stored = await env.store.active_findings(POOL)
        assert {(f.workload, f.key, f.status) for f in stored} == {
            (POOL, "runtime.dtype", Status.OPEN),
            (POOL, "runtime.max_model_len", Status.OPEN),
        }
        # Each Deployment on its own is homogeneous: nothing of this is a finding of theirs.
        assert (await env.drift.evaluate_and_store(A)).drifts == []
        assert (await env.drift.evaluate_and_store(B)).drifts == []
        # The pool is a workload the queries know: listed with its open findings, resolvable.
        queries = Queries(env.store, env.drift)
        rows = {w.workload: w for w in await queries.workloads()}
        assert rows[POOL].replicas_live == 3 and sum(rows[POOL].open_findings.values()) == 2
        assert await queries.resolve_workload(POOL, "workload") == POOL
        assert await queries.resolve_workload("ml/llama", "workload") == POOL


async def test_a_pool_of_equal_pods_has_no_finding_and_pods_it_does_not_select_do_not_count(
    tmp_path: Path,
) -> None:
    async with running(tmp_path) as env:
        await env.send(pooled("llama-a-0", A))
        await env.send(pooled("llama-b-0", B))
        await env.send(pooled("llama-b-1", B))
        await env.send(pod_facts("other-0", C, FLOAT32))  # another dtype, but not the pool's label
        await env.watch([], [pool_members()])
        pool = env.cluster.pool(POOL)
        assert pool is not None
        assert [p.replica.pod for p in await env.drift.pool_pods(pool)] == [
            "llama-a-0",
            "llama-b-0",
            "llama-b-1",
        ]
        assert (await env.drift.evaluate_and_store(POOL)).drifts == []
        # The same pods under a selector that takes the other Deployment in: it differs.
        await env.watch([], [pool_members({"pool": "llama"})])
        await env.send({**pod_facts("other-0", C, FLOAT32), "orchestration.labels.pool": "llama"})
        assert {d.key for d in (await env.drift.evaluate_and_store(POOL)).drifts} == {"runtime.dtype"}


async def test_pool_members_of_two_workloads_on_another_gpu_class(tmp_path: Path) -> None:
    async with running(tmp_path) as env:
        await env.send(pooled("llama-a-0", A, {**BASE_FACTS, **H100_FACTS}))
        await env.send(pooled("llama-a-1", A, {**BASE_FACTS, **H100_FACTS}))
        await env.send(pooled("llama-b-0", B, {**BASE_FACTS, **A100_40GB_FACTS}))
        await env.watch([], [pool_members()])
        ev = await env.drift.evaluate_and_store(POOL)
        (gpu,) = ev.drifts
        assert gpu.key == "hardware.gpu.product" and gpu.pods == {"llama-b-0": "a100-40gb"}
        assert gpu.expected == "h100-80gb" and gpu.category == "hardware"
        assert f"a100-40gb on 1 pod of {B} (llama-b-0)" in gpu.message
        assert f"h100-80gb on 2 pods of {A}" in gpu.message
        # Memory, architecture and the GPU's own name differ too, but a pool assumes only the class.
        assert "hardware.gpu.memory_bytes" not in POOL_HOMOGENEOUS_KEYS
        assert {d.key for d in ev.drifts} == {"hardware.gpu.product"}


async def test_a_members_change_schedules_its_pool_and_an_unchanged_evaluation_does_not(
    tmp_path: Path,
) -> None:
    async with running(tmp_path, start=True) as env:
        await env.send(pooled("llama-a-0", A))
        await env.send(pooled("llama-b-0", B))
        await env.send(pooled("llama-b-1", B))
        await env.watch([], [pool_members()])  # the watch schedules the new pool
        await env.drift.settled()
        assert await env.store.active_findings(POOL) == []
        await env.send(pooled("llama-a-0", A, FLOAT32))  # A's only pod restarts in float32
        await env.drift.settled()
        assert {f.key for f in await env.store.active_findings(POOL)} == {"runtime.dtype"}
        before = env.drift.evaluations
        await env.drift.evaluate_and_store(A)  # nothing changed: the pool is not evaluated again
        await env.drift.settled()
        assert env.drift.evaluations == before + 1


async def test_a_pool_gets_no_baseline_and_its_findings_resolve_when_it_goes_away(tmp_path: Path) -> None:
    async with running(tmp_path, baseline_stable_s=0.0) as env:
        await env.send(pooled("llama-a-0", A))
        await env.send(pooled("llama-a-1", A))
        await env.send(pooled("llama-b-0", B, FLOAT32))
        await env.watch([], [pool_members()])
        await env.drift.evaluate_and_store(POOL)
        await env.drift.evaluate_and_store(A)
        assert await env.store.latest_baseline(A) is not None  # promoted at once (stable 0 s)
        assert await env.store.latest_baseline(POOL) is None
        with pytest.raises(BaselineError, match="inference pool"):
            await env.drift.record(POOL)
        assert {f.key for f in await env.store.active_findings(POOL)} == {"runtime.dtype"}
        await env.watch([], [])  # the InferencePool was deleted
        ev = await env.drift.evaluate_and_store(POOL)
        assert ev.drifts == [] and await env.store.active_findings(POOL) == []
        (gone,) = await env.store.list_findings(FindingQuery(workload=POOL, status="resolved"))
        assert (gone.key, gone.resolution) == ("runtime.dtype", "gone")


def _pod(pod: str, workload: str, template: str, **extra: Any) -> PoolPod:
    facts = {**pooled(pod, workload, **extra), "orchestration.labels.pod-template-hash": template}
    snap = recorded_snapshot()
    prov = {k: snap.facts[k].provenance for k in facts if k in snap.facts}
    return PoolPod(workload, Replica(pod, facts, prov, dict(snap.sources), last_seen=100.0))


def test_a_members_own_rollout_mixes_the_pool_at_severity_info() -> None:
    pods = [
        _pod("llama-a-0", A, "new", runtime__max_model_len=4096),
        _pod("llama-a-1", A, "old"),
        _pod("llama-a-2", A, "old"),
    ]
    (d,) = evaluate_pool(PoolInput(POOL, pods)).drifts
    assert d.key == "runtime.max_model_len" and d.severity == "info"
    assert d.message.endswith(f"a rollout is in progress in {A} (pod template old vs new)")
    # Across workloads another template is no rollout: another Deployment differs.
    other = [_pod("llama-b-0", B, "b1", runtime__max_model_len=4096), _pod("llama-a-1", A, "old"), pods[2]]
    (d,) = evaluate_pool(PoolInput(POOL, other)).drifts
    assert d.severity == "medium" and "rollout" not in d.message


def test_an_even_split_across_two_workloads_names_both_and_expects_neither() -> None:
    pods = [_pod("llama-a-0", A, "a1"), _pod("llama-b-0", B, "b1", runtime__max_model_len=4096)]
    (d,) = evaluate_pool(PoolInput(POOL, pods)).drifts
    assert d.split and d.expected is None
    assert d.message == (
        f"{POOL} is split with no majority on runtime.max_model_len across 2 pods: "
        f"2048 on 1 pod of {A} (llama-a-0); 4096 on 1 pod of {B} (llama-b-0)"
    )


def test_the_selector_takes_only_matching_live_pods_of_the_pools_namespace() -> None:
    pool = pool_members()
    here = _pod("llama-a-0", A, "a1")
    elsewhere = PoolPod(
        "prod/Deployment/llama-a", Replica("x-0", {**here.replica.facts, "orchestration.namespace": "prod"})
    )
    unlabelled = PoolPod(
        C, Replica("c-0", {k: v for k, v in here.replica.facts.items() if k != "orchestration.labels.pool"})
    )
    no_snapshot = PoolPod(B, Replica("llama-b-0", {}))
    assert [p.replica.pod for p in select_pods(pool, [no_snapshot, unlabelled, elsewhere, here])] == [
        "llama-a-0"
    ]
    assert select_pods(pool_members({}), [here]) == []  # an empty selector selects nothing


def test_a_carried_fact_is_unknown_to_the_pool() -> None:
    a0 = _pod("llama-a-0", A, "a1")
    b0 = _pod("llama-b-0", B, "b1", runtime__max_model_len=4096)
    assert {d.key for d in evaluate_pool(PoolInput(POOL, [a0, b0])).drifts} == {"runtime.max_model_len"}
    # The same value carried from before its source went away (the engine restarting): unknown.
    prov = dict(b0.replica.provenance)
    prov["runtime.max_model_len"] = replace(prov["runtime.max_model_len"], last_seen=50.0)
    carried = PoolPod(B, replace(b0.replica, provenance=prov))
    assert evaluate_pool(PoolInput(POOL, [a0, carried])).drifts == []
