"""A corrupt, read-only or full SQLite database: a clear error, /readyz fails, nothing acknowledged.

Real files and real processes: a database file of garbage or truncated refuses the start with
one line naming the file and "corrupt"; a page found malformed while running fails the write
with UNAVAILABLE (retryable), acknowledges nothing and fails /readyz; a collector process that
may not write its database (another uid, or root without CAP_DAC_OVERRIDE) refuses to start
naming "read-only"; a collector process under a real file size limit (``RLIMIT_FSIZE``, SIGXFSZ
ignored) fills its database through real agent streams until the write fails: UNAVAILABLE, no
ack, /readyz 503 naming "full" and EFBIG, and after a restart without the limit every snapshot
acknowledged before is there and the refused one is not.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import shutil
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import pytest

from collector.domain.records import SnapshotRecord
from collector.errors import StoreError
from collector.main import Collector
from collector.store.base import FullStore
from collector.store.sqlite import _truncated, classify
from demo.harness import free_port, skewwatch
from skewwatch.core.identity import PodKey
from tests.support.collector import (
    AgentStream,
    hello_msg,
    make_snapshot,
    observations_msg,
    settings_for,
    snapshot_msg,
    started,
)

START_TIMEOUT_S = 30.0
# Capabilities that let root write a file whatever its mode (dropped to make root obey modes).
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER = 1, 2, 3
PR_CAPBSET_DROP = 24


def _get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


async def _seed(tmp_path: Path, pods: int = 3) -> dict[str, str]:
    """A real database with ``pods`` pods' snapshots, acknowledged: pod → fingerprint."""
    acked: dict[str, str] = {}
    async with started(settings_for(tmp_path), tmp_path) as running:
        for i in range(pods):
            s = running.stream()
            await s.exchange(hello_msg(1, pod=f"seed-{i}"))
            snap = make_snapshot({"orchestration.pod": f"seed-{i}", "runtime.args.seed": i})
            reply = await s.exchange(snapshot_msg(2, snap))
            assert reply.WhichOneof("body") == "ack"
            acked[f"seed-{i}"] = snap.fingerprint.overall
            s.call.cancel()
    return acked


# -- corrupt -------------------------------------------------------------------------------------


def _collector_argv(db: Path, grpc_port: int, http_port: int) -> list[str]:
    return skewwatch("collector", "--grpc", f"127.0.0.1:{grpc_port}", "--http", f"127.0.0.1:{http_port}",
                     "--store", f"sqlite:///{db}")  # fmt: skip


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("SKEWWATCH_")}


