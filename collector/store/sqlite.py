"""The SQLite store: one file, WAL mode, one writer thread, a small pool of reader threads.

Durability: ``synchronous=FULL``. In WAL mode NORMAL survives a process crash but may lose the
last commits on power loss or a kernel crash; the collector acknowledges a snapshot only after
its commit and the agent then drops its copy, so an acknowledged snapshot must survive both.
FULL costs one WAL fsync per commit, which ingest affords (snapshots are sent only on change,
heartbeats once per interval per pod).

Concurrency: sqlite3 calls block, so none run on the event loop. All writes go through one
dedicated thread owning the only write connection, which serialises transactions (SQLite has a
single writer anyway) and makes read-check-write sequences such as "heartbeat matches the
current fingerprint" atomic. Reads run on a separate small thread pool, each thread with its own
``query_only`` connection; WAL lets them proceed while a write is in progress.

Every write is one ``BEGIN IMMEDIATE`` … ``COMMIT``; any error rolls it back, so a failed write
never leaves partial state behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from collector.domain.baseline import Baseline
from collector.domain.identity import split_workload
from collector.domain.model import ChangeKind, FindingChange, FindingRecord, Status
from collector.domain.records import (
    CurrentState,
    EngineState,
    FindingEvent,
    FindingQuery,
    HeartbeatResult,
    IntentRecord,
    ObservationsRecord,
    PodBrief,
    PodEvent,
    PodRecord,
    ReplicaRecord,
    SnapshotRecord,
    SnapshotWrite,
)
from collector.errors import StoreError
from collector.store import codec
from collector.store.schema import MIGRATIONS, SCHEMA_VERSION
from skewwatch.core.facts import FactValue, Fingerprint, Observation, Provenance, SourceStatus
from skewwatch.core.identity import PodIdentity, PodKey

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_EVENTS_PER_POD = 1000

_POD_COLUMNS = (
    "namespace, pod, node, workload, workload_source, agent_id, agent_version, first_seen, last_seen, "
    "last_sequence, current_snapshot_id, current_fingerprint, current_sequence, current_collected_at, "
    "current_received_at, current_facts, current_provenance, current_sources, current_fingerprints, "
    "engine_state, engine_state_since, engine_state_message"
)
_SNAPSHOT_COLUMNS = (
    "id, namespace, pod, sequence, agent_id, collected_at, received_at, fingerprints, facts, "
    "provenance, sources"
)
_OBS_COLUMNS = "namespace, pod, sequence, at, window_seconds, received_at, items"

# Queries are built once from the constant column lists above; every value is a bound parameter.
_SELECT_PODS = f"SELECT {_POD_COLUMNS} FROM pods"  # noqa: S608
_SELECT_SNAPSHOTS = f"SELECT {_SNAPSHOT_COLUMNS} FROM snapshots"  # noqa: S608
_SELECT_OBS_LATEST = f"SELECT {_OBS_COLUMNS} FROM observations_latest"  # noqa: S608
_SELECT_OBS_HISTORY = f"SELECT {_OBS_COLUMNS} FROM observations_history"  # noqa: S608
_INSERT_OBS_LATEST = (
    f"INSERT INTO observations_latest ({_OBS_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"  # noqa: S608
    " ON CONFLICT (namespace, pod) DO UPDATE SET sequence = excluded.sequence,"
    " at = excluded.at, window_seconds = excluded.window_seconds,"
    " received_at = excluded.received_at, items = excluded.items"
)
_INSERT_OBS_HISTORY = f"INSERT INTO observations_history ({_OBS_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"  # noqa: S608

_FINDING_COLUMNS = (
    "workload, reference, key, category, severity, status, expected, actual, pods, message, source, hint,"
    " symptom, evidence, first_seen, last_seen, opened_at, resolved_at, hits, refs, resolution, ack, silence"
)
_SELECT_FINDINGS = f"SELECT id, {_FINDING_COLUMNS} FROM findings"  # noqa: S608
_SELECT_BASELINES = "SELECT id, workload, recorded_at, origin, body FROM baselines"
# A workload id in a namespace: NAMESPACE/KIND/NAME, bound by _namespace_bounds.
_IN_NAMESPACE = "workload >= ? AND workload < ?"
_INSERT_FINDING = f"INSERT INTO findings ({_FINDING_COLUMNS}) VALUES ({', '.join('?' * 23)})"  # noqa: S608
# ack and silence are an admin's, set only by set_finding_note: an evaluation never overwrites them.
# They are the last columns, so an update is the insert's values without its tail.
_ADMIN_COLUMNS = ("ack", "silence")
_COLUMNS = [c.strip() for c in _FINDING_COLUMNS.split(",")]
assert tuple(_COLUMNS[-len(_ADMIN_COLUMNS) :]) == _ADMIN_COLUMNS
_UPDATE_FINDING = (
    "UPDATE findings SET "  # noqa: S608
    + ", ".join(f"{c} = ?" for c in _COLUMNS[: -len(_ADMIN_COLUMNS)])
    + " WHERE id = ?"
)

_UPSERT_POD = """
INSERT INTO pods (namespace, pod, node, workload, workload_source, agent_id, agent_version,
                  first_seen, last_seen, last_sequence)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (namespace, pod) DO UPDATE SET
    node = excluded.node, workload = excluded.workload, workload_source = excluded.workload_source,
    agent_id = excluded.agent_id, agent_version = excluded.agent_version,
    last_seen = excluded.last_seen, last_sequence = excluded.last_sequence
