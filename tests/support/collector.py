"""Collector test helpers: real snapshots, a real collector on loopback, a real gRPC agent stream."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from collector.main import Collector
from collector.settings import CollectorSettings
from proto.skewwatch.v1 import skewwatch_pb2 as pb
from skewwatch.core.facts import Observation, Snapshot, SourceState, SourceStatus, make_fact
from skewwatch.core.fingerprint import fingerprint_facts
from skewwatch.wire import observations_to_proto, snapshot_to_proto, timestamp

REPLY_TIMEOUT_S = 10.0
STREAM_METHOD = "/skewwatch.v1.Ingest/Stream"

BASE_FACTS: dict[str, Any] = {
    "model.id": "meta-llama/Llama-3.1-8B-Instruct",
    "runtime.engine": "vllm",
    "runtime.dtype": "float16",
    "runtime.max_model_len": 8192,
    "hardware.gpu.product": "NVIDIA H100 80GB HBM3",
    "orchestration.pod": "llm-0",
}


def make_snapshot(facts: Mapping[str, Any] | None = None, *, collected_at: float | None = None) -> Snapshot:
    values = dict(BASE_FACTS if facts is None else facts)
    fs = [make_fact(k, v, "process", "arg", f"--{k.rsplit('.', 1)[-1]}") for k, v in values.items()]
    return Snapshot(
        facts={f.key: f for f in fs},
        sources={
            "process": SourceStatus("process", SourceState.OK),
            "nvml": SourceStatus("nvml", SourceState.UNAVAILABLE, "no GPU here"),
        },
        fingerprint=fingerprint_facts(fs),
        collected_at=time.time() if collected_at is None else collected_at,
    )


def hello_msg(seq: int = 1, namespace: str = "ml", pod: str = "llm-0", **kw: Any) -> pb.AgentMessage:
    return pb.AgentMessage(
        sequence=seq,
        hello=pb.Hello(
            agent_id=kw.get("agent_id", f"{namespace}/{pod}"),
            agent_version="0.1.0",
            protocol_version=kw.get("protocol_version", 1),
            pod=pb.PodIdentity(
                namespace=namespace,
                pod=pod,
                node=kw.get("node", "gpu-node-1"),
                workload=kw.get("workload", f"{namespace}/Deployment/llm"),
                workload_source="env",
            ),
        ),
    )


def snapshot_msg(seq: int, snap: Snapshot) -> pb.AgentMessage:
    return pb.AgentMessage(sequence=seq, snapshot=snapshot_to_proto(snap))


def heartbeat_msg(seq: int, fingerprint: str) -> pb.AgentMessage:
    return pb.AgentMessage(
        sequence=seq, heartbeat=pb.Heartbeat(at=timestamp(time.time()), overall_fingerprint=fingerprint)
    )


def observations_msg(seq: int, values: Mapping[str, float]) -> pb.AgentMessage:
    obs = {n: Observation(n, v, "1/s" if "per_s" in n else "") for n, v in values.items()}
    return pb.AgentMessage(sequence=seq, observations=observations_to_proto(obs, time.time(), 15.0))


class AgentStream:
    """A real client stream; writes raw bytes so tests can also send what no agent would."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        method: Any = channel.stream_stream(
            STREAM_METHOD, request_serializer=None, response_deserializer=pb.CollectorMessage.FromString
        )
        self.call: Any = method()

    async def send(self, msg: pb.AgentMessage | bytes) -> None:
        raw = msg if isinstance(msg, bytes) else msg.SerializeToString()
        await asyncio.wait_for(self.call.write(raw), REPLY_TIMEOUT_S)

    async def recv(self) -> pb.CollectorMessage:
        reply = await asyncio.wait_for(self.call.read(), REPLY_TIMEOUT_S)
        assert isinstance(reply, pb.CollectorMessage), f"stream ended: {reply!r}"
        return reply

    async def exchange(self, msg: pb.AgentMessage | bytes) -> pb.CollectorMessage:
        await self.send(msg)
        return await self.recv()

    async def status(self) -> tuple[grpc.StatusCode, str]:
        """Wait for the stream to end; returns its status code and details."""
        try:
            while True:
                reply = await asyncio.wait_for(self.call.read(), REPLY_TIMEOUT_S)
                if reply is grpc.aio.EOF:
                    break
        except grpc.aio.AioRpcError as e:
            return e.code(), e.details() or ""
        code = await asyncio.wait_for(self.call.code(), REPLY_TIMEOUT_S)
        return code, await self.call.details()


@dataclass
class Running:
    collector: Collector
    grpc_port: int
    http_port: int
    db: Path
    channel: grpc.aio.Channel

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def stream(self) -> AgentStream:
        return AgentStream(self.channel)


def settings_for(tmp_path: Path, **kw: Any) -> CollectorSettings:
    return CollectorSettings(
        grpc="127.0.0.1:0", http="127.0.0.1:0", store=f"sqlite:///{tmp_path / 'collector.db'}", **kw
    )


@contextlib.asynccontextmanager
async def started(settings: CollectorSettings, tmp_path: Path) -> AsyncIterator[Running]:
    """A real collector on free loopback ports with a channel to its gRPC port; stopped after."""
    collector = Collector(settings)
    ports = await collector.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{ports.grpc}")
    try:
        yield Running(collector, ports.grpc, ports.http, tmp_path / "collector.db", channel)
    finally:
        await channel.close()
        await collector.stop()


async def feed(running: Running) -> None:
    """One pod with two configurations (dtype float16 → float32) and observations."""
    s = running.stream()
    await s.exchange(hello_msg(1))
    await s.exchange(snapshot_msg(2, make_snapshot()))
    changed = {**BASE_FACTS, "runtime.dtype": "float32", "runtime.enforce_eager": True}
    del changed["runtime.max_model_len"]
    snap = make_snapshot(changed)
    await s.exchange(snapshot_msg(3, snap))
    await s.exchange(heartbeat_msg(4, snap.fingerprint.overall))
    await s.exchange(observations_msg(5, {"tokens_per_s": 1234.5}))
