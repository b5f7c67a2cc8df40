"""The cluster watch's routes and the workload view's ``cluster`` section over real HTTP (the
rig of test_revision_diff: a real collector whose API runs with a ``ClusterState``), the same
routes of a collector without a watch, each answer checked against the served OpenAPI document,
and the reading of a workload revision reference (pure)."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from collector.errors import BadRequestError
from collector.intent.directory import IntentRegistry
from collector.service.cluster import ClusterState
from collector.service.evaluation import DriftService
from collector.service.queries import Queries, RevisionRef, parse_revision_ref
from collector.store.sqlite import SqliteStore
from tests.collector.test_revision_diff import (
    H1,
    H2,
    IMAGE_1,
    R1,
    R2,
    TIMEOUT,
    WORKLOAD,
    Rig,
    cluster_facts,
    get,
    pod_facts,
    rig,
    rolled_out,
)
from tests.support.cli_state import pod, settle
from tests.support.collector import settings_for, started
from tests.support.openapi import DOC, conforms

__all__ = ["rig"]  # the fixture, shared with test_revision_diff
SCHEMAS = DOC["components"]["schemas"]


async def test_cluster_route_serves_the_watch_report(rig: Rig) -> None:
    body = await get(rig.http, "/api/v1/cluster")
    conforms(body, SCHEMAS["ClusterStatus"])
    assert body == {"available": False, "message": "the cluster watch has not run yet", "namespaces": {}}
    state = {"Deployment": {"status": "ok", "message": ""}}
    report = {"available": True, "message": None, "namespaces": {"ml": state}}
    rig.state.set_status(report)
    assert await get(rig.http, "/api/v1/cluster") == report


async def test_workload_view_has_the_cluster_facts_with_provenance_and_revisions(rig: Rig) -> None:
    await rolled_out(rig)
    view = await get(rig.http, "/api/v1/workloads/ml/llm")
    conforms(view, SCHEMAS["WorkloadDetail"])
    cluster = view["cluster"]
    assert (cluster["available"], cluster["message"]) == (True, None)
    facts = cluster["cluster_facts"]
    assert facts["workload"] == WORKLOAD and facts["current_revision"] == "2"
    assert facts["facts"] == {"orchestration.replicas.desired": 1, "orchestration.strategy": "RollingUpdate"}
    assert facts["provenance"]["orchestration.replicas.desired"] == {
        "source": "cluster",
        "method": "k8s",
        "detail": "Deployment/ml/llm@4242: spec",
    }
    assert facts["revisions"] == {H1: "1", H2: "2", "6b7f5c9d84": "3"}
    [newest, oldest] = cluster["revisions"]
    assert newest == {
        "revision": "2",
        "template_hash": H2,
        "created_at": R2.created_at,
        "first_seen": newest["first_seen"],
        "last_seen": newest["last_seen"],
        "source": R2.source,
        "current": True,
    }
    assert newest["first_seen"] <= newest["last_seen"] and oldest["template_hash"] == H1
    assert oldest["current"] is False and oldest["source"] == R1.source


async def test_a_workload_the_watch_has_no_facts_of_says_why(rig: Rig) -> None:
    await pod(rig.running, "llm-0", facts=pod_facts(H1, IMAGE_1))
    await settle(rig.running)
    view = await get(rig.http, "/api/v1/workloads/ml/llm")
    assert view["cluster"] == {
        "available": False,
        "message": "the cluster watch has not run yet",
        "cluster_facts": None,
        "revisions": [],
    }
    rig.state.set_status({"available": True, "message": None, "namespaces": {}})
    view = await get(rig.http, "/api/v1/workloads/ml/llm")
    assert view["cluster"]["message"] == (
        f"the cluster watch reports no facts of {WORKLOAD} (not in a watched namespace, or gone)"
    )
    listed = await get(rig.http, "/api/v1/workloads/ml/llm/revisions")
    conforms(listed, SCHEMAS["RevisionList"])
    assert listed["available"] is True and listed["revisions"] == []
    assert listed["message"] == f"no pod-template revision of {WORKLOAD} is stored yet"
    await get(rig.http, "/api/v1/workloads/ml/ghost/revisions", 404)


async def test_current_is_the_newest_stored_when_the_watch_names_none_stored(rig: Rig) -> None:
    await pod(rig.running, "llm-0", facts=pod_facts(H1, IMAGE_1))
    await rig.state.update("ml", [cluster_facts("3")], revisions=[R1, R2])  # revision 3 not stored (yet)
    listed = await get(rig.http, "/api/v1/workloads/ml/llm/revisions")
    assert [(r["revision"], r["current"]) for r in listed["revisions"]] == [("2", True), ("1", False)]


async def test_a_pruned_last_good_revision_is_named(rig: Rig) -> None:
    await rolled_out(rig)
    await rig.state.store.put_revisions([R2], keep=1)  # r1, the baseline's, is pruned
    body = await get(rig.http, "/api/v1/diff?workload=ml/llm&revisions=last-good,current", 404)
    message = body["error"]["message"]
    assert message.startswith("no last-good revision: baseline 1 (manual, recorded ")
    assert (
        f"ran template {H1} (pod llm-0), which is not among the stored revisions (stored: r2 ({H2}) current"
        in (message)
    )


async def test_a_collector_without_the_watch_answers_the_routes(tmp_path: Path) -> None:
    off = "off (SKEWWATCH_CLUSTER_WATCH=false)"
    async with started(settings_for(tmp_path, cluster_watch=False), tmp_path) as running:
        await pod(running, "llm-0", facts=pod_facts(H1, IMAGE_1))
        await settle(running)
        async with aiohttp.ClientSession(base_url=running.http, timeout=TIMEOUT) as http:
            body = await get(http, "/api/v1/cluster")
            assert body == {"available": False, "message": off, "namespaces": {}}
            view = await get(http, "/api/v1/workloads/ml/llm")
            conforms(view, SCHEMAS["WorkloadDetail"])
            assert view["cluster"]["cluster_facts"] is None and view["cluster"]["revisions"] == []
            assert view["cluster"]["available"] is False and off in view["cluster"]["message"]
            listed = await get(http, "/api/v1/workloads/ml/llm/revisions")
            conforms(listed, SCHEMAS["RevisionList"])
            assert listed["revisions"] == []
            body = await get(http, "/api/v1/diff?workload=ml/llm&revisions=r1,current", 404)
            assert "r1" in body["error"]["message"]
            last_good = await get(http, "/api/v1/diff?workload=ml/llm&last_good")
            assert last_good["template"] is None and last_good["template_why"]


def test_the_document_declares_the_new_routes_and_shapes() -> None:
    revisions = DOC["paths"]["/api/v1/workloads/{namespace}/{name}/revisions"]["get"]
    assert set(revisions["responses"]) >= {"200", "400", "404", "503"}
    assert "/api/v1/cluster" in DOC["paths"]
    assert "cluster" in SCHEMAS["WorkloadDetail"]["required"]
    assert {"template", "template_why"} <= set(SCHEMAS["Diff"]["properties"])
    described = next(p for p in DOC["paths"]["/api/v1/diff"]["get"]["parameters"] if p["name"] == "revisions")
    assert "last-good" in described["description"] and "revisions=A,B" not in described["description"]


@pytest.mark.parametrize(
    ("text", "ref"),
    [
        ("current", RevisionRef("current")),
        ("last-good", RevisionRef("last-good")),
        ("last_good", RevisionRef("last-good")),
        ("r3", RevisionRef("number", "3")),
        ("R03", RevisionRef("number", "3")),
        ("revision:12", RevisionRef("number", "12")),
        ("7c9d8f6b5d", RevisionRef("hash", "7c9d8f6b5d")),
        ("hash:2456789", RevisionRef("hash", "2456789")),  # a hash of digits only needs its prefix
        ("rabbit", RevisionRef("hash", "rabbit")),  # r, but no number after it: a name
    ],
)
def test_revision_references(text: str, ref: RevisionRef) -> None:
    assert parse_revision_ref(text, "where") == ref


@pytest.mark.parametrize("text", ["12", "", "a/b", "hash:", "r/1", "x" * 254, "ünï"])
def test_bad_revision_references_name_the_parameter(text: str) -> None:
    with pytest.raises(BadRequestError, match=r"^where: .* is not a workload revision"):
        parse_revision_ref(text, "where")


async def test_queries_take_the_evaluations_cluster_state_by_default(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "q.db")
    await store.open()
    try:
        state = ClusterState(store, lambda _: None)
        drift = DriftService(store, IntentRegistry(None), cluster=state)
        assert Queries(store, drift).cluster is state
        other = ClusterState(store, lambda _: None)
        assert Queries(store, drift, cluster=other).cluster is other
        assert Queries(store, DriftService(store, IntentRegistry(None))).cluster is None
    finally:
        await store.close()
