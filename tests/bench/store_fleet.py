"""A fleet at rest for benchmarks: a SQLite store of N workloads x M replicas and a collector on it.

The store is written directly with sqlite3 after the collector's own migrations (``SqliteStore.open``
creates the schema), far faster than streaming 8,000 snapshots through gRPC: each replica has 60
facts (40 ``runtime.args.flag_*``, 10 ``model.files.*`` shards and the usual engine, model, GPU,
port, image and pod facts), with the same encoding the store uses (``collector.store.codec``).
Replicas of workload ``w`` are pods ``llm{w}-{r}`` of ``bench/Deployment/llm{w}`` (workload_source
``env``); all replicas of a workload are alike unless ``dtype`` says otherwise for one of them.

``stored_collector`` starts a real ``skewwatch collector`` process on such a store and returns once
its initial evaluation of every workload is done (its log line), so what is timed afterwards is
the steady state, not the start-up.
"""

# ruff: noqa: E501  (SQL and fact tables read better unwrapped)

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collector.store.codec import encode_facts, encode_fingerprint, encode_provenance, encode_sources
from collector.store.sqlite import SqliteStore
from demo.harness import free_port
from skewwatch import __version__
from skewwatch.core.facts import Snapshot, SourceState, SourceStatus, make_fact
from skewwatch.core.fingerprint import fingerprint_facts

WORKLOADS = 1000
REPLICAS = 8
NAMESPACE = "bench"


def replica_facts(pod: str, dtype: str) -> dict[str, Any]:
    """The 60 facts of one replica: only ``runtime.dtype`` and ``orchestration.pod`` vary."""
    f: dict[str, Any] = {f"runtime.args.flag_{j}": f"value-{j}" for j in range(40)}
    f.update(
        {f"model.files.shard-{j:05d}.safetensors": {"sha256": "ab" * 32, "bytes": 4 << 30} for j in range(10)}
    )
    f.update({"runtime.engine": "vllm", "runtime.dtype": dtype, "runtime.max_model_len": 8192,
              "runtime.served_model_name": "llama", "hardware.gpu.product": "h100-80gb", "hardware.gpu.count": 1,
              "serving.port": 8000, "orchestration.image_digest": "sha256:" + "c" * 64, "orchestration.pod": pod})  # fmt: skip
    return f


def replica_snapshot(pod: str, dtype: str) -> Snapshot:
    fs = [make_fact(k, v, "process", "arg") for k, v in replica_facts(pod, dtype).items()]
    return Snapshot(
        facts={f.key: f for f in fs},
        sources={"process": SourceStatus("process", SourceState.OK)},
        fingerprint=fingerprint_facts(fs),
        collected_at=time.time(),
    )


def pod_name(w: int, r: int) -> str:
    return f"llm{w}-{r}"


def workload_id(w: int) -> str:
    """The id the collector gives workload ``w`` (``NS/KIND/NAME``)."""
    return f"{NAMESPACE}/Deployment/llm{w}"


def _same_dtype(w: int, r: int) -> str:
    return "float16"


def populate(
    path: Path,
    workloads: int = WORKLOADS,
    replicas: int = REPLICAS,
    dtype: Callable[[int, int], str] = _same_dtype,
) -> None:
    """Write ``workloads`` x ``replicas`` pods, each with one stored snapshot, into a new store at ``path``."""
    store = SqliteStore(path)
    asyncio.run(store.open())
    asyncio.run(store.close())
    db = sqlite3.connect(path, isolation_level=None)
    now = time.time()
    db.execute("BEGIN")
    for w in range(workloads):
        for r in range(replicas):
            pod = pod_name(w, r)
            snap = replica_snapshot(pod, dtype(w, r))
            facts = encode_facts({k: f.value for k, f in snap.facts.items()})
            prov = encode_provenance({k: f.provenance for k, f in snap.facts.items()})
            sources = encode_sources(snap.sources)
            fps = encode_fingerprint(snap.fingerprint)
            cur = db.execute(
                "INSERT INTO snapshots (namespace, pod, sequence, agent_id, collected_at, received_at, fingerprint,"
                " fingerprints, facts, provenance, sources) VALUES (?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?)",
                (NAMESPACE, pod, pod, now, now, snap.fingerprint.overall, fps, facts, prov, sources),
            )
            db.execute(
                "INSERT INTO pods (namespace, pod, node, workload, workload_source, agent_id, agent_version,"
                " first_seen, last_seen, last_sequence, current_snapshot_id, current_fingerprint, current_sequence,"
                " current_collected_at, current_received_at, current_facts, current_provenance, current_sources,"
                " current_fingerprints) VALUES (?, ?, 'node', ?, 'env', ?, ?, ?, ?, 1, ?, ?, 1, ?, ?, ?, ?, ?, ?)",
                (NAMESPACE, pod, workload_id(w), pod, __version__, now, now, cur.lastrowid,
                 snap.fingerprint.overall, now, now, facts, prov, sources, fps),
            )  # fmt: skip
    db.execute("COMMIT")
    db.close()


@dataclass(frozen=True)
class RunningCollector:
    grpc_target: str  # HOST:PORT
    http: str  # http://HOST:PORT
    pid: int
    log: Path


@contextlib.contextmanager
def stored_collector(store: Path, workdir: Path, timeout_s: float = 300) -> Iterator[RunningCollector]:
    """A real collector on ``store`` (loopback ports), once its initial evaluation is done; stopped on exit."""
    grpc_port, http_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKEWWATCH_")}
    env["SKEWWATCH_BASELINE_STABLE"] = "0"
    log = workdir / "collector.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "skewwatch.cli", "collector", "--grpc", f"127.0.0.1:{grpc_port}",
             "--http", f"127.0.0.1:{http_port}", "--store", f"sqlite:///{store}"],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + timeout_s
        while "initial evaluation of" not in log.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"collector did not finish its initial evaluation:\n{log.read_text()[-2000:]}"
                )
            time.sleep(0.2)
        yield RunningCollector(f"127.0.0.1:{grpc_port}", f"http://127.0.0.1:{http_port}", proc.pid, log)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
