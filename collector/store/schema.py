"""The store schema as data: an ordered list of migrations, for every backend.

SQLite records the version in ``PRAGMA user_version``, PostgreSQL in a ``skewwatch_schema`` row.

Migration *n* (1-based) moves the schema from version n-1 to n. Migrations are only ever
appended; an applied one is never edited. The SQL sticks to what SQLite and PostgreSQL both
accept where it can (``ON CONFLICT``, ``BIGINT``, ``DOUBLE PRECISION``), so the PostgreSQL
backend can reuse most of it; the one SQLite-only construct is ``INTEGER PRIMARY KEY
AUTOINCREMENT`` for ids that never repeat (history is ordered by id), which the PostgreSQL
backend translates to an identity column.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    description: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        "pods, snapshot history, latest and historical observations",
        (
            """
            CREATE TABLE pods (
                namespace TEXT NOT NULL,
                pod TEXT NOT NULL,
                node TEXT NOT NULL DEFAULT '',
                workload TEXT NOT NULL DEFAULT '',
                workload_source TEXT NOT NULL DEFAULT '',
                agent_id TEXT NOT NULL DEFAULT '',
                agent_version TEXT NOT NULL DEFAULT '',
                first_seen DOUBLE PRECISION NOT NULL,
                last_seen DOUBLE PRECISION NOT NULL,
                last_sequence BIGINT NOT NULL DEFAULT 0,
                current_snapshot_id BIGINT,
                current_fingerprint TEXT,
                current_sequence BIGINT,
                current_collected_at DOUBLE PRECISION,
                current_received_at DOUBLE PRECISION,
                current_facts TEXT,
                current_provenance TEXT,
                current_sources TEXT,
                current_fingerprints TEXT,
                PRIMARY KEY (namespace, pod)
            )
            """,
            """
            CREATE TABLE snapshots (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                namespace TEXT NOT NULL,
                pod TEXT NOT NULL,
                sequence BIGINT NOT NULL,
                agent_id TEXT NOT NULL,
                collected_at DOUBLE PRECISION NOT NULL,
                received_at DOUBLE PRECISION NOT NULL,
                fingerprint TEXT NOT NULL,
                fingerprints TEXT NOT NULL,
                facts TEXT NOT NULL,
                provenance TEXT NOT NULL,
                sources TEXT NOT NULL,
                FOREIGN KEY (namespace, pod) REFERENCES pods (namespace, pod) ON DELETE CASCADE
            )
            """,
            "CREATE INDEX snapshots_by_pod ON snapshots (namespace, pod, id)",
            """
            CREATE TABLE observations_latest (
                namespace TEXT NOT NULL,
                pod TEXT NOT NULL,
                sequence BIGINT NOT NULL,
                at DOUBLE PRECISION NOT NULL,
                window_seconds DOUBLE PRECISION NOT NULL,
                received_at DOUBLE PRECISION NOT NULL,
                items TEXT NOT NULL,
                PRIMARY KEY (namespace, pod),
                FOREIGN KEY (namespace, pod) REFERENCES pods (namespace, pod) ON DELETE CASCADE
            )
            """,
            """
            CREATE TABLE observations_history (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                namespace TEXT NOT NULL,
                pod TEXT NOT NULL,
                sequence BIGINT NOT NULL,
                at DOUBLE PRECISION NOT NULL,
                window_seconds DOUBLE PRECISION NOT NULL,
                received_at DOUBLE PRECISION NOT NULL,
                items TEXT NOT NULL,
                FOREIGN KEY (namespace, pod) REFERENCES pods (namespace, pod) ON DELETE CASCADE
            )
            """,
            "CREATE INDEX observations_history_by_pod ON observations_history (namespace, pod, id)",
            "CREATE INDEX observations_history_by_time ON observations_history (received_at)",
        ),
    ),
    Migration(
        "drift engine: findings with history, baselines, intents posted through the API",
        (
            """
            CREATE TABLE findings (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                workload TEXT NOT NULL,
                reference TEXT NOT NULL,
                key TEXT NOT NULL,
                category TEXT NOT NULL,
                severity TEXT NOT NULL,
                status TEXT NOT NULL,
                expected TEXT NOT NULL,
                actual TEXT NOT NULL,
                pods TEXT NOT NULL,
                message TEXT NOT NULL,
                source TEXT NOT NULL,
                hint TEXT NOT NULL,
                symptom TEXT NOT NULL,
                evidence TEXT NOT NULL,
                first_seen DOUBLE PRECISION NOT NULL,
                last_seen DOUBLE PRECISION NOT NULL,
                opened_at DOUBLE PRECISION,
                resolved_at DOUBLE PRECISION,
                hits BIGINT NOT NULL
            )
            """,
            # One active (pending or open) finding per identity: the same drift is one finding.
            "CREATE UNIQUE INDEX findings_active ON findings (workload, reference, key)"
            " WHERE status IN ('pending', 'open')",
            "CREATE INDEX findings_by_workload ON findings (workload, status, id)",
            "CREATE INDEX findings_by_status ON findings (status, id)",
            """
            CREATE TABLE finding_events (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                finding_id BIGINT NOT NULL,
                at DOUBLE PRECISION NOT NULL,
                event TEXT NOT NULL,
                actual TEXT NOT NULL,
                pods TEXT NOT NULL,
                message TEXT NOT NULL,
                FOREIGN KEY (finding_id) REFERENCES findings (id) ON DELETE CASCADE
            )
            """,
            "CREATE INDEX finding_events_by_finding ON finding_events (finding_id, id)",
            """
            CREATE TABLE baselines (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                workload TEXT NOT NULL,
                recorded_at DOUBLE PRECISION NOT NULL,
                origin TEXT NOT NULL,
                body TEXT NOT NULL
            )
            """,
            "CREATE INDEX baselines_by_workload ON baselines (workload, id)",
            """
            CREATE TABLE intents (
                kind TEXT NOT NULL,
                name TEXT NOT NULL,
                body TEXT NOT NULL,
                updated_at DOUBLE PRECISION NOT NULL,
                PRIMARY KEY (kind, name)
            )
            """,
            "CREATE INDEX pods_by_workload ON pods (workload, namespace, pod)",
        ),
    ),
    Migration(
        "one finding per root cause (identity workload+key, every reference it breaks), resolution,"
        " acknowledgement and silence; engine state and restart events per pod",
        (
            # Before: one active finding per (workload, reference, key). The same key broken
            # against two references is one finding now: keep the oldest, resolve the others.
            "UPDATE findings SET status = 'resolved', resolved_at = last_seen"
            " WHERE status IN ('pending', 'open') AND id NOT IN"
            " (SELECT MIN(id) FROM findings WHERE status IN ('pending', 'open') GROUP BY workload, key)",
            "DROP INDEX findings_active",
            "CREATE UNIQUE INDEX findings_active_key ON findings (workload, key)"
            " WHERE status IN ('pending', 'open')",
            "ALTER TABLE findings ADD COLUMN refs TEXT NOT NULL DEFAULT '[]'",
            "ALTER TABLE findings ADD COLUMN resolution TEXT NOT NULL DEFAULT ''",
            "ALTER TABLE findings ADD COLUMN ack TEXT",
            "ALTER TABLE findings ADD COLUMN silence TEXT",
            "ALTER TABLE pods ADD COLUMN engine_state TEXT NOT NULL DEFAULT ''",
            "ALTER TABLE pods ADD COLUMN engine_state_since DOUBLE PRECISION",
            "ALTER TABLE pods ADD COLUMN engine_state_message TEXT NOT NULL DEFAULT ''",
            """
            CREATE TABLE pod_events (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                namespace TEXT NOT NULL,
                pod TEXT NOT NULL,
                at DOUBLE PRECISION NOT NULL,
                kind TEXT NOT NULL,
                sequence BIGINT NOT NULL,
                detail TEXT NOT NULL,
                FOREIGN KEY (namespace, pod) REFERENCES pods (namespace, pod) ON DELETE CASCADE
            )
            """,
            "CREATE INDEX pod_events_by_pod ON pod_events (namespace, pod, id)",
        ),
    ),
    Migration(
        "retention: the indexes prune reads (history by age, pods by last_seen and current row)",
        (
            "CREATE INDEX snapshots_by_time ON snapshots (received_at)",
            "CREATE INDEX pods_by_last_seen ON pods (last_seen)",
            "CREATE INDEX pods_by_current_snapshot ON pods (current_snapshot_id)",
        ),
    ),
    Migration(
        "cluster watch: each workload's pod-template revisions (kept after their ReplicaSet or"
        " ControllerRevision is gone, at most cluster_revisions_keep per workload)",
        (
            # revision is text: the controller's number ("3") where it has one. facts and
            # provenance are the store codec's JSON, as the snapshots' columns.
            """
            CREATE TABLE workload_revisions (
                workload TEXT NOT NULL,
                template_hash TEXT NOT NULL,
                revision TEXT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL,
                first_seen DOUBLE PRECISION NOT NULL,
                last_seen DOUBLE PRECISION NOT NULL,
                source TEXT NOT NULL,
                facts TEXT NOT NULL,
                provenance TEXT NOT NULL,
                PRIMARY KEY (workload, template_hash)
            )
            """,
        ),
    ),
    Migration(
        "probe results: each workload's skewwatch probe documents (at most PROBE_RESULTS_KEEP per"
        " workload, oldest dropped)",
        (
            # recorded_at is the collector's clock, not the probe's (whose started_at is in the
            # document): results from probes on other machines still order by when they arrived.
            # document is the probe's JSON (skewwatch.probe/v1) as stored, redacted.
            """
            CREATE TABLE probe_results (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                workload TEXT NOT NULL,
                recorded_at DOUBLE PRECISION NOT NULL,
                verdict TEXT NOT NULL,
                document TEXT NOT NULL
            )
            """,
            "CREATE INDEX probe_results_by_workload ON probe_results (workload, id)",
        ),
    ),
)

SCHEMA_VERSION = len(MIGRATIONS)
