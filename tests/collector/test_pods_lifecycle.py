"""Pod lifecycle through the real API: stale pods, workloads without live replicas, deleting a pod
with its stored history (refused while its agent streams), and the ``skewwatch pods`` CLI."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest

from collector.store.sqlite import SqliteStore
from skewwatch.core.identity import PodIdentity, PodKey
from tests.support.cli import run
from tests.support.collector import (
    BASE_FACTS,
    AgentStream,
    Running,
    heartbeat_msg,
    hello_msg,
    make_snapshot,
    observations_msg,
    settings_for,
    snapshot_msg,
    started,
    wait_until,
)
from tests.support.openapi import DOC, conforms, response_schema

STALE_S = 1.0  # the smallest replica_stale_s the settings accept
TIMEOUT = aiohttp.ClientTimeout(total=10)
POD_TABLES = ("snapshots", "observations_latest", "observations_history", "pods")


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    async with started(settings_for(tmp_path, replica_stale_s=STALE_S, shutdown_grace_s=0.5), tmp_path) as r:
        yield r


@pytest.fixture
async def http(running: Running) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=running.http, timeout=TIMEOUT) as session:
        yield session


async def call(http: aiohttp.ClientSession, method: str, url: str, status: int) -> Any:
    async with http.request(method, url) as r:
        assert r.status == status, await r.text()
        if status == 204:
            assert await r.read() == b""
            return None
        assert r.content_type == "application/json"
        return await r.json()


async def feed(running: Running, pod: str, workload: str = "ml/Deployment/llm") -> AgentStream:
    """A pod with two stored configurations and observations; the stream stays open."""
    s = running.stream()
    await s.exchange(hello_msg(1, pod=pod, workload=workload))
    await s.exchange(snapshot_msg(2, make_snapshot()))
    snap = make_snapshot({**BASE_FACTS, "runtime.dtype": "float32"})
    await s.exchange(snapshot_msg(3, snap))
    await s.exchange(heartbeat_msg(4, snap.fingerprint.overall))
    await s.exchange(observations_msg(5, {"tokens_per_s": 100.0}))
    await s.exchange(observations_msg(6, {"tokens_per_s": 110.0}))
    return s


async def end(running: Running, s: AgentStream, key: PodKey) -> None:
    """Close the stream from the agent's side and wait until the collector released the pod."""
    await asyncio.wait_for(s.call.done_writing(), 10)
    code, details = await s.status()
    assert code == grpc.StatusCode.OK, details
    ingest = running.collector.ingest
    assert ingest is not None
    await wait_until(f"{key} released", lambda: not ingest.registry.live(key))


def rows(db: Path, pod: str) -> dict[str, int]:
    """What is committed for the pod, read with an independent connection."""
    with sqlite3.connect(db) as conn:
        return {
            t: conn.execute(
                f"SELECT COUNT(*) FROM {t} WHERE namespace = 'ml' AND pod = ?", (pod,)
            ).fetchone()[0]
            for t in POD_TABLES
        }


async def test_pods_are_marked_stale_with_their_age(running: Running, http: aiohttp.ClientSession) -> None:
    old = await feed(running, "old-0", workload="ml/Deployment/old")
    await end(running, old, PodKey("ml", "old-0"))
    await asyncio.sleep(STALE_S + 0.3)  # the behaviour: wall time past replica_stale_s (no clock reaches it)
    await feed(running, "fresh-0", workload="ml/Deployment/fresh")

    body = await call(http, "GET", "/api/v1/pods", 200)
    conforms(body, response_schema("/api/v1/pods", 200))
    pods = {p["pod"]: p for p in body["pods"]}
    assert pods["old-0"]["stale"] is True and pods["old-0"]["last_seen_age_s"] > STALE_S
    assert pods["fresh-0"]["stale"] is False and 0 <= pods["fresh-0"]["last_seen_age_s"] < STALE_S
    assert (pods["old-0"]["live_streams"], pods["fresh-0"]["live_streams"]) == (0, 1)

    detail = await call(http, "GET", "/api/v1/pods/ml/old-0", 200)
    conforms(detail, response_schema("/api/v1/pods/{namespace}/{pod}", 200))
    assert detail["stale"] is True and detail["last_seen_age_s"] > STALE_S and detail["streams"] == []
    fresh = await call(http, "GET", "/api/v1/pods/ml/fresh-0", 200)
    assert fresh["stale"] is False and [s["agent_id"] for s in fresh["streams"]] == ["ml/fresh-0"]


