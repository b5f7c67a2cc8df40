"""Baselines and history ids through a real collector: GET /api/v1/baselines?namespace=,
DELETE /api/v1/baselines/{namespace}/{name} (what it answers, what it re-evaluates, what it
keeps), and the history row ids that GET /api/v1/diff?revisions=A,B takes. Pods are fed over
gRPC as an agent sends them; every answer is checked against the served OpenAPI document."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.collector import (
    BASE_FACTS,
    AgentStream,
    Running,
    hello_msg,
    make_snapshot,
    settings_for,
    snapshot_msg,
    started,
)
from tests.support.openapi import DOC, conforms

TIMEOUT = aiohttp.ClientTimeout(total=10)
BASELINE = "/api/v1/baselines/{namespace}/{name}"
FLOAT32 = {**BASE_FACTS, "runtime.args.dtype": "float32", "runtime.dtype": "float32"}


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[tuple[Running, aiohttp.ClientSession]]:
    # No automatic promotion: a deleted baseline must not come back on its own during the test.
    settings = settings_for(tmp_path, drift_tick_s=0.1, baseline_stable_s=0, shutdown_grace_s=0.5)
    async with (
        started(settings, tmp_path) as running,
        aiohttp.ClientSession(base_url=running.http, timeout=TIMEOUT) as http,
    ):
        yield running, http


async def call(http: aiohttp.ClientSession, method: str, url: str, doc_path: str, status: int = 200) -> Any:
    async with http.request(method, url) as r:
        body = await r.json()
        assert r.status == status, body
    op = DOC["paths"][doc_path][method.lower()]["responses"][str(status)]
    conforms(body, op["content"]["application/json"]["schema"])
    return body


async def pod(
    running: Running, namespace: str, name: str, facts: dict[str, Any], seq: int = 2
) -> AgentStream:
    s = running.stream()
    await s.exchange(hello_msg(1, namespace=namespace, pod=name))
    await s.exchange(snapshot_msg(seq, make_snapshot({**facts, "orchestration.pod": name})))
    return s


async def settle(running: Running) -> None:
    assert running.collector.drift is not None
    await running.collector.drift.settled()


async def test_baselines_list_by_namespace(rig: Any) -> None:
    running, http = rig
    for ns in ("ml", "ml-prod", "prod"):
        await pod(running, ns, "llm-0", BASE_FACTS)
        await call(http, "POST", f"/api/v1/baselines/{ns}/llm", BASELINE, 201)

    async def workloads(query: str) -> list[str]:
        body = await call(http, "GET", f"/api/v1/baselines{query}", "/api/v1/baselines")
        return [b["workload"] for b in body["baselines"]]

    assert await workloads("") == ["ml-prod/Deployment/llm", "ml/Deployment/llm", "prod/Deployment/llm"]
    assert await workloads("?namespace=ml") == ["ml/Deployment/llm"]  # not ml-prod
    assert await workloads("?namespace=prod") == ["prod/Deployment/llm"]
    assert await workloads("?namespace=absent") == []
    assert await workloads("?namespace=ml&workload=ml/llm") == ["ml/Deployment/llm"]
    assert await workloads("?namespace=ml&workload=prod/llm") == []  # both filters hold
    for bad in ("?namespace=", "?namespace=ml/llm"):
        body = await call(http, "GET", f"/api/v1/baselines{bad}", "/api/v1/baselines", 400)
        assert "'namespace'" in body["error"]["message"]


async def test_delete_baseline_answers_it_re_evaluates_and_keeps_everything_else(rig: Any) -> None:
    running, http = rig
    s = await pod(running, "ml", "llm-0", BASE_FACTS)
    await pod(running, "prod", "llm-0", BASE_FACTS)
    await settle(running)
    first = await call(http, "POST", "/api/v1/baselines/ml/llm", BASELINE, 201)
    await call(http, "POST", "/api/v1/baselines/ml/llm", BASELINE, 201)
    prod = await call(http, "POST", "/api/v1/baselines/prod/llm", BASELINE, 201)
    await s.exchange(snapshot_msg(3, make_snapshot({**FLOAT32, "orchestration.pod": "llm-0"})))
    await settle(running)
    against = "/api/v1/findings?workload=ml/llm&reference=baseline"
    (drift,) = [f for f in (await call(http, "GET", against, "/api/v1/findings"))["findings"]
                if f["key"] == "runtime.dtype"]  # fmt: skip
    assert drift["status"] == "open" and drift["expected"] == "float16"
    shown = await call(http, "GET", "/api/v1/baselines/ml/llm", BASELINE)
    assert [b["id"] for b in shown["history"]] == [first["baseline"]["id"]]

    deleted = await call(http, "DELETE", "/api/v1/baselines/ml/llm", BASELINE)
    assert deleted == {"deleted": shown}  # the current one and the older one, as GET showed them

    await settle(running)  # the re-evaluation the delete scheduled
    after = await call(http, "GET", f"/api/v1/findings/{drift['id']}", "/api/v1/findings/{id}")
    assert after["status"] == "resolved", after  # nothing to drift from any more, and still listed
    assert [e["event"] for e in after["history"]] == ["opened", "resolved"]
    await call(http, "GET", "/api/v1/baselines/ml/llm", BASELINE, 404)
    again = await call(http, "DELETE", "/api/v1/baselines/ml/llm", BASELINE, 404)
    assert "has no baseline" in again["error"]["message"]
    workload = await call(http, "GET", "/api/v1/workloads/ml/llm", "/api/v1/workloads/{namespace}/{name}")
    assert workload["baseline"] is None and workload["facts"]["runtime.dtype"] == "float32"
    # Another workload's baseline and the pod's stored history are untouched.
    kept = await call(http, "GET", "/api/v1/baselines/prod/llm", BASELINE)
    assert kept["baseline"]["id"] == prod["baseline"]["id"]
    history = await call(
        http, "GET", "/api/v1/pods/ml/llm-0/history", "/api/v1/pods/{namespace}/{pod}/history"
    )
    assert len(history["snapshots"]) == 2
    # A new baseline can be recorded after it.
    await call(http, "POST", "/api/v1/baselines/ml/llm", BASELINE, 201)


@pytest.mark.parametrize(
    ("url", "status"),
    [
        ("/api/v1/baselines/ml/none", 404),
        ("/api/v1/baselines/ml/llm?kind=a/b", 400),
        ("/api/v1/baselines/ml/llm?kind=StatefulSet", 404),
        ("/api/v1/baselines/ml/llm", 404),  # known workload, no baseline
    ],
)
async def test_delete_baseline_errors(rig: Any, url: str, status: int) -> None:
    running, http = rig
    await pod(running, "ml", "llm-0", BASE_FACTS)
    body = await call(http, "DELETE", url, BASELINE, status)
    assert body["error"]["message"]


async def test_history_ids_are_what_diff_revisions_takes_not_the_sequence(rig: Any) -> None:
    running, http = rig
    # Two pods interleaved, and agent sequences that jump: store ids and sequences part ways.
    s0 = await pod(running, "ml", "llm-0", BASE_FACTS, seq=2)
    await pod(running, "ml", "llm-1", BASE_FACTS, seq=2)
    await s0.exchange(snapshot_msg(7, make_snapshot({**FLOAT32, "orchestration.pod": "llm-0"})))
    path = "/api/v1/pods/{namespace}/{pod}/history"
    rows = (await call(http, "GET", "/api/v1/pods/ml/llm-0/history", path))["snapshots"]
    assert [r["sequence"] for r in rows] == [7, 2]
    newer, older = rows[0]["id"], rows[1]["id"]
    assert (newer, older) != (7, 2) and rows[0]["previous_id"] == older
    body = await call(http, "GET", f"/api/v1/diff?workload=ml/llm&revisions={older},{newer}", "/api/v1/diff")
    assert [c["key"] for c in body["changes"]] == ["runtime.args.dtype", "runtime.dtype"]
    assert (body["from"]["snapshot_id"], body["to"]["snapshot_id"]) == (older, newer)
    # The sequences name no stored snapshot of this pod.
    await call(http, "GET", "/api/v1/diff?workload=ml/llm&revisions=2,7", "/api/v1/diff", 404)
    described = DOC["components"]["schemas"]["HistorySnapshot"]["properties"]["id"]["description"]
    assert "revisions=A,B" in described and "skewwatch diff --revisions A B" in described
