"""The collector's ingest rate over real gRPC, against raw SQLite writes of the same bytes.

Set-up: a real collector process (SQLite store in a temp dir) on loopback; one client stream in
this process sends a Hello, then N snapshots of 200 facts each, every one with a changed fact so
that each is stored as a history row, then N heartbeats; each message counts once acknowledged
(the collector acks only after the write commits). Figures:

- ``collector.ingest_snapshots``: snapshots per second, acknowledged; reference: rows per second
  of plain ``sqlite3`` inserting the same serialised snapshot bytes, WAL with synchronous=FULL and
  one commit per row (the durability an ack promises), in this process.
- ``collector.ingest_heartbeats``: heartbeats per second, acknowledged; same reference.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import grpc

from demo.harness import free_port
from proto.skewwatch.v1 import skewwatch_pb2 as pb
from proto.skewwatch.v1 import skewwatch_pb2_grpc as pb_grpc
from skewwatch import PROTOCOL_VERSION, __version__
from skewwatch.core.facts import Snapshot, SourceState, SourceStatus, make_fact
from skewwatch.core.fingerprint import fingerprint_facts
from skewwatch.wire import snapshot_to_proto, timestamp
from tests.bench.common import Figure

N = 400


def _snapshot(i: int) -> Snapshot:
    facts = [make_fact(f"runtime.args.flag_{j}", f"value-{j}", "process", "arg") for j in range(150)]
    facts += [make_fact(f"model.files.shard-{j:05d}.safetensors", {"sha256": "ab" * 32, "bytes": 4 << 30},
                        "model_files", "file") for j in range(49)]  # fmt: skip
    facts.append(make_fact("runtime.max_num_seqs", 256 + i, "process", "arg"))
    fmap = {f.key: f for f in facts}
    return Snapshot(
        facts=fmap,
        sources={"process": SourceStatus("process", SourceState.OK)},
        fingerprint=fingerprint_facts(facts),
        collected_at=time.time(),
    )


def _raw_sqlite_rate(payloads: list[bytes], path: Path) -> float:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, pod TEXT, seq INTEGER, body BLOB)")
    start = time.perf_counter()
    for i, body in enumerate(payloads):
        db.execute("BEGIN")
        db.execute("INSERT INTO t (pod, seq, body) VALUES (?, ?, ?)", ("ns/pod", i, body))
        db.execute("COMMIT")
    elapsed = time.perf_counter() - start
    db.close()
    return len(payloads) / elapsed


async def _stream(target: str, messages: list[pb.AgentMessage]) -> float:
    async with grpc.aio.insecure_channel(target) as channel:
        await asyncio.wait_for(channel.channel_ready(), timeout=10)
        call = pb_grpc.IngestStub(channel).Stream()
        hello = pb.AgentMessage(
            sequence=1,
            hello=pb.Hello(
                agent_id="bench",
                pod=pb.PodIdentity(namespace="bench", pod="bench-0"),
                agent_version=__version__,
                protocol_version=PROTOCOL_VERSION,
            ),
        )
        await call.write(hello)
        last = messages[-1].sequence

        async def acks() -> None:
            while True:
                msg = await call.read()
                if msg is grpc.aio.EOF:
                    raise RuntimeError("collector closed the stream")
                assert isinstance(msg, pb.CollectorMessage)
                if msg.WhichOneof("body") == "ack" and msg.ack.sequence >= last:
                    return

        reader = asyncio.create_task(acks())
        start = time.perf_counter()
        for m in messages:
            await call.write(m)
        await asyncio.wait_for(reader, timeout=300)
        elapsed = time.perf_counter() - start
        await call.done_writing()
        return len(messages) / elapsed


def run() -> list[Figure]:
    snaps = [snapshot_to_proto(_snapshot(i)) for i in range(N)]
    snap_msgs = [pb.AgentMessage(sequence=2 + i, snapshot=s) for i, s in enumerate(snaps)]
    final_fp = snaps[-1].fingerprint.overall
    hb_msgs = [
        pb.AgentMessage(
            sequence=2 + N + i,
            heartbeat=pb.Heartbeat(at=timestamp(time.time()), overall_fingerprint=final_fp),
        )
        for i in range(N)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        reference = _raw_sqlite_rate([s.SerializeToString() for s in snaps], root / "raw.db")
        grpc_port, http_port = free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SKEWWATCH_")}
        proc = subprocess.Popen(
            [sys.executable, "-m", "skewwatch.cli", "--log-level", "WARNING", "collector",
             "--grpc", f"127.0.0.1:{grpc_port}", "--http", f"127.0.0.1:{http_port}",
             "--store", f"sqlite:///{root}/store.db"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{http_port}/readyz", timeout=2)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            target = f"127.0.0.1:{grpc_port}"
            snap_rate = asyncio.run(_stream(target, snap_msgs))
            hb_rate = asyncio.run(_stream(target, [*snap_msgs[-1:], *hb_msgs]))
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    ref = "raw sqlite3 insert+commit of the same bytes (WAL, synchronous=FULL)"
    return [
        Figure("collector.ingest_snapshots[200 facts]", snap_rate, "1/s", ref, reference),
        Figure("collector.ingest_heartbeats", hb_rate, "1/s", ref, reference),
    ]
