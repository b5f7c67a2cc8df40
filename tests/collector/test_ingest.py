"""The gRPC ingest stream, end to end over loopback: real server, real client, real SQLite."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import grpc
import pytest

from collector.domain.records import SnapshotIn, Write, WriteResult
from collector.errors import StoreError
from collector.main import Collector
from collector.store.sqlite import SqliteStore
from proto.skewwatch.v1 import skewwatch_pb2 as pb
from skewwatch.core.identity import PodKey
from skewwatch.wire import snapshot_to_proto
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
)

KEY = PodKey("ml", "llm-0")


def snapshot_rows(db: Path) -> list[tuple[int, str]]:
    """Read the file with an independent connection: what is committed, not what is cached."""
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT sequence, fingerprint FROM snapshots ORDER BY id").fetchall()


async def open_stream(running: Running, seq: int = 1, **kw: Any) -> AgentStream:
    s = running.stream()
    reply = await s.exchange(hello_msg(seq, **kw))
    assert reply.WhichOneof("body") == "ack" and reply.ack.sequence == seq
    return s


async def test_snapshot_ack_arrives_once_the_snapshot_is_committed(running: Running) -> None:
    s = await open_stream(running)
    snap = make_snapshot()
    reply = await s.exchange(snapshot_msg(2, snap))
    assert reply.ack.sequence == 2
    assert snapshot_rows(running.db) == [(2, snap.fingerprint.overall)]


class GatedStore(SqliteStore):
    """A real SQLite store whose snapshot writes wait for the test to open a gate."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()
        self.committed = False

    async def record_batch(self, writes: Sequence[Write]) -> list[WriteResult | StoreError]:
        if not any(isinstance(w, SnapshotIn) for w in writes):
            return await super().record_batch(writes)
        self.entered.set()
        await self.gate.wait()
        result = await super().record_batch(writes)
        self.committed = True
        return result


async def test_no_ack_is_sent_before_the_store_commits(tmp_path: Path) -> None:
    store = GatedStore(tmp_path / "gated.db")
    collector = Collector(settings_for(tmp_path, shutdown_grace_s=0.2), store=store)
    ports = await collector.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{ports.grpc}") as channel:
            s = AgentStream(channel)
            await s.exchange(hello_msg(1))
            await s.send(snapshot_msg(2, make_snapshot()))
            reply_task = asyncio.ensure_future(s.recv())
            await asyncio.wait_for(store.entered.wait(), 10)
            await asyncio.sleep(0.2)  # the behaviour: time for a wrong early ack to arrive (none may)
            assert not reply_task.done(), "acknowledged before the write committed"
            assert snapshot_rows(tmp_path / "gated.db") == []
            store.gate.set()
            reply = await reply_task
            assert reply.ack.sequence == 2
            assert store.committed
            assert len(snapshot_rows(tmp_path / "gated.db")) == 1
    finally:
        await collector.stop()


class FailingStore(SqliteStore):
    """A real store whose transactions with a snapshot fail to commit (a full disk)."""

    async def record_batch(self, writes: Sequence[Write]) -> list[WriteResult | StoreError]:
        if any(isinstance(w, SnapshotIn) for w in writes):
            raise StoreError("disk full")
        return await super().record_batch(writes)


async def test_store_failure_ends_stream_unavailable_without_ack(tmp_path: Path) -> None:
    collector = Collector(settings_for(tmp_path, shutdown_grace_s=0.2), store=FailingStore(tmp_path / "f.db"))
    ports = await collector.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{ports.grpc}") as channel:
            s = AgentStream(channel)
            await s.exchange(hello_msg(1))
            await s.send(snapshot_msg(2, make_snapshot()))
            code, details = await s.status()
            assert code == grpc.StatusCode.UNAVAILABLE
            assert "disk full" in details
    finally:
        await collector.stop()


async def test_history_row_is_added_only_when_the_fingerprint_changes(running: Running) -> None:
    s = await open_stream(running)
    a = make_snapshot()
    a_again = make_snapshot(collected_at=a.collected_at + 15)
    b = make_snapshot({**BASE_FACTS, "runtime.dtype": "float32"})
    for seq, snap in ((2, a), (3, a_again), (4, b)):
        assert (await s.exchange(snapshot_msg(seq, snap))).ack.sequence == seq
    assert snapshot_rows(running.db) == [(2, a.fingerprint.overall), (4, b.fingerprint.overall)]
    pod = await running.collector.store.get_pod(KEY)
    assert pod is not None and pod.current is not None
    assert pod.current.sequence == 4
    assert pod.current.facts["runtime.dtype"] == "float32"


async def test_unchanged_snapshot_still_updates_current_state_and_last_seen(running: Running) -> None:
    s = await open_stream(running)
    a = make_snapshot()
    await s.exchange(snapshot_msg(2, a))
    before = await running.collector.store.get_pod(KEY)
    await asyncio.sleep(0.01)  # the behaviour: wall time passes, so last_seen must advance
    await s.exchange(snapshot_msg(3, make_snapshot(collected_at=a.collected_at + 15)))
    after = await running.collector.store.get_pod(KEY)
    assert before is not None and after is not None and after.current is not None
    assert after.last_seen > before.last_seen
    assert after.current.sequence == 3
    assert after.current_snapshot_id == before.current_snapshot_id