async def test_workload_without_live_replicas_says_so(running: Running, http: aiohttp.ClientSession) -> None:
    old = await feed(running, "old-0", workload="ml/Deployment/old")
    await end(running, old, PodKey("ml", "old-0"))
    await asyncio.sleep(STALE_S + 0.3)  # the behaviour: wall time past replica_stale_s (no clock reaches it)
    await feed(running, "fresh-0", workload="ml/Deployment/fresh")

    body = await call(http, "GET", "/api/v1/workloads", 200)
    conforms(body, response_schema("/api/v1/workloads", 200))
    by_name = {w["name"]: w for w in body["workloads"]}
    assert (by_name["old"]["state"], by_name["old"]["replicas_live"], by_name["old"]["pods"]) == (
        "no-replicas",
        0,
        1,
    )
    assert (by_name["fresh"]["state"], by_name["fresh"]["replicas_live"]) == ("serving", 1)

    detail = await call(http, "GET", "/api/v1/workloads/ml/old", 200)
    conforms(detail, response_schema("/api/v1/workloads/{namespace}/{name}", 200))
    assert detail["state"] == "no-replicas" and detail["replicas_live"] == 0 and detail["replicas"] == []
    fresh = await call(http, "GET", "/api/v1/workloads/ml/fresh", 200)
    assert fresh["state"] == "serving" and fresh["replicas_live"] == len(fresh["replicas"]) == 1


async def test_delete_removes_the_pod_and_all_its_stored_history(
    running: Running, http: aiohttp.ClientSession
) -> None:
    gone = await feed(running, "gone-0")
    await feed(running, "kept-0")
    assert rows(running.db, "gone-0") == {
        "snapshots": 2,
        "observations_latest": 1,
        "observations_history": 2,
        "pods": 1,
    }
    kept_before = rows(running.db, "kept-0")
    await end(running, gone, PodKey("ml", "gone-0"))

    assert await call(http, "DELETE", "/api/v1/pods/ml/gone-0", 204) is None
    assert rows(running.db, "gone-0") == dict.fromkeys(POD_TABLES, 0)
    assert rows(running.db, "kept-0") == kept_before
    for url in ("/api/v1/pods/ml/gone-0", "/api/v1/pods/ml/gone-0/history"):
        await call(http, "GET", url, 404)
    listed = await call(http, "GET", "/api/v1/pods", 200)
    assert [p["pod"] for p in listed["pods"]] == ["kept-0"]

    again = await call(http, "DELETE", "/api/v1/pods/ml/gone-0", 404)
    conforms(again, {"$ref": "#/components/schemas/Error"})
    assert again["error"]["code"] == "not_found" and "ml/gone-0" in again["error"]["message"]

    # The same pod coming back later starts a fresh history.
    back = running.stream()
    await back.exchange(hello_msg(1, pod="gone-0"))
    await back.exchange(snapshot_msg(2, make_snapshot()))
    history = await call(http, "GET", "/api/v1/pods/ml/gone-0/history", 200)
    assert [s["sequence"] for s in history["snapshots"]] == [2]