"""


class SqliteStore:
    """A ``Store`` in one SQLite file."""

    def __init__(
        self,
        path: Path,
        *,
        timeout_s: float = 10.0,
        observation_history_rows: int = 2000,
        observation_history_days: float = 7.0,
        read_threads: int = 4,
    ) -> None:
        self.path = path
        self.url = f"sqlite:///{path}"
        self.timeout_s = timeout_s
        self.observation_history_rows = observation_history_rows
        self.observation_history_days = observation_history_days
        self._writer: ThreadPoolExecutor | None = None
        self._readers: ThreadPoolExecutor | None = None
        self._read_threads = read_threads
        self._wconn: sqlite3.Connection | None = None
        self._local = threading.local()
        self._rconns: list[sqlite3.Connection] = []
        self._rconns_lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        if self._writer is not None:
            return
        if not self.path.parent.is_dir():
            raise StoreError(f"store {self.url}: directory {str(self.path.parent)!r} does not exist")
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="skewwatch-store-writer")
        self._readers = ThreadPoolExecutor(
            max_workers=self._read_threads, thread_name_prefix="skewwatch-store-reader"
        )
        try:
            await self._run(self._writer, self._open_writer)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        writer, readers = self._writer, self._readers
        self._writer = self._readers = None
        if writer is not None:
            with contextlib.suppress(StoreError):
                await self._run(writer, self._close_writer)
            await asyncio.to_thread(writer.shutdown, True)
        if readers is not None:
            await asyncio.to_thread(readers.shutdown, True)
        with self._rconns_lock:
            conns, self._rconns = self._rconns, []
        for conn in conns:
            conn.close()

    async def ping(self) -> None:
        await self._read(lambda c: c.execute("SELECT 1").fetchone())

    # -- plumbing ----------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a transaction is exactly one
        # store method; check_same_thread=False only so close() can run on another thread.
        conn = sqlite3.connect(
            self.path, timeout=self.timeout_s, isolation_level=None, check_same_thread=False
        )
        conn.execute(f"PRAGMA busy_timeout = {int(self.timeout_s * 1000)}")
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    def _open_writer(self) -> None:
        conn = self._connect()
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"store {self.url}: cannot enable WAL journal mode (got {mode!r})")
            conn.execute("PRAGMA synchronous = FULL")
            self._migrate(conn)
        except BaseException:
            conn.close()
            raise
        self._wconn = conn

    def _close_writer(self) -> None:
        if self._wconn is not None:
            self._wconn.close()
            self._wconn = None

    def _migrate(self, conn: sqlite3.Connection) -> None:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"store {self.url}: schema version {version} is newer than this collector's "
                f"({SCHEMA_VERSION}); upgrade the collector"
            )
        for number in range(version + 1, SCHEMA_VERSION + 1):
            migration = MIGRATIONS[number - 1]
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in migration.statements:
                    conn.execute(statement)
                # user_version is transactional: it moves only if every statement above applied.
                conn.execute(f"PRAGMA user_version = {number}")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            log.info("store %s: migrated schema to version %d (%s)", self.url, number, migration.description)

    def _reader_conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            conn.execute("PRAGMA query_only = ON")
            self._local.conn = conn
            with self._rconns_lock:
                self._rconns.append(conn)
        return conn

    async def _run(self, executor: ThreadPoolExecutor | None, fn: Callable[[], T]) -> T:
        if executor is None:
            raise StoreError(f"store {self.url} is not open")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(executor, fn)
        except sqlite3.Error as e:
            raise StoreError(f"store {self.url}: {type(e).__name__}: {e}") from e
        except RuntimeError as e:  # executor shut down under us
            raise StoreError(f"store {self.url}: {e}") from e

    def _transaction(self, body: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._wconn
        if conn is None:
            raise StoreError(f"store {self.url} is not open")
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = body(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return result

    async def _write(self, body: Callable[[sqlite3.Connection], T]) -> T:
        return await self._run(self._writer, functools.partial(self._transaction, body))

    def _read_transaction(self, body: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._reader_conn()
        # One read transaction so multi-statement reads see one consistent state.
        conn.execute("BEGIN")
        try:
            return body(conn)
        finally:
            conn.execute("COMMIT")

    async def _read(self, body: Callable[[sqlite3.Connection], T]) -> T:
        return await self._run(self._readers, functools.partial(self._read_transaction, body))

    # -- writes ------------------------------------------------------------------------------

    @staticmethod
    def _upsert_pod(conn: sqlite3.Connection, identity: PodIdentity, sequence: int, at: float) -> None:
        i = identity
        conn.execute(
            _UPSERT_POD,
            (
                i.namespace,
                i.pod,
                i.node,
                i.workload,
                i.workload_source,
                i.agent_id,
                i.agent_version,
                at,
                at,
                sequence,
            ),
        )

    async def hello(self, identity: PodIdentity, sequence: int, received_at: float) -> None:
        await self._write(lambda c: self._upsert_pod(c, identity, sequence, received_at))

    async def record_snapshot(
        self,
        identity: PodIdentity,
        sequence: int,
        *,
        facts: Mapping[str, FactValue],
        provenance: Mapping[str, Provenance],
        sources: Mapping[str, SourceStatus],
        fingerprint: Fingerprint,
        collected_at: float,
        received_at: float,
    ) -> SnapshotWrite:
        # Encode before entering the writer thread: it is CPU work that need not hold the lock.
        facts_json = codec.encode_facts(facts)
        prov_json = codec.encode_provenance(provenance)
        sources_json = codec.encode_sources(sources)
        fps_json = codec.encode_fingerprint(fingerprint)
        key = identity.key

        def body(conn: sqlite3.Connection) -> SnapshotWrite:
            self._upsert_pod(conn, identity, sequence, received_at)
            current_fp, current_id = conn.execute(
                "SELECT current_fingerprint, current_snapshot_id FROM pods WHERE namespace = ? AND pod = ?",
                (key.namespace, key.pod),
            ).fetchone()
            new_row = current_id is None or current_fp != fingerprint.overall
            if new_row:
                cur = conn.execute(
                    "INSERT INTO snapshots (namespace, pod, sequence, agent_id, collected_at, received_at,"
                    " fingerprint, fingerprints, facts, provenance, sources)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        key.namespace,
                        key.pod,
                        sequence,
                        identity.agent_id,
                        collected_at,
                        received_at,
                        fingerprint.overall,
                        fps_json,
                        facts_json,
                        prov_json,
                        sources_json,
                    ),
                )
                snapshot_id = cur.lastrowid
                assert snapshot_id is not None
            else:
                snapshot_id = int(current_id)
            conn.execute(
                "UPDATE pods SET current_snapshot_id = ?, current_fingerprint = ?, current_sequence = ?,"
                " current_collected_at = ?, current_received_at = ?, current_facts = ?,"
                " current_provenance = ?, current_sources = ?, current_fingerprints = ?"
                " WHERE namespace = ? AND pod = ?",
                (
                    snapshot_id,
                    fingerprint.overall,
                    sequence,
                    collected_at,
                    received_at,
                    facts_json,
                    prov_json,
                    sources_json,
                    fps_json,
                    key.namespace,
                    key.pod,
                ),
            )
            return SnapshotWrite(snapshot_id=snapshot_id, new_row=new_row)

        return await self._write(body)

    async def record_heartbeat(
        self, key: PodKey, sequence: int, overall_fingerprint: str, received_at: float
    ) -> HeartbeatResult:
        def body(conn: sqlite3.Connection) -> HeartbeatResult:
            row = conn.execute(
                "SELECT current_fingerprint FROM pods WHERE namespace = ? AND pod = ?",
                (key.namespace, key.pod),
            ).fetchone()
            if row is None or row[0] is None:
                return HeartbeatResult.UNKNOWN_POD
            if row[0] != overall_fingerprint:
                return HeartbeatResult.FINGERPRINT_MISMATCH
            conn.execute(
                "UPDATE pods SET last_seen = ?, last_sequence = ? WHERE namespace = ? AND pod = ?",
                (received_at, sequence, key.namespace, key.pod),
            )
            return HeartbeatResult.OK

        return await self._write(body)

    async def record_engine_state(
        self, identity: PodIdentity, sequence: int, engine: EngineState, received_at: float
    ) -> None:
        key = identity.key

        def body(conn: sqlite3.Connection) -> None:
            self._upsert_pod(conn, identity, sequence, received_at)
            conn.execute(
                "UPDATE pods SET engine_state = ?, engine_state_since = ?, engine_state_message = ?"
                " WHERE namespace = ? AND pod = ?",
                (engine.state, engine.since, engine.message, key.namespace, key.pod),
            )

        await self._write(body)

    async def record_event(
        self, identity: PodIdentity, sequence: int, at: float, kind: str, detail: Mapping[str, Any]
    ) -> None:
        key = identity.key
        text = codec.dumps(dict(detail))

        def body(conn: sqlite3.Connection) -> None:
            self._upsert_pod(conn, identity, sequence, at)
            conn.execute(
                "INSERT INTO pod_events (namespace, pod, at, kind, sequence, detail)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (key.namespace, key.pod, at, kind, sequence, text),
            )
            # Bounded: a crash-looping engine must not grow the store without end.
            conn.execute(
                "DELETE FROM pod_events WHERE namespace = ? AND pod = ? AND id <= (SELECT id FROM pod_events"
                " WHERE namespace = ? AND pod = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
                (key.namespace, key.pod, key.namespace, key.pod, MAX_EVENTS_PER_POD),
            )

        await self._write(body)

    async def pod_events(self, key: PodKey, limit: int) -> list[PodEvent]:
        rows = await self._read(
            lambda c: c.execute(
                "SELECT id, at, kind, detail FROM pod_events WHERE namespace = ? AND pod = ?"
                " ORDER BY id DESC LIMIT ?",
                (key.namespace, key.pod, limit),
            ).fetchall()
        )
        return [
            PodEvent(int(i), key, float(at), kind, codec.loads_value(detail, "pod_events.detail"))
            for i, at, kind, detail in rows
        ]

    async def record_observations(
        self,
        identity: PodIdentity,
        sequence: int,
        *,
        items: Mapping[str, Observation],
        at: float,
        window_s: float,
        received_at: float,
    ) -> None:
        items_json = codec.encode_observations(items)
        key = identity.key
        cutoff = received_at - self.observation_history_days * 86_400
        keep = self.observation_history_rows

        def body(conn: sqlite3.Connection) -> None:
            self._upsert_pod(conn, identity, sequence, received_at)
            values = (key.namespace, key.pod, sequence, at, window_s, received_at, items_json)
            conn.execute(_INSERT_OBS_LATEST, values)
            conn.execute(_INSERT_OBS_HISTORY, values)
            # Bounded history: keep at most `keep` rows per pod, none older than the retention.
            conn.execute(
                "DELETE FROM observations_history WHERE namespace = ? AND pod = ? AND id <= ("
                " SELECT id FROM observations_history WHERE namespace = ? AND pod = ?"
                " ORDER BY id DESC LIMIT 1 OFFSET ?)",
                (key.namespace, key.pod, key.namespace, key.pod, keep),
            )
            conn.execute("DELETE FROM observations_history WHERE received_at < ?", (cutoff,))

        await self._write(body)

    # -- reads -------------------------------------------------------------------------------

    @staticmethod
    def _pod(row: tuple[Any, ...]) -> PodRecord:
        (
            ns,
            pod,
            node,
            workload,
            wsource,
            agent_id,
            agent_version,
            first_seen,
            last_seen,
            last_seq,
            cur_id,
            cur_fp,
            cur_seq,
            cur_collected,
            cur_received,
            cur_facts,
            cur_prov,
            cur_sources,
            cur_fps,
            engine_state,
            engine_since,
            engine_message,
        ) = row
        current = None
        if cur_fp is not None:
            current = CurrentState(
                sequence=int(cur_seq),
                collected_at=float(cur_collected),
                received_at=float(cur_received),
                facts=codec.decode_facts(cur_facts),
                provenance=codec.decode_provenance(cur_prov),
                sources=codec.decode_sources(cur_sources),
                fingerprint=codec.decode_fingerprint(cur_fps),
            )
        return PodRecord(
            identity=PodIdentity(ns, pod, node, workload, wsource, agent_id, agent_version),
            first_seen=float(first_seen),
            last_seen=float(last_seen),
            last_sequence=int(last_seq),
            current_snapshot_id=None if cur_id is None else int(cur_id),
            current=current,
            engine=EngineState(
                engine_state, None if engine_since is None else float(engine_since), engine_message
            )
            if engine_state
            else None,
        )

    async def list_pods(self) -> list[PodRecord]:
        rows = await self._read(lambda c: c.execute(_SELECT_PODS + " ORDER BY namespace, pod").fetchall())
        return [self._pod(r) for r in rows]

    async def get_pod(self, key: PodKey) -> PodRecord | None:
        row = await self._read(
            lambda c: c.execute(
                _SELECT_PODS + " WHERE namespace = ? AND pod = ?", (key.namespace, key.pod)
            ).fetchone()
        )
        return None if row is None else self._pod(row)

    @staticmethod
    def _obs(row: tuple[Any, ...]) -> ObservationsRecord:
        ns, pod, seq, at, window, received, items = row
        return ObservationsRecord(
            PodKey(ns, pod),
            int(seq),
            float(at),
            float(window),
            float(received),
            codec.decode_observations(items),
        )

    async def latest_observations(self, key: PodKey) -> ObservationsRecord | None:
        row = await self._read(
            lambda c: c.execute(
                _SELECT_OBS_LATEST + " WHERE namespace = ? AND pod = ?",
                (key.namespace, key.pod),
            ).fetchone()
        )
        return None if row is None else self._obs(row)

    async def observation_history(self, key: PodKey, limit: int) -> list[ObservationsRecord]:
        rows = await self._read(
            lambda c: c.execute(
                _SELECT_OBS_HISTORY + " WHERE namespace = ? AND pod = ? ORDER BY id DESC LIMIT ?",
                (key.namespace, key.pod, limit),
            ).fetchall()
        )
        return [self._obs(r) for r in rows]

    async def get_snapshot(self, snapshot_id: int) -> SnapshotRecord | None:
        row = await self._read(
            lambda c: c.execute(_SELECT_SNAPSHOTS + " WHERE id = ?", (snapshot_id,)).fetchone()
        )
        return None if row is None else self._snapshot(row)

    @staticmethod
    def _snapshot(row: tuple[Any, ...]) -> SnapshotRecord:
        sid, ns, pod, seq, agent_id, collected, received, fps, facts, prov, sources = row
        return SnapshotRecord(
            id=int(sid),
            key=PodKey(ns, pod),
            sequence=int(seq),
            agent_id=agent_id,
            collected_at=float(collected),
            received_at=float(received),
            facts=codec.decode_facts(facts),
            provenance=codec.decode_provenance(prov),
            sources=codec.decode_sources(sources),
            fingerprint=codec.decode_fingerprint(fps),
        )

    async def history(self, key: PodKey, limit: int, before_id: int | None = None) -> list[SnapshotRecord]:
        bound = before_id if before_id is not None else 2**62

        def body(conn: sqlite3.Connection) -> list[Any]:
            return conn.execute(
                _SELECT_SNAPSHOTS + " WHERE namespace = ? AND pod = ? AND id < ? ORDER BY id DESC LIMIT ?",
                (key.namespace, key.pod, bound, limit),
            ).fetchall()

        return [self._snapshot(row) for row in await self._read(body)]

    async def delete_pod(self, key: PodKey) -> bool:
        def body(conn: sqlite3.Connection) -> bool:
            # snapshots, observations_latest and observations_history go with the pod row
            # (ON DELETE CASCADE; every connection runs with foreign_keys on).
            cur = conn.execute("DELETE FROM pods WHERE namespace = ? AND pod = ?", (key.namespace, key.pod))
            return cur.rowcount > 0

        return await self._write(body)

    # -- drift engine: replicas, findings, baselines, intents -----------------------------------

    async def workload_replicas(self, workload: str, since: float, windows: int) -> list[ReplicaRecord]:
        namespace, _, pod_name = split_workload(workload)

        def body(conn: sqlite3.Connection) -> list[tuple[tuple[Any, ...], list[tuple[Any, ...]]]]:
            # Pods that reported no workload stand alone as namespace/Pod/name.
            rows = conn.execute(
                _SELECT_PODS + " WHERE (workload = ? OR (workload = '' AND namespace = ? AND pod = ?))"
                " AND last_seen >= ? ORDER BY namespace, pod",
                (workload, namespace, pod_name, since),
            ).fetchall()
            out = []
            for row in rows:
                obs = conn.execute(
                    _SELECT_OBS_HISTORY + " WHERE namespace = ? AND pod = ? ORDER BY id DESC LIMIT ?",
                    (row[0], row[1], windows),
                ).fetchall()
                out.append((row, obs))
            return out

        rows = await self._read(body)
        return [ReplicaRecord(self._pod(r), [self._obs(o) for o in obs]) for r, obs in rows]

    async def pod_briefs(self) -> list[PodBrief]:
        rows = await self._read(
            lambda c: c.execute(
                "SELECT namespace, pod, workload, last_seen, current_fingerprint FROM pods"
                " ORDER BY namespace, pod"
            ).fetchall()
        )
        return [PodBrief(PodKey(ns, pod), wl, float(seen), fp) for ns, pod, wl, seen, fp in rows]

    @staticmethod
    def _finding(row: tuple[Any, ...]) -> FindingRecord:
        (fid, workload, reference, key, category, severity, status, expected, actual, pods, message, source,
         hint, symptom, evidence, first_seen, last_seen, opened_at, resolved_at, hits, refs, resolution, ack,
         silence) = row  # fmt: skip
        return FindingRecord(
            id=int(fid),
            workload=workload,
            reference=reference,
            key=key,
            category=category,
            severity=severity,
            status=Status(status),
            expected=codec.loads_value(expected, "findings.expected"),
            actual=codec.loads_value(actual, "findings.actual"),
            pods=codec.loads_value(pods, "findings.pods"),
            message=message,
            source=source,
            hint=hint,
            symptom=symptom,
            evidence=codec.loads_value(evidence, "findings.evidence"),
            first_seen=float(first_seen),
            last_seen=float(last_seen),
            opened_at=None if opened_at is None else float(opened_at),
            resolved_at=None if resolved_at is None else float(resolved_at),
            hits=int(hits),
            references=tuple(codec.loads_value(refs, "findings.refs") or ()),
            resolution=resolution,
            ack=None if ack is None else codec.loads_value(ack, "findings.ack"),
            silence=None if silence is None else codec.loads_value(silence, "findings.silence"),
        )

    async def active_findings(self, workload: str) -> list[FindingRecord]:
        rows = await self._read(
            lambda c: c.execute(
                _SELECT_FINDINGS + " WHERE workload = ? AND status IN ('pending', 'open') ORDER BY id",
                (workload,),
            ).fetchall()
        )
        return [self._finding(r) for r in rows]

    async def apply_findings(self, changes: Sequence[FindingChange]) -> list[FindingRecord]:
        encoded = [
            (
                ch,
                codec.dumps(ch.finding.expected),
                codec.dumps(ch.finding.actual),
                codec.dumps(dict(ch.finding.pods)),
                codec.dumps(dict(ch.finding.evidence)),
            )
            for ch in changes
        ]

        def body(conn: sqlite3.Connection) -> list[FindingRecord]:
            written = []
            for ch, expected, actual, pods, evidence in encoded:
                f = ch.finding
                if ch.kind is ChangeKind.DROPPED:
                    conn.execute("DELETE FROM findings WHERE id = ? AND status = 'pending'", (f.id,))
                    continue
                values = (
                    f.workload, f.reference, f.key, f.category, f.severity, f.status.value, expected, actual,
                    pods, f.message, f.source, f.hint, f.symptom, evidence, f.first_seen, f.last_seen,
                    f.opened_at, f.resolved_at, f.hits, codec.dumps(list(f.references)), f.resolution,
                    None if f.ack is None else codec.dumps(dict(f.ack)),
                    None if f.silence is None else codec.dumps(dict(f.silence)),
                )  # fmt: skip
                if f.id == 0:
                    cur = conn.execute(_INSERT_FINDING, values)
                    assert cur.lastrowid is not None
                    f = replace(f, id=int(cur.lastrowid))
                else:
                    conn.execute(_UPDATE_FINDING, (*values[: -len(_ADMIN_COLUMNS)], f.id))
                if ch.is_event:
                    conn.execute(
                        "INSERT INTO finding_events (finding_id, at, event, actual, pods, message)"
                        " VALUES (?, ?, ?, ?, ?, ?)",
                        (
                            f.id,
                            f.last_seen if ch.kind is not ChangeKind.RESOLVED else f.resolved_at,
                            ch.kind.value,
                            actual,
                            pods,
                            f.message,
                        ),
                    )
                written.append(f)
            return written

        return await self._write(body)

    async def list_findings(self, query: FindingQuery) -> list[FindingRecord]:
        where: list[str] = []
        params: list[Any] = []
        for column, value in (
            ("workload", query.workload),
            ("status", query.status),
            ("category", query.category),
            ("severity", query.severity),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if query.reference is not None:
            # A finding breaks one or more references; refs is their JSON list.
            where.append("(reference = ? OR refs LIKE ?)")
            params.extend((query.reference, f'%"{query.reference}"%'))
        if query.namespace is not None:
            where.append(_IN_NAMESPACE)
            params.extend(_namespace_bounds(query.namespace))
        if query.since is not None:
            where.append("last_seen >= ?")
            params.append(query.since)
        if query.until is not None:
            where.append("last_seen < ?")
            params.append(query.until)
        if query.before_id is not None:
            where.append("id < ?")
            params.append(query.before_id)
        sql = (
            _SELECT_FINDINGS
            + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY id DESC LIMIT ?"
        )
        rows = await self._read(lambda c: c.execute(sql, (*params, query.limit)).fetchall())
        return [self._finding(r) for r in rows]

    async def get_finding(self, finding_id: int) -> tuple[FindingRecord, list[FindingEvent]] | None:
        def body(conn: sqlite3.Connection) -> tuple[Any, list[Any]]:
            row = conn.execute(_SELECT_FINDINGS + " WHERE id = ?", (finding_id,)).fetchone()
            events = conn.execute(
                "SELECT id, finding_id, at, event, actual, pods, message FROM finding_events"
                " WHERE finding_id = ? ORDER BY id",
                (finding_id,),
            ).fetchall()
            return row, events

        row, events = await self._read(body)
        if row is None:
            return None
        return self._finding(row), [
            FindingEvent(
                int(i),
                int(fid),
                float(at),
                ev,
                codec.loads_value(act, "finding_events.actual"),
                codec.loads_value(pods, "finding_events.pods"),
                msg,
            )
            for i, fid, at, ev, act, pods, msg in events
        ]

    async def set_finding_note(
        self, finding_id: int, field: str, value: Mapping[str, Any] | None, event: str, at: float
    ) -> FindingRecord | None:
        """Set a finding's ``ack`` or ``silence`` (None clears it) and record the event."""
        if field not in _ADMIN_COLUMNS:
            raise StoreError(f"findings.{field}: not an admin field")
        text = None if value is None else codec.dumps(dict(value))

        def body(conn: sqlite3.Connection) -> tuple[Any, ...] | None:
            cur = conn.execute(f"UPDATE findings SET {field} = ? WHERE id = ?", (text, finding_id))  # noqa: S608
            if cur.rowcount == 0:
                return None
            row: tuple[Any, ...] = conn.execute(_SELECT_FINDINGS + " WHERE id = ?", (finding_id,)).fetchone()
            conn.execute(
                "INSERT INTO finding_events (finding_id, at, event, actual, pods, message)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (finding_id, at, event, row[8], row[9], (value or {}).get("reason", "") if value else ""),
            )
            return row

        row = await self._write(body)
        return None if row is None else self._finding(row)

    async def open_finding_counts(self, now: float | None = None) -> dict[str, dict[str, int]]:
        """Open findings per workload and severity; silenced ones (at ``now``) count apart, under
        the key ``"silenced"``."""
        rows = await self._read(
            lambda c: c.execute(
                "SELECT workload, severity, silence FROM findings WHERE status = 'open'"
            ).fetchall()
        )
        out: dict[str, dict[str, int]] = {}
        for workload, severity, silence in rows:
            until = (codec.loads_value(silence, "findings.silence") or {}).get("until") if silence else None
            bucket = (
                "silenced" if now is not None and isinstance(until, int | float) and until > now else severity
            )
            counts = out.setdefault(workload, {})
            counts[bucket] = counts.get(bucket, 0) + 1
        return out

    async def save_baseline(self, baseline: Baseline) -> Baseline:
        body_json = codec.encode_baseline(baseline)

        def body(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                "INSERT INTO baselines (workload, recorded_at, origin, body) VALUES (?, ?, ?, ?)",
                (baseline.workload, baseline.recorded_at, baseline.origin, body_json),
            )
            assert cur.lastrowid is not None
            return int(cur.lastrowid)

        return replace(baseline, id=await self._write(body))

    async def latest_baseline(self, workload: str) -> Baseline | None:
        row = await self._read(
            lambda c: c.execute(
                "SELECT id, workload, recorded_at, origin, body FROM baselines WHERE workload = ?"
                " ORDER BY id DESC LIMIT 1",
                (workload,),
            ).fetchone()
        )
        return (
            None if row is None else codec.decode_baseline(int(row[0]), row[1], float(row[2]), row[3], row[4])
        )

    async def list_baselines(
        self, workload: str | None = None, limit: int = 1000, namespace: str | None = None
    ) -> list[Baseline]:
        where, params = ("workload = ?", [workload]) if workload is not None else ("1", [])
        if namespace is not None:
            where += " AND " + _IN_NAMESPACE
            params.extend(_namespace_bounds(namespace))
        if workload is not None:
            sql = _SELECT_BASELINES + f" WHERE {where} ORDER BY id DESC LIMIT ?"
        else:
            sql = (
                _SELECT_BASELINES + " WHERE id IN (SELECT MAX(id) FROM baselines"  # noqa: S608
                f" WHERE {where} GROUP BY workload) ORDER BY workload LIMIT ?"
            )
        rows = await self._read(lambda c: c.execute(sql, (*params, limit)).fetchall())
        return [_baseline(r) for r in rows]

    async def delete_baselines(self, workload: str) -> list[Baseline]:
        """Delete every baseline of ``workload`` in one transaction; the deleted rows, newest first."""

        def body(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
            rows = conn.execute(
                _SELECT_BASELINES + " WHERE workload = ? ORDER BY id DESC", (workload,)
            ).fetchall()
            conn.execute("DELETE FROM baselines WHERE workload = ?", (workload,))
            return rows

        return [_baseline(r) for r in await self._write(body)]

    async def put_intent(self, record: IntentRecord) -> bool:
        def body(conn: sqlite3.Connection) -> bool:
            existed = conn.execute(
                "SELECT 1 FROM intents WHERE kind = ? AND name = ?", (record.kind, record.name)
            ).fetchone()
            conn.execute(
                "INSERT INTO intents (kind, name, body, updated_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (kind, name) DO UPDATE SET body = excluded.body,"
                " updated_at = excluded.updated_at",
                (record.kind, record.name, record.body, record.updated_at),
            )
            return existed is None

        return await self._write(body)

    async def delete_intent(self, kind: str, name: str) -> bool:
        def body(conn: sqlite3.Connection) -> bool:
            cur = conn.execute("DELETE FROM intents WHERE kind = ? AND name = ?", (kind, name))
            return cur.rowcount > 0

        return await self._write(body)

    async def list_intents(self) -> list[IntentRecord]:
        rows = await self._read(
            lambda c: c.execute(
                "SELECT kind, name, body, updated_at FROM intents ORDER BY kind, name"
            ).fetchall()
        )
        return [IntentRecord(k, n, b, float(u)) for k, n, b, u in rows]


def _baseline(row: tuple[Any, ...]) -> Baseline:
    return codec.decode_baseline(int(row[0]), row[1], float(row[2]), row[3], row[4])


def _namespace_bounds(namespace: str) -> tuple[str, str]:
    """``workload`` ids of ``namespace`` are the strings from ``NS/`` up to, not including,
    ``NS0`` ('0' follows '/'): a range an index serves, and exact for any namespace (LIKE would
    read ``_`` and ``%`` in it as wildcards)."""
    return f"{namespace}/", f"{namespace}0"


def now() -> float:
    """The collector's clock for received_at / last_seen (wall time, seconds)."""
    return time.time()
