"""Two live agents claiming one pod identity, over real gRPC into a real collector: the second
instance is refused with ALREADY_EXISTS naming the pod and the holder, counted and visible in the
API; the same instance reconnecting takes over; agents without an instance id work as before."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import grpc
import pytest

from agent.stream import INSTANCE_ID, AgentStream, LatestSnapshot
from proto.skewwatch.v1 import skewwatch_pb2 as pb
from skewwatch.core.identity import PodIdentity, PodKey
from tests.support.collector import (
    BASE_FACTS,
    Running,
    heartbeat_msg,
    hello_msg,
    make_snapshot,
    snapshot_msg,
    wait_until,
)
from tests.support.collector import AgentStream as ClientStream
from tests.support.openapi import conforms, response_schema

KEY = PodKey("ml", "llm-0")
TIMEOUT = aiohttp.ClientTimeout(total=10)
FIRST, SECOND = "a" * 32, "b" * 32


def hello(seq: int = 1, instance_id: str = "", **kw: Any) -> pb.AgentMessage:
    msg = hello_msg(seq, **kw)
    msg.hello.instance_id = instance_id
    return msg


async def connect(running: Running, instance_id: str, seq: int = 1, **kw: Any) -> ClientStream:
    s = running.stream()
    reply = await s.exchange(hello(seq, instance_id, **kw))
    assert reply.WhichOneof("body") == "ack" and reply.ack.sequence == seq
    return s


@pytest.fixture
async def http(running: Running) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=running.http, timeout=TIMEOUT) as session:
        yield session


async def get(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as r:
        assert r.status == 200, await r.text()
        return await r.json()


def live(running: Running) -> list[str]:
    ingest = running.collector.ingest
    assert ingest is not None
    return [c.instance_id for c in ingest.registry.live(KEY)]


async def test_a_second_instance_is_refused_naming_the_pod_and_the_holder(
    running: Running, http: aiohttp.ClientSession
) -> None:
    first = await connect(running, FIRST)
    snap = make_snapshot()
    await first.exchange(snapshot_msg(2, snap))
    before = time.time()

    second = running.stream()
    await second.send(hello(1, SECOND, node="other-node"))
    code, details = await second.status()
    assert code == grpc.StatusCode.ALREADY_EXISTS
    assert details.startswith("hello.pod: pod ml/llm-0 is already streamed by agent 'ml/llm-0'")
    assert f"instance {FIRST}" in details and "peer ipv4:127.0.0.1:" in details and "since 20" in details
    assert f"instance {SECOND}" in details

    # The first keeps streaming; nothing of the refused Hello was stored.
    assert (await first.exchange(heartbeat_msg(3, snap.fingerprint.overall))).ack.sequence == 3
    pod = await running.collector.store.get_pod(KEY)
    assert pod is not None and pod.identity.node == "gpu-node-1" and pod.last_sequence == 3

    detail = await get(http, "/api/v1/pods/ml/llm-0")
    conforms(detail, response_schema("/api/v1/pods/{namespace}/{pod}", 200))
    conflicts = detail["conflicts"]
    assert conflicts["count"] == 1 and before <= conflicts["last_refused_at"] <= time.time()
    assert conflicts["last_claimant_peer"].startswith("ipv4:127.0.0.1:")
    assert conflicts["last_claimant_instance_id"] == SECOND
    assert conflicts["last_claimant_agent_id"] == "ml/llm-0"
    assert [s["instance_id"] for s in detail["streams"]] == [FIRST]
    assert detail["streams"][0]["peer"] in details

    listed = await get(http, "/api/v1/pods")
    conforms(listed, response_schema("/api/v1/pods", 200))
    (summary,) = listed["pods"]
    assert summary["conflicts"] == conflicts and summary["live_streams"] == 1


async def test_every_refused_claim_is_counted(running: Running, http: aiohttp.ClientSession) -> None:
    await connect(running, FIRST)
    for attempt in range(3):
        s = running.stream()
        await s.send(hello(1, f"{attempt:032x}"))
        code, _ = await s.status()
        assert code == grpc.StatusCode.ALREADY_EXISTS
    conflicts = (await get(http, "/api/v1/pods/ml/llm-0"))["conflicts"]
    assert conflicts["count"] == 3 and conflicts["last_claimant_instance_id"] == f"{2:032x}"
    other = await get(http, "/api/v1/pods")
    assert other["pods"][0]["conflicts"]["count"] == 3


async def test_the_same_instance_reconnecting_takes_over_its_old_stream(
    running: Running, http: aiohttp.ClientSession
) -> None:
    old = await connect(running, FIRST)
    a = make_snapshot()
    await old.exchange(snapshot_msg(2, a))

    # The agent reconnected before the collector noticed its old stream was gone.
    new = await connect(running, FIRST, seq=3)
    code, details = await old.status()
    assert code == grpc.StatusCode.ABORTED and "took it" in details and FIRST in details
    b = make_snapshot({**BASE_FACTS, "runtime.dtype": "float32"})
    assert (await new.exchange(snapshot_msg(4, b))).ack.sequence == 4
    assert live(running) == [FIRST]

    detail = await get(http, "/api/v1/pods/ml/llm-0")
    assert detail["conflicts"]["count"] == 0 and len(detail["streams"]) == 1
    assert detail["facts"]["runtime.dtype"] == "float32"
    ingest = running.collector.ingest
    assert ingest is not None and ingest.registry.takeovers == 1


async def test_the_pod_is_released_when_its_stream_ends(running: Running) -> None:
    first = await connect(running, FIRST)
    await asyncio.wait_for(first.call.done_writing(), 10)
    code, _ = await first.status()
    assert code == grpc.StatusCode.OK
    await wait_until("pod released", lambda: live(running) == [])
    second = await connect(running, SECOND)
    assert (await second.exchange(snapshot_msg(2, make_snapshot()))).ack.sequence == 2
    assert live(running) == [SECOND]


async def test_a_client_that_goes_away_releases_the_pod(running: Running) -> None:
    first = await connect(running, FIRST)
    first.call.cancel()
    await wait_until("pod released", lambda: live(running) == [])
    await connect(running, SECOND)


async def test_agents_without_an_instance_id_are_accepted_as_before(
    running: Running, http: aiohttp.ClientSession
) -> None:
    one = await connect(running, "")
    two = await connect(running, "")
    # A current agent is not refused by old ones either: they cannot be told apart.
    three = await connect(running, FIRST)
    snap = make_snapshot()
    for seq, s in enumerate((one, two, three), start=2):
        assert (await s.exchange(snapshot_msg(seq, snap))).ack.sequence == seq
    detail = await get(http, "/api/v1/pods/ml/llm-0")
    assert detail["conflicts"]["count"] == 0
    assert [s["instance_id"] for s in detail["streams"]] == ["", "", FIRST]
    # ... but a second current instance still is.
    four = running.stream()
    await four.send(hello(1, SECOND))
    code, _ = await four.status()
    assert code == grpc.StatusCode.ALREADY_EXISTS


async def test_other_pods_are_not_affected(running: Running) -> None:
    await connect(running, FIRST)
    other = await connect(running, SECOND, pod="llm-1")
    assert (await other.exchange(snapshot_msg(2, make_snapshot()))).ack.sequence == 2


async def test_instance_id_is_validated(running: Running) -> None:
    s = running.stream()
    await s.send(hello(1, "bad\nid"))
    code, details = await s.status()
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("hello.instance_id")
    assert live(running) == []


def test_the_agent_says_hello_with_one_random_instance_id_per_process() -> None:
    ident = PodIdentity("ml", "llm-0", "node", "ml/Deployment/llm", "env", agent_id="ml/llm-0")
    stream = AgentStream("127.0.0.1:1", lambda _s: ident, LatestSnapshot(), 1.0)
    first, again = stream._hello(), stream._hello()
    assert first.hello.instance_id == again.hello.instance_id == INSTANCE_ID
    assert len(INSTANCE_ID) == 32 and int(INSTANCE_ID, 16) >= 0
    other = AgentStream("127.0.0.1:1", lambda _s: ident, LatestSnapshot(), 1.0)._hello()
    assert other.hello.instance_id == INSTANCE_ID  # per process, not per stream object
