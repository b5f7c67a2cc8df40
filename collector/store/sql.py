"""The store's SQL, once for every backend: each operation is one transaction body.

A backend (``SqliteStore``, ``PostgresStore``) supplies only how a body runs: which thread and
connection, how a transaction begins and commits, how a driver error becomes ``StoreError``,
and two dialect details (the id of an inserted row; row locks). The bodies here hold every
statement, so the backends cannot diverge in what they store, and one parametrised test suite
proves both.

Statements are written with ``?`` placeholders; a backend whose driver wants another style
translates them (once per distinct statement). A body only calls ``Conn.execute`` and reads
the cursor it returns, so it runs unchanged on sqlite3 and psycopg connections.

``record_batch`` is group commit: the writes of a batch share one transaction (one fsync), each
in its own savepoint, so a write whose statements fail is undone alone and answered with its
``StoreError`` while the others commit.
"""

from __future__ import annotations

import abc
import asyncio
import functools
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Protocol, TypeVar

from collector.domain.baseline import Baseline
from collector.domain.cluster import RevisionTemplate
from collector.domain.identity import split_workload
from collector.domain.model import ChangeKind, FindingChange, FindingRecord, Status
from collector.domain.records import (
    CurrentState,
    EngineState,
    EngineStateIn,
    EventIn,
    FindingEvent,
    FindingQuery,
    HeartbeatIn,
    HeartbeatResult,
    HelloWrite,
    IntentRecord,
    ObservationsIn,
    ObservationsRecord,
    PodBrief,
    PodEvent,
    PodRecord,
    PruneResult,
    ReplicaRecord,
    Retention,
    SnapshotIn,
    SnapshotRecord,
    SnapshotWrite,
    Write,
    WriteResult,
)
from collector.errors import StoreError
from collector.store import codec
from collector.store.base import ProbeRecord
from skewwatch.core.facts import FactValue, Fingerprint, Observation, Provenance, SourceStatus
from skewwatch.core.identity import PodIdentity, PodKey

T = TypeVar("T")
DAY_S = 86_400.0
# Rows one prune transaction deletes at most: short enough that ingest never waits long behind it.
PRUNE_CHUNK = 500


