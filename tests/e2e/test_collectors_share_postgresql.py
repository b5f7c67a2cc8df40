"""Two real collector processes on one real PostgreSQL: one owner per workload, hand-overs,
intents seen by both, and one collector killed under load while the other carries on.

Agents are protocol-level streams over real gRPC (tests.support.collector), each keeping what the
collector acknowledged. Collector A starts first and comes to own the workload; B's pods' changes
are handed over to A (A's log opens the finding, B's does not). Then A is SIGKILLed mid-load:
every snapshot A acknowledged must be in the history B serves, A's streams reconnect to B, and B
takes the workload over (its owner's locks went with its database session) and opens the next
finding itself. No finding is ever duplicated.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from demo.harness import Processes, free_port, get_json, skewwatch, wait_for
from tests.support.collector import (
    A100_40GB_FACTS,
    BASE_FACTS,
    H100_FACTS,
    AgentStream,
    hello_msg,
    make_snapshot,
    snapshot_msg,
)
from tests.support.postgres import PostgresServer

pytestmark = pytest.mark.e2e

FIXTURES = Path(__file__).parents[1] / "fixtures" / "intents"
KEY = "hardware.gpu.product"


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[PostgresServer]:
    with PostgresServer(tmp_path / "pg") as server:
        yield server


class Collector:
    def __init__(self, procs: Processes, name: str, store: str, env: dict[str, str]) -> None:
        self.name, self.grpc, self.http = name, free_port(), free_port()
        self.proc = procs.start(
            name,
            skewwatch("--log-level", "INFO", "collector", "--grpc", f"127.0.0.1:{self.grpc}",
                      "--http", f"127.0.0.1:{self.http}", "--store", store),
            env,
        )  # fmt: skip
        self.log = procs.logdir / f"{name}.log"
        self.url = f"http://127.0.0.1:{self.http}"
        wait_for(f"{name} ready", lambda: get_json(f"{self.url}/readyz")["status"] == "ready", procs)

    def get(self, path: str) -> Any:
        return get_json(self.url + path)

    def post(self, path: str, body: bytes) -> Any:
        req = urllib.request.Request(self.url + path, data=body, method="POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.load(r)

    def findings(self) -> list[dict[str, Any]]:
        return [f for f in self.get("/api/v1/findings?limit=1000")["findings"] if f["key"] == KEY]


class Pod:
    """One simulated agent: its stream, its sequence, the fingerprints the collector acked."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.seq = 0
        self.acked: list[str] = []
        self.sent: list[str] = []
        self.stream: AgentStream | None = None
        self.gpu = H100_FACTS

    async def connect(self, channel: grpc.aio.Channel) -> None:
        self.stream = AgentStream(channel)
        self.seq += 1
        assert (await self.stream.exchange(hello_msg(self.seq, pod=self.name))).WhichOneof("body") == "ack"

    async def snapshot(self, n: int = 0) -> None:
        assert self.stream is not None
        snap = make_snapshot(
            {**BASE_FACTS, **self.gpu, "orchestration.pod": self.name, "runtime.args.seed": n}
        )
        self.seq += 1
        self.sent.append(snap.fingerprint.overall)
        reply = await self.stream.exchange(snapshot_msg(self.seq, snap))
        assert reply.ack.sequence == self.seq
        self.acked.append(snap.fingerprint.overall)


async def load(pods: list[Pod], stop: asyncio.Event) -> None:
    """Each pod sends changed snapshots back to back until ``stop`` (or its stream breaks)."""

    async def one(p: Pod) -> None:
        n = 0
        with contextlib.suppress(grpc.aio.AioRpcError, AssertionError, asyncio.InvalidStateError):
            while not stop.is_set():
                n += 1
                await p.snapshot(n)

    await asyncio.gather(*(one(p) for p in pods))


def wait(what: str, check: Any, procs: Processes, timeout_s: float = 30.0) -> None:
    wait_for(what, check, procs, timeout_s)


