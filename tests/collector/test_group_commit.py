"""Group commit on a real SQLite store: many streams' writes in few transactions, each caller
answered only after its batch committed, failures confined to their batch, shedding bounded."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from collector.domain.records import HeartbeatResult, SnapshotIn, SnapshotWrite, Write, WriteResult
from collector.errors import StoreError, WriteShedError
from collector.service.recording import CommitSettings, GroupCommit, Recorder
from collector.store.sqlite import SqliteStore
from skewwatch.core.identity import PodIdentity, PodKey
from tests.support.collector import make_snapshot


def pod(i: int) -> PodIdentity:
    return PodIdentity("ml", f"llm-{i}", "node-1", "ml/Deployment/llm", "env", f"agent-{i}", "0.1.0")


def snapshot_write(i: int, seq: int = 2, **overrides: object) -> SnapshotIn:
    snap = make_snapshot(**overrides)  # type: ignore[arg-type]
    return SnapshotIn(
        pod(i),
        seq,
        {k: f.value for k, f in snap.facts.items()},
        {k: f.provenance for k, f in snap.facts.items()},
        snap.sources,
        snap.fingerprint,
        snap.collected_at,
        time.time(),
    )


class CountingStore(SqliteStore):
    """A real SQLite store that counts its batches and can be held before committing one (a slow
    disk), so the queue behind it can be observed."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.batch_sizes: list[int] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.entered = asyncio.Event()

    async def record_batch(self, writes: Sequence[Write]) -> list[WriteResult | StoreError]:
        self.entered.set()
        await self.gate.wait()
        self.batch_sizes.append(len(writes))
        return await super().record_batch(writes)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[CountingStore]:
    s = CountingStore(tmp_path / "g.db")
    await s.open()
    try:
        yield s
    finally:
        await s.close()


async def test_concurrent_streams_share_transactions_and_every_write_is_stored(store: CountingStore) -> None:
    recorder = Recorder(store, commit=CommitSettings(max_batch=64, max_wait_s=0.005))
    n = 300

    async def stream(i: int) -> SnapshotWrite:
        await recorder.hello(pod(i), 1, time.time())
        w = snapshot_write(i)
        return await recorder.record_snapshot(
            w.identity,
            w.sequence,
            facts=w.facts,
            provenance=w.provenance,
            sources=w.sources,
            fingerprint=w.fingerprint,
            collected_at=w.collected_at,
            received_at=w.received_at,
        )

    results = await asyncio.gather(*(stream(i) for i in range(n)))
    await recorder.close()
    assert all(r.new_row for r in results)
    assert len({r.snapshot_id for r in results}) == n
    assert sum(store.batch_sizes) == 2 * n
    assert max(store.batch_sizes) <= 64
    # 600 writes, each its own transaction before: now a small fraction of that.
    assert len(store.batch_sizes) <= 2 * n // 10, store.batch_sizes
    pods = await store.list_pods()
    assert len(pods) == n and all(p.current_snapshot_id is not None for p in pods)


async def test_each_caller_gets_its_own_result_in_one_batch(store: CountingStore) -> None:
    group = GroupCommit(store, CommitSettings(max_wait_s=0.05))
    first = snapshot_write(0)
    await group.submit(first)
    same, changed, beat_ok, beat_stale = await asyncio.gather(
        group.submit(snapshot_write(0, seq=3)),  # the same configuration: no new history row
        group.submit(snapshot_write(1, seq=2)),
        group.submit(_heartbeat(0, 4, first.fingerprint.overall)),
        group.submit(_heartbeat(0, 5, "0" * 64)),
    )
    await group.close()
    assert store.batch_sizes[-1] == 4
    assert isinstance(same, SnapshotWrite) and not same.new_row
    assert isinstance(changed, SnapshotWrite) and changed.new_row
    assert beat_ok is HeartbeatResult.OK
    assert beat_stale is HeartbeatResult.FINGERPRINT_MISMATCH


def _heartbeat(i: int, seq: int, fp: str) -> Write:
    from collector.domain.records import HeartbeatIn

    return HeartbeatIn(pod(i), seq, fp, time.time())


async def test_a_failed_commit_fails_every_write_of_its_batch_and_stores_none(store: CountingStore) -> None:
    group = GroupCommit(store, CommitSettings(max_wait_s=0.05))
    store.gate.clear()
    waiting = [asyncio.ensure_future(group.submit(snapshot_write(i))) for i in range(5)]
    await store.entered.wait()
    await store.close()  # the store goes away under the batch: its commit cannot happen
    store.gate.set()
    outcomes = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(o, StoreError) for o in outcomes), outcomes
    await group.close()
    await store.open()
    assert await store.list_pods() == []