class Cursor(Protocol):
    """What a body reads from an executed statement (sqlite3 and psycopg cursors both are one)."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Conn(Protocol):
    """The one call a body makes: a statement with ``?`` placeholders and its parameters."""

    def execute(self, sql: str, params: Sequence[Any] = (), /) -> Cursor: ...


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


_SNAPSHOT_INSERT = (
    "INSERT INTO snapshots (namespace, pod, sequence, agent_id, collected_at, received_at,"
    " fingerprint, fingerprints, facts, provenance, sources) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_SET_CURRENT = (
    "UPDATE pods SET current_snapshot_id = ?, current_fingerprint = ?, current_sequence = ?,"
    " current_collected_at = ?, current_received_at = ?, current_facts = ?,"
    " current_provenance = ?, current_sources = ?, current_fingerprints = ?"
    " WHERE namespace = ? AND pod = ?"
)
# A history row a pod's current state points at is never pruned.
_NOT_CURRENT = "NOT EXISTS (SELECT 1 FROM pods p WHERE p.current_snapshot_id = h.id)"


_REVISION_COLUMNS = (
    "workload, template_hash, revision, created_at, first_seen, last_seen, source, facts, provenance"
)
_SELECT_REVISIONS = f"SELECT {_REVISION_COLUMNS} FROM workload_revisions"  # noqa: S608
# A revision seen again keeps first_seen; what the watch read of it now replaces the rest.
_REFRESH_REVISION = (
    "UPDATE workload_revisions SET revision = ?, created_at = ?, last_seen = ?, source = ?, facts = ?,"
    " provenance = ? WHERE workload = ? AND template_hash = ?"
)


@dataclass(frozen=True)
class StoredRevision:
    """A stored pod-template revision and when this store first and last heard of it."""

    template: RevisionTemplate
    first_seen: float
    last_seen: float


def revision_order(revision: str, created_at: float, template_hash: str) -> tuple[int, int, float, str]:
    """Sort key, greatest = newest: the controller's revision number where it is one (a number
    outranks a revision that is none), then creationTimestamp, then the hash (a stable order)."""
    numeric = revision.isascii() and revision.isdigit() and len(revision) <= 18
    return (1 if numeric else 0, int(revision) if numeric else 0, created_at, template_hash)


def _revision_key(r: RevisionTemplate) -> tuple[int, int, float, str]:
    return revision_order(r.revision, r.created_at, r.template_hash)


def _stored_revision(row: tuple[Any, ...]) -> StoredRevision:
    workload, template_hash, revision, created_at, first_seen, last_seen, source, facts, prov = row
    template = RevisionTemplate(
        workload=workload,
        revision=revision,
        template_hash=template_hash,
        facts=codec.decode_facts(facts),
        provenance=codec.decode_provenance(prov),
        created_at=float(created_at),
        source=source,
    )
    return StoredRevision(template, float(first_seen), float(last_seen))


@dataclass(frozen=True)
class _HistoryTable:
    """A per-pod history table ``prune`` bounds: by rows per pod and by age of ``received_at``."""

    name: str
    deletable: str  # what else a deleted row must meet, as " AND …" ("" for nothing)


_SNAPSHOT_HISTORY = _HistoryTable("snapshots", " AND " + _NOT_CURRENT)
_OBSERVATION_HISTORY = _HistoryTable("observations_history", "")


class SqlStore(abc.ABC):
    """Every ``FullStore`` operation as one transaction body; a subclass says how bodies run.

    ``_write`` runs a body in one write transaction and returns only after it committed (any
    error rolls it back and is raised as ``StoreError``); ``_read`` runs one in a read
    transaction that sees one consistent state."""

    url: str
    # Appended to a SELECT of the pod row in a read-check-write body: a row lock where several
    # writers run at once (PostgreSQL); "" where one writer does (SQLite).
    for_update: ClassVar[str] = ""
    # A workload id in a namespace (NAMESPACE/KIND/NAME), bound by _namespace_bounds: a comparison
    # in byte order, where '/' sorts before '0'.
    in_namespace: ClassVar[str] = "workload >= ? AND workload < ?"

    @abc.abstractmethod
    async def _write(self, body: Callable[[Conn], T]) -> T: ...

    @abc.abstractmethod
    async def _read(self, body: Callable[[Conn], T]) -> T: ...

    @abc.abstractmethod
    def _insert(self, conn: Conn, sql: str, params: Sequence[Any]) -> int:
        """Run an INSERT of one row into a table with an ``id`` column and return that id."""

    @abc.abstractmethod
    def _write_error(self, error: Exception) -> StoreError | None:
        """The ``StoreError`` a write whose statements failed answers inside a batch, or None when
        ``error`` must abort the whole transaction instead (not a driver error, or one worth a
        retry of the whole transaction)."""

    async def ping(self) -> None:
        await self._read(lambda c: c.execute("SELECT 1").fetchone())

    # -- writes ------------------------------------------------------------------------------

    @staticmethod
    def _upsert_pod(conn: Conn, identity: PodIdentity, sequence: int, at: float) -> None:
        i = identity
        conn.execute(
            _UPSERT_POD,
            (i.namespace, i.pod, i.node, i.workload, i.workload_source, i.agent_id, i.agent_version, at, at,
             sequence),
        )  # fmt: skip

    def _hello_body(self, w: HelloWrite) -> Callable[[Conn], None]:
        return lambda c: self._upsert_pod(c, w.identity, w.sequence, w.received_at)

    def _snapshot_body(self, w: SnapshotIn) -> Callable[[Conn], SnapshotWrite]:
        # Encoded here, before the body runs: CPU work that need not hold the writer.
        facts_json = codec.encode_facts(w.facts)
        prov_json = codec.encode_provenance(w.provenance)
        sources_json = codec.encode_sources(w.sources)
        fps_json = codec.encode_fingerprint(w.fingerprint)
        key, overall = w.identity.key, w.fingerprint.overall

        def body(conn: Conn) -> SnapshotWrite:
            self._upsert_pod(conn, w.identity, w.sequence, w.received_at)
            current_fp, current_id = conn.execute(
                "SELECT current_fingerprint, current_snapshot_id FROM pods"  # noqa: S608 (a constant)
                " WHERE namespace = ? AND pod = ?" + self.for_update,
                (key.namespace, key.pod),
            ).fetchone()
            new_row = current_id is None or current_fp != overall
            if new_row:
                snapshot_id = self._insert(
                    conn,
                    _SNAPSHOT_INSERT,
                    (key.namespace, key.pod, w.sequence, w.identity.agent_id, w.collected_at, w.received_at,
                     overall, fps_json, facts_json, prov_json, sources_json),
                )  # fmt: skip
            else:
                snapshot_id = int(current_id)
            conn.execute(
                _SET_CURRENT,
                (snapshot_id, overall, w.sequence, w.collected_at, w.received_at, facts_json, prov_json,
                 sources_json, fps_json, key.namespace, key.pod),
            )  # fmt: skip
            return SnapshotWrite(snapshot_id=snapshot_id, new_row=new_row)

        return body

    def _heartbeat_body(self, w: HeartbeatIn) -> Callable[[Conn], HeartbeatResult]:
        key = w.identity.key

        def body(conn: Conn) -> HeartbeatResult:
            # Read-check-write: the row lock keeps a concurrent snapshot from changing the
            # fingerprint between the check and the update.
            row = conn.execute(
                "SELECT current_fingerprint FROM pods"  # noqa: S608 (for_update is a constant)
                " WHERE namespace = ? AND pod = ?" + self.for_update,
                (key.namespace, key.pod),
            ).fetchone()
            if row is None or row[0] is None:
                return HeartbeatResult.UNKNOWN_POD
            if row[0] != w.overall_fingerprint:
                return HeartbeatResult.FINGERPRINT_MISMATCH
            conn.execute(
                "UPDATE pods SET last_seen = ?, last_sequence = ? WHERE namespace = ? AND pod = ?",
                (w.received_at, w.sequence, key.namespace, key.pod),
            )
            return HeartbeatResult.OK

        return body

    def _engine_state_body(self, w: EngineStateIn) -> Callable[[Conn], None]:
        key, engine = w.identity.key, w.engine

        def body(conn: Conn) -> None:
            self._upsert_pod(conn, w.identity, w.sequence, w.received_at)
            conn.execute(
                "UPDATE pods SET engine_state = ?, engine_state_since = ?, engine_state_message = ?"
                " WHERE namespace = ? AND pod = ?",
                (engine.state, engine.since, engine.message, key.namespace, key.pod),
            )

        return body

    def _event_body(self, w: EventIn) -> Callable[[Conn], None]:
        key = w.identity.key
        text = codec.dumps(dict(w.detail))

        def body(conn: Conn) -> None:
            self._upsert_pod(conn, w.identity, w.sequence, w.at)
            conn.execute(
                "INSERT INTO pod_events (namespace, pod, at, kind, sequence, detail)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (key.namespace, key.pod, w.at, w.kind, w.sequence, text),
            )
            # Bounded: a crash-looping engine must not grow the store without end.
            conn.execute(
                "DELETE FROM pod_events WHERE namespace = ? AND pod = ? AND id <= (SELECT id FROM pod_events"
                " WHERE namespace = ? AND pod = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
                (key.namespace, key.pod, key.namespace, key.pod, MAX_EVENTS_PER_POD),
            )

        return body

    def _observations_body(self, w: ObservationsIn) -> Callable[[Conn], None]:
        items_json = codec.encode_observations(w.items)
        key = w.identity.key
        values = (key.namespace, key.pod, w.sequence, w.at, w.window_s, w.received_at, items_json)

        def body(conn: Conn) -> None:
            # History is bounded by prune, not here: trimming on every window cost every ingest write.
            self._upsert_pod(conn, w.identity, w.sequence, w.received_at)
            conn.execute(_INSERT_OBS_LATEST, values)
            conn.execute(_INSERT_OBS_HISTORY, values)

        return body

    def _body(self, write: Write) -> Callable[[Conn], WriteResult]:
        match write:
            case HelloWrite():
                return self._hello_body(write)
            case SnapshotIn():
                return self._snapshot_body(write)
            case HeartbeatIn():
                return self._heartbeat_body(write)
            case EngineStateIn():
                return self._engine_state_body(write)
            case EventIn():
                return self._event_body(write)
            case ObservationsIn():
                return self._observations_body(write)

    async def record_batch(self, writes: Sequence[Write]) -> list[WriteResult | StoreError]:
        # Encoded before the transaction, so it is not held open meanwhile; a value JSON cannot
        # hold (NaN) fails its write alone. A batch of many snapshots is a lot of JSON: encoded on
        # a thread, the event loop goes on acknowledging agents (the GIL is handed over every few
        # milliseconds) instead of stalling for the whole batch.
        def prepare() -> list[Callable[[Conn], WriteResult] | StoreError]:
            out: list[Callable[[Conn], WriteResult] | StoreError] = []
            for write in writes:
                try:
                    out.append(self._body(write))
                except (TypeError, ValueError) as e:
                    out.append(StoreError(f"store {self.url}: {type(write).__name__} cannot be stored: {e}"))
            return out

        heavy = sum(isinstance(w, SnapshotIn) for w in writes) > 1
        bodies = await asyncio.to_thread(prepare) if heavy else prepare()

        def batch(conn: Conn) -> list[WriteResult | StoreError]:
            results: list[WriteResult | StoreError] = []
            for body in bodies:
                if isinstance(body, StoreError):
                    results.append(body)
                    continue
                conn.execute("SAVEPOINT skewwatch_write")
                try:
                    result: WriteResult | StoreError = body(conn)
                except Exception as e:
                    error = self._write_error(e)
                    if error is None:
                        raise
                    conn.execute("ROLLBACK TO SAVEPOINT skewwatch_write")
                    result = error
                conn.execute("RELEASE SAVEPOINT skewwatch_write")
                results.append(result)
            return results

        return await self._write(batch)

    async def hello(self, identity: PodIdentity, sequence: int, received_at: float) -> None:
        await self._write(self._hello_body(HelloWrite(identity, sequence, received_at)))

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
        write = SnapshotIn(
            identity, sequence, facts, provenance, sources, fingerprint, collected_at, received_at
        )
        return await self._write(self._snapshot_body(write))

    async def record_heartbeat(
        self, key: PodKey, sequence: int, overall_fingerprint: str, received_at: float
    ) -> HeartbeatResult:
        write = HeartbeatIn(PodIdentity(key.namespace, key.pod), sequence, overall_fingerprint, received_at)
        return await self._write(self._heartbeat_body(write))

    async def record_engine_state(
        self, identity: PodIdentity, sequence: int, engine: EngineState, received_at: float
    ) -> None:
        await self._write(self._engine_state_body(EngineStateIn(identity, sequence, engine, received_at)))

    async def record_event(
        self, identity: PodIdentity, sequence: int, at: float, kind: str, detail: Mapping[str, Any]
    ) -> None:
        await self._write(self._event_body(EventIn(identity, sequence, at, kind, detail)))

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
        await self._write(
            self._observations_body(ObservationsIn(identity, sequence, items, at, window_s, received_at))
        )

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

    # -- retention ---------------------------------------------------------------------------

    async def prune(self, now: float, retention: Retention, max_rows: int = 5000) -> PruneResult:
        """Aged pods first (their history goes with them), then history by age, then by rows per
        pod; each step in transactions of at most ``PRUNE_CHUNK`` rows (a pod is one)."""
        pods = 0
        if retention.pod_days is not None:
            pods = await self._prune_pods(now - retention.pod_days * DAY_S, max_rows)
        snapshots = await self._prune_history(
            _SNAPSHOT_HISTORY, now, retention.snapshot_days, retention.snapshot_rows, max_rows
        )
        observations = await self._prune_history(
            _OBSERVATION_HISTORY, now, retention.observation_days, retention.observation_rows, max_rows
        )
        done = max(pods, snapshots, observations) < max_rows
        return PruneResult(snapshots=snapshots, observations=observations, pods=pods, done=done)

    async def _prune_pods(self, cutoff: float, max_rows: int) -> int:
        keys = await self._read(
            functools.partial(
                _fetchall,
                "SELECT namespace, pod FROM pods WHERE last_seen < ? ORDER BY last_seen LIMIT ?",
                (cutoff, max_rows),
            )
        )
        deleted = 0
        for namespace, pod in keys:
            # One pod per transaction, re-checked: it may have reported since it was listed.
            deleted += await self._write(
                functools.partial(
                    _rowcount,
                    "DELETE FROM pods WHERE namespace = ? AND pod = ? AND last_seen < ?",
                    (namespace, pod, cutoff),
                )
            )
        return deleted

    async def _prune_history(
        self, table: _HistoryTable, now: float, days: float | None, rows: int | None, max_rows: int
    ) -> int:
        deleted = 0
        if days is not None:
            where = "h.received_at < ?" + table.deletable
            deleted += await self._delete_chunks(table, where, (now - days * DAY_S,), max_rows)
        if rows is None:
            return deleted
        newest_dropped = (
            f"SELECT id FROM {table.name} WHERE namespace = ? AND pod = ?"  # noqa: S608
            " ORDER BY id DESC LIMIT 1 OFFSET ?"
        )
        keys = await self._read(functools.partial(_fetchall, "SELECT namespace, pod FROM pods", ()))
        for namespace, pod in keys:
            if deleted >= max_rows:
                break
            row = await self._read(functools.partial(_fetchone, newest_dropped, (namespace, pod, rows)))
            if row is not None:
                where = "h.namespace = ? AND h.pod = ? AND h.id <= ?" + table.deletable
                params = (namespace, pod, int(row[0]))
                deleted += await self._delete_chunks(table, where, params, max_rows - deleted)
        return deleted

    async def _delete_chunks(
        self, table: _HistoryTable, where: str, params: tuple[Any, ...], budget: int
    ) -> int:
        """Delete rows of ``table`` (aliased ``h``) matching ``where``, oldest first, in short
        transactions, at most ``budget`` rows in all."""
        sql = (
            f"DELETE FROM {table.name} WHERE id IN (SELECT h.id FROM {table.name} h"  # noqa: S608
            f" WHERE {where} ORDER BY h.id LIMIT ?)"
        )
        deleted = 0
        while deleted < budget:
            chunk = min(PRUNE_CHUNK, budget - deleted)
            n = await self._write(functools.partial(_rowcount, sql, (*params, chunk)))
            deleted += n
            if n < chunk:
                break
        return deleted

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

        def body(conn: Conn) -> list[Any]:
            return conn.execute(
                _SELECT_SNAPSHOTS + " WHERE namespace = ? AND pod = ? AND id < ? ORDER BY id DESC LIMIT ?",
                (key.namespace, key.pod, bound, limit),
            ).fetchall()

        return [self._snapshot(row) for row in await self._read(body)]

    async def delete_pod(self, key: PodKey) -> bool:
        def body(conn: Conn) -> bool:
            # snapshots, observations_latest and observations_history go with the pod row
            # (ON DELETE CASCADE; every connection runs with foreign_keys on).
            cur = conn.execute("DELETE FROM pods WHERE namespace = ? AND pod = ?", (key.namespace, key.pod))
            return cur.rowcount > 0

        return await self._write(body)

    # -- drift engine: replicas, findings, baselines, intents -----------------------------------

    async def workload_replicas(self, workload: str, since: float, windows: int) -> list[ReplicaRecord]:
        namespace, _, pod_name = split_workload(workload)

        def body(conn: Conn) -> list[tuple[tuple[Any, ...], list[tuple[Any, ...]]]]:
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

        def body(conn: Conn) -> list[FindingRecord]:
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
                    f = replace(f, id=self._insert(conn, _INSERT_FINDING, values))
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
            where.append(self.in_namespace)
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
        def body(conn: Conn) -> tuple[Any, list[Any]]:
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

        def body(conn: Conn) -> tuple[Any, ...] | None:
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

        def body(conn: Conn) -> int:
            return self._insert(
                conn,
                "INSERT INTO baselines (workload, recorded_at, origin, body) VALUES (?, ?, ?, ?)",
                (baseline.workload, baseline.recorded_at, baseline.origin, body_json),
            )

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
        where, params = ("workload = ?", [workload]) if workload is not None else ("1 = 1", [])
        if namespace is not None:
            where += " AND " + self.in_namespace
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

        def body(conn: Conn) -> list[tuple[Any, ...]]:
            rows = conn.execute(
                _SELECT_BASELINES + " WHERE workload = ? ORDER BY id DESC", (workload,)
            ).fetchall()
            conn.execute("DELETE FROM baselines WHERE workload = ?", (workload,))
            return rows

        return [_baseline(r) for r in await self._write(body)]

    async def put_intent(self, record: IntentRecord) -> bool:
        def body(conn: Conn) -> bool:
            # Insert-or-update in that order, not read-then-upsert: two collectors putting the
            # same new intent at once cannot both answer "created".
            created = conn.execute(
                "INSERT INTO intents (kind, name, body, updated_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (kind, name) DO NOTHING",
                (record.kind, record.name, record.body, record.updated_at),
            ).rowcount
            if created:
                return True
            conn.execute(
                "UPDATE intents SET body = ?, updated_at = ? WHERE kind = ? AND name = ?",
                (record.body, record.updated_at, record.kind, record.name),
            )
            return False

        return await self._write(body)

    async def delete_intent(self, kind: str, name: str) -> bool:
        def body(conn: Conn) -> bool:
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

    # -- cluster: pod-template revisions ----------------------------------------------------------

    async def put_revisions(self, revisions: Sequence[RevisionTemplate], keep: int) -> int:
        """Insert or refresh each revision (by workload and template hash: first_seen kept,
        last_seen now, the rest as read now), then keep the ``keep`` newest of each workload named
        (``revision_order``); one transaction. Returns how many were new."""
        if keep < 1:
            raise ValueError(f"keep: at least 1 revision per workload must be kept, got {keep}")
        at = now()
        rows = [
            (
                r.workload,
                r.template_hash,
                r.revision,
                float(r.created_at),
                r.source,
                codec.encode_facts(r.facts),
                codec.encode_provenance(r.provenance),
            )
            for r in revisions
        ]

        def body(conn: Conn) -> int:
            new = 0
            for workload, template_hash, revision, created_at, source, facts, prov in rows:
                # Insert first, update only on conflict: two collectors refreshing the same new
                # revision at once cannot both count it new, and first_seen is never moved.
                inserted = conn.execute(
                    f"INSERT INTO workload_revisions ({_REVISION_COLUMNS})"  # noqa: S608
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (workload, template_hash) DO NOTHING",
                    (workload, template_hash, revision, created_at, at, at, source, facts, prov),
                ).rowcount
                if inserted:
                    new += 1
                    continue
                conn.execute(
                    _REFRESH_REVISION,
                    (revision, created_at, at, source, facts, prov, workload, template_hash),
                )
            for workload in sorted({r[0] for r in rows}):
                self._keep_revisions(conn, workload, keep)
            return new

        return await self._write(body)

    @staticmethod
    def _keep_revisions(conn: Conn, workload: str, keep: int) -> None:
        """Delete all but the ``keep`` newest revisions of ``workload``. The ranking reads every row
        of the workload: at most ``keep`` plus what one update brought, so bounded."""
        found = conn.execute(
            "SELECT template_hash, revision, created_at FROM workload_revisions WHERE workload = ?",
            (workload,),
        ).fetchall()
        ranked = sorted(found, key=lambda r: revision_order(r[1], float(r[2]), r[0]), reverse=True)
        for template_hash, _, _ in ranked[keep:]:
            conn.execute(
                "DELETE FROM workload_revisions WHERE workload = ? AND template_hash = ?",
                (workload, template_hash),
            )

    async def revision_history(self, workload: str) -> list[StoredRevision]:
        """The stored revisions of ``workload`` with when they were first and last seen, newest first."""
        rows = await self._read(
            lambda c: c.execute(_SELECT_REVISIONS + " WHERE workload = ?", (workload,)).fetchall()
        )
        stored = [_stored_revision(r) for r in rows]
        return sorted(
            stored,
            key=lambda s: revision_order(
                s.template.revision, s.template.created_at, s.template.template_hash
            ),
            reverse=True,
        )

    async def workload_revisions(self, workload: str) -> list[RevisionTemplate]:
        return [s.template for s in await self.revision_history(workload)]

    # -- probe results ----------------------------------------------------------------------------

    async def add_probe_result(
        self, workload: str, recorded_at: float, verdict: str, document: Mapping[str, Any], keep: int
    ) -> ProbeRecord:
        """Insert one result, then delete all but the ``keep`` newest (by id) of the workload: the
        table holds at most ``keep`` rows per workload after every write."""
        if keep < 1:
            raise ValueError(f"keep: at least 1 probe result per workload must be kept, got {keep}")
        # ASCII: a JSON string may hold a lone surrogate (``"\\ud800"``), which no UTF-8 column takes.
        text = json.dumps(document, separators=(",", ":"), allow_nan=False)

        def body(conn: Conn) -> int:
            new_id = self._insert(
                conn,
                "INSERT INTO probe_results (workload, recorded_at, verdict, document) VALUES (?, ?, ?, ?)",
                (workload, float(recorded_at), verdict, text),
            )
            kept = conn.execute(
                "SELECT id FROM probe_results WHERE workload = ? ORDER BY id DESC LIMIT 1 OFFSET ?",
                (workload, keep - 1),
            ).fetchone()
            if kept is not None:  # the keep-th newest: everything older goes
                conn.execute(
                    "DELETE FROM probe_results WHERE workload = ? AND id < ?", (workload, int(kept[0]))
                )
            return new_id

        new_id = await self._write(body)
        return ProbeRecord(new_id, workload, float(recorded_at), verdict, json.loads(text))

    async def probe_results(self, workload: str, limit: int) -> list[ProbeRecord]:
        rows = await self._read(
            lambda c: c.execute(
                _SELECT_PROBES + " WHERE workload = ? ORDER BY id DESC LIMIT ?", (workload, limit)
            ).fetchall()
        )
        return [_probe(r) for r in rows]

    async def get_probe_result(self, probe_id: int) -> ProbeRecord | None:
        row = await self._read(lambda c: c.execute(_SELECT_PROBES + " WHERE id = ?", (probe_id,)).fetchone())
        return None if row is None else _probe(row)


_SELECT_PROBES = "SELECT id, workload, recorded_at, verdict, document FROM probe_results"


def _probe(row: tuple[Any, ...]) -> ProbeRecord:
    probe_id, workload, recorded_at, verdict, document = row
    return ProbeRecord(int(probe_id), workload, float(recorded_at), verdict, json.loads(document))


def _baseline(row: tuple[Any, ...]) -> Baseline:
    return codec.decode_baseline(int(row[0]), row[1], float(row[2]), row[3], row[4])


def _namespace_bounds(namespace: str) -> tuple[str, str]:
    """``workload`` ids of ``namespace`` are the strings from ``NS/`` up to, not including,
    ``NS0`` ('0' follows '/'): a range an index serves, and exact for any namespace (LIKE would
    read ``_`` and ``%`` in it as wildcards)."""
    return f"{namespace}/", f"{namespace}0"


def _rowcount(sql: str, params: Sequence[Any], conn: Conn) -> int:
    return conn.execute(sql, params).rowcount


def _fetchone(sql: str, params: Sequence[Any], conn: Conn) -> Any:
    return conn.execute(sql, params).fetchone()


def _fetchall(sql: str, params: Sequence[Any], conn: Conn) -> list[Any]:
    return conn.execute(sql, params).fetchall()


def now() -> float:
    """The collector's clock for received_at / last_seen (wall time, seconds)."""
    return time.time()
