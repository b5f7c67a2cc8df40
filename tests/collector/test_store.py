"""Both store backends on real databases (a SQLite file, a PostgreSQL server): one suite.

Every test of a ``store`` or ``store_url`` runs once per backend, each on a fresh database; the
few about what only one backend has (WAL, a missing directory, advisory-locked migrations,
passwords) name it.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest

from collector.domain.baseline import Baseline
from collector.domain.records import (
    EngineState,
    EngineStateIn,
    EventIn,
    HeartbeatIn,
    HeartbeatResult,
    HelloWrite,
    IntentRecord,
    ObservationsIn,
    Retention,
    SnapshotIn,
    SnapshotWrite,
)
from collector.errors import StoreError
from collector.store import parse_store_url
from collector.store.base import FullStore
from collector.store.postgresql import PostgresStore
from collector.store.schema import SCHEMA_VERSION
from collector.store.sql import Conn
from collector.store.sqlite import SqliteStore
from collector.store.url import PASSWORD_ENV, PASSWORD_FILE_ENV
from skewwatch.core.facts import Observation, Snapshot
from skewwatch.core.identity import PodIdentity, PodKey
from tests.support.collector import BASE_FACTS, make_snapshot
from tests.support.postgres import PASSWORD, PASSWORD_USER, PostgresServer

POD = PodIdentity("ml", "llm-0", "gpu-node-1", "ml/Deployment/llm", "env", "ml/llm-0", "0.1.0")
DAY = 86_400.0
NO_BOUNDS = Retention(None, None, None, None, None)


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[FullStore]:
    s = parse_store_url(store_url)
    await s.open()
    try:
        yield s
    finally:
        await s.close()


def raw(url: str, *statements: str) -> None:
    """Run statements on the store's database behind its back (what an operator or a fault does)."""
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url[len("sqlite:///") :]) as conn:
            for statement in statements:
                conn.execute(statement)
    else:
        with psycopg.connect(url, autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)


def fail_inserts(url: str, table: str, when: str = "") -> None:
    """Make every insert into ``table`` (where ``when`` holds) fail with 'boom'."""
    if url.startswith("sqlite:///"):
        condition = f" WHEN {when}" if when else ""
        raw(url, f"CREATE TRIGGER fail_{table} BEFORE INSERT ON {table}{condition}"
                 " BEGIN SELECT RAISE(ABORT, 'boom'); END")  # fmt: skip
    else:
        condition = f" WHEN ({when})" if when else ""
        raw(
            url,
            "CREATE OR REPLACE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql"
            " AS $$ BEGIN RAISE EXCEPTION 'boom'; END $$",
            f"CREATE TRIGGER fail_{table} BEFORE INSERT ON {table} FOR EACH ROW{condition}"
            " EXECUTE FUNCTION boom()",
        )


def fail_commits_after_event(url: str) -> None:
    """Make a transaction that inserts a pod event fail at COMMIT (a deferred foreign key)."""
    check = (
        "CREATE TABLE commit_check (namespace TEXT, pod TEXT, FOREIGN KEY (namespace, pod)"
        " REFERENCES pods (namespace, pod) DEFERRABLE INITIALLY DEFERRED)"
    )
    if url.startswith("sqlite:///"):
        raw(url, check, "CREATE TRIGGER at_commit AFTER INSERT ON pod_events"
                        " BEGIN INSERT INTO commit_check VALUES ('no', 'such-pod'); END")  # fmt: skip
    else:
        raw(
            url,
            check,
            "CREATE FUNCTION at_commit() RETURNS trigger LANGUAGE plpgsql"
            " AS $$ BEGIN INSERT INTO commit_check VALUES ('no', 'such-pod'); RETURN NEW; END $$",
            "CREATE TRIGGER at_commit AFTER INSERT ON pod_events FOR EACH ROW EXECUTE FUNCTION at_commit()",
        )


