"""The test Kubernetes API server (tests/kubeapi/server.py) answers as the real one does: paged
lists from one snapshot, watches from a resourceVersion, bookmarks, 410 Expired for a compacted
resourceVersion or an old continue token, 403 and 404 Status bodies, the Deployment controller's
ReplicaSets. Read over real HTTP, raw and through the collector's KubeClient."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from collector.cluster.errors import ClusterForbidden, ClusterGone, ClusterNotFound
from collector.cluster.kube import KubeClient, WatchEvent
from tests.kubeapi.server import REVISION, KubeApiServer, serve
from tests.support.kubeapi import TOKEN

DEPLOYMENTS = "/apis/apps/v1/namespaces/ml/deployments"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def deployment(name: str, image: str = "vllm/vllm-openai:v0.8.5", ns: str = "ml") -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "labels": dict(labels)},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": dict(labels)},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "vllm", "image": image, "args": ["--dtype", "bfloat16"]}]},
            },
        },
    }


@contextlib.asynccontextmanager
async def running(api: KubeApiServer) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    async with serve(api) as url, aiohttp.ClientSession(headers=AUTH) as http:
        yield url, http


async def get(http: aiohttp.ClientSession, url: str, **query: str) -> tuple[int, dict[str, Any]]:
    async with http.get(url, params=query) as resp:
        return resp.status, await resp.json()


async def watch_lines(http: aiohttp.ClientSession, url: str, **query: str) -> list[dict[str, Any]]:
    """Every event of one watch, to its end."""
    async with http.get(url, params={"watch": "1", **query}) as resp:
        assert resp.status == 200
        return [json.loads(line) for line in (await resp.read()).splitlines() if line.strip()]


async def test_list_pages_with_continue_from_one_snapshot() -> None:
    api = KubeApiServer()
    for i in range(5):
        api.apply(deployment(f"d{i}"))
    async with running(api) as (url, http):
        status, first = await get(http, url + DEPLOYMENTS, limit="2")
        assert status == 200 and first["kind"] == "DeploymentList" and first["apiVersion"] == "apps/v1"
        assert [i["metadata"]["name"] for i in first["items"]] == ["d0", "d1"]
        assert first["metadata"]["remainingItemCount"] == 3 and "kind" not in first["items"][0]
        api.delete("Deployment", "ml", "d3")  # after the first page: not seen by this list
        api.apply(deployment("d9"))
        names: list[str] = []
        token = first["metadata"]["continue"]
        while token:
            _, page = await get(http, url + DEPLOYMENTS, limit="2", **{"continue": token})
            assert page["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
            names += [i["metadata"]["name"] for i in page["items"]]
            token = page["metadata"].get("continue", "")
        assert names == ["d2", "d3", "d4"]
        _, now = await get(http, url + DEPLOYMENTS)
        assert [i["metadata"]["name"] for i in now["items"]] == ["d0", "d1", "d2", "d4", "d9"]
        assert int(now["metadata"]["resourceVersion"]) > int(first["metadata"]["resourceVersion"])


async def test_apply_sets_uid_creation_and_generation_bumped_only_by_spec() -> None:
    api = KubeApiServer()
    a = api.apply(deployment("llm"))
    meta = a["metadata"]
    assert meta["uid"] and meta["creationTimestamp"].endswith("Z") and meta["generation"] == 1
    relabelled = deployment("llm")
    relabelled["metadata"]["labels"]["team"] = "ml"
    b = api.apply(relabelled)
    assert b["metadata"]["generation"] == 1 and b["metadata"]["uid"] == meta["uid"]
    assert int(b["metadata"]["resourceVersion"]) > int(meta["resourceVersion"])
    c = api.apply(deployment("llm", image="vllm/vllm-openai:v0.9.0"))
    assert c["metadata"]["generation"] == 2


async def test_watch_from_a_resource_version_sees_only_later_events_and_ends_after_timeout() -> None:
    api = KubeApiServer()
    api.apply(deployment("old"))
    rv = api.apply(deployment("old", image="x:2"))["metadata"]["resourceVersion"]
    api.apply(deployment("new"))
    api.delete("Deployment", "ml", "old")
    async with running(api) as (url, http):
        events = await watch_lines(http, url + DEPLOYMENTS, resourceVersion=rv, timeoutSeconds="1")
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "new"),
        ("DELETED", "old"),
    ]
    assert events[0]["object"]["kind"] == "Deployment" and events[0]["object"]["apiVersion"] == "apps/v1"


async def test_watch_streams_changes_made_while_open_and_bookmarks_the_latest_version() -> None:
    api = KubeApiServer(bookmark_interval_s=0.2)
    rv = str(api.rv)
    async with running(api) as (url, http):
        query = {"resourceVersion": rv, "timeoutSeconds": "1", "allowWatchBookmarks": "true"}
        task = asyncio.create_task(watch_lines(http, url + DEPLOYMENTS, **query))
        await asyncio.sleep(0.1)
        api.apply(deployment("llm"))
        api.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "ml"}})
        events = await task
    types = [e["type"] for e in events]
    assert types[0] == "ADDED" and "BOOKMARK" in types and "ERROR" not in types
    bookmark = next(e for e in events if e["type"] == "BOOKMARK")["object"]
    assert set(bookmark) == {"kind", "apiVersion", "metadata"} and set(bookmark["metadata"]) == {
        "resourceVersion"
    }
    assert bookmark["metadata"]["resourceVersion"] == str(api.rv)  # past the ConfigMap's change too


async def test_watch_without_bookmarks_allowed_gets_none() -> None:
    api = KubeApiServer(bookmark_interval_s=0.1)
    async with running(api) as (url, http):
        events = await watch_lines(http, url + DEPLOYMENTS, resourceVersion=str(api.rv), timeoutSeconds="1")
    assert events == []


async def test_watch_from_a_compacted_version_is_an_error_event_410_expired() -> None:
    api = KubeApiServer()
    rv = api.apply(deployment("llm"))["metadata"]["resourceVersion"]
    api.apply(deployment("llm", image="x:2"))
    api.compact()
    async with running(api) as (url, http):
        events = await watch_lines(http, url + DEPLOYMENTS, resourceVersion=rv, timeoutSeconds="5")
        assert len(events) == 1 and events[0]["type"] == "ERROR"
        status = events[0]["object"]
        assert (status["kind"], status["code"], status["reason"]) == ("Status", 410, "Expired")
        assert status["message"].startswith(f"too old resource version: {rv} (")
        # From the compaction point itself nothing is missed: no error.
        assert (
            await watch_lines(http, url + DEPLOYMENTS, resourceVersion=str(api.rv), timeoutSeconds="1") == []
        )


async def test_watch_from_a_compacted_version_can_be_an_http_410_as_without_the_watch_cache() -> None:
    api = KubeApiServer(expired_watch_as_http=True)
    rv = api.apply(deployment("llm"))["metadata"]["resourceVersion"]
    api.apply(deployment("llm", image="x:2"))
    api.compact()
    async with running(api) as (url, http):
        status, body = await get(http, url + DEPLOYMENTS, watch="1", resourceVersion=rv)
    assert status == 410 and (body["kind"], body["reason"], body["code"]) == ("Status", "Expired", 410)


async def test_expired_continue_token_is_410_with_status_reason_expired() -> None:
    api = KubeApiServer()
    for i in range(3):
        api.apply(deployment(f"d{i}"))
    async with running(api) as (url, http):
        _, first = await get(http, url + DEPLOYMENTS, limit="1")
        api.apply(deployment("d0", image="x:2"))
        api.compact()
        status, body = await get(
            http, url + DEPLOYMENTS, limit="1", **{"continue": first["metadata"]["continue"]}
        )
    assert status == 410 and (body["kind"], body["reason"], body["code"]) == ("Status", "Expired", 410)
    assert "continue parameter is too old" in body["message"]


async def test_forbidden_resource_is_403_with_the_real_message_for_list_and_watch() -> None:
    api = KubeApiServer()
    api.forbid("deployments", "ml")
    async with running(api) as (url, http):
        status, body = await get(http, url + DEPLOYMENTS)
        assert status == 403 and body["reason"] == "Forbidden"
        assert body["message"] == (
            'deployments.apps is forbidden: User "system:serviceaccount:skewwatch:skewwatch-collector" '
            'cannot list resource "deployments" in API group "apps" in the namespace "ml"'
        )
        status, body = await get(http, url + DEPLOYMENTS, watch="1")
        assert status == 403 and 'cannot watch resource "deployments"' in body["message"]
        status, _ = await get(http, url + "/apis/apps/v1/namespaces/other/deployments")
        assert status == 200


async def test_resource_not_installed_is_404_until_installed() -> None:
    api = KubeApiServer()
    path = "/apis/gateway.networking.k8s.io/v1/namespaces/ml/httproutes"
    async with running(api) as (url, http):
        status, body = await get(http, url + path)
        assert status == 404 and (body["kind"], body["reason"]) == ("Status", "NotFound")
        api.install("gateway.networking.k8s.io", "v1", "httproutes")
        api.apply({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                   "metadata": {"name": "r", "namespace": "ml"}, "spec": {}})  # fmt: skip
        status, body = await get(http, url + path)
        assert status == 200 and body["kind"] == "HTTPRouteList"
        assert body["items"][0]["kind"] == "HTTPRoute"  # custom resources' items keep their kind
        api.uninstall("gateway.networking.k8s.io", "v1", "httproutes")
        status, _ = await get(http, url + path)
        assert status == 404


async def test_request_without_the_token_is_401() -> None:
    api = KubeApiServer()
    async with serve(api) as url, aiohttp.ClientSession() as http:
        status, body = await get(http, url + DEPLOYMENTS)
    assert status == 401 and body["reason"] == "Unauthorized"


async def test_close_watches_drops_open_streams_mid_flight() -> None:
    api = KubeApiServer()
    async with running(api) as (url, http):
        params = {"watch": "1", "resourceVersion": str(api.rv), "timeoutSeconds": "30"}
        async with http.get(url + DEPLOYMENTS, params=params) as resp:
            await asyncio.sleep(0.1)
            assert api.close_watches() == 1
            with pytest.raises(aiohttp.ClientPayloadError):
                await asyncio.wait_for(resp.read(), 5)


async def test_close_watches_cleanly_ends_streams_as_a_timeout_would() -> None:
    api = KubeApiServer()
    async with running(api) as (url, http):
        task = asyncio.create_task(
            watch_lines(http, url + DEPLOYMENTS, resourceVersion=str(api.rv), timeoutSeconds="30")
        )
        await until_watching(api)
        assert api.close_watches(abrupt=False) == 1
        assert await asyncio.wait_for(task, 5) == []


async def until_watching(api: KubeApiServer) -> None:
    for _ in range(500):
        if api.watchers:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("no watch opened")


async def test_rollout_creates_replicaset_per_template_hash_with_revisions() -> None:
    api = KubeApiServer()
    dep = api.apply(deployment("llm"))
    rs1 = api.rollout("ml", "llm")
    h1 = rs1["metadata"]["labels"]["pod-template-hash"]
    assert rs1["metadata"]["name"] == f"llm-{h1}" and rs1["metadata"]["annotations"][REVISION] == "1"
    assert rs1["spec"]["template"]["metadata"]["labels"]["pod-template-hash"] == h1
    assert rs1["spec"]["selector"]["matchLabels"] == {"app": "llm", "pod-template-hash": h1}
    owner = rs1["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "Deployment",
        "llm",
        dep["metadata"]["uid"],
        True,
    )
    d = api.get("Deployment", "ml", "llm")
    assert d is not None and d["metadata"]["annotations"][REVISION] == "1"
    assert (d["status"]["replicas"], d["status"]["readyReplicas"], d["status"]["observedGeneration"]) == (
        2,
        2,
        1,
    )
    assert (
        api.rollout("ml", "llm")["metadata"]["annotations"][REVISION] == "1"
    )  # nothing changed: same revision

    api.apply(deployment("llm", image="vllm/vllm-openai:v0.9.0"))
    rs2 = api.rollout("ml", "llm")
    h2 = rs2["metadata"]["labels"]["pod-template-hash"]
    assert h2 != h1 and rs2["metadata"]["annotations"][REVISION] == "2"
    old = api.get("ReplicaSet", "ml", f"llm-{h1}")
    assert old is not None and old["spec"]["replicas"] == 0
    d = api.get("Deployment", "ml", "llm")
    assert d is not None and d["status"]["observedGeneration"] == 2

    api.apply(deployment("llm"))  # a rollback: the first template again, as revision 3
    rs3 = api.rollout("ml", "llm")
    assert rs3["metadata"]["name"] == f"llm-{h1}" and rs3["metadata"]["annotations"][REVISION] == "3"


def test_load_manifests_applies_real_documents_and_skips_the_rest(real_fixtures: Path) -> None:
    api = KubeApiServer()
    loaded = api.load_manifests((real_fixtures / "manifests").iterdir(), namespace="ml")
    kinds = sorted({o["kind"] for o in loaded})
    assert kinds == ["ConfigMap", "Deployment", "Service"]
    assert any("Helm template" in s for s in api.skipped)
    assert any('"ClusterServingRuntime"' in s for s in api.skipped)
    ns_of = {o["metadata"]["namespace"] for o in loaded}
    assert ns_of <= {"ml", "default"} and "ml" in ns_of


async def test_kube_client_reads_list_versions_and_watch_events_and_typed_errors() -> None:
    api = KubeApiServer()
    api.apply(deployment("a"))
    api.install("gateway.networking.k8s.io", "v1beta1", "httproutes")
    api.forbid("services")
    async with serve(api) as url, KubeClient(api.config(url), page_limit=1) as client:
        items, rv = await client.list_with_version(DEPLOYMENTS, "list deployments", dict)
        assert [i["metadata"]["name"] for i in items] == ["a"] and rv == str(api.rv)
        api.apply(deployment("b"))
        got: list[WatchEvent] = []
        async with client.watch(DEPLOYMENTS, rv, 1, "watch deployments") as events:
            got = [ev async for ev in events]
        assert [(e.type, e.object["metadata"]["name"]) for e in got] == [("ADDED", "b")]
        assert got[0].resource_version == str(api.rv)
        with pytest.raises(ClusterNotFound, match="404"):
            await client.list_with_version(
                "/apis/gateway.networking.k8s.io/v1/namespaces/ml/httproutes", "list", dict
            )
        with pytest.raises(ClusterForbidden, match="in namespace ml"):
            await client.list_with_version("/api/v1/namespaces/ml/services", "list services", dict)
        api.compact()
        with pytest.raises(ClusterGone, match="too old resource version"):
            async with client.watch(DEPLOYMENTS, rv, 5, "watch deployments") as events:
                _ = [ev async for ev in events]
