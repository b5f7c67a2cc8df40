"""The agent's outbox (agent/outbox.py): bounds and drop order, drops recorded, the journal across a
restart (and its truncated or corrupt tail), and, with a real collector, resend in order after a
reconnect and removal on ack."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from agent.lifecycle import Event
from agent.outbox import DROPPED_EVENT_KIND, EVENT, OBSERVATIONS, SNAPSHOT, Outbox, OutboxError
from agent.stream import AgentStream, LatestSnapshot
from collector.main import Collector
from proto.skewwatch.v1 import skewwatch_pb2 as pb
from skewwatch.core.facts import Observation
from skewwatch.core.identity import PodIdentity
from skewwatch.wire import observations_to_proto, snapshot_to_proto, timestamp
from tests.support.collector import BASE_FACTS, make_snapshot, settings_for, wait_until

IDENTITY = PodIdentity("ml", "llm-0", "gpu-node-1", "ml/Deployment/llm", "env", agent_id="ml/llm-0")


def snap_msg(n: int, at: float = 0.0) -> pb.AgentMessage:
    snap = make_snapshot({**BASE_FACTS, "runtime.args.seed": n}, collected_at=at or 1000.0 + n)
    return pb.AgentMessage(snapshot=snapshot_to_proto(snap))


def obs_msg(v: float) -> pb.AgentMessage:
    return pb.AgentMessage(observations=observations_to_proto({"x": Observation("x", v, "")}, 1.0, 10.0))


def event_msg(text: str) -> pb.AgentMessage:
    return pb.AgentMessage(event=pb.Event(at=timestamp(1.0), kind="restart", message=text))


def kinds(box: Outbox) -> list[tuple[int, str]]:
    return [(e.sequence, e.kind) for e in box]


def test_sequences_start_above_the_first_hello_and_only_grow() -> None:
    box = Outbox()
    a = box.add(snap_msg(1), 1.0)
    assert a.sequence == 2 and a.message().sequence == 2  # 1 is a run's first Hello
    assert box.next_sequence() == 3
    assert box.add(obs_msg(1), 2.0).sequence == 4


def test_heartbeats_and_hellos_are_not_kept() -> None:
    box = Outbox()
    with pytest.raises(OutboxError, match="heartbeat"):
        box.add(pb.AgentMessage(heartbeat=pb.Heartbeat()), 1.0)


def test_drop_order_superseded_snapshots_then_observations_then_events(
    caplog: pytest.LogCaptureFixture,
) -> None:
    box = Outbox(max_messages=4)
    caplog.set_level(logging.WARNING, "agent.outbox")
    box.add(snap_msg(1), 1.0)  # 2
    box.add(event_msg("e1"), 1.0)  # 3
    box.add(obs_msg(1), 1.0)  # 4
    box.add(snap_msg(2), 1.0)  # 5
    assert len(box) == 4 and not box.dropped
    box.add(obs_msg(2), 1.0)  # 6: the superseded snapshot 2 goes first
    assert kinds(box) == [(3, EVENT), (4, OBSERVATIONS), (5, SNAPSHOT), (6, OBSERVATIONS)]
    box.add(obs_msg(3), 1.0)  # 7: no superseded snapshot left: the oldest observations (4)
    assert kinds(box) == [(3, EVENT), (5, SNAPSHOT), (6, OBSERVATIONS), (7, OBSERVATIONS)]
    box.add(event_msg("e2"), 1.0)  # 8: observations 6
    box.add(event_msg("e3"), 1.0)  # 9: observations 7
    assert kinds(box) == [(3, EVENT), (5, SNAPSHOT), (8, EVENT), (9, EVENT)]
    box.add(event_msg("e4"), 1.0)  # 10: last resort, the oldest event; never the newest snapshot
    assert kinds(box) == [(5, SNAPSHOT), (8, EVENT), (9, EVENT), (10, EVENT)]
    assert box.dropped == {SNAPSHOT: 1, OBSERVATIONS: 3, EVENT: 1}
    # Logged once (rate-limited), with counts.
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "1 snapshot" in warnings[0], warnings


def test_the_newest_snapshot_is_kept_even_over_the_byte_bound() -> None:
    one = len(snap_msg(1).SerializeToString())
    box = Outbox(max_bytes=one + one // 2)
    box.add(snap_msg(1), 1.0)
    box.add(snap_msg(2), 1.0)
    assert kinds(box) == [(3, SNAPSHOT)] and box.dropped == {SNAPSHOT: 1}
    big = Outbox(max_bytes=10)
    big.add(snap_msg(1), 1.0)
    assert len(big) == 1 and big.bytes > big.max_bytes


def test_drops_are_reported_to_the_collector_as_one_event() -> None:
    box = Outbox(max_messages=3, clock=lambda: 1234.0)
    for n in range(6):
        box.add(snap_msg(n), 1.0)
    assert box.dropped == {SNAPSHOT: 3}
    entry = box.report_drops()
    assert entry is not None and entry.kind == EVENT
    event = entry.message().event
    assert event.kind == DROPPED_EVENT_KIND and event.at.seconds == 1234
    assert "3 superseded snapshots" in event.message and "sequences 2..4" in event.message
    # The report is a message too: with the outbox full it pushed superseded snapshot 5 out,
    # named by the next report; a report never pushes out an event, so the reports end.
    assert box.dropped == {SNAPSHOT: 4}
    again = box.report_drops()
    assert again is not None and "1 superseded snapshot (sequences 5..5)" in again.message().event.message
    reports = 2
    while box.report_drops() is not None:
        reports += 1
        assert reports < 6
    assert len(box) <= box.max_messages + 1 and not box.dropped[EVENT]
    assert box.newest_fingerprint == snap_msg(5).snapshot.fingerprint.overall


def test_a_refused_report_is_not_reported_again() -> None:
    """A collector that predates ``outbox_dropped`` refuses the report: no report of the report."""
    box = Outbox(max_messages=2)
    for n in range(3):
        box.add(snap_msg(n), 1.0)
    report = box.report_drops()
    while (newer := box.report_drops()) is not None:  # a report may push a snapshot out: reported
        report = newer
    assert report is not None
    box.refuse(report.sequence)
    assert box.dropped["refused"] == 1 and box.report_drops() is None
    box.refuse(box.add(event_msg("x"), 1.0).sequence)  # any other refused message is reported
    again = box.report_drops()
    assert again is not None and "1 message the collector refused" in again.message().event.message


def test_ack_removes_every_message_up_to_the_sequence() -> None:
    box = Outbox()
    for n in range(5):
        box.add(snap_msg(n), 1.0)  # 2..6
    assert box.ack(4) == 3
    assert [e.sequence for e in box] == [5, 6] and box.bytes == sum(len(e.data) for e in box)
    assert box.ack(3) == 0  # an old ack changes nothing
    assert [e.sequence for e in box.pending(5)] == [6]


def test_the_journal_survives_a_restart_with_sequences_and_acks(tmp_path: Path) -> None:
    path = tmp_path / "outbox"
    box = Outbox(path=path)
    box.ack_hello()
    for n in range(4):
        box.add(snap_msg(n, 500.0 + n), 500.0 + n)  # 2..5
    box.add(event_msg("restart"), 600.0)  # 6
    box.ack(3)
    heartbeat = box.next_sequence()  # 7: not kept, but never handed out again
    box.close()  # the process dies (no fsync needed beyond what add did)
    again = Outbox(path=path)
    assert [(e.sequence, e.kind, e.collected_at) for e in again] == [
        (4, SNAPSHOT, 502.0),
        (5, SNAPSHOT, 503.0),
        (6, EVENT, 600.0),
    ]
    assert again.hello_acked
    assert again.next_sequence() > heartbeat
    assert again.newest_fingerprint == snap_msg(3).snapshot.fingerprint.overall
    assert again.skipped_records == 0


def test_a_fresh_journal_keeps_hello_one_until_acknowledged(tmp_path: Path) -> None:
    box = Outbox(path=tmp_path / "outbox")
    box.add(snap_msg(1), 1.0)
    box.close()
    again = Outbox(path=tmp_path / "outbox")
    assert not again.hello_acked and [e.sequence for e in again] == [2]


@pytest.mark.parametrize("damage", ["truncated", "corrupt", "garbage"])
def test_a_damaged_tail_is_skipped_with_a_warning(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "outbox"
    box = Outbox(path=path)
    box.add(snap_msg(1), 1.0)  # 2
    box.add(snap_msg(2), 2.0)  # 3
    box.close()
    raw = path.read_bytes()
    last = len(snap_msg(2).SerializeToString())
    if damage == "truncated":  # killed in the middle of writing the last record
        path.write_bytes(raw[: len(raw) - last // 2])
    elif damage == "corrupt":  # a flipped byte inside the last record
        flipped = bytearray(raw)
        flipped[len(raw) - 10] ^= 0xFF
        path.write_bytes(bytes(flipped))
    else:
        path.write_bytes(raw + os.urandom(3))
    caplog.set_level(logging.WARNING, "agent.outbox")
    again = Outbox(path=path)
    expected = [2, 3] if damage == "garbage" else [2]
    assert [e.sequence for e in again] == expected
    assert again.skipped_records == 1
    assert any("skipped" in r.getMessage() for r in caplog.records)
    # The tail was cut off: appends go on, and a second restart reads everything cleanly.
    seq = again.add(snap_msg(9), 9.0).sequence
    again.close()
    third = Outbox(path=path)
    assert [e.sequence for e in third] == [*expected, seq] and third.skipped_records == 0


def test_an_unreadable_journal_is_set_aside(tmp_path: Path) -> None:
    path = tmp_path / "outbox"
    path.write_bytes(b"\x00\x00\x00\x05\x00\x00\x00\x00" + b"M" * 5)  # a bad first record
    box = Outbox(path=path)
    assert len(box) == 0 and box.skipped_records == 1
    box.add(snap_msg(1), 1.0)
    box.close()
    assert [e.sequence for e in Outbox(path=path)] == [2]


def test_an_unusable_journal_path_keeps_the_outbox_in_memory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "agent.outbox")
    box = Outbox(path=tmp_path / "no-such-dir" / "outbox")
    assert box.add(snap_msg(1), 1.0).sequence == 2 and len(box) == 1
    assert any("in memory only" in r.getMessage() for r in caplog.records)
    (tmp_path / "a-dir").mkdir()
    assert len(Outbox(path=tmp_path / "a-dir").pending(0)) == 0


def test_compaction_keeps_the_journal_near_the_live_size(tmp_path: Path) -> None:
    path = tmp_path / "outbox"
    box = Outbox(path=path)
    box.ack_hello()
    for n in range(300):
        entry = box.add(snap_msg(n), float(n))
        box.ack(entry.sequence)
    box.add(snap_msg(1000), 1.0)
    size = path.stat().st_size
    one = len(snap_msg(1).SerializeToString())
    assert size < 1024 * 1024 + 2 * one, size  # rewritten, not 300 snapshots long
    box.close()
    assert len(Outbox(path=path)) == 1


def test_every_configuration_change_is_kept_while_the_collector_is_away() -> None:
    async def run() -> None:
        latest = LatestSnapshot()
        for n in range(3):
            snap = make_snapshot({**BASE_FACTS, "runtime.args.seed": n}, collected_at=100.0 + n)
            await latest.publish(snap)
            await latest.publish(snap)  # the same configuration again: nothing new
        await latest.publish(None, events=[Event(200.0, "restart", 1, 2, 1.0, 2.0, "engine restarted")])
        got = [(e.kind, e.collected_at) for e in latest.outbox]
        assert got == [(SNAPSHOT, 100.0), (SNAPSHOT, 101.0), (SNAPSHOT, 102.0), (EVENT, 200.0)]

    asyncio.run(run())


async def test_resend_in_order_after_reconnect_and_ack_removes(tmp_path: Path) -> None:
    """Two configuration changes made while the collector is away both reach its history, in
    order and with their collection times, once it is back; the acks empty the outbox."""
    settings = settings_for(tmp_path, shutdown_grace_s=0.2)
    collector = Collector(settings)
    ports = await collector.start()
    port = ports.grpc
    latest = LatestSnapshot(Outbox(path=tmp_path / "outbox"))
    await latest.publish(make_snapshot({**BASE_FACTS, "runtime.args.seed": 0}, collected_at=100.0))
    stream = AgentStream(f"127.0.0.1:{port}", lambda _s: IDENTITY, latest, 0.2)
    task = asyncio.create_task(stream.run_forever())
    db = tmp_path / "collector.db"

    def history() -> list[tuple[int, float]]:
        with sqlite3.connect(db) as conn:
            return conn.execute("SELECT sequence, collected_at FROM snapshots ORDER BY id").fetchall()

    try:
        await wait_until("the first snapshot acked", lambda: len(latest.outbox) == 0)
        await collector.stop()
        for n, at in ((1, 201.0), (2, 202.0)):
            await latest.publish(make_snapshot({**BASE_FACTS, "runtime.args.seed": n}, collected_at=at))
        assert [e.collected_at for e in latest.outbox] == [201.0, 202.0]
        collector = Collector(replace(settings, grpc=f"127.0.0.1:{port}"))
        await collector.start()
        await wait_until("the outbox drained", lambda: len(latest.outbox) == 0, timeout_s=20)
        got = history()
        assert [at for _, at in got] == [100.0, 201.0, 202.0]
        assert [s for s, _ in got] == sorted(s for s, _ in got)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await collector.stop()


async def test_a_message_the_collector_keeps_refusing_is_dropped_and_reported(tmp_path: Path) -> None:
    """One bad message must not block every later one: refused twice in a row, it is dropped
    from the outbox, and the collector is told; what follows is delivered."""
    collector = Collector(settings_for(tmp_path, shutdown_grace_s=0.2))
    ports = await collector.start()
    latest = LatestSnapshot()
    await latest.publish(make_snapshot({**BASE_FACTS, "runtime.args.seed": 1}, collected_at=100.0))
    bad = latest.outbox.add(
        pb.AgentMessage(event=pb.Event(at=timestamp(101.0), kind="no-such-kind", message="?")), 101.0
    )
    stream = AgentStream(f"127.0.0.1:{ports.grpc}", lambda _s: IDENTITY, latest, 0.2)
    task = asyncio.create_task(stream.run_forever())
    db = tmp_path / "collector.db"

    def events() -> list[tuple[str, str]]:
        with sqlite3.connect(db) as conn:
            return conn.execute("SELECT kind, detail FROM pod_events").fetchall()

    try:
        await wait_until("the refused message reported", lambda: bool(events()), timeout_s=20)
        assert latest.outbox.dropped == {"refused": 1} and bad.sequence not in [
            e.sequence for e in latest.outbox
        ]
        [(kind, detail)] = events()
        assert kind == DROPPED_EVENT_KIND and "1 message the collector refused" in detail, detail
        await latest.publish(make_snapshot({**BASE_FACTS, "runtime.args.seed": 2}, collected_at=102.0))
        await wait_until("the next configuration delivered", lambda: len(latest.outbox) == 0)
        with sqlite3.connect(db) as conn:
            assert [at for (at,) in conn.execute("SELECT collected_at FROM snapshots ORDER BY id")] == [
                100.0,
                102.0,
            ]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await collector.stop()