def _cli_start(db: Path, prefix: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    argv = [*(prefix or []), *_collector_argv(db, free_port(), free_port())]
    return subprocess.run(
        argv, env=_env(), capture_output=True, text=True, timeout=START_TIMEOUT_S, check=False
    )


def _error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one line ``skewwatch collector`` ends with on a start error."""
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("skewwatch collector: error:")]
    assert result.returncode == 1, result.stderr[-2000:]
    assert len(lines) == 1, result.stderr[-2000:]
    return lines[0]


def test_a_database_file_of_garbage_refuses_the_start_naming_it_corrupt(tmp_path: Path) -> None:
    db = tmp_path / "collector.db"
    db.write_bytes(os.urandom(64 * 1024))
    line = _error_line(_cli_start(db))
    assert f"database file '{db}' is corrupt: file is not a database (SQLITE_NOTADB)" in line
    assert "restore it from a backup, or move it aside" in line


async def test_a_truncated_database_refuses_the_start_naming_it_corrupt(tmp_path: Path) -> None:
    await _seed(tmp_path, pods=20)
    db = tmp_path / "collector.db"
    size = db.stat().st_size
    assert not (tmp_path / "collector.db-wal").exists()  # checkpointed at close: all in the file
    with db.open("r+b") as f:
        f.truncate(size // 2)
    with pytest.raises(StoreError) as caught:
        await Collector(settings_for(tmp_path)).start()
    assert caught.value.reason == "corrupt"
    message = str(caught.value)
    assert "\n" not in message
    assert f"database file '{db}' is corrupt: truncated: {size // 2} bytes, its header says" in message


def _crash_during_checkpoint(directory: Path) -> Path:
    """A database as a collector killed in the middle of a checkpoint leaves it: the WAL holds
    commits that grew the database, and the checkpoint had copied page 1 (whose header counts the
    new pages) into the file but not yet the pages past its end. SQLite recovers it from the WAL.
    Built from a real WAL: both files copied while the writer is open, then page 1 copied in."""
    live, crashed = directory / "live.db", directory / "crashed.db"
    conn = sqlite3.connect(live)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("CREATE TABLE t (x TEXT)")
    conn.commit()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for i in range(200):
        conn.execute("INSERT INTO t VALUES (?)", (f"{i}" * 500,))
    conn.commit()
    shutil.copy(live, crashed)
    shutil.copy(live.with_name("live.db-wal"), crashed.with_name("crashed.db-wal"))
    conn.close()
    wal = crashed.with_name("crashed.db-wal").read_bytes()
    page_size = int.from_bytes(wal[8:12], "big")
    page_one, offset = None, 32
    while offset + 24 + page_size <= len(wal):  # the newest frame of page 1
        if int.from_bytes(wal[offset : offset + 4], "big") == 1:
            page_one = wal[offset + 24 : offset + 24 + page_size]
        offset += 24 + page_size
    assert page_one is not None
    with crashed.open("r+b") as f:
        f.seek(0)
        f.write(page_one)
    header_pages = int.from_bytes(page_one[28:32], "big")
    assert crashed.stat().st_size < header_pages * page_size  # "shorter than its header says"
    return crashed


def test_a_database_killed_mid_checkpoint_is_not_taken_for_a_truncated_one(tmp_path: Path) -> None:
    # The kill -9 test met it in CI: a restart after a kill refused the database as "truncated"
    # while SQLite would have recovered every commit from the WAL.
    crashed = _crash_during_checkpoint(tmp_path)
    assert _truncated(crashed) is None
    # Without its WAL the same file is what a truncated copy looks like, and is refused.
    bare = tmp_path / "bare.db"
    shutil.copy(crashed, bare)
    assert _truncated(bare) is not None
    conn = sqlite3.connect(crashed)  # and SQLite indeed recovers it whole from the WAL
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (200,)
    conn.close()


async def test_a_malformed_page_found_while_running_fails_the_write_unacknowledged(tmp_path: Path) -> None:
    await _seed(tmp_path)
    db = tmp_path / "collector.db"
    with contextlib.closing(sqlite3.connect(db)) as conn:
        (root,) = conn.execute(
            "SELECT rootpage FROM sqlite_schema WHERE name = 'observations_history'"
        ).fetchone()
        (page_size,) = conn.execute("PRAGMA page_size").fetchone()
    with db.open("r+b") as f:  # the table's root page: garbage, as a failing disk leaves it
        f.seek((root - 1) * page_size)
        f.write(os.urandom(page_size))
    async with started(settings_for(tmp_path), tmp_path) as running:
        status, body = await asyncio.to_thread(_get, f"{running.http}/readyz")
        assert status == 200, body  # the start reads nothing of that table
        s = running.stream()
        await s.exchange(hello_msg(1, pod="seed-0"))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await s.exchange(observations_msg(2, {"tokens_per_s": 1.0}))
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE  # retryable; no ack came first
        details = caught.value.details() or ""
        assert details.startswith("store unavailable, retry: ")
        assert f"database file '{db}' is corrupt: database disk image is malformed" in details
        status, body = await asyncio.to_thread(_get, f"{running.http}/readyz")
        assert status == 503
        assert body["checks"]["store"].startswith("failed: ")
        assert "is corrupt: database disk image is malformed" in body["checks"]["store"]


# -- read-only -----------------------------------------------------------------------------------


def _as_a_process_that_obeys_modes() -> list[str]:
    """A command prefix for a collector process that file modes stop. Root ignores modes, and the
    interpreter lives under /root (mode 0700) so another uid cannot run it: the child is root
    without the capabilities that override modes instead (dropped from its bounding set by
    ``setpriv`` before exec, so they are in none of its sets)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: cannot start a process that file modes stop")
    prefix = [setpriv, "--bounding-set", "-dac_override,-dac_read_search,-fowner", "--"]
    probe = subprocess.run([*prefix, "true"], capture_output=True, timeout=10, check=False)
    if probe.returncode != 0:
        pytest.skip(f"setpriv cannot drop CAP_DAC_OVERRIDE here: {probe.stderr.decode()[-200:]}")
    return prefix


def _start_read_only(tmp_path: Path, db: Path, file_mode: int, dir_mode: int) -> str:
    prefix = _as_a_process_that_obeys_modes()
    db.chmod(file_mode)
    tmp_path.chmod(dir_mode)
    try:
        return _error_line(_cli_start(db, prefix))
    finally:
        tmp_path.chmod(0o755)
        db.chmod(0o644)


@pytest.mark.parametrize(
    ("file_mode", "dir_mode", "says"),
    [
        (0o444, 0o755, "cannot write the file"),
        (0o644, 0o555, "cannot write its directory"),
    ],
    ids=["file", "directory"],
)
async def test_a_database_the_process_may_not_write_refuses_the_start_naming_it_read_only(
    tmp_path: Path, file_mode: int, dir_mode: int, says: str
) -> None:
    await _seed(tmp_path)
    db = tmp_path / "collector.db"
    line = await asyncio.to_thread(_start_read_only, tmp_path, db, file_mode, dir_mode)
    assert f"database file '{db}' is read-only for this collector: uid {os.geteuid()} {says}" in line
    assert "give it write access to the file and its directory" in line


def test_classify_names_each_failure_of_the_database(tmp_path: Path) -> None:
    """The one classification, over errors a real SQLite raised (locked, read-only) or its codes."""
    db = tmp_path / "x.db"
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN IMMEDIATE")
    other = sqlite3.connect(db, timeout=0.05)
    with pytest.raises(sqlite3.OperationalError) as locked:
        other.execute("INSERT INTO t VALUES (1)")
    holder.execute("ROLLBACK")
    error = classify(locked.value, db, "sqlite:///x", 0.05)
    assert error.reason == "locked"
    assert "is locked: another process or connection holds it longer than 0.05 s" in str(error)
    ro = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    with pytest.raises(sqlite3.OperationalError) as readonly:
        ro.execute("INSERT INTO t VALUES (1)")
    assert classify(readonly.value, db, "sqlite:///x").reason == "read_only"
    plain = classify(sqlite3.IntegrityError("UNIQUE constraint failed: t.x"), db, "sqlite:///x")
    assert (
        plain.reason is None
        and str(plain) == "store sqlite:///x: IntegrityError: UNIQUE constraint failed: t.x"
    )
    for c in (holder, other, ro):
        c.close()


# -- full ----------------------------------------------------------------------------------------


def _start_limited(argv: list[str], log: Path, limit: int) -> subprocess.Popen[str]:
    """The collector under a file size limit: Python ignores SIGXFSZ itself, so a write past the
    limit fails with EFBIG instead of killing the process. Set once it runs (``prlimit``), before
    it opens its database."""
    with log.open("w") as out:
        proc = subprocess.Popen(argv, env=_env(), stdout=out, stderr=subprocess.STDOUT, text=True)
    resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (limit, limit))
    return proc


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def _wait_ready(http: str, proc: subprocess.Popen[str], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"collector exited {proc.returncode}: {log.read_text()[-2000:]}")
        with contextlib.suppress(OSError, ValueError):
            if _get(f"{http}/readyz")[0] == 200:
                return
        time.sleep(0.1)
    raise AssertionError(f"collector not ready within {START_TIMEOUT_S} s: {log.read_text()[-2000:]}")


