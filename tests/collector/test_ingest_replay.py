"""Replays after a Hello (collector/ingest/protocol.py, docs/contracts.md "Wire"): an agent resends
what was never acknowledged with the numbers it had, below its new Hello's. Committed ones are
acknowledged without being stored again, the others stored, in order; a run that starts over
(Hello 1, an agent restarted without an outbox file) is stored as it always was.

Real collector on loopback, real gRPC streams, the SQLite file read with its own connection."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

from collector.cli import format_history_table
from proto.skewwatch.v1 import skewwatch_pb2 as pb
from skewwatch.core.identity import PodKey
from skewwatch.wire import timestamp
from tests.support.collector import (
    BASE_FACTS,
    AgentStream,
    Running,
    hello_msg,
    make_snapshot,
    observations_msg,
    snapshot_msg,
)

KEY = PodKey("ml", "llm-0")


def rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


def snapshots(db: Path) -> list[tuple[Any, ...]]:
    return rows(db, "SELECT sequence, fingerprint, collected_at FROM snapshots ORDER BY id")


def last_sequence(db: Path) -> int:
    value: int = rows(db, "SELECT last_sequence FROM pods")[0][0]
    return value


def config(n: int, collected_at: float) -> pb.AgentMessage:
    return snapshot_msg(0, make_snapshot({**BASE_FACTS, "runtime.args.seed": n}, collected_at=collected_at))


def numbered(seq: int, msg: pb.AgentMessage) -> pb.AgentMessage:
    msg.sequence = seq
    return msg


async def hello(running: Running, seq: int, instance: str = "run-a") -> AgentStream:
    s = running.stream()
    msg = hello_msg(seq)
    msg.hello.instance_id = instance
    reply = await s.exchange(msg)
    assert reply.WhichOneof("body") == "ack" and reply.ack.sequence == seq, reply
    return s


async def acked(s: AgentStream, msg: pb.AgentMessage) -> None:
    reply = await s.exchange(msg)
    assert reply.WhichOneof("body") == "ack" and reply.ack.sequence == msg.sequence, reply


async def end(s: AgentStream) -> None:
    s.call.cancel()
    await asyncio.sleep(0.1)  # the collector sees the stream end and releases the pod


async def test_replays_below_the_hello_are_deduplicated_against_what_was_committed(running: Running) -> None:
    a, b, c, d = (config(n, 1000.0 + n) for n in range(4))
    s = await hello(running, 1)
    await acked(s, numbered(2, a))
    await acked(s, numbered(3, b))
    await end(s)  # the agent never heard those acks: it resends 2 and 3, and 4 it had not sent
    s = await hello(running, 10)
    for seq, msg in ((2, a), (3, b), (4, c), (11, d)):
        await acked(s, numbered(seq, msg))
    got = snapshots(running.db)
    assert [(r[0], r[2]) for r in got] == [(2, 1000.0), (3, 1001.0), (4, 1002.0), (11, 1003.0)]
    assert running.collector.ingest is not None
    assert last_sequence(running.db) == 11


async def test_a_hello_does_not_record_its_own_number(running: Running) -> None:
    """A collector that stored a Hello's number and died before the replays would, at the next
    Hello, take the replays for committed ones: the Hello stores the floor instead."""
    a, b, c = (config(n, 2000.0 + n) for n in range(3))
    s = await hello(running, 1)
    await acked(s, numbered(2, a))
    await end(s)
    s = await hello(running, 7)  # the stream breaks before any replay arrives
    assert last_sequence(running.db) == 2
    await end(s)
    s = await hello(running, 9)
    await acked(s, numbered(3, b))
    await acked(s, numbered(4, c))
    assert [r[0] for r in snapshots(running.db)] == [2, 3, 4]


async def test_events_and_observations_replayed_are_stored_once(running: Running) -> None:
    event = pb.AgentMessage(
        event=pb.Event(at=timestamp(1500.0), kind="outbox_dropped", message="dropped 2 superseded snapshots")
    )
    s = await hello(running, 1)
    await acked(s, numbered(2, config(0, 1400.0)))
    await acked(s, numbered(3, event))
    await acked(s, numbered(4, observations_msg(0, {"tokens_per_s": 10.0})))
    await end(s)
    s = await hello(running, 20)
    await acked(s, numbered(3, event))
    await acked(s, numbered(4, observations_msg(0, {"tokens_per_s": 10.0})))
    await acked(s, numbered(5, observations_msg(0, {"tokens_per_s": 11.0})))
    assert rows(running.db, "SELECT sequence, kind FROM pod_events") == [(3, "outbox_dropped")]
    assert [r[0] for r in rows(running.db, "SELECT sequence FROM observations_history ORDER BY id")] == [4, 5]


async def test_a_restarted_agent_without_an_outbox_starts_over_at_one(running: Running) -> None:
    s = await hello(running, 1, "run-a")
    for seq in range(2, 40):
        await acked(s, numbered(seq, config(seq, 3000.0 + seq)))
    await end(s)
    assert last_sequence(running.db) == 39
    # A new process: a new instance id, sequence 1 again; its snapshots are new, as before.
    s = await hello(running, 1, "run-b")
    assert last_sequence(running.db) == 0
    await acked(s, numbered(2, config(100, 4000.0)))
    await acked(s, numbered(3, config(101, 4001.0)))
    assert [r[0] for r in snapshots(running.db)][-2:] == [2, 3]
    assert last_sequence(running.db) == 3


async def test_a_hello_not_above_the_committed_sequence_starts_a_new_run(running: Running) -> None:
    """An agent whose numbers are not a continuation of what was stored: nothing is dropped."""
    s = await hello(running, 1, "run-a")
    for seq in range(2, 12):
        await acked(s, numbered(seq, config(seq, 5000.0 + seq)))
    await end(s)
    s = await hello(running, 5, "run-c")  # not above 11
    await acked(s, numbered(3, config(500, 6000.0)))
    assert snapshots(running.db)[-1][0] == 3


async def test_within_a_stream_a_repeat_is_still_a_replay(running: Running) -> None:
    s = await hello(running, 1)
    await acked(s, numbered(2, config(0, 7000.0)))
    await acked(s, numbered(2, config(1, 7001.0)))  # a repeat: acked, not stored
    assert [r[0] for r in snapshots(running.db)] == [2]


def test_the_history_table_tells_an_outbox_drop_from_a_restart() -> None:
    text = format_history_table(
        {
            "namespace": "ml",
            "pod": "llm-0",
            "snapshots": [],
            "events": [
                {"at": 10.0, "kind": "restart", "old_pid": 1, "new_pid": 2},
                {
                    "at": 20.0,
                    "kind": "outbox_dropped",
                    "message": "dropped 3 superseded snapshots (sequences 5..9)",
                },
            ],
        }
    )
    assert ", 1 restart(s)" in text
    assert "outbox_dropped  dropped 3 superseded snapshots (sequences 5..9)" in text
    assert text.count("  restart  pid") == 1
