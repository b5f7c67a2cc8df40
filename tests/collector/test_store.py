"""The SQLite store on real files: schema versioning, durability settings, atomic writes."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from collector.domain.records import HeartbeatResult, Retention, SnapshotWrite
from collector.errors import StoreError, UnsupportedStoreError
from collector.store import parse_store_url
from collector.store.schema import SCHEMA_VERSION
from collector.store.sqlite import SqliteStore
from skewwatch.core.facts import Snapshot
from skewwatch.core.identity import PodIdentity, PodKey
from tests.support.collector import BASE_FACTS, make_snapshot

POD = PodIdentity("ml", "llm-0", "gpu-node-1", "ml/Deployment/llm", "env", "ml/llm-0", "0.1.0")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "s.db")
    await s.open()
    try:
        yield s
    finally:
        await s.close()


async def record(store: SqliteStore, seq: int, snap: Snapshot, identity: PodIdentity = POD) -> SnapshotWrite:
    return await store.record_snapshot(
        identity,
        seq,
        facts={k: f.value for k, f in snap.facts.items()},
        provenance={k: f.provenance for k, f in snap.facts.items()},
        sources=snap.sources,
        fingerprint=snap.fingerprint,
        collected_at=snap.collected_at,
        received_at=time.time(),
    )


async def test_new_database_is_migrated_to_the_current_schema_in_wal_mode(store: SqliteStore) -> None:
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._wconn is not None
    # 2 = FULL: an acknowledged snapshot survives power loss, not only a process crash.
    assert store._wconn.execute("PRAGMA synchronous").fetchone()[0] == 2


async def test_data_survives_close_and_reopen(tmp_path: Path) -> None:
    snap = make_snapshot()
    first = SqliteStore(tmp_path / "s.db")
    await first.open()
    await record(first, 2, snap)
    await first.close()
    second = SqliteStore(tmp_path / "s.db")
    await second.open()
    try:
        pod = await second.get_pod(POD.key)
        assert pod is not None and pod.fingerprint == snap.fingerprint.overall
        assert pod.identity == POD
    finally:
        await second.close()


async def test_database_from_a_newer_collector_is_refused(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "s.db") as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    store = SqliteStore(tmp_path / "s.db")
    with pytest.raises(StoreError, match="newer than this collector"):
        await store.open()


async def test_missing_directory_is_a_store_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        await SqliteStore(tmp_path / "nope" / "s.db").open()


async def test_facts_keep_their_types_and_provenance_through_the_store(store: SqliteStore) -> None:
    facts = {
        "runtime.max_model_len": 8192,
        "runtime.gpu_memory_utilization": 0.9,
        "runtime.enforce_eager": True,
        "runtime.args.seed": "1",
        "model.config.rope_scaling": {"factor": 8.0, "type": "llama3"},
        "model.config.architectures": ["LlamaForCausalLM"],
        "runtime.quantization": None,
    }
    snap = make_snapshot(facts)
    await record(store, 2, snap)
    (row,) = await store.history(POD.key, 10)
    assert row.facts == facts
    assert [type(row.facts[k]) for k in facts] == [type(v) for v in facts.values()]
    assert row.fingerprint == snap.fingerprint
    assert row.provenance["runtime.enforce_eager"].method == "arg"
    assert row.sources["nvml"].message == "NVML: NVML Shared Library Not Found"


async def test_failed_write_rolls_back_everything_it_touched(store: SqliteStore) -> None:
    a = make_snapshot()
    await record(store, 2, a)
    before = await store.get_pod(POD.key)
    # Make the history insert fail half way through the transaction (after the pod upsert).
    with sqlite3.connect(store.path) as conn:
        conn.execute(
            "CREATE TRIGGER fail_insert BEFORE INSERT ON snapshots BEGIN SELECT RAISE(ABORT, 'boom'); END"
        )
    moved = PodIdentity("ml", "llm-0", "other-node", "x/y/z", "k8s", "other-agent", "9.9")
    with pytest.raises(StoreError, match="boom"):
        await record(store, 3, make_snapshot({**BASE_FACTS, "runtime.dtype": "float32"}), moved)
    after = await store.get_pod(POD.key)
    assert after == before
    assert len(await store.history(POD.key, 10)) == 1


async def test_heartbeat_outcomes(store: SqliteStore) -> None:
    snap = make_snapshot()
    assert await store.record_heartbeat(POD.key, 2, snap.fingerprint.overall, time.time()) == (
        HeartbeatResult.UNKNOWN_POD
    )
    await store.hello(POD, 1, time.time())
    assert await store.record_heartbeat(POD.key, 2, snap.fingerprint.overall, time.time()) == (
        HeartbeatResult.UNKNOWN_POD
    )
    await record(store, 3, snap)
    other = make_snapshot({**BASE_FACTS, "runtime.dtype": "int8"})
    assert await store.record_heartbeat(POD.key, 4, other.fingerprint.overall, time.time()) == (
        HeartbeatResult.FINGERPRINT_MISMATCH
    )
    assert await store.record_heartbeat(POD.key, 5, snap.fingerprint.overall, time.time()) == (
        HeartbeatResult.OK
    )
    pod = await store.get_pod(POD.key)
    assert pod is not None and pod.last_sequence == 5


async def test_returning_to_an_earlier_configuration_is_a_new_history_row(store: SqliteStore) -> None:
    a = make_snapshot()
    b = make_snapshot({**BASE_FACTS, "runtime.dtype": "float32"})
    results = [await record(store, seq, snap) for seq, snap in ((2, a), (3, b), (4, a), (5, a))]
    assert [r.new_row for r in results] == [True, True, True, False]
    assert [h.sequence for h in await store.history(POD.key, 10)] == [4, 3, 2]
    assert [h.sequence for h in await store.history(POD.key, 10, before_id=results[2].snapshot_id)] == [3, 2]


async def test_observation_history_drops_rows_past_the_retention_age(store: SqliteStore) -> None:
    now = time.time()
    for seq, received in ((2, now - 3 * 86_400), (3, now - 2 * 86_400), (4, now)):
        await store.record_observations(POD, seq, items={}, at=received, window_s=15.0, received_at=received)
    bounds = Retention(None, None, None, 1.0, None)
    assert (await store.prune(now, bounds)).observations == 2
    assert [h.sequence for h in await store.observation_history(POD.key, 10)] == [4]


async def test_concurrent_writers_and_readers_stay_consistent(store: SqliteStore) -> None:
    async def pod_writer(i: int) -> None:
        ident = PodIdentity("ml", f"llm-{i}")
        for seq in range(2, 7):
            await record(store, seq, make_snapshot({**BASE_FACTS, "runtime.max_num_seqs": seq}), ident)

    async def reader() -> None:
        for _ in range(20):
            for p in await store.list_pods():
                assert p.current is None or p.current.sequence >= 2

    await asyncio.gather(*(pod_writer(i) for i in range(8)), reader(), reader())
    pods = await store.list_pods()
    assert len(pods) == 8
    for p in pods:
        assert p.current is not None and p.current.facts["runtime.max_num_seqs"] == 6
        assert len(await store.history(p.key, 100)) == 5


async def test_closed_store_raises_store_error(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    await store.open()
    await store.close()
    await store.close()  # idempotent
    with pytest.raises(StoreError, match="not open"):
        await store.ping()


def test_store_url_parsing(tmp_path: Path) -> None:
    s = parse_store_url(f"sqlite:///{tmp_path}/x.db")
    assert isinstance(s, SqliteStore) and s.path == tmp_path / "x.db"
    rel = parse_store_url("sqlite:///./data/x.db")
    assert isinstance(rel, SqliteStore) and rel.path == Path("data/x.db")
    with pytest.raises(UnsupportedStoreError, match="not yet supported"):
        parse_store_url("postgresql://user@db/skewwatch")
    with pytest.raises(StoreError, match="in-memory"):
        parse_store_url("sqlite:///:memory:")
    with pytest.raises(StoreError, match="unsupported store URL"):
        parse_store_url("mysql://db")


def test_pod_key_renders_as_namespace_slash_pod() -> None:
    assert str(PodKey("ml", "llm-0")) == "ml/llm-0"