async def test_heartbeat_with_the_stored_fingerprint_is_acked_and_refreshes_last_seen(
    running: Running,
) -> None:
    s = await open_stream(running)
    snap = make_snapshot()
    await s.exchange(snapshot_msg(2, snap))
    before = await running.collector.store.get_pod(KEY)
    await asyncio.sleep(0.01)  # the behaviour: wall time passes, so last_seen must advance
    reply = await s.exchange(heartbeat_msg(3, snap.fingerprint.overall))
    assert reply.WhichOneof("body") == "ack" and reply.ack.sequence == 3
    after = await running.collector.store.get_pod(KEY)
    assert before is not None and after is not None
    assert after.last_seen > before.last_seen and after.last_sequence == 3


async def test_heartbeat_for_an_unknown_pod_asks_for_a_resync(running: Running) -> None:
    s = await open_stream(running)
    reply = await s.exchange(heartbeat_msg(2, make_snapshot().fingerprint.overall))
    assert reply.WhichOneof("body") == "resync"
    assert "ml/llm-0" in reply.resync.reason


async def test_heartbeat_naming_another_fingerprint_asks_for_a_resync(running: Running) -> None:
    s = await open_stream(running)
    await s.exchange(snapshot_msg(2, make_snapshot()))
    other = make_snapshot({**BASE_FACTS, "runtime.dtype": "bfloat16"})
    reply = await s.exchange(heartbeat_msg(3, other.fingerprint.overall))
    assert reply.WhichOneof("body") == "resync"
    # After the resync the agent sends the full snapshot, which is stored and acknowledged.
    assert (await s.exchange(snapshot_msg(4, other))).ack.sequence == 4
    assert len(snapshot_rows(running.db)) == 2


async def test_malformed_bytes_end_the_stream_and_keep_what_was_stored(running: Running) -> None:
    first = await open_stream(running)
    snap = make_snapshot()
    await first.exchange(snapshot_msg(2, snap))

    bad = await open_stream(running, seq=10)
    await bad.send(b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff")
    code, details = await bad.status()
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "malformed" in details

    # The other stream keeps working and nothing stored was lost.
    assert (await first.exchange(heartbeat_msg(3, snap.fingerprint.overall))).ack.sequence == 3
    assert snapshot_rows(running.db) == [(2, snap.fingerprint.overall)]
    pod = await running.collector.store.get_pod(KEY)
    assert pod is not None and pod.fingerprint == snap.fingerprint.overall


async def test_message_over_the_size_limit_is_invalid_argument(running: Running) -> None:
    s = await open_stream(running)
    # 3 x 30 000 characters: over the fixture's 64 KiB limit, under gRPC's own (higher) limit.
    big = make_snapshot({**BASE_FACTS, **{f"model.blob{i}": "x" * 30_000 for i in range(3)}})
    await s.send(snapshot_msg(2, big))
    code, details = await s.status()
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "max_message_bytes" in details and "65536" in details


async def test_snapshot_whose_fingerprint_does_not_match_its_facts_is_invalid_argument(
    running: Running,
) -> None:
    s = await open_stream(running)
    msg = snapshot_to_proto(make_snapshot())
    msg.fingerprint.overall = make_snapshot({**BASE_FACTS, "runtime.dtype": "int8"}).fingerprint.overall
    await s.send(pb.AgentMessage(sequence=2, snapshot=msg))
    code, details = await s.status()
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "snapshot.fingerprint.overall" in details
    assert snapshot_rows(running.db) == []


async def test_first_message_other_than_hello_is_invalid_argument(running: Running) -> None:
    s = running.stream()
    await s.send(snapshot_msg(1, make_snapshot()))
    code, details = await s.status()
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "first message must be hello" in details


async def test_second_hello_on_a_stream_is_invalid_argument(running: Running) -> None:
    s = await open_stream(running)
    await s.send(hello_msg(2))
    code, details = await s.status()
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "agent_message.hello" in details


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"namespace": "ml/evil"}, "hello.pod.namespace"),
        ({"pod": ""}, "hello.pod.pod"),
        ({"protocol_version": 7}, "hello.protocol_version"),
        ({"node": "gpu\nnode"}, "hello.pod.node"),
    ],
)
async def test_invalid_hello_is_rejected_naming_the_field(
    running: Running, kw: dict[str, Any], field: str
) -> None:
    s = running.stream()
    await s.send(hello_msg(1, **kw))
    code, details = await s.status()
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith(field)


async def test_message_without_body_or_sequence_is_invalid_argument(running: Running) -> None:
    s = await open_stream(running)
    await s.send(pb.AgentMessage(sequence=2))
    code, details = await s.status()
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "agent_message.body" in details

    s = running.stream()
    await s.send(hello_msg(0))
    code, details = await s.status()
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "agent_message.sequence" in details


