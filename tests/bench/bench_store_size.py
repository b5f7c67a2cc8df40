"""How much the store holds per replica: bytes per stored configuration and per observation
window, on SQLite and PostgreSQL, and what 1,000 replicas cost per day (docs/scale.md).

Set-up: the fleet benchmark's snapshot (219 facts from the real captures, tests/bench/fleet.py),
one per pod for ``PODS`` pods (each a history row and a current state), then ``WINDOWS``
observation windows per pod of the vLLM engine's observation names (agent/engines/vllm.py: its
rates, latency quantiles with counts and gauges). Sizes are the database's own: SQLite's page
count times page size after a checkpoint, PostgreSQL's ``pg_database_size``, each minus the
empty schema's. References: the serialised bytes the agent sent (snapshot protobuf; the
observations message).

Figures:

- ``store.bytes_per_snapshot.<backend>``: bytes per stored configuration (history row plus the
  pod's current state); reference: the snapshot's wire size.
- ``store.bytes_per_window.<backend>``: bytes per observation window kept; reference: the
  Observations message's wire size.
- ``store.per_1000_replicas_day.<backend>``: bytes for 1,000 replicas in a day at the default
  retention (observations every 15 s, at most 2,000 windows per pod: the bound is reached after
  8.3 h) plus ``CHANGES_PER_DAY`` configuration changes per replica; reference: the same day's
  wire bytes.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

from collector.domain.records import HelloWrite, ObservationsIn, SnapshotIn
from collector.store.base import FullStore
from collector.store.postgresql import PostgresStore
from collector.store.sqlite import SqliteStore
from proto.skewwatch.v1 import skewwatch_pb2 as pb
from skewwatch.core.facts import Observation
from skewwatch.core.identity import PodIdentity
from skewwatch.wire import observations_to_proto, snapshot_from_proto
from tests.bench.common import Figure
from tests.bench.fleet import base_facts, workload_snapshot

PODS = 200
WINDOWS = 50
CHANGES_PER_DAY = 4
INTERVAL_S = 15.0
KEEP_WINDOWS = 2000
QUANTILES = ("p50", "p90", "p99")
OBSERVATIONS = {
    **{n: "{token}/s" for n in ("prompt_tokens_per_s", "generation_tokens_per_s")},
    "requests_per_s": "{request}/s",
    "preemptions_per_s": "{preemption}/s",
    **{
        f"{stem}_{q}": "s"
        for stem in ("ttft_seconds", "e2e_latency_seconds", "tpot_seconds", "queue_seconds")
        for q in QUANTILES
    },
    **{
        f"{stem}_count": "{request}"
        for stem in ("ttft_seconds", "e2e_latency_seconds", "tpot_seconds", "queue_seconds")
    },
    "requests_running": "{request}",
    "requests_waiting": "{request}",
    "batch_size_p95": "{request}",
    "kv_cache_usage": "1",
}


def _pod(i: int) -> PodIdentity:
    return PodIdentity("ml", f"llm-{i}", f"node-{i % 50}", "ml/Deployment/llm", "env", f"a-{i}", "0.1.0")


async def _snapshots(store: FullStore) -> int:
    """Store one configuration for each of PODS pods; the wire bytes of one."""
    base = base_facts()
    wire_snapshot = 0
    for i in range(PODS):
        msg = workload_snapshot(base, 0, 1, i)  # the same workload, each pod its own configuration
        wire_snapshot = len(msg.SerializeToString())
        snap = snapshot_from_proto(msg)
        now = time.time()
        await store.record_batch(
            [
                HelloWrite(_pod(i), 1, now),
                SnapshotIn(
                    _pod(i),
                    2,
                    {k: f.value for k, f in snap.facts.items()},
                    {k: f.provenance for k, f in snap.facts.items()},
                    snap.sources,
                    snap.fingerprint,
                    now,
                    now,
                ),
            ]
        )
    return wire_snapshot


async def _windows(store: FullStore) -> int:
    """Store WINDOWS observation windows for each of PODS pods; the wire bytes of one."""
    items = {n: Observation(n, 123.456, unit) for n, unit in OBSERVATIONS.items()}
    wire_window = len(pb.Observations.SerializeToString(observations_to_proto(items, time.time(), 15.0)))
    for w in range(WINDOWS):
        now = time.time()
        await store.record_batch(
            [ObservationsIn(_pod(i), 3 + w, items, now, INTERVAL_S, now) for i in range(PODS)]
        )
    return wire_window


def _sqlite_size(path: Path) -> int:
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages = int(db.execute("PRAGMA page_count").fetchone()[0])
        return pages * int(db.execute("PRAGMA page_size").fetchone()[0])


def _pg_size(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("VACUUM")
        row = db.execute(
            "SELECT sum(pg_total_relation_size(oid)) FROM pg_class"
            " WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace"
        ).fetchone()
        return int(row[0]) if row else 0


async def _measure(store: FullStore, size: Callable[[], int]) -> tuple[float, float, int, int]:
    """(bytes per snapshot, bytes per window, wire bytes of a snapshot, of a window)."""
    await store.open()
    try:
        empty = await asyncio.to_thread(size)
        wire_snapshot = await _snapshots(store)
        after_snapshots = await asyncio.to_thread(size)
        wire_window = await _windows(store)
        after_windows = await asyncio.to_thread(size)
    finally:
        await store.close()
    return (
        (after_snapshots - empty) / PODS,
        (after_windows - after_snapshots) / (PODS * WINDOWS),
        wire_snapshot,
        wire_window,
    )


def _figures(backend: str, per_snapshot: float, per_window: float, wire_s: int, wire_w: int) -> list[Figure]:
    windows_kept = min(KEEP_WINDOWS, 86_400 / INTERVAL_S)
    day = 1000 * (CHANGES_PER_DAY * per_snapshot + windows_kept * per_window)
    wire_day = 1000 * (CHANGES_PER_DAY * wire_s + 86_400 / INTERVAL_S * wire_w)
    return [
        Figure(f"store.bytes_per_snapshot.{backend}", per_snapshot, "B", "the snapshot's wire bytes", wire_s),
        Figure(
            f"store.bytes_per_window.{backend}",
            per_window,
            "B",
            "the Observations message's wire bytes",
            wire_w,
        ),
        Figure(
            f"store.per_1000_replicas_day.{backend}",
            day,
            "B",
            f"the day's wire bytes (1,000 replicas, {CHANGES_PER_DAY} changes each, a window every "
            f"{INTERVAL_S:g} s; {windows_kept:g} windows kept per pod)",
            wire_day,
        ),
    ]


def run() -> list[Figure]:
    out: list[Figure] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "size.db"
        out += _figures("sqlite", *asyncio.run(_measure(SqliteStore(path), lambda: _sqlite_size(path))))
    try:
        from tests.support.postgres import PostgresServer, find_bin_dir
    except ImportError as e:  # pragma: no cover - the helper is part of the tests
        print(f"store size on PostgreSQL: skipped ({e})", file=sys.stderr)
        return out
    if find_bin_dir() is None:
        print("store size on PostgreSQL: skipped (no PostgreSQL server binaries)", file=sys.stderr)
        return out
    with tempfile.TemporaryDirectory() as tmp, PostgresServer(Path(tmp)) as pg:
        url = pg.create_database("size")
        out += _figures("postgresql", *asyncio.run(_measure(PostgresStore(url), lambda: _pg_size(url))))
    return out
