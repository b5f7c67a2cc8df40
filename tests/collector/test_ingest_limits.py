"""Stream limits over real gRPC on loopback: one client cannot lock the others out.

Per-address limits are tested end to end: a small TCP relay connects to the collector *from*
127.0.0.2, so its streams have another client address than direct ones from 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest

from collector.errors import CollectorError
from collector.ingest.registry import (
    REFUSED_MAX_STREAMS,
    REFUSED_PER_ADDRESS,
    StreamLimits,
    StreamRefused,
    StreamRegistry,
    client_address,
)
from collector.main import AddressInUseError, Collector
from collector.settings import CollectorSettings
from proto.skewwatch.v1 import skewwatch_pb2 as pb
from skewwatch.wire import timestamp
from tests.support.collector import (
    AgentStream,
    heartbeat_msg,
    hello_msg,
    make_snapshot,
    settings_for,
    snapshot_msg,
)


async def hello(channel: grpc.aio.Channel, pod: str) -> AgentStream:
    s = AgentStream(channel)
    reply = await s.exchange(hello_msg(1, pod=pod))
    assert reply.WhichOneof("body") == "ack"
    return s


async def refusal(s: AgentStream) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    """Send a Hello on a stream expected to be refused: its code, details and trailing metadata."""
    with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
        await s.send(hello_msg(1, pod="refused"))
    code, details = await s.status()
    trailing = await s.call.trailing_metadata()
    return code, details, {k: str(v) for k, v in (trailing or ())}


class Relay:
    """A TCP relay on 127.0.0.1 whose upstream connections come from ``source``."""

    def __init__(self, upstream_port: int, source: str) -> None:
        self.upstream_port = upstream_port
        self.source = source
        self.server: asyncio.Server | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(
            "127.0.0.1", self.upstream_port, local_addr=(self.source, 0)
        )

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            w.close()

        for t in (pipe(reader, up_writer), pipe(up_reader, writer)):
            task = asyncio.ensure_future(t)
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for t in list(self.tasks):
            t.cancel()


async def can_bind(address: str) -> bool:
    try:
        server = await asyncio.start_server(lambda r, w: None, address, 0)
    except OSError:
        return False
    server.close()
    return True


@contextlib.asynccontextmanager
async def collector(tmp_path: Path, **kw: Any) -> AsyncIterator[Collector]:
    c = Collector(settings_for(tmp_path, shutdown_grace_s=0.2, **kw))
    await c.start()
    try:
        yield c
    finally:
        await c.stop()


def grpc_target(c: Collector) -> str:
    assert c.ports is not None
    return f"127.0.0.1:{c.ports.grpc}"


async def readyz(c: Collector, query: str = "") -> tuple[int, dict[str, Any]]:
    assert c.ports is not None
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
        http.get(f"http://127.0.0.1:{c.ports.http}/readyz{query}") as r,
    ):
        return r.status, await r.json()


# -- the rules, without a server ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("peer", "address"),
    [
        ("ipv4:10.0.0.7:51234", "10.0.0.7"),
        ("ipv6:[::1]:51234", "::1"),
        ("ipv6:%5B::1%5D:51234", "::1"),
        ("ipv6:[fe80::1%25eth0]:1", "fe80::1"),
        ("unix:/tmp/sock", "unix"),
        ("", ""),
    ],
)
def test_client_address_drops_the_port(peer: str, address: str) -> None:
    assert client_address(peer) == address


async def test_registry_caps_one_address_and_leaves_room_for_others() -> None:
    reg = StreamRegistry(StreamLimits(max_streams=10, max_per_address=3, retry_after_s=7))
    slots = [reg.admit(f"ipv4:10.0.0.1:{port}") for port in range(1000, 1003)]
    with pytest.raises(StreamRefused) as e:
        reg.admit("ipv4:10.0.0.1:2000")  # another port, the same client address
    assert e.value.reason == REFUSED_PER_ADDRESS and e.value.retry_after_s == 7
    assert "10.0.0.1" in str(e.value) and "retry after 7 s" in str(e.value)
    others = [reg.admit(f"ipv4:10.0.0.{i}:1") for i in range(2, 9)]
    assert reg.in_use == 10 and reg.saturated()
    with pytest.raises(StreamRefused) as e:
        reg.admit("ipv4:10.0.0.99:1")
    assert e.value.reason == REFUSED_MAX_STREAMS
    reg.leave(slots[0])
    reg.leave(slots[0])  # idempotent
    assert reg.in_use == 9 and not reg.saturated()
    reg.admit("ipv4:10.0.0.1:3000")  # the address has room again
    for s in others:
        reg.leave(s)
    assert reg.readiness()["refused"] == {REFUSED_MAX_STREAMS: 1, REFUSED_PER_ADDRESS: 1}


def test_saturation_rule_keeps_one_percent_headroom() -> None:
    reg = StreamRegistry(StreamLimits(max_streams=1000, max_per_address=1000))
    for i in range(989):
        reg.admit(f"ipv4:10.0.{i // 250}.{i % 250}:1")
    assert not reg.saturated()
    reg.admit("ipv4:10.9.9.9:1")  # 990 of 1000: 10 free, 1 % of the limit
    assert reg.saturated() and reg.readiness()["headroom"] == 10
    assert not StreamRegistry().saturated()  # no limits (an API without ingest): never saturated


@pytest.mark.parametrize(
    ("change", "flag"),
    [
        ({"max_streams_per_address": 0}, "SKEWWATCH_MAX_STREAMS_PER_ADDRESS"),
        ({"hello_timeout_s": 0.0}, "SKEWWATCH_HELLO_TIMEOUT"),
        ({"first_report_timeout_s": -1.0}, "SKEWWATCH_FIRST_REPORT_TIMEOUT"),
        ({"idle_timeout_s": 0.0}, "SKEWWATCH_IDLE_TIMEOUT"),
        ({"retry_after_s": 0.0}, "SKEWWATCH_RETRY_AFTER"),
    ],
)
def test_invalid_limit_setting_names_its_variable(change: dict[str, Any], flag: str) -> None:
    from dataclasses import replace

    with pytest.raises(CollectorError, match=flag):
        replace(CollectorSettings(), **change).validate()


def test_limit_settings_come_from_the_environment() -> None:
    s = CollectorSettings.from_env(
        {
            "SKEWWATCH_MAX_STREAMS_PER_ADDRESS": "7",
            "SKEWWATCH_HELLO_TIMEOUT": "2.5",
            "SKEWWATCH_FIRST_REPORT_TIMEOUT": "9",
            "SKEWWATCH_IDLE_TIMEOUT": "120",
            "SKEWWATCH_RETRY_AFTER": "30",
        }
    )
    assert (s.max_streams_per_address, s.hello_timeout_s, s.first_report_timeout_s) == (7, 2.5, 9.0)
    assert (s.idle_timeout_s, s.retry_after_s) == (120.0, 30.0)
    d = CollectorSettings()
    assert d.idle_timeout_s == 60.0 and d.max_streams_per_address == 128


# -- end to end ---------------------------------------------------------------------------------


async def test_one_address_is_capped_while_another_still_connects(tmp_path: Path) -> None:
    if not await can_bind("127.0.0.2"):
        pytest.skip("this host cannot use 127.0.0.2 as a source address")
    async with collector(tmp_path, max_streams=50, max_streams_per_address=3, retry_after_s=9) as c:
        assert c.ports is not None
        relay = Relay(c.ports.grpc, "127.0.0.2")
        relay_port = await relay.start()
        try:
            async with (
                grpc.aio.insecure_channel(grpc_target(c)) as direct,
                grpc.aio.insecure_channel(f"127.0.0.1:{relay_port}") as other,
            ):
                held = [await hello(direct, f"idle-{i}") for i in range(3)]
                code, details, trailing = await refusal(AgentStream(direct))
                assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert "127.0.0.1" in details and "SKEWWATCH_MAX_STREAMS_PER_ADDRESS" in details
                assert "retry after 9 s" in details and trailing.get("retry-after-seconds") == "9"
                # Another client address is not locked out by the first one's streams.
                s = await hello(other, "from-127-0-0-2")
                assert (await s.exchange(snapshot_msg(2, make_snapshot()))).ack.sequence == 2
                assert c.ingest is not None
                reg = c.ingest.registry
                assert reg.streams_from("127.0.0.1") == 3 and reg.streams_from("127.0.0.2") == 1
                assert reg.refusals[REFUSED_PER_ADDRESS] == 1
                for h in held:
                    h.call.cancel()
                for _ in range(100):
                    if reg.streams_from("127.0.0.1") == 0:
                        break
                    await asyncio.sleep(0.05)  # poll interval: cancelled streams are released asynchronously
                assert reg.streams_from("127.0.0.1") == 0, "ended streams must give their slots back"
                await hello(direct, "after")  # room again
        finally:
            await relay.stop()


async def test_hello_then_silence_is_cut_at_the_first_report_deadline(tmp_path: Path) -> None:
    async with (
        collector(tmp_path, first_report_timeout_s=0.5, idle_timeout_s=30) as c,
        grpc.aio.insecure_channel(grpc_target(c)) as channel,
    ):
        s = await hello(channel, "silent")
        started = time.monotonic()
        code, details = await s.status()
        took = time.monotonic() - started
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "SKEWWATCH_FIRST_REPORT_TIMEOUT" in details and "0.5 s" in details
    assert 0.4 <= took < 5, took
    assert c.ingest is not None and c.ingest.registry.cuts["first_report_timeout"] == 1
    assert c.ingest.registry.in_use == 0


async def test_no_hello_is_cut_at_the_hello_deadline(tmp_path: Path) -> None:
    async with (
        collector(tmp_path, hello_timeout_s=0.3) as c,
        grpc.aio.insecure_channel(grpc_target(c)) as channel,
    ):
        s = AgentStream(channel)  # connects, sends nothing
        code, details = await s.status()
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED and "SKEWWATCH_HELLO_TIMEOUT" in details
    assert c.ingest is not None and c.ingest.registry.cuts["hello_timeout"] == 1


async def test_state_heartbeats_of_a_starting_engine_count_as_reports(tmp_path: Path) -> None:
    """An engine still loading has no configuration: its state-only heartbeats keep the stream."""
    async with (
        collector(tmp_path, first_report_timeout_s=0.4, idle_timeout_s=0.6) as c,
        grpc.aio.insecure_channel(grpc_target(c)) as channel,
    ):
        s = await hello(channel, "starting")
        for seq in range(2, 8):  # 6 x 0.2 s: well past both deadlines
            hb = pb.Heartbeat(
                at=timestamp(time.time()),
                overall_fingerprint="",
                engine_state=pb.ENGINE_STATE_STARTING,
                engine_state_since=timestamp(time.time() - 5),
            )
            reply = await s.exchange(pb.AgentMessage(sequence=seq, heartbeat=hb))
            assert reply.ack.sequence == seq
            await asyncio.sleep(0.2)  # the behaviour: heartbeats spaced past both deadlines
        # Then silence: the idle timeout ends it.
        code, details = await s.status()
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED and "SKEWWATCH_IDLE_TIMEOUT" in details
    assert c.ingest is not None and c.ingest.registry.cuts["idle_timeout"] == 1
    assert c.ingest.registry.cuts["first_report_timeout"] == 0


async def test_idle_stream_is_cut_while_a_heartbeating_one_stays(tmp_path: Path) -> None:
    async with (
        collector(tmp_path, idle_timeout_s=0.5) as c,
        grpc.aio.insecure_channel(grpc_target(c)) as channel,
    ):
        snap = make_snapshot()
        idle = await hello(channel, "idle")
        await idle.exchange(snapshot_msg(2, snap))
        alive = await hello(channel, "alive")
        await alive.exchange(snapshot_msg(2, snap))
        idle_status = asyncio.ensure_future(idle.status())
        for seq in range(3, 9):  # 6 x 0.2 s = 2.4 idle timeouts
            assert (await alive.exchange(heartbeat_msg(seq, snap.fingerprint.overall))).ack.sequence == seq
            await asyncio.sleep(0.2)  # the behaviour: heartbeats spaced over 2.4 idle timeouts
        code, details = await idle_status
        assert code == grpc.StatusCode.DEADLINE_EXCEEDED and "no message for 0.5 s" in details
        assert (await alive.exchange(heartbeat_msg(9, snap.fingerprint.overall))).ack.sequence == 9


async def test_readyz_turns_503_when_saturated_and_back_when_freed(tmp_path: Path) -> None:
    async with collector(tmp_path, max_streams=4, max_streams_per_address=4) as c:
        status, body = await readyz(c)
        assert status == 200 and body == {"status": "ready", "checks": {"store": "ok", "grpc": "ok"}}
        async with grpc.aio.insecure_channel(grpc_target(c)) as channel:
            held = [await hello(channel, f"p-{i}") for i in range(4)]
            status, body = await readyz(c)
            assert status == 503 and body["status"] == "not ready"
            assert body["checks"]["streams"].startswith("failed: saturated: 4 of 4 agent streams in use")
            assert body["streams"]["in_use"] == 4 and body["streams"]["limit"] == 4
            code, details, trailing = await refusal(AgentStream(channel))
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "SKEWWATCH_MAX_STREAMS" in details
            assert trailing["retry-after-seconds"] == "15"
            held[0].call.cancel()
            for _ in range(100):
                status, body = await readyz(c, "?verbose=true")
                if status == 200:
                    break
                await asyncio.sleep(0.05)  # poll interval: a cancelled stream is released asynchronously
            assert status == 200 and body["streams"]["in_use"] == 3
            assert body["streams"]["refused"][REFUSED_MAX_STREAMS] == 1


async def test_2000_concurrent_streams_get_only_ok_or_resource_exhausted(tmp_path: Path) -> None:
    """The burst that used to give INTERNAL: gRPC core refused calls pending past its backlog of
    1000, and its Python client reported those refusals as INTERNAL ("Internal error from Core")."""
    limit, attempts, channels = 500, 2000, 20
    async with collector(tmp_path, max_streams=limit, max_streams_per_address=attempts) as c:
        pool = [
            grpc.aio.insecure_channel(grpc_target(c), options=[("grpc.use_local_subchannel_pool", 1)])
            for _ in range(channels)
        ]
        codes: collections.Counter[str] = collections.Counter()
        hints: collections.Counter[str] = collections.Counter()
        held: list[AgentStream] = []

        async def attempt(i: int) -> None:
            s = AgentStream(pool[i % channels])
            try:
                await asyncio.wait_for(s.send(hello_msg(1, pod=f"burst-{i}")), 15)
                reply = await asyncio.wait_for(s.call.read(), 15)
                if isinstance(reply, pb.CollectorMessage):
                    codes["OK"] += 1
                    held.append(s)
                    return
                codes[(await s.call.code()).name] += 1
            except grpc.aio.AioRpcError as e:
                codes[e.code().name] += 1
                hints[dict(e.trailing_metadata() or ()).get("retry-after-seconds", "none")] += 1
            except asyncio.InvalidStateError:
                code = await s.call.code()
                codes[code.name] += 1

        started = time.monotonic()
        try:
            await asyncio.wait_for(asyncio.gather(*(attempt(i) for i in range(attempts))), 60)
            took = time.monotonic() - started
            print(f"\n{attempts} concurrent streams, limit {limit}: {dict(codes)} in {took:.1f} s")
            assert set(codes) <= {"OK", "RESOURCE_EXHAUSTED"}, dict(codes)
            assert codes["OK"] == limit and codes["RESOURCE_EXHAUSTED"] == attempts - limit
            assert hints == {"15": attempts - limit}
            assert (
                c.ingest is not None and c.ingest.registry.refusals[REFUSED_MAX_STREAMS] == attempts - limit
            )
        finally:
            for s in held:
                s.call.cancel()
            for ch in pool:
                await ch.close()


async def test_a_second_collector_on_the_same_grpc_port_fails_to_start(tmp_path: Path) -> None:
    async with collector(tmp_path) as first:
        assert first.ports is not None
        taken = f"127.0.0.1:{first.ports.grpc}"
        second = Collector(
            CollectorSettings(grpc=taken, http="127.0.0.1:0", store=f"sqlite:///{tmp_path / 'b.db'}")
        )
        with pytest.raises(
            AddressInUseError, match=f"--grpc: cannot listen on {taken}: address already in use"
        ):
            await second.start()
        async with grpc.aio.insecure_channel(taken) as channel:  # the first one still serves
            await hello(channel, "still-served")
