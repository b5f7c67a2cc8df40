"""Nothing acknowledged is lost, nothing changed is skipped: a real collector process (``skewwatch
collector`` on SQLite) is killed with SIGKILL at random moments, at least 50 times, and restarted on
the same port and database each time, while real ``AgentStream``s in this process, each with an
outbox journal, publish a new configuration every few hundred milliseconds (observations with
each, an event now and then), and one of them is itself restarted from its journal now and then.

At the end, read with SQL on the SQLite file: every snapshot, event and observations message the
collector acknowledged is stored, each once; every configuration published reached the pod's
history in order with its collection time; ``PRAGMA integrity_check`` is ok after every kill and at the end.
The seeded RNG (``KILL9_SEED``) makes the kill moments reproducible in intent, not in timing.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import grpc
import pytest

from agent.lifecycle import Event
from agent.outbox import EVENT, OBSERVATIONS, SNAPSHOT, Outbox
from agent.stream import AgentStream, Backoff, LatestSnapshot
from agent.transport import Connection
from demo.harness import lasting_port, skewwatch
from skewwatch.core.facts import Observation
from skewwatch.core.identity import PodIdentity
from tests.support.collector import BASE_FACTS, make_snapshot

pytestmark = pytest.mark.e2e

KILLS = int(os.environ.get("KILL9_KILLS", "50"))
SEED = int(os.environ.get("KILL9_SEED", "16"))
AGENTS = 4
PUBLISH_EVERY_S = (0.15, 0.4)
UP_FOR_S = (0.1, 1.2)  # how long the collector lives before the next kill


# A channel with its own subchannel (gRPC's shared pool would carry the reconnect backoff of earlier
# channels, up to 2 minutes after many failures, into each new one), retrying its connection every
# 100-300 ms: a collector up for a second between kills is reached while it is up.
CHANNEL_OPTIONS = [
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 300),
]


def fresh(target: str) -> Connection:
    return Connection(grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS))


class RecordingOutbox(Outbox):
    """An outbox that remembers every kept message an ack removed: what the collector acknowledged."""

    def __init__(self, acked: dict[int, str], **kw: object) -> None:
        self.acked_log = acked
        self.last_ack = time.monotonic()
        super().__init__(**kw)  # type: ignore[arg-type]

    def ack(self, sequence: int) -> int:
        self.last_ack = time.monotonic()
        for entry in self:
            if entry.sequence <= sequence:
                self.acked_log[entry.sequence] = entry.kind
        return super().ack(sequence)


@dataclass
class Pod:
    index: int
    journal: Path
    identity: PodIdentity
    acked: dict[int, str] = field(default_factory=dict)  # sequence -> kind
    published: list[float] = field(default_factory=list)  # collected_at of each configuration
    latest: LatestSnapshot | None = None
    task: asyncio.Task[None] | None = None
    restarts: int = 0
    dropped: Counter[str] = field(default_factory=Counter)  # by the outboxes of every agent run
    stream: AgentStream | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # a restart and a publish do not interleave
    stalls: list[str] = field(default_factory=list)

    def start(self, target: str) -> None:
        outbox = RecordingOutbox(self.acked, path=self.journal)
        self.latest = LatestSnapshot(outbox)
        self.stream = stream = AgentStream(
            target, lambda _s: self.identity, self.latest, 0.3, connect=lambda: fresh(target)
        )
        stream.backoff = Backoff(0.05, 0.5)  # come back fast: the test is about what comes back
        self.task = asyncio.create_task(stream.run_forever())

    async def stop(self) -> None:
        assert self.task is not None and self.latest is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        self.latest.outbox.close()
        self.dropped += self.latest.outbox.dropped
        self.task = None

    async def restart(self, target: str) -> None:
        async with self.lock:
            await self.stop()
            self.restarts += 1
            self.start(target)

    async def publish(self, n: int) -> None:
        async with self.lock:
            await self._publish(n)

    async def _publish(self, n: int) -> None:
        assert self.latest is not None
        at = round(time.time(), 3)
        snap = make_snapshot({**BASE_FACTS, "runtime.args.seed": self.index * 1_000_000 + n}, collected_at=at)
        snap = replace(snap, observations={"tokens_per_s": Observation("tokens_per_s", float(n), "1/s")})
        events = [Event(at, "restart", 100 + n, 101 + n, 1.0, 2.0, f"restart {n}")] if n % 7 == 0 else []
        await self.latest.publish(snap, events=events)
        self.published.append(at)


class CollectorProcess:
    def __init__(self, tmp: Path) -> None:
        self.db = tmp / "store.db"
        # Outside the ephemeral range: 50 restarts on one port must never find it taken by an
        # outgoing connection of the agents reconnecting meanwhile.
        self.grpc, self.http = lasting_port(), lasting_port()
        while self.http == self.grpc:
            self.http = lasting_port()
        self.log = (tmp / "collector.log").open("ab")
        self.proc: subprocess.Popen[bytes] | None = None
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SKEWWATCH_")}

    def start(self) -> None:
        argv = skewwatch("collector", "--grpc", f"127.0.0.1:{self.grpc}", "--http", f"127.0.0.1:{self.http}",
                         "--store", f"sqlite:///{self.db}")  # fmt: skip
        self.proc = subprocess.Popen(argv, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)

    async def ready(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, "the collector exited: " + self.tail()
            if await asyncio.to_thread(self._ready):
                return
            await asyncio.sleep(0.05)
        raise TimeoutError("the collector did not get ready")

    def tail(self, lines: int = 15) -> str:
        """The end of the collector's log (why it exited)."""
        self.log.flush()
        text = Path(self.log.name).read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/readyz", timeout=1) as r:
                return bool(r.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def integrity(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


TABLES = {SNAPSHOT: "snapshots", EVENT: "pod_events", OBSERVATIONS: "observations_history"}


def check_stored(conn: sqlite3.Connection, pod: Pod) -> int:
    """Every message ``pod`` saw acknowledged is stored, once; its history is what it published,
    in order, less the snapshots its outbox dropped (and said so). Returns the acks checked."""
    where = ("ml", pod.identity.pod)
    stored: dict[str, Counter[int]] = {}
    for kind, table in TABLES.items():
        seqs = conn.execute(f"SELECT sequence FROM {table} WHERE namespace = ? AND pod = ?", where)
        stored[kind] = Counter(s for (s,) in seqs)
        twice = [s for s, c in stored[kind].items() if c > 1]
        assert not twice, f"{pod.identity.pod}: {table} holds sequences {twice[:10]} twice"
    missing = [(s, k) for s, k in sorted(pod.acked.items()) if s not in stored[k]]
    assert not missing, f"{pod.identity.pod}: acknowledged but not stored: {missing[:10]}"
    history = [  # milliseconds: the wire Timestamp and a float do not round alike
        round(at, 3)
        for (at,) in conn.execute(
            "SELECT collected_at FROM snapshots WHERE namespace = ? AND pod = ? ORDER BY id", where
        )
    ]
    assert history == sorted(set(history)), f"{pod.identity.pod}: history out of order"
    skipped = sorted(set(pod.published) - set(history))
    assert set(history) <= set(pod.published) and len(skipped) == pod.dropped[SNAPSHOT], (
        f"{pod.identity.pod}: history of {len(history)} configurations, {len(pod.published)} published, "
        f"{pod.dropped[SNAPSHOT]} dropped; not in history: {skipped[:5]}; stalls: {pod.stalls[-5:]}"
    )
    if pod.dropped:
        reports = conn.execute(
            "SELECT count(*) FROM pod_events WHERE namespace = ? AND pod = ? AND kind = 'outbox_dropped'",
            where,
        ).fetchone()[0]
        assert reports > 0, f"{pod.identity.pod}: {dict(pod.dropped)} dropped, never reported"
    return len(pod.acked)


async def publish_forever(pod: Pod, seed: int, stop: asyncio.Event) -> None:
    """A new configuration every few hundred milliseconds until ``stop``."""
    r = random.Random(seed)
    n = 0
    while not stop.is_set():
        n += 1
        await pod.publish(n)
        await asyncio.sleep(r.uniform(*PUBLISH_EVERY_S))


async def watch(pods: list[Pod], stop: asyncio.Event) -> None:
    """Note when a pod goes long without an ack (what was its stream doing?)."""
    while not stop.is_set():
        await asyncio.sleep(1.0)
        for pod in pods:
            box, stream = pod.latest.outbox if pod.latest else None, pod.stream
            if isinstance(box, RecordingOutbox) and stream is not None:
                quiet = time.monotonic() - box.last_ack
                if quiet > 8:
                    pod.stalls.append(
                        f"{pod.identity.pod}: no ack for {quiet:.0f} s, {len(box)} waiting, "
                        f"connected={stream.connected.is_set()}, reconnects={stream.reconnects}"
                    )


async def test_acknowledged_messages_survive_kill9_of_the_collector(tmp_path: Path) -> None:
    began = time.monotonic()
    rng = random.Random(SEED)
    collector = CollectorProcess(tmp_path)
    target = f"127.0.0.1:{collector.grpc}"
    pods = [
        Pod(i, tmp_path / f"outbox-{i}", PodIdentity("ml", f"llm-{i}", "node-1", "ml/Deployment/llm", "env"))
        for i in range(AGENTS)
    ]
    stop = asyncio.Event()

    collector.start()
    await collector.ready()
    watcher = asyncio.create_task(watch(pods, stop))
    for pod in pods:
        pod.start(target)
    publishers = [asyncio.create_task(publish_forever(p, SEED * 100 + p.index, stop)) for p in pods]
    kills, checks = 0, 0
    try:
        for kills in range(1, KILLS + 1):
            await asyncio.sleep(rng.uniform(*UP_FOR_S))
            collector.kill9()
            assert integrity(collector.db) == "ok", f"after kill {kills}"
            checks += 1
            if kills % 10 == 0:  # the agent restarts too, from its journal
                await pods[rng.randrange(AGENTS)].restart(target)
            await asyncio.sleep(rng.uniform(0.0, 0.3))  # down for a while, agents keep publishing
            collector.start()
            await collector.ready()
        killed_for = time.monotonic() - began
        stop.set()
        await asyncio.gather(*publishers)
        deadline = time.monotonic() + 60
        while any(p.latest is not None and len(p.latest.outbox) for p in pods):
            assert time.monotonic() < deadline, [len(p.latest.outbox) for p in pods if p.latest]
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        watcher.cancel()
        for t in publishers:
            t.cancel()
        for pod in pods:
            if pod.task is not None:
                await pod.stop()
        collector.stop()
    for pod in pods:
        print("\n".join(pod.stalls[-3:]))

    assert integrity(collector.db) == "ok"
    with sqlite3.connect(collector.db) as conn:
        acks = sum(check_stored(conn, pod) for pod in pods)
    elapsed = time.monotonic() - began
    published = sum(len(p.published) for p in pods)
    restarts = sum(p.restarts for p in pods)
    dropped = sum(p.dropped[SNAPSHOT] for p in pods)
    print(
        f"\nkill -9: {kills} kills, {restarts} agent restarts, {acks} acknowledged messages checked, "
        f"{published} configurations published ({dropped} dropped past the outbox bounds, reported), "
        f"all others in history in order, {checks + 1} integrity checks, "
        f"{elapsed:.1f} s ({killed_for:.1f} s of kills)"
    )
    assert kills >= KILLS
