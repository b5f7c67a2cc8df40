"""The HTTP query API on a real port, fed through real gRPC streams; responses are checked
against the OpenAPI document the collector serves."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from collector.api.app import create_app
from collector.service.pods import Pods
from collector.store.sqlite import SqliteStore
from tests.support.collector import (
    BASE_FACTS,
    Running,
    feed,
    hello_msg,
)
from tests.support.openapi import conforms, response_schema

TIMEOUT = aiohttp.ClientTimeout(total=10)


@pytest.fixture
async def http(running: Running) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=running.http, timeout=TIMEOUT) as session:
        yield session


async def get(http: aiohttp.ClientSession, url: str, status: int = 200) -> Any:
    async with http.get(url) as r:
        assert r.status == status, await r.text()
        assert r.content_type == "application/json"
        return await r.json()


async def test_pods_list_shape(running: Running, http: aiohttp.ClientSession) -> None:
    assert await get(http, "/api/v1/pods") == {"pods": []}
    await feed(running)
    body = await get(http, "/api/v1/pods")
    conforms(body, response_schema("/api/v1/pods", 200))
    (pod,) = body["pods"]
    assert pod["namespace"] == "ml" and pod["pod"] == "llm-0" and pod["node"] == "gpu-node-1"
    assert pod["workload"] == "ml/Deployment/llm"
    assert pod["source_states"] == {"ok": 4, "unavailable": 1, "error": 0, "pending": 0}
    assert len(pod["fingerprint"]) == 64


async def test_pod_detail_shape(running: Running, http: aiohttp.ClientSession) -> None:
    await feed(running)
    body = await get(http, "/api/v1/pods/ml/llm-0")
    conforms(body, response_schema("/api/v1/pods/{namespace}/{pod}", 200))
    assert body["facts"]["runtime.dtype"] == "float32"
    assert body["provenance"]["runtime.dtype"] == {
        "source": "process",
        "method": "arg",
        "detail": "--dtype",
        "inputs": ["runtime.args.dtype", "model.config.torch_dtype"],
    }
    assert body["sources"]["nvml"] == {
        "status": "unavailable",
        "message": "NVML: NVML Shared Library Not Found",
        "duration_seconds": 0.0,
    }
    assert body["observations"] == {"tokens_per_s": {"value": 1234.5, "unit": "1/s"}}
    assert body["agent"] == {"id": "ml/llm-0", "version": "0.1.0"}
    assert set(body["fingerprint"]) >= {"overall", "model", "runtime", "hardware", "orchestration"}
    assert body["snapshot"]["sequence"] == 3 and body["last_sequence"] == 5
    assert body["first_seen"] <= body["last_seen"]


async def test_pod_seen_only_by_hello_has_no_facts_yet(running: Running, http: aiohttp.ClientSession) -> None:
    s = running.stream()
    await s.exchange(hello_msg(1, pod="fresh"))
    body = await get(http, "/api/v1/pods/ml/fresh")
    conforms(body, response_schema("/api/v1/pods/{namespace}/{pod}", 200))
    assert body["fingerprint"] is None and body["facts"] == {} and body["snapshot"] is None


async def test_unknown_pod_is_404_with_json_error(running: Running, http: aiohttp.ClientSession) -> None:
    for url in ("/api/v1/pods/ml/nope", "/api/v1/pods/ml/nope/history"):
        body = await get(http, url, 404)
        conforms(body, {"$ref": "#/components/schemas/Error"})
        assert body["error"]["code"] == "not_found" and "ml/nope" in body["error"]["message"]


async def test_unknown_route_and_wrong_method_are_json_errors(
    running: Running, http: aiohttp.ClientSession
) -> None:
    body = await get(http, "/api/v1/nothing", 404)
    assert body["error"]["code"] == "not_found"
    async with http.post("/api/v1/pods") as r:
        assert r.status == 405 and (await r.json())["error"]["code"] == "method_not_allowed"


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("limit=abc", "'limit'"),
        ("limit=0", "'limit'"),
        ("limit=5000", "'limit'"),
        ("facts=maybe", "'facts'"),
        ("before=-1", "'before'"),
    ],
)
async def test_bad_query_parameter_is_400_naming_it(
    running: Running, http: aiohttp.ClientSession, query: str, param: str
) -> None:
    await feed(running)
    body = await get(http, f"/api/v1/pods/ml/llm-0/history?{query}", 400)
    assert body["error"]["code"] == "bad_request" and param in body["error"]["message"]


async def test_history_lists_changes_between_stored_snapshots(
    running: Running, http: aiohttp.ClientSession
) -> None:
    await feed(running)
    body = await get(http, "/api/v1/pods/ml/llm-0/history")
    conforms(body, response_schema("/api/v1/pods/{namespace}/{pod}/history", 200))
    newest, first = body["snapshots"]
    assert (newest["sequence"], first["sequence"]) == (3, 2)
    assert newest["previous_id"] == first["id"]
    assert newest["changes"] == [
        {
            "key": "runtime.args.dtype",
            "category": "runtime",
            "change": "changed",
            "before": "float16",
            "after": "float32",
        },
        {
            "key": "runtime.args.enforce_eager",
            "category": "runtime",
            "change": "added",
            "before": None,
            "after": True,
        },
        {
            "key": "runtime.dtype",
            "category": "runtime",
            "change": "changed",
            "before": "float16",
            "after": "float32",
        },
        {
            "key": "runtime.enforce_eager",
            "category": "runtime",
            "change": "changed",
            "before": False,
            "after": True,
        },
        {
            "key": "runtime.max_model_len",
            "category": "runtime",
            "change": "removed",
            "before": 2048,
            "after": None,
        },
    ]
    assert first["previous_id"] is None
    assert {c["change"] for c in first["changes"]} == {"added"}
    assert len(first["changes"]) == len(BASE_FACTS)
    assert "facts" not in newest and body["next_before"] is None
    assert newest["fingerprint"]["runtime"] != first["fingerprint"]["runtime"]
    assert newest["fingerprint"]["model"] == first["fingerprint"]["model"]


async def test_history_limit_pages_and_still_diffs_against_the_older_snapshot(
    running: Running, http: aiohttp.ClientSession
) -> None:
    await feed(running)
    body = await get(http, "/api/v1/pods/ml/llm-0/history?limit=1&facts=true")
    (only,) = body["snapshots"]
    assert only["sequence"] == 3 and only["previous_id"] is not None and len(only["changes"]) == 5
    assert only["facts"]["runtime.dtype"] == "float32"
    assert only["provenance"]["runtime.dtype"]["method"] == "arg"
    assert body["next_before"] == only["id"]
    older = await get(http, f"/api/v1/pods/ml/llm-0/history?limit=1&before={body['next_before']}")
    assert [s["sequence"] for s in older["snapshots"]] == [2] and older["next_before"] is None


async def test_health_and_readiness(running: Running, http: aiohttp.ClientSession) -> None:
    assert await get(http, "/healthz") == {"status": "ok"}
    body = await get(http, "/readyz")
    conforms(body, response_schema("/readyz", 200))
    assert body == {"status": "ready", "checks": {"store": "ok", "grpc": "ok"}}


async def test_readiness_fails_when_grpc_is_down_or_store_is_closed(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "r.db")
    await store.open()
    serving = {"grpc": False}
    app = create_app(Pods(store), grpc_serving=lambda: serving["grpc"])
    async with TestClient(TestServer(app)) as client:
        r = await client.get("/readyz")
        assert r.status == 503
        assert (await r.json())["checks"] == {"store": "ok", "grpc": "failed: not serving"}
        serving["grpc"] = True
        assert (await client.get("/readyz")).status == 200
        await store.close()
        r = await client.get("/readyz")
        assert r.status == 503 and (await r.json())["checks"]["store"].startswith("failed")
        # healthz only says the process is alive
        assert (await client.get("/healthz")).status == 200
        # a read against a closed store is a JSON 503, not a traceback
        r = await client.get("/api/v1/pods")
        assert r.status == 503 and (await r.json())["error"]["code"] == "store_unavailable"


async def test_openapi_document_describes_exactly_the_served_routes(
    running: Running, http: aiohttp.ClientSession
) -> None:
    body = await get(http, "/api/v1/openapi.json")
    assert body["openapi"].startswith("3.1")
    app = create_app(running.collector.pods, queries=running.collector.queries)
    served = {
        (r.resource.canonical, r.method.lower())
        for r in app.router.routes()
        if r.resource is not None and r.method != "HEAD"
    }
    documented = {(path, method) for path, ops in body["paths"].items() for method in ops}
    assert served == documented
    for ops in body["paths"].values():
        for op in ops.values():
            assert {"200", "201", "204"} & set(op["responses"])
            for status, response in op["responses"].items():
                if status == "204":
                    assert "content" not in response  # No Content means no body
                    continue
                assert "schema" in response["content"]["application/json"]
            body_spec = op.get("requestBody")
            if body_spec is not None:
                assert all("schema" in c for c in body_spec["content"].values())