def snapshot_in(
    seq: int, snap: Snapshot, identity: PodIdentity = POD, received_at: float | None = None
) -> SnapshotIn:
    return SnapshotIn(
        identity,
        seq,
        facts={k: f.value for k, f in snap.facts.items()},
        provenance={k: f.provenance for k, f in snap.facts.items()},
        sources=snap.sources,
        fingerprint=snap.fingerprint,
        collected_at=snap.collected_at,
        received_at=time.time() if received_at is None else received_at,
    )


async def record(
    store: FullStore, seq: int, snap: Snapshot, identity: PodIdentity = POD, received_at: float | None = None
) -> SnapshotWrite:
    w = snapshot_in(seq, snap, identity, received_at)
    return await store.record_snapshot(
        w.identity,
        w.sequence,
        facts=w.facts,
        provenance=w.provenance,
        sources=w.sources,
        fingerprint=w.fingerprint,
        collected_at=w.collected_at,
        received_at=w.received_at,
    )


def numbered(seq: int) -> Snapshot:
    return make_snapshot({**BASE_FACTS, "runtime.max_num_seqs": seq})


async def observe(store: FullStore, seq: int, received_at: float, identity: PodIdentity = POD) -> None:
    await store.record_observations(
        identity,
        seq,
        items={"x": Observation("x", 1.0, "1")},
        at=received_at,
        window_s=15.0,
        received_at=received_at,
    )


# -- what only one backend has ----------------------------------------------------------------


