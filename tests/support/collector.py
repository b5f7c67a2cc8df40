"""Collector test helpers: real snapshots, a real collector on loopback, a real gRPC agent stream."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from agent.engines import engine_named
from agent.engines.links import inputs_for
from collector.main import Collector
from collector.settings import CollectorSettings
from proto.skewwatch.v1 import skewwatch_pb2 as pb
from skewwatch.core.facts import Observation, Provenance, Snapshot, SourceState, SourceStatus, make_fact
from skewwatch.core.fingerprint import fingerprint_facts
from skewwatch.wire import observations_to_proto, snapshot_to_proto, timestamp

REPLY_TIMEOUT_S = 10.0
STREAM_METHOD = "/skewwatch.v1.Ingest/Stream"

SNAPSHOTS = Path(__file__).parent.parent / "fixtures" / "snapshots"
RECORDING = "vllm-float16"


def recorded_snapshot(name: str = RECORDING) -> Snapshot:
    """A snapshot a real agent took (``tests/fixtures/snapshots/<name>.json``), through skewwatch types."""
    data: dict[str, Any] = json.loads((SNAPSHOTS / f"{name}.json").read_text())
    facts = {}
    for key, value in data["facts"].items():
        prov = Provenance.from_dict(data["provenance"][key])
        facts[key] = make_fact(key, value, prov.source, prov.method, prov.detail, inputs=prov.inputs)
    sources = {
        n: SourceStatus(n, SourceState(s["status"]), s["message"], s["duration_seconds"])
        for n, s in data["sources"].items()
    }
    # Recomputed: the recorder rewrites paths and ports after the agent fingerprinted them.
    return Snapshot(facts, sources, fingerprint_facts(list(facts.values())), data["collected_at"])


RECORDED = recorded_snapshot()

# The pod every helper's agent speaks for (hello_msg's defaults); the recording's own pod identity
# (ml/llama-0 on node-1) is rebased onto it, keeping the provenance the agent gave those facts.
POD_IDENTITY: dict[str, Any] = {
    "orchestration.namespace": "ml",
    "orchestration.pod": "llm-0",
    "orchestration.node": "gpu-node-1",
    "orchestration.workload": "ml/Deployment/llm",
}

# The default snapshot's facts: the recorded vLLM collection (a CPU run, so NVML unavailable and
# no hardware facts) as the pod above.
BASE_FACTS: dict[str, Any] = {**{k: f.value for k, f in RECORDED.facts.items()}, **POD_IDENTITY}

# What the nvml source reports for one H100 (agent/sources/nvml.py, as tests/agent/test_nvml.py
# shows): the normalised GPU class in hardware.gpu.product, NVML's raw name in hardware.gpu.name.
H100_FACTS: dict[str, Any] = {
    "hardware.gpu.count": 1,
    "hardware.gpu.product": "h100-80gb",
    "hardware.gpu.name": "NVIDIA H100 80GB HBM3",
    "hardware.gpu.form_factor": "sxm",
    "hardware.gpu.architecture": "hopper",
    "hardware.gpu.memory_bytes": 81559 * 1024 * 1024,
    "hardware.gpu.compute_capability": "9.0",
    "hardware.driver_version": "590.48.01",
    "hardware.cuda_driver_version": "13.1",
    "hardware.gpu.0.uuid": "GPU-00000000-aaaa-bbbb-cccc-dddddddddddd",
}
# The same pod on an A100 40GB node.
A100_40GB_FACTS: dict[str, Any] = {
    **H100_FACTS,
    "hardware.gpu.product": "a100-40gb",
    "hardware.gpu.name": "NVIDIA A100-SXM4-40GB",
    "hardware.gpu.architecture": "ampere",
    "hardware.gpu.memory_bytes": 40960 * 1024 * 1024,
    "hardware.gpu.compute_capability": "8.0",
    "hardware.gpu.0.uuid": "GPU-00000000-eeee-bbbb-cccc-dddddddddddd",
}
_NVML_DETAILS = {
    "hardware.gpu.count": "CUDA devices visible to the process",
    "hardware.driver_version": "nvmlSystemGetDriverVersion",
    "hardware.cuda_driver_version": "nvmlSystemGetCudaDriverVersion = 13010",
    "hardware.gpu.0.uuid": "NVML device 0",
}


def _flag(key: str) -> str:
    return "--" + key.rsplit(".", 1)[-1].replace("_", "-")


def agent_provenance(key: str) -> Provenance:
    """The provenance the agent gives ``key``: the recording's where it has the key, else the one the
    agent's source for that kind of key uses (nvml for hardware, a command-line argument for engine
    settings, the model files for model facts, the downward API / Kubernetes for orchestration)."""
    if key in RECORDED.facts:
        return RECORDED.facts[key].provenance
    if key.startswith("hardware."):
        # The agent names what a fact follows from with its own link table (agent.engines.links).
        inputs = inputs_for(key, engine_named("vllm"))
        return Provenance("nvml", "nvml", _NVML_DETAILS.get(key, "NVML device(s) 0"), inputs)
    if key.startswith("runtime.args."):
        return Provenance("process", "arg", _flag(key))
    if key.startswith(("runtime.", "serving.")):
        return Provenance("process", "arg", _flag(key), (f"runtime.args.{key.rsplit('.', 1)[-1]}",))
    if key.startswith("model."):
        return Provenance("model_files", "file", "", ("model.files.*",))
    if key.startswith("orchestration."):
        return Provenance("k8s", "k8s", "pod spec")
    raise AssertionError(f"no agent source reports {key!r}")


def make_snapshot(facts: Mapping[str, Any] | None = None, *, collected_at: float | None = None) -> Snapshot:
    """The recorded snapshot (BASE_FACTS), or ``facts`` with the provenance the agent gives each key.

    Sources are the recording's; a snapshot with hardware facts has NVML available, as on a GPU node.
    """
    values = dict(BASE_FACTS if facts is None else facts)
    fs = []
    for key, value in values.items():
        prov = agent_provenance(key)
        recorded = RECORDED.facts.get(key)
        if recorded is not None and prov.method == "default" and value != recorded.value:
            prov = Provenance("process", "arg", _flag(key), prov.inputs)  # no longer the default: set by flag
        fs.append(make_fact(key, value, prov.source, prov.method, prov.detail, inputs=prov.inputs))
    sources = dict(RECORDED.sources)
    if any(f.provenance.source == "nvml" for f in fs):
        sources["nvml"] = SourceStatus("nvml", SourceState.OK)
    return Snapshot(
        facts={f.key: f for f in fs},
        sources=sources,
        fingerprint=fingerprint_facts(fs),
        collected_at=time.time() if collected_at is None else collected_at,
    )


async def wait_until(what: str, check: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Wait for a condition the code under test offers no event for; fails naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.01)  # poll interval of a condition wait with a deadline


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
    """One pod with two configurations and observations: restarted with ``--dtype float32
    --enforce-eager``, and its served max_model_len no longer read (one fact changed, added, removed)."""
    s = running.stream()
    await s.exchange(hello_msg(1))
    await s.exchange(snapshot_msg(2, make_snapshot()))
    changed = {**BASE_FACTS, "runtime.args.dtype": "float32", "runtime.dtype": "float32"}
    changed |= {"runtime.args.enforce_eager": True, "runtime.enforce_eager": True}
    del changed["runtime.max_model_len"]
    snap = make_snapshot(changed)
    await s.exchange(snapshot_msg(3, snap))
    await s.exchange(heartbeat_msg(4, snap.fingerprint.overall))
    await s.exchange(observations_msg(5, {"tokens_per_s": 1234.5}))