async def test_two_collectors_one_database_one_owner_and_one_survives_the_other(
    tmp_path: Path, procs: Processes, pg: PostgresServer
) -> None:
    store = pg.create_database("fleet")
    env = {**os.environ, "SKEWWATCH_DRIFT_TICK": "0.2", "SKEWWATCH_CLAIM_INTERVAL": "0.5",
           "SKEWWATCH_BASELINE_STABLE": "0", "SKEWWATCH_OBSERVATION_EVAL_INTERVAL": "0"}  # fmt: skip
    a = Collector(procs, "collector-a", store, env)
    pods = [Pod(f"llm-{i}") for i in range(6)]
    chan_a = grpc.aio.insecure_channel(f"127.0.0.1:{a.grpc}")
    for p in pods[:3]:
        await p.connect(chan_a)
        await p.snapshot()
    # Each acknowledged snapshot scheduled an evaluation at once; a second is ample for A's worker
    # to have run it, and so to hold the workload, before B exists (no event says so from outside).
    await asyncio.sleep(1.0)
    b = Collector(procs, "collector-b", store, env)
    chan_b = grpc.aio.insecure_channel(f"127.0.0.1:{b.grpc}")
    try:
        for p in pods[3:]:
            await p.connect(chan_b)
            await p.snapshot()
        # A pod on B lands on an A100: B stores it and hands the workload over to its owner, A.
        pods[5].gpu = A100_40GB_FACTS
        await pods[5].snapshot(1)
        wait(
            "one open finding, seen through both",
            lambda: [f["status"] for f in a.findings()] == ["open"] and len(b.findings()) == 1,
            procs,
        )
        assert a.findings()[0]["id"] == b.findings()[0]["id"]
        assert f"finding opened on ml/Deployment/llm: {KEY}" in a.log.read_text()
        assert "finding opened on" not in b.log.read_text()
        assert "evaluating ml/Deployment/llm: no other collector owns it" in a.log.read_text()

        # An intent posted to A is loaded by B.
        a.post("/api/v1/intents", (FIXTURES / "10-policy.skewpolicy.yaml").read_bytes())
        wait(
            "B sees A's intent",
            lambda: any(i["name"] == "llama-prod-pins" for i in b.get("/api/v1/intents")["intents"]),
            procs,
            10,
        )

        # Kill A under load: every pod sends changed snapshots back to back.
        pods[5].gpu = H100_FACTS
        stop = asyncio.Event()
        running = asyncio.create_task(load(pods, stop))
        await asyncio.sleep(1.5)
        os.killpg(a.proc.pid, signal.SIGKILL)
        a.proc.wait(timeout=10)
        procs.children.pop("collector-a")
        await asyncio.sleep(1.0)  # B's pods keep being acknowledged meanwhile
        stop.set()
        await running
        assert all(len(p.acked) > 3 for p in pods), [len(p.acked) for p in pods]

        # Nothing A acknowledged is lost: B serves every acknowledged configuration.
        for p in pods:
            rows = b.get(f"/api/v1/pods/ml/{p.name}/history?limit=1000")["snapshots"]
            stored = {r["fingerprint"]["overall"] for r in rows}
            lost = [fp for fp in p.acked if fp not in stored]
            assert not lost, (p.name, len(lost), len(p.acked))

        # A's agents reconnect to B; B takes the workload over and evaluates it itself.
        for p in pods[:3]:
            await p.connect(chan_b)
            await p.snapshot(1000)
        taken = "evaluating ml/Deployment/llm: no other collector owns it"
        wait("B owns the orphaned workload", lambda: taken in b.log.read_text(), procs)
        pods[0].gpu = A100_40GB_FACTS
        await pods[0].snapshot(1001)
        wait(
            "B opens the next finding",
            lambda: any(f["status"] == "open" and "llm-0" in f["pods"] for f in b.findings()),
            procs,
        )
        assert f"finding opened on ml/Deployment/llm: {KEY}" in b.log.read_text()
        active = [f for f in b.findings() if f["status"] in ("pending", "open")]
        assert len(active) == 1, active  # one cause, one finding: never one per collector
    finally:
        await chan_a.close()
        await chan_b.close()