async def test_new_sqlite_database_is_migrated_to_the_current_schema_in_wal_mode(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    await store.open()
    try:
        with sqlite3.connect(store.path) as conn:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store._wconn is not None
        # 2 = FULL: an acknowledged snapshot survives power loss, not only a process crash.
        assert store._wconn.execute("PRAGMA synchronous").fetchone()[0] == 2
    finally:
        await store.close()


async def test_missing_directory_is_a_store_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        await SqliteStore(tmp_path / "nope" / "s.db").open()


async def test_postgresql_migration_runs_once_when_collectors_start_together(
    postgres_server: PostgresServer,
) -> None:
    url = postgres_server.create_database("migrate_race")
    stores = [PostgresStore(url) for _ in range(4)]
    await asyncio.gather(*(s.open() for s in stores))  # the advisory lock serialises them
    for s in stores:
        await s.close()
    again = PostgresStore(url)
    await again.open()  # a migrated database: nothing to do
    try:
        await again.ping()
    finally:
        await again.close()
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT id, version FROM skewwatch_schema").fetchall() == [(1, SCHEMA_VERSION)]
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE tablename = 'snapshots'").fetchone()
        assert tables == (1,)


async def test_postgresql_compresses_stored_snapshots_with_lz4_where_the_server_has_it(
    postgres_server: PostgresServer,
) -> None:
    url = postgres_server.create_database("lz4")
    store = PostgresStore(url)
    await store.open()
    try:
        await store.hello(POD, 1, time.time())
        await record(store, 2, make_snapshot())
    finally:
        await store.close()
    with psycopg.connect(url) as conn:
        has_lz4 = conn.execute(
            "SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)"
        ).fetchone()
        (method,) = conn.execute("SELECT pg_column_compression(facts) FROM snapshots").fetchone() or (None,)
    assert has_lz4, "the test server is Debian's PostgreSQL, built with lz4"
    assert method == "lz4"


def test_password_is_masked_wherever_the_url_is_shown() -> None:
    s = parse_store_url(
        "postgresql://sw:hunter2@db:5432/skew?sslmode=verify-full&sslrootcert=/ca.pem", environ={}
    )
    assert isinstance(s, PostgresStore)
    assert s.url == "postgresql://sw:***@db:5432/skew?sslmode=verify-full&sslrootcert=/ca.pem"
    q = parse_store_url("postgres://sw@db/skew?password=hunter2&sslmode=require", environ={})
    assert q.url == "postgres://sw@db/skew?password=***&sslmode=require"
    with pytest.raises(StoreError) as e:
        parse_store_url("mysql://sw:hunter2@db/x")
    assert "hunter2" not in str(e.value) and "sw:***@db" in str(e.value)


async def test_password_comes_from_the_url_the_environment_or_a_file(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    postgres_server.create_database("passwords")
    bare = postgres_server.url("passwords", PASSWORD_USER)
    secret_file = tmp_path / "password"
    secret_file.write_text(PASSWORD + "\n")
    for url, environ in (
        (postgres_server.url("passwords", PASSWORD_USER, PASSWORD), {PASSWORD_ENV: "not-this-one"}),
        (bare, {PASSWORD_ENV: PASSWORD, PASSWORD_FILE_ENV: "/nonexistent"}),
        (bare, {PASSWORD_FILE_ENV: str(secret_file)}),
    ):
        store = parse_store_url(url, environ=environ)
        assert PASSWORD not in store.url
        await store.open()
        try:
            await store.ping()
        finally:
            await store.close()
    wrong = parse_store_url(bare, environ={PASSWORD_ENV: "wrong-password"})
    with pytest.raises(StoreError, match="password authentication failed") as refused:
        await wrong.open()
    assert "wrong-password" not in str(refused.value)
    with pytest.raises(StoreError, match="nonexistent"):
        parse_store_url(bare, environ={PASSWORD_FILE_ENV: str(tmp_path / "nonexistent")})


# -- both backends ----------------------------------------------------------------------------


async def test_new_database_is_migrated_to_the_current_schema(store: FullStore, store_url: str) -> None:
    if isinstance(store, SqliteStore):
        with sqlite3.connect(store.path) as conn:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    else:
        with psycopg.connect(store_url) as conn:
            assert conn.execute("SELECT version FROM skewwatch_schema").fetchone() == (SCHEMA_VERSION,)


async def test_data_survives_close_and_reopen(store_url: str) -> None:
    snap = make_snapshot()
    first = parse_store_url(store_url)
    await first.open()
    await record(first, 2, snap)
    await first.close()
    second = parse_store_url(store_url)
    await second.open()
    try:
        pod = await second.get_pod(POD.key)
        assert pod is not None and pod.fingerprint == snap.fingerprint.overall
        assert pod.identity == POD
    finally:
        await second.close()


async def test_database_from_a_newer_collector_is_refused(store_url: str) -> None:
    if store_url.startswith("sqlite:///"):
        raw(store_url, f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    else:
        first = parse_store_url(store_url)
        await first.open()
        await first.close()
        raw(store_url, f"UPDATE skewwatch_schema SET version = {SCHEMA_VERSION + 1}")
    store = parse_store_url(store_url)
    with pytest.raises(StoreError, match="newer than this collector"):
        await store.open()


async def test_facts_keep_their_types_and_provenance_through_the_store(store: FullStore) -> None:
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


async def test_a_baseline_keeps_its_performance_bounds_through_the_store(store: FullStore) -> None:
    base = Baseline(
        workload="ml/llm", recorded_at=1.0, origin="manual", fingerprint="f", facts={"runtime.dtype": "bf16"},
        provenance={}, sources={}, performance={"e2e_latency_seconds_p95": 0.285, "gpu_utilization_ratio": 1},
        load={"requests_per_s": 4.0}, pods=("a",), samples=20, bounds={"e2e_latency_seconds_p95": (0.0, 0.3)},
    )  # fmt: skip
    saved = await store.save_baseline(base)
    got = await store.latest_baseline("ml/llm")
    assert got is not None and got.id == saved.id
    assert got.bounds == {"e2e_latency_seconds_p95": (0.0, 0.3)}
    assert got.performance == base.performance


async def test_failed_write_rolls_back_everything_it_touched(store: FullStore, store_url: str) -> None:
    a = make_snapshot()
    await record(store, 2, a)
    before = await store.get_pod(POD.key)
    # Make the history insert fail half way through the transaction (after the pod upsert).
    fail_inserts(store_url, "snapshots")
    moved = PodIdentity("ml", "llm-0", "other-node", "x/y/z", "k8s", "other-agent", "9.9")
    with pytest.raises(StoreError, match="boom"):
        await record(store, 3, make_snapshot({**BASE_FACTS, "runtime.dtype": "float32"}), moved)
    after = await store.get_pod(POD.key)
    assert after == before
    assert len(await store.history(POD.key, 10)) == 1


async def test_heartbeat_outcomes(store: FullStore) -> None:
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


async def test_returning_to_an_earlier_configuration_is_a_new_history_row(store: FullStore) -> None:
    a = make_snapshot()
    b = make_snapshot({**BASE_FACTS, "runtime.dtype": "float32"})
    results = [await record(store, seq, snap) for seq, snap in ((2, a), (3, b), (4, a), (5, a))]
    assert [r.new_row for r in results] == [True, True, True, False]
    assert [h.sequence for h in await store.history(POD.key, 10)] == [4, 3, 2]
    assert [h.sequence for h in await store.history(POD.key, 10, before_id=results[2].snapshot_id)] == [3, 2]


async def test_concurrent_writers_and_readers_stay_consistent(store: FullStore) -> None:
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


async def test_closed_store_raises_store_error(store_url: str) -> None:
    store = parse_store_url(store_url)
    await store.open()
    await store.close()
    await store.close()  # idempotent
    with pytest.raises(StoreError, match="not open"):
        await store.ping()


async def test_a_replayed_agent_sequence_changes_nothing(store: FullStore) -> None:
    snap = make_snapshot()
    at = time.time()
    first = await record(store, 2, snap, received_at=at)
    again = await record(store, 2, snap, received_at=at)
    assert first.new_row and not again.new_row and again.snapshot_id == first.snapshot_id
    before = await store.get_pod(POD.key)
    assert await store.record_batch([HelloWrite(POD, 2, at), HelloWrite(POD, 2, at)]) == [None, None]
    assert await store.get_pod(POD.key) == before
    assert len(await store.history(POD.key, 10)) == 1


# -- record_batch -----------------------------------------------------------------------------


async def test_a_batch_applies_its_writes_in_order_and_answers_each(store: FullStore) -> None:
    snap = make_snapshot()
    at = time.time()
    results = await store.record_batch(
        [
            HelloWrite(POD, 1, at),
            snapshot_in(2, snap, received_at=at),
            HeartbeatIn(POD, 3, snap.fingerprint.overall, at + 1),
            HeartbeatIn(POD, 4, "other", at + 2),
            EngineStateIn(POD, 5, EngineState("running", at), at + 3),
            EventIn(POD, 6, at + 4, "restart", {"exit_code": 1}),
            ObservationsIn(POD, 7, {"x": Observation("x", 2.0, "1")}, at + 5, 15.0, at + 5),
        ]
    )
    written = results[1]
    assert isinstance(written, SnapshotWrite) and written.new_row
    assert results == [
        None, written, HeartbeatResult.OK, HeartbeatResult.FINGERPRINT_MISMATCH, None, None, None,
    ]  # fmt: skip
    pod = await store.get_pod(POD.key)
    assert pod is not None and pod.last_sequence == 7 and pod.current_snapshot_id == written.snapshot_id
    assert pod.engine is not None and pod.engine.state == "running"
    assert [e.kind for e in await store.pod_events(POD.key, 10)] == ["restart"]
    latest = await store.latest_observations(POD.key)
    assert latest is not None and latest.sequence == 7
    assert await store.record_batch([]) == []


async def test_a_failing_write_in_a_batch_is_rolled_back_alone(store: FullStore, store_url: str) -> None:
    fail_inserts(store_url, "pod_events", "NEW.kind = 'boom'")
    other = PodIdentity("ml", "llm-1")
    third = PodIdentity("ml", "llm-2")
    at = time.time()
    results = await store.record_batch(
        [
            snapshot_in(2, make_snapshot(), received_at=at),
            EventIn(other, 2, at, "boom", {}),  # its pod upsert ran before the failing insert
            HelloWrite(third, 1, at),
            EventIn(POD, 3, at, "restart", {}),
        ]
    )
    assert isinstance(results[0], SnapshotWrite)
    assert isinstance(results[1], StoreError) and "boom" in str(results[1])
    assert results[2:] == [None, None]
    assert [p.key for p in await store.list_pods()] == [POD.key, third.key]
    assert [e.kind for e in await store.pod_events(POD.key, 10)] == ["restart"]


async def test_a_write_json_cannot_hold_fails_alone_in_a_batch(store: FullStore) -> None:
    at = time.time()
    nan = ObservationsIn(POD, 2, {"x": Observation("x", float("nan"), "1")}, at, 15.0, at)
    results = await store.record_batch([nan, HelloWrite(POD, 3, at)])
    assert isinstance(results[0], StoreError) and "ObservationsIn" in str(results[0])
    assert results[1] is None
    assert await store.latest_observations(POD.key) is None
    pod = await store.get_pod(POD.key)
    assert pod is not None and pod.last_sequence == 3


async def test_a_batch_whose_commit_fails_stores_nothing(store: FullStore, store_url: str) -> None:
    fail_commits_after_event(store_url)
    at = time.time()
    with pytest.raises(StoreError, match=r"(?i)foreign key"):
        await store.record_batch(
            [snapshot_in(2, make_snapshot(), received_at=at), EventIn(POD, 3, at, "x", {})]
        )
    assert await store.list_pods() == []
    assert await store.history(POD.key, 10) == []
    await store.record_batch([HelloWrite(POD, 4, at)])  # the store still works
    assert [p.key for p in await store.list_pods()] == [POD.key]


# -- prune ------------------------------------------------------------------------------------


async def test_prune_keeps_at_most_snapshot_rows_per_pod(store: FullStore) -> None:
    other = PodIdentity("ml", "llm-1")
    for seq in range(2, 7):
        await record(store, seq, numbered(seq))
    await record(store, 2, numbered(2), other)
    result = await store.prune(time.time(), Retention(2, None, None, None, None))
    assert (result.snapshots, result.observations, result.pods, result.done) == (3, 0, 0, True)
    assert [h.sequence for h in await store.history(POD.key, 10)] == [6, 5]
    assert [h.sequence for h in await store.history(other.key, 10)] == [2]


async def test_prune_drops_old_snapshots_but_never_the_current_one(store: FullStore) -> None:
    now = time.time()
    await record(store, 2, numbered(2), received_at=now - 10 * DAY)
    current = await record(store, 3, numbered(3), received_at=now - 9 * DAY)
    result = await store.prune(now, Retention(None, 1.0, None, None, None))
    assert result.snapshots == 1
    assert [h.sequence for h in await store.history(POD.key, 10)] == [3]
    pod = await store.get_pod(POD.key)
    assert pod is not None and pod.current_snapshot_id == current.snapshot_id
    assert await store.get_snapshot(current.snapshot_id) is not None
    assert (await store.prune(now, Retention(0, 1.0, None, None, None))).snapshots == 0


async def test_prune_keeps_at_most_observation_rows_per_pod(store: FullStore) -> None:
    now = time.time()
    for seq in range(2, 7):
        await observe(store, seq, now)
    result = await store.prune(now, Retention(None, None, 2, None, None))
    assert (result.observations, result.done) == (3, True)
    assert [h.sequence for h in await store.observation_history(POD.key, 10)] == [6, 5]
    latest = await store.latest_observations(POD.key)
    assert latest is not None and latest.sequence == 6


async def test_observation_history_drops_rows_past_the_retention_age(store: FullStore) -> None:
    now = time.time()
    for seq, received in ((2, now - 3 * DAY), (3, now - 2 * DAY), (4, now)):
        await store.record_observations(POD, seq, items={}, at=received, window_s=15.0, received_at=received)
    assert (await store.prune(now, Retention(None, None, None, 1.0, None))).observations == 2
    assert [h.sequence for h in await store.observation_history(POD.key, 10)] == [4]


async def test_prune_deletes_pods_not_seen_for_pod_days_with_everything(store: FullStore) -> None:
    now = time.time()
    gone = PodIdentity("ml", "llm-gone")
    await record(store, 2, make_snapshot(), gone, received_at=now - 5 * DAY)
    await observe(store, 3, now - 4 * DAY, gone)
    await record(store, 2, make_snapshot(), received_at=now)
    result = await store.prune(now, Retention(None, None, None, None, 3.0))
    assert (result.pods, result.done) == (1, True)
    assert [p.key for p in await store.list_pods()] == [POD.key]
    assert await store.history(gone.key, 10) == []
    assert await store.observation_history(gone.key, 10) == []
    assert await store.latest_observations(gone.key) is None


async def test_prune_stops_at_max_rows_and_says_it_is_not_done(store: FullStore) -> None:
    now = time.time()
    for seq in range(2, 9):
        await observe(store, seq, now - 2 * DAY)
    bounds = Retention(None, None, None, 1.0, None)
    passes = [await store.prune(now, bounds, max_rows=3) for _ in range(3)]
    assert [(p.observations, p.done) for p in passes] == [(3, False), (3, False), (1, True)]
    assert await store.observation_history(POD.key, 10) == []
    assert await store.prune(now, NO_BOUNDS) == (await store.prune(now, NO_BOUNDS))


async def test_put_intent_creates_then_replaces(store: FullStore) -> None:
    assert await store.put_intent(IntentRecord("Intent", "llm", "v: 1", 1.0)) is True
    assert await store.put_intent(IntentRecord("Intent", "llm", "v: 2", 2.0)) is False
    assert await store.list_intents() == [IntentRecord("Intent", "llm", "v: 2", 2.0)]
    assert await store.delete_intent("Intent", "llm") is True
    assert await store.delete_intent("Intent", "llm") is False


def test_store_url_parsing(tmp_path: Path) -> None:
    s = parse_store_url(f"sqlite:///{tmp_path}/x.db")
    assert isinstance(s, SqliteStore) and s.path == tmp_path / "x.db"
    rel = parse_store_url("sqlite:///./data/x.db")
    assert isinstance(rel, SqliteStore) and rel.path == Path("data/x.db")
    pg = parse_store_url("postgresql://user@db/skewwatch", pool_max=3, environ={})
    assert isinstance(pg, PostgresStore) and pg.pool_max == 3 and pg.url == "postgresql://user@db/skewwatch"
    with pytest.raises(StoreError, match="in-memory"):
        parse_store_url("sqlite:///:memory:")
    with pytest.raises(StoreError, match="unsupported store URL"):
        parse_store_url("mysql://db")


def test_pod_key_renders_as_namespace_slash_pod() -> None:
    assert str(PodKey("ml", "llm-0")) == "ml/llm-0"


async def test_postgresql_runs_a_deadlocked_transaction_again(postgres_server: PostgresServer) -> None:
    store = PostgresStore(postgres_server.create_database("retries"))
    await store.open()
    try:
        attempts: list[int] = []

        def deadlocks_twice(conn: Conn) -> int:
            attempts.append(len(attempts) + 1)
            conn.execute("SELECT 1")
            if len(attempts) <= 2:
                raise psycopg.errors.DeadlockDetected("deadlock detected")
            return len(attempts)

        assert await store._write(deadlocks_twice) == 3

        def always(conn: Conn) -> None:
            raise psycopg.errors.SerializationFailure("could not serialize access")

        with pytest.raises(StoreError, match="SerializationFailure"):
            await store._write(always)
    finally:
        await store.close()


async def test_two_postgresql_stores_writing_one_pod_keep_one_history_row_per_change(
    postgres_server: PostgresServer,
) -> None:
    # Two collectors on one database, a pod's messages reaching both: the pod row lock makes
    # "insert a history row unless the fingerprint is current" atomic across them.
    url = postgres_server.create_database("two_collectors")
    stores = [PostgresStore(url), PostgresStore(url)]
    for s in stores:
        await s.open()
    try:
        a, b = make_snapshot(), make_snapshot({**BASE_FACTS, "runtime.dtype": "float32"})
        for seq, snap in ((2, a), (3, b)):
            writes = await asyncio.gather(*(record(stores[i % 2], seq, snap) for i in range(10)))
            assert sum(w.new_row for w in writes) == 1
        assert [h.sequence for h in await stores[0].history(POD.key, 10)] == [3, 2]
    finally:
        for s in stores:
            await s.close()