async def test_a_full_queue_sheds_new_writes_with_a_retry_hint_and_readiness_says_so(
    store: CountingStore,
) -> None:
    group = GroupCommit(store, CommitSettings(max_batch=2, max_wait_s=0.0, max_pending=3, retry_after_s=7))
    store.gate.clear()
    first = asyncio.ensure_future(group.submit(snapshot_write(0)))
    await store.entered.wait()  # the first batch is taken and held at the store
    queued = [asyncio.ensure_future(group.submit(snapshot_write(i))) for i in range(1, 4)]
    await asyncio.sleep(0)
    assert group.pending == 3
    with pytest.raises(WriteShedError, match="retry after 7 s") as shed:
        await group.submit(snapshot_write(9))
    assert shed.value.retry_after_s == 7
    ready = group.readiness()
    assert ready["overloaded"] and ready["shed"] == 1 and ready["pending"] == 3
    store.gate.set()
    await asyncio.gather(first, *queued)  # nothing queued was lost to the shedding
    await group.close()
    assert {p.key.pod for p in await store.list_pods()} == {"llm-0", "llm-1", "llm-2", "llm-3"}


async def test_overload_clears_from_readiness_once_the_queue_drains(store: CountingStore) -> None:
    now = [100.0]
    group = GroupCommit(
        store, CommitSettings(max_wait_s=0.0, max_pending=0, overloaded_for_s=10.0), clock=lambda: now[0]
    )
    with pytest.raises(WriteShedError):
        await group.submit(snapshot_write(0))
    assert group.readiness()["overloaded"]
    now[0] += 11.0
    assert not group.readiness()["overloaded"]


async def test_close_commits_what_is_queued_and_refuses_later_writes(store: CountingStore) -> None:
    group = GroupCommit(store, CommitSettings(max_wait_s=0.05))
    queued = [asyncio.ensure_future(group.submit(snapshot_write(i))) for i in range(10)]
    await asyncio.sleep(0)
    await group.close()
    assert all(isinstance(q.result(), SnapshotWrite) for q in queued)
    with pytest.raises(StoreError, match="stopping"):
        await group.submit(snapshot_write(11))
    assert len(await store.list_pods()) == 10


async def test_a_caller_that_gave_up_before_its_batch_is_not_written(store: CountingStore) -> None:
    group = GroupCommit(store, CommitSettings(max_wait_s=0.0))
    store.gate.clear()
    held = asyncio.ensure_future(group.submit(snapshot_write(0)))
    await store.entered.wait()
    gone = asyncio.ensure_future(group.submit(snapshot_write(1)))
    await asyncio.sleep(0)
    gone.cancel()  # its stream ended: nothing will acknowledge it, so nothing stores it
    store.gate.set()
    await held
    await group.close()
    assert await store.get_pod(PodKey("ml", "llm-1")) is None
    assert sum(store.batch_sizes) == 1


# -- end to end over real gRPC: a shed write ends its stream RESOURCE_EXHAUSTED with the hint ----


async def test_a_collector_behind_a_slow_store_sheds_with_a_retry_hint_and_readyz_says_so(
    tmp_path: Path,
) -> None:
    import aiohttp
    import grpc

    from collector.main import Collector
    from tests.support.collector import AgentStream, hello_msg, settings_for, snapshot_msg

    store = CountingStore(tmp_path / "c.db")
    settings = settings_for(
        tmp_path, shutdown_grace_s=0.2, commit_max_pending=1, commit_max_wait_s=0.0, retry_after_s=9
    )
    c = Collector(settings, store=store)
    ports = await c.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{ports.grpc}") as channel:
            streams = [AgentStream(channel) for _ in range(3)]
            for i, s in enumerate(streams):
                assert (await s.exchange(hello_msg(1, pod=f"llm-{i}"))).WhichOneof("body") == "ack"
            store.gate.clear()
            store.entered.clear()
            held = asyncio.ensure_future(streams[0].exchange(snapshot_msg(2, make_snapshot())))
            await store.entered.wait()  # its batch is at the store, held there
            queued = asyncio.ensure_future(streams[1].exchange(snapshot_msg(2, make_snapshot())))
            assert c.ingest is not None
            for _ in range(500):
                if c.ingest.recorder.group.pending >= 1:
                    break
                await asyncio.sleep(0.01)  # poll interval: the second write reaches the queue
            await streams[2].send(snapshot_msg(2, make_snapshot()))
            code, details = await streams[2].status()
            trailing = {k: str(v) for k, v in (await streams[2].call.trailing_metadata() or ())}
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "retry after 9 s" in details
            assert trailing["retry-after-seconds"] == "9"
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"http://127.0.0.1:{ports.http}/readyz") as r,
            ):
                body = await r.json()
            assert r.status == 503 and body["checks"]["ingest"].startswith("failed: overloaded")
            assert body["writes"]["shed"] == 1
            store.gate.set()
            assert (await held).ack.sequence == 2 and (await queued).ack.sequence == 2
        assert {p.key.pod for p in await store.list_pods() if p.current_snapshot_id} == {"llm-0", "llm-1"}
    finally:
        await c.stop()