async def _fill(grpc_port: int) -> tuple[dict[int, str], tuple[int, str, grpc.StatusCode, str]]:
    """Snapshots of a growing configuration on one real stream until one is not acknowledged:
    (sequence → fingerprint acknowledged, (the refused sequence, its fingerprint, code, details))."""
    acked: dict[int, str] = {}
    async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        s = AgentStream(channel)
        await s.exchange(hello_msg(1, pod="filler"))
        for seq in range(2, 2000):
            facts = {"orchestration.pod": "filler", "runtime.args.note": os.urandom(3000).hex()}
            snap = make_snapshot(facts)
            try:
                reply = await s.exchange(snapshot_msg(seq, snap))
            except grpc.aio.AioRpcError as e:
                return acked, (seq, snap.fingerprint.overall, e.code(), e.details() or "")
            assert reply.WhichOneof("body") == "ack" and reply.ack.sequence == seq
            acked[seq] = snap.fingerprint.overall
    raise AssertionError("the database never filled up")


async def test_a_database_that_cannot_grow_fails_unacknowledged_and_keeps_what_was_acked(
    tmp_path: Path,
) -> None:
    seeded = await _seed(tmp_path)
    db = tmp_path / "collector.db"
    grpc_port, http_port = free_port(), free_port()
    http = f"http://127.0.0.1:{http_port}"
    log = tmp_path / "collector.log"
    limit = 384 * 1024  # the WAL (emptied at the last close) may grow this much, the log too
    proc = await asyncio.to_thread(_start_limited, _collector_argv(db, grpc_port, http_port), log, limit)
    try:
        await asyncio.to_thread(_wait_ready, http, proc, log)
        acked, (refused_seq, refused_fp, code, details) = await _fill(grpc_port)
        assert len(acked) >= 3, "the limit should leave room for a few snapshots"
        assert code == grpc.StatusCode.UNAVAILABLE, details
        assert details.startswith("store unavailable, retry: ")
        assert f"database file '{db}' is full, it cannot grow: EFBIG: " in details
        assert f"at the process's file size limit (RLIMIT_FSIZE {limit})" in details
        status, body = await asyncio.to_thread(_get, f"{http}/readyz")
        assert status == 503, body
        assert "is full, it cannot grow: EFBIG" in body["checks"]["store"]
        assert "the last write failed" in body["checks"]["store"]
    finally:
        await asyncio.to_thread(_stop, proc)
    # The limit lifted (a restart without it): everything acknowledged is there, the refused one is not.
    async with started(settings_for(tmp_path), tmp_path) as running:
        status, body = await asyncio.to_thread(_get, f"{running.http}/readyz")
        assert status == 200, body
        store = running.collector.store
        for pod, fp in seeded.items():
            assert [row.fingerprint.overall for row in await _history(store, pod)] == [fp]
        stored = {row.fingerprint.overall for row in await _history(store, "filler")}
        assert set(acked.values()) <= stored
        assert refused_fp not in stored
        assert refused_seq not in {row.sequence for row in await _history(store, "filler")}


def _key(pod: str) -> PodKey:
    return PodKey("ml", pod)


async def _history(store: FullStore, pod: str) -> list[SnapshotRecord]:
    return await store.history(_key(pod), 1000)
