"""Engine state and restart events over the real gRPC stream: stored as state and events, never as
configuration rows; malformed ones end the stream with INVALID_ARGUMENT naming the field."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from typing import Any

import grpc

from proto.skewwatch.v1 import skewwatch_pb2 as pb
from skewwatch.wire import timestamp
from tests.support.collector import Running, hello_msg, make_snapshot, snapshot_msg


async def get(running: Running, path: str) -> Any:
    """The collector runs on this event loop: ask it from a thread."""

    def fetch() -> Any:
        with urllib.request.urlopen(running.http + path, timeout=5) as r:
            return json.loads(r.read())

    return await asyncio.to_thread(fetch)


def state_hb(seq: int, fp: str, state: int, since: float, message: str = "") -> pb.AgentMessage:
    return pb.AgentMessage(
        sequence=seq,
        heartbeat=pb.Heartbeat(
            at=timestamp(time.time()),
            overall_fingerprint=fp,
            engine_state=state,  # type: ignore[arg-type]
            engine_state_since=timestamp(since),
            engine_state_message=message,
        ),
    )


def restart_msg(seq: int, **kw: Any) -> pb.AgentMessage:
    fields: dict[str, Any] = dict(kind="restart", old_pid=10, new_pid=11, old_start_time=100.0,
                                  new_start_time=200.0, message="vllm restarted: pid 10 -> 11")  # fmt: skip
    fields.update(kw)
    return pb.AgentMessage(sequence=seq, event=pb.Event(at=timestamp(time.time()), **fields))


async def test_an_engine_that_never_ran_is_a_state_without_a_snapshot(running: Running) -> None:
    s = running.stream()
    await s.exchange(hello_msg(1))
    reply = await s.exchange(state_hb(2, "", pb.ENGINE_STATE_NOT_RUNNING, 1000.0, "no process matched"))
    assert reply.WhichOneof("body") == "ack"
    pod = await get(running, "/api/v1/pods/ml/llm-0")
    assert pod["engine"] == {"state": "not_running", "since": 1000.0, "message": "no process matched"}
    assert (
        pod["snapshot"] is None and (await get(running, "/api/v1/pods/ml/llm-0/history"))["snapshots"] == []
    )


async def test_restarts_are_events_beside_one_configuration_row(running: Running) -> None:
    s = running.stream()
    await s.exchange(hello_msg(1))
    snap = make_snapshot()
    await s.exchange(snapshot_msg(2, snap))
    fp = snap.fingerprint.overall
    await s.exchange(state_hb(3, fp, pb.ENGINE_STATE_NOT_RUNNING, 1000.0))
    assert (await get(running, "/api/v1/pods/ml/llm-0"))["engine"]["state"] == "not_running"
    assert (await s.exchange(restart_msg(4))).WhichOneof("body") == "ack"
    await s.exchange(state_hb(5, fp, pb.ENGINE_STATE_RUNNING, 1010.0))
    history = await get(running, "/api/v1/pods/ml/llm-0/history")
    assert len(history["snapshots"]) == 1
    (event,) = history["events"]
    assert (event["kind"], event["old_pid"], event["new_pid"], event["new_start_time"]) == (
        "restart",
        10,
        11,
        200.0,
    )
    assert (await get(running, "/api/v1/pods"))["pods"][0]["engine"]["state"] == "running"


async def test_a_running_engine_must_name_its_configuration(running: Running) -> None:
    s = running.stream()
    await s.exchange(hello_msg(1))
    await s.send(state_hb(2, "", pb.ENGINE_STATE_RUNNING, 1000.0))
    code, details = await s.status()
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "heartbeat.overall_fingerprint" in details


async def test_malformed_events_name_their_field(running: Running) -> None:
    for bad, field in (({"kind": "explode"}, "event.kind"), ({"new_pid": -1}, "event.new_pid"),
                       ({"old_start_time": float("nan")}, "event.old_start_time")):  # fmt: skip
        s = running.stream()
        await s.exchange(hello_msg(1))
        await s.send(restart_msg(2, **bad))
        code, details = await s.status()
        assert code == grpc.StatusCode.INVALID_ARGUMENT and field in details, (bad, details)