async def test_replayed_sequence_is_acked_without_being_stored_again(running: Running) -> None:
    s = await open_stream(running)
    a = make_snapshot()
    b = make_snapshot({**BASE_FACTS, "runtime.dtype": "float32"})
    await s.exchange(snapshot_msg(2, a))
    # A retransmission of sequence 2 carrying other content must not overwrite anything.
    reply = await s.exchange(snapshot_msg(2, b))
    assert reply.ack.sequence == 2
    assert snapshot_rows(running.db) == [(2, a.fingerprint.overall)]
    pod = await running.collector.store.get_pod(KEY)
    assert pod is not None and pod.fingerprint == a.fingerprint.overall


async def test_observations_are_stored_as_latest_and_acknowledged(running: Running) -> None:
    s = await open_stream(running)
    await s.exchange(observations_msg(2, {"tokens_per_s": 1200.0, "ttft_p95_s": 0.21}))
    reply = await s.exchange(observations_msg(3, {"tokens_per_s": 900.0}))
    assert reply.ack.sequence == 3
    latest = await running.collector.store.latest_observations(KEY)
    assert latest is not None
    assert {n: o.value for n, o in latest.items.items()} == {"tokens_per_s": 900.0}
    history = await running.collector.store.observation_history(KEY, 10)
    assert [h.sequence for h in history] == [3, 2]


async def test_an_observation_keeps_its_bucket_bounds_through_the_store(running: Running) -> None:
    s = await open_stream(running)
    msg = observations_msg(2, {"e2e_latency_seconds_p95": 0.43, "tokens_per_s": 1.0})
    item = next(i for i in msg.observations.items if i.name == "e2e_latency_seconds_p95")
    item.lower, item.upper = 0.3, 0.5
    assert (await s.exchange(msg)).ack.sequence == 2
    latest = await running.collector.store.latest_observations(KEY)
    assert latest is not None
    p95, tps = latest.items["e2e_latency_seconds_p95"], latest.items["tokens_per_s"]
    assert (p95.value, p95.lower, p95.upper) == (0.43, 0.3, 0.5)
    assert (tps.lower, tps.upper) == (None, None)


@pytest.mark.parametrize(
    ("bounds", "why"),
    [
        ((0.5, 0.6), "outside its bounds"),
        ((0.1, 0.2), "outside its bounds"),
        ((float("-inf"), 1.0), ".lower"),
    ],
)
async def test_an_observation_outside_its_own_bounds_is_refused(
    running: Running, bounds: tuple[float, float], why: str
) -> None:
    s = await open_stream(running)
    msg = observations_msg(2, {"e2e_latency_seconds_p95": 0.43})
    msg.observations.items[0].lower, msg.observations.items[0].upper = bounds
    await s.send(msg)
    code, details = await s.status()
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "observations.items[0]" in details and why in details


async def test_observation_history_is_bounded_per_pod_in_the_background(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, observation_history_rows=3, prune_interval_s=0.1, shutdown_grace_s=0.2)
    async with Collector(settings) as collector:
        assert collector.ports is not None
        async with grpc.aio.insecure_channel(f"127.0.0.1:{collector.ports.grpc}") as channel:
            s = AgentStream(channel)
            await s.exchange(hello_msg(1))
            for seq in range(2, 9):
                await s.exchange(observations_msg(seq, {"tokens_per_s": float(seq)}))
        # Ingest does not trim (it would cost every write); the retention task does, soon after.
        for _ in range(100):
            history = await collector.store.observation_history(KEY, 100)
            if len(history) <= 3:
                break
            await asyncio.sleep(0.05)  # poll interval: the retention task runs every 0.1 s here
        assert [h.sequence for h in history] == [8, 7, 6]
        assert collector.pruner is not None and collector.pruner.deleted.observations == 4


async def test_invalid_observation_is_rejected_naming_the_item(running: Running) -> None:
    s = await open_stream(running)
    msg = observations_msg(2, {"tokens_per_s": 1.0})
    msg.observations.items[0].value = float("nan")
    await s.send(msg)
    code, details = await s.status()
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "observations.items[0].value" in details


async def test_many_agents_stream_concurrently(running: Running) -> None:
    async def agent(i: int) -> str:
        s = await open_stream(running, pod=f"llm-{i}")
        snap = make_snapshot({**BASE_FACTS, "runtime.max_num_seqs": i})
        await s.exchange(snapshot_msg(2, snap))
        await s.exchange(heartbeat_msg(3, snap.fingerprint.overall))
        return snap.fingerprint.overall

    fingerprints = await asyncio.gather(*(agent(i) for i in range(20)))
    pods = await running.collector.store.list_pods()
    stored: Mapping[str, str | None] = {p.identity.pod: p.fingerprint for p in pods}
    assert stored == {f"llm-{i}": fingerprints[i] for i in range(20)}
