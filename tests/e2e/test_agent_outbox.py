"""The outbox with real processes: a real ``skewwatch agent`` with ``--outbox-file`` (the
``SKEWWATCH_OUTBOX_FILE`` the webhook sets) beside a stand-in vLLM. Its collector goes away, the
engine is restarted twice with another configuration, the agent itself is killed with SIGKILL and
started again; once the collector is back both changes are in the pod's history, in order, with
the sequence numbers and collection times they had in the journal before the agent was killed."""

from __future__ import annotations

import os
import re
import shutil
import signal
from pathlib import Path
from typing import Any

import pytest

from agent.outbox import SNAPSHOT, Outbox
from demo.harness import get_json, skewwatch
from demo.standin_vllm import LOAD_SECONDS_ENV
from tests.support.scenario import Scenario

pytestmark = pytest.mark.e2e
NS, POD = "prod", "llama-0"


def history(sc: Scenario) -> list[dict[str, Any]]:
    data = get_json(f"{sc.api}/api/v1/pods/{NS}/{POD}/history?limit=100")
    return list(reversed(data["snapshots"])) if data else []  # oldest first


def running(sc: Scenario) -> bool:
    p = sc.pod(NS, POD)
    return bool(
        p and "runtime.num_gpu_blocks" in p["facts"] and (p.get("engine") or {}).get("state") == "running"
    )


def waiting(journal: Path, tmp: Path) -> list[tuple[int, float]]:
    """(sequence, collected_at) of the snapshots the agent's journal holds, read from a copy (a
    load rewrites the file it reads)."""
    copy = tmp / "journal-copy"
    shutil.copyfile(journal, copy)
    box = Outbox(path=copy)
    try:
        return [(e.sequence, e.collected_at) for e in box if e.kind == SNAPSHOT]
    finally:
        box.close()


def test_changes_while_the_collector_is_away_survive_an_agent_kill9(sc: Scenario) -> None:
    journal = sc.tmp / "outbox"
    sc.env["SKEWWATCH_OUTBOX_FILE"] = str(journal)
    sc.env[LOAD_SECONDS_ENV] = "0.5"
    sc.start_collector()
    sc.start_replica(POD, NS)
    sc.wait("the first configuration stored", lambda: running(sc) and len(history(sc)) == 1)
    sc.procs.stop("collector")

    for n, dtype in enumerate(("float32", "bfloat16"), start=1):
        sc.restart_replica(POD, NS, dtype=dtype)
        sc.wait(f"change {n} in the journal", lambda n=n: len(waiting(journal, sc.tmp)) == n, timeout_s=45)  # type: ignore[misc]
    kept = waiting(journal, sc.tmp)
    assert [s for s, _ in kept] == sorted(s for s, _ in kept) and kept[0][1] < kept[1][1], kept

    agent = sc.procs.children.pop(f"agent-{POD}")
    os.killpg(agent.pid, signal.SIGKILL)
    agent.wait(timeout=10)
    port = sc.ports[POD]
    match = f"{re.escape(str(sc.vllm))} serve .*--port {port}( |$)"
    env = dict(
        sc.env,
        POD_NAMESPACE=NS,
        POD_NAME=POD,
        NODE_NAME="node-1",
        SKEWWATCH_WORKLOAD=f"{NS}/Deployment/llama",
    )
    argv = skewwatch(
        "agent", "--collector", f"127.0.0.1:{sc.grpc_port}", "--match", match, "--interval", "0.5"
    )
    sc.procs.start(f"agent-{POD}", argv, env)

    sc.start_collector()  # the same port and database
    sc.wait("both changes stored", lambda: len(history(sc)) >= 3, timeout_s=45)
    rows = history(sc)
    assert len(rows) == 3, [(r["sequence"], r["collected_at"]) for r in rows]
    got = [(r["sequence"], round(r["collected_at"], 3)) for r in rows[1:]]
    assert got == [(s, round(at, 3)) for s, at in kept], (got, kept)
    dtypes = [next(c for c in r["changes"] if c["key"] == "runtime.dtype")["after"] for r in rows[1:]]
    assert dtypes == ["float32", "bfloat16"], rows
    log = (sc.tmp / f"agent-{POD}.log").read_text()
    assert re.search(r"outbox \S+: \d+ messages not acknowledged", log), log[-3000:]
    sc.wait("the journal emptied by the acks", lambda: waiting(journal, sc.tmp) == [], timeout_s=20)