async def test_delete_is_refused_while_an_agent_streams_for_the_pod(
    running: Running, http: aiohttp.ClientSession
) -> None:
    s = await feed(running, "busy-0")
    body = await call(http, "DELETE", "/api/v1/pods/ml/busy-0", 409)
    conforms(body, {"$ref": "#/components/schemas/Error"})
    message = body["error"]["message"]
    assert body["error"]["code"] == "conflict"
    assert "ml/busy-0" in message and "live agent stream" in message and "come back at once" in message
    assert rows(running.db, "busy-0")["snapshots"] == 2
    # The stream was not disturbed.
    snap = make_snapshot({**BASE_FACTS, "runtime.dtype": "float32"})
    assert (await s.exchange(heartbeat_msg(7, snap.fingerprint.overall))).ack.sequence == 7

    await end(running, s, PodKey("ml", "busy-0"))
    await call(http, "DELETE", "/api/v1/pods/ml/busy-0", 204)
    assert rows(running.db, "busy-0") == dict.fromkeys(POD_TABLES, 0)


async def test_store_delete_pod_cascades_and_says_whether_it_existed(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    await store.open()
    try:
        ident = PodIdentity("ml", "p-0", workload="ml/Deployment/llm")
        await store.hello(ident, 1, 100.0)
        snap = make_snapshot()
        await store.record_snapshot(
            ident,
            2,
            facts={k: f.value for k, f in snap.facts.items()},
            provenance={k: f.provenance for k, f in snap.facts.items()},
            sources=snap.sources,
            fingerprint=snap.fingerprint,
            collected_at=snap.collected_at,
            received_at=101.0,
        )
        assert await store.delete_pod(PodKey("ml", "p-0")) is True
        assert await store.get_pod(PodKey("ml", "p-0")) is None
        assert await store.history(PodKey("ml", "p-0"), 10) == []
        assert await store.delete_pod(PodKey("ml", "p-0")) is False
    finally:
        await store.close()


def test_openapi_documents_every_status_of_the_delete_route() -> None:
    op = DOC["paths"]["/api/v1/pods/{namespace}/{pod}"]["delete"]
    # 401 and 403: the document declares them for every /api/v1 route (served with --api-tokens).
    assert set(op["responses"]) == {"204", "401", "403", "404", "409", "503"}
    assert "content" not in op["responses"]["204"]
    props = DOC["components"]["schemas"]["PodSummary"]["properties"]
    assert {"stale", "last_seen_age_s", "conflicts", "live_streams"} <= set(props)


async def test_pods_cli_shows_stale_and_deletes(running: Running, capsys: pytest.CaptureFixture[str]) -> None:
    old = await feed(running, "old-0")
    await end(running, old, PodKey("ml", "old-0"))
    await asyncio.sleep(STALE_S + 0.3)  # the behaviour: wall time past replica_stale_s (no clock reaches it)
    live = await feed(running, "live-0")

    assert await run(["pods", "--collector", running.http]) == 0
    header, *lines = capsys.readouterr().out.splitlines()
    assert header.split()[:4] == ["NAMESPACE", "POD", "NODE", "WORKLOAD"] and "STALE" in header
    stale_at = header.index("STALE")
    by_pod = {line.split()[1]: line for line in lines}
    assert by_pod["old-0"][stale_at:].startswith("stale")
    assert by_pod["live-0"][stale_at:].startswith("-")
    assert await run(["pods", "--collector", running.http, "--format", "json"]) == 0
    assert {p["pod"]: p["stale"] for p in json.loads(capsys.readouterr().out)["pods"]} == {
        "live-0": False,
        "old-0": True,
    }

    assert await run(["pods", "delete", "ml/old-0", "--collector", running.http]) == 0
    assert capsys.readouterr().out == "deleted pod ml/old-0 and its stored history\n"
    assert await run(["pods", "--collector", running.http, "delete", "ml/old-0"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("skewwatch pods delete: error:") and "HTTP 404" in err and err.count("\n") == 1

    assert await run(["pods", "delete", "ml/live-0", "--collector", running.http]) == 1
    err = capsys.readouterr().err
    assert "HTTP 409" in err and "live agent stream" in err and err.count("\n") == 1
    await end(running, live, PodKey("ml", "live-0"))
    assert await run(["pods", "delete", "ml/live-0", "--collector", running.http, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"deleted": {"namespace": "ml", "pod": "live-0"}}
    assert rows(running.db, "live-0") == dict.fromkeys(POD_TABLES, 0)
