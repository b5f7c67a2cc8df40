"""A fleet of simulated agents: real gRPC streams over loopback to a real collector process.

Snapshots come from the real captures under ``../shared/fixtures/real`` through the agent's own
pure parsing code (no engine process, no files walked): the vLLM Deployment of
``production-stack__vllm-gpu-deployment.yaml`` read by ``agent.engines.parse_args`` (the
``runtime.args.*``, ``runtime.*``, ``runtime.env.*``, ``serving.*`` facts, with the agent's
redaction), the vLLM ``/metrics`` capture ``vllm-v0-plus-v1-families…`` read by
``agent.sources.runtime_metrics.interpret_families`` (runtime-reported facts, which win over the
args as in the agent's merge), and the ``mattshumer--Reflection-Llama-3.1-70B`` model folder:
``model.config.*`` from its ``config.json`` through ``parse_model_config``, and one
``model.files.<name>`` fact per file, that is the folder's small files (sha256 of their real bytes)
and the 162 shards its ``model.safetensors.index.json`` names (derived: the weights are not in the
capture, so each shard's digest is the sha256 of its name and its size an equal share of the
index's ``total_size``). Plus the ``orchestration.*`` facts of the pod source: namespace and
workload (fingerprinted), pod, uid, ip and node (identity facts, never fingerprinted). About 215
facts, ~40 KB serialised.

Fleet shape: ``workloads`` Deployments (``team-NN/Deployment/llm-WWW``, workload_source ``k8s``,
as the agent reports an owner reference it resolved) of equal replica counts; each agent its own
pod name, uid, node and agent instance id. An agent streams Hello, its full snapshot, then a
Heartbeat every ``heartbeat_s`` (first one at a random phase), re-sends its snapshot on Resync,
and on any stream failure reconnects with the agent's own ``agent.stream.Backoff`` (the same
parameters as ``AgentStream``: full jitter, cap ``max(5, min(60, 4 x interval))`` for failures,
the 1-60 s equal-jitter backoff for refusals; reset once a report of the new stream is acked).
A RESOURCE_EXHAUSTED refusal is counted and its ``retry-after-seconds`` trailing metadata is
honoured (the wait is at least the hint) when ``honour_retry_after`` (default on; NOTE: the real
agent does not read that hint: it only uses its rejected backoff). Observations and Events are
not sent.

A configuration change (``change``) toggles a pod's ``runtime.max_num_seqs`` (and its
``runtime.args.*`` twin) between two values; a rollout wave (``wave``) moves every pod to a new
``runtime.args.max_loras`` within a spread. Snapshot bytes are built once per (workload, version)
in each worker, then framed per pod by concatenation: the workload's serialised Snapshot, the
pod's identity facts and a fresh ``collected_at`` (protobuf merges concatenated messages), so the
generator spends its CPU on gRPC, not on building snapshots.

Load generation: ``workers`` processes (spawned), each one asyncio loop with its agents sharing
``ceil(agents_in_worker / streams_per_channel)`` ``grpc.aio`` channels (HTTP/2 connections).
The channels reconnect fast (100-250 ms) so the agents' own Backoff, not gRPC's, decides when a
stream is retried. The parent drives the workers through pipes (phases, changes, waves) and reads
every ack latency (from the write of a message to the read of the ack that covers it).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import multiprocessing
import os
import random
import resource
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import grpc

from agent.engines import GENERIC, detect, parse_args, redact_with
from agent.promtext import parse_metrics_text
from agent.sources.model_files import file_fact_key, parse_model_config
from agent.sources.runtime_metrics import interpret_families
from agent.stream import REJECTED_BASE_S, REJECTED_CAP_S, Backoff
from demo.harness import free_port
from proto.skewwatch.v1 import skewwatch_pb2 as pb
from skewwatch import PROTOCOL_VERSION, __version__
from skewwatch.core.errors import FactError
from skewwatch.core.facts import Fact, Snapshot, SourceState, SourceStatus, make_fact
from skewwatch.core.fingerprint import fingerprint_facts
from skewwatch.redact import Redactor
from skewwatch.wire import snapshot_to_proto, timestamp
from tests.support.manifests import manifest_command
from tests.support.paths import REAL_FIXTURES

MANIFEST = "production-stack__vllm-gpu-deployment.yaml"
METRICS = "vllm-v0-plus-v1-families__datadog__opt-125m__5b8d70d.txt"
MODEL = "mattshumer--Reflection-Llama-3.1-70B"
FULL_METHOD = "/skewwatch.v1.Ingest/Stream"
RETRY_AFTER_METADATA = "retry-after-seconds"
CLK_TCK = os.sysconf("SC_CLK_TCK")
CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 250),
    ("grpc.max_send_message_length", 16 << 20),
    ("grpc.max_receive_message_length", 16 << 20),
    # Each channel is its own connection (grpc would otherwise share one subchannel per target).
    ("grpc.use_local_subchannel_pool", 1),
]


# --------------------------------------------------------------------------- snapshots


def base_facts() -> dict[str, Fact]:
    """The workload-independent facts, from the real captures (see the module docstring)."""
    facts: dict[str, Fact] = {}
    argv, env = manifest_command(REAL_FIXTURES / "manifests" / MANIFEST)
    spec = detect(argv, env=env) or GENERIC
    parsed = parse_args(spec, argv, env, redact_with(Redactor("fleet-bench")))
    for s in parsed.settings:
        facts[s.key] = make_fact(s.key, s.value, "process", s.method, s.detail)
    families = parse_metrics_text((REAL_FIXTURES / "metrics" / METRICS).read_text(encoding="utf-8"))
    for f in interpret_families(families).facts.facts:
        facts[f.key] = f  # runtime-reported beats args, as in the agent's merge
    model = REAL_FIXTURES / "models" / MODEL
    for suffix, value in parse_model_config((model / "config.json").read_bytes()).items():
        key = f"model.config.{suffix}"
        try:
            facts[key] = make_fact(key, value, "model_files", "file", "config.json field")
        except FactError:
            continue
    for path in sorted(model.iterdir()):
        data = path.read_bytes()
        value = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        facts[file_fact_key(path.name)] = make_fact(
            file_fact_key(path.name), value, "model_files", "file", f"sha256 of {path.name}"
        )
    index = json.loads((model / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    share = int(index.get("metadata", {}).get("total_size", 0)) // max(1, len(shards))
    for name in shards:
        value = {"sha256": hashlib.sha256(name.encode()).hexdigest(), "bytes": share}
        facts[file_fact_key(name)] = make_fact(
            file_fact_key(name), value, "model_files", "file", f"sha256 of {name}"
        )
    return facts


def workload_name(w: int) -> tuple[str, str]:
    """(namespace, deployment name) of workload ``w``."""
    return f"team-{w % 10:02d}", f"llm-{w:03d}"


def workload_snapshot(base: dict[str, Fact], w: int, version: int, drift: int) -> pb.Snapshot:
    """Workload ``w``'s snapshot at rollout ``version``, with a pod-local change when ``drift``."""
    ns, name = workload_name(w)
    facts = dict(base)

    def put(key: str, value: object, source: str, method: str, detail: str = "") -> None:
        facts[key] = make_fact(key, value, source, method, detail)

    put("orchestration.namespace", ns, "pod", "k8s", "downward API")
    put("orchestration.workload", f"{ns}/Deployment/{name}", "pod", "k8s", "ownerReferences")
    put("runtime.args.max_loras", 4 + version, "process", "arg", "--max-loras")
    put("runtime.max_loras", 4 + version, "process", "arg", "--max-loras")
    seqs = 1024 + 256 * drift
    put("runtime.args.max_num_seqs", seqs, "process", "arg", "--max-num-seqs")
    put("runtime.max_num_seqs", seqs, "process", "arg", "--max-num-seqs")
    snap = Snapshot(
        facts=facts,
        sources={
            n: SourceStatus(n, SourceState.OK)
            for n in ("process", "pod", "model_files", "runtime_metrics", "nvml")
        },
        fingerprint=fingerprint_facts(facts.values()),
        collected_at=time.time(),
    )
    return snapshot_to_proto(snap)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def frame_snapshot(sequence: int, *parts: bytes) -> bytes:
    """An AgentMessage(sequence, snapshot=<the concatenated Snapshot parts>), serialised."""
    body = b"".join(parts)
    return b"\x08" + _varint(sequence) + b"\x1a" + _varint(len(body)) + body


# --------------------------------------------------------------------------- the collector


class CollectorProcess:
    """A real ``skewwatch collector`` process; restartable on the same ports and store."""

    def __init__(self, store: str, workdir: Path, max_streams: int, extra_env: dict[str, str] | None = None):
        self.store = store
        self.workdir = workdir
        self.grpc_port, self.http_port = free_port(), free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SKEWWATCH_")}
        self.env.update(
            {
                "SKEWWATCH_MAX_STREAMS": str(min(100_000, max_streams)),
                "SKEWWATCH_MAX_STREAMS_PER_ADDRESS": str(min(100_000, max_streams)),
                "SKEWWATCH_INJECTION_CHECK_INTERVAL": "0",
            }
        )
        self.env.update(extra_env or {})
        # SKEWWATCH_BENCH_COLLECTOR_SRC: run the collector from another tree (e.g. ``git archive
        # HEAD`` while the checkout's collector is mid-change); default: this checkout.
        self.src = os.environ.get("SKEWWATCH_BENCH_COLLECTOR_SRC", "")
        if self.src:
            self.env["PYTHONPATH"] = os.pathsep.join([self.src, self.env.get("PYTHONPATH", "")])
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout_s: float = 60) -> float:
        """Start and wait for /readyz; returns the monotonic time it was ready."""
        self.starts += 1
        log = open(self.workdir / f"collector-{self.starts}.log", "wb")  # noqa: SIM115 - kept by the child
        # SKEWWATCH_BENCH_COLLECTOR_PROFILE=PREFIX: run the collector under cProfile, written to
        # PREFIX.<start> when it is stopped (not when killed).
        profile = os.environ.get("SKEWWATCH_BENCH_COLLECTOR_PROFILE", "")
        prefix = ["-m", "cProfile", "-o", f"{profile}.{self.starts}"] if profile else []
        self.proc = subprocess.Popen(
            [sys.executable, *prefix, "-m", "skewwatch.cli", "--log-level", "WARNING", "collector",
             "--grpc", self.target, "--http", f"127.0.0.1:{self.http_port}", "--store", self.store],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=self.src or None,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                urllib.request.urlopen(f"{self.http}/readyz", timeout=2).close()
                return time.monotonic()
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    log_path = self.workdir / f"collector-{self.starts}.log"
                    tail = log_path.read_text(errors="replace")[-500:]
                    raise RuntimeError(f"collector did not start ({log_path}): {tail}") from None
                time.sleep(0.05)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def get(self, path: str, timeout_s: float = 60) -> Any:
        with urllib.request.urlopen(f"{self.http}{path}", timeout=timeout_s) as r:
            body = r.read()
        return json.loads(body) if path.startswith("/api") else body.decode()

    def cpu(self) -> tuple[float, float]:
        """(utime + stime, block-I/O delay) seconds of the collector, from /proc/<pid>/stat."""
        return proc_cpu(self.pid)

    def memory(self) -> tuple[int, int]:
        """(VmRSS, VmHWM) bytes."""
        out = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                out[name] = int(rest.split()[0]) * 1024
        return out["VmRSS"], out["VmHWM"]


def proc_cpu(pid: int) -> tuple[float, float]:
    """(utime + stime, delayacct_blkio_ticks) in seconds, from /proc/<pid>/stat (all threads)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    f = text[text.rfind(")") + 2 :].split()
    return (int(f[11]) + int(f[12])) / CLK_TCK, int(f[39]) / CLK_TCK


# --------------------------------------------------------------------------- the fleet


@dataclass(frozen=True)
class FleetOptions:
    agents: int = 10_000
    workers: int = 4
    workloads: int = 100
    streams_per_channel: int = 250
    heartbeat_s: float = 15.0
    # The agent's --interval, for the Backoff cap (AgentStream: max(5, min(60, 4 x interval))).
    interval_s: float = 15.0
    connect_ramp_s: float = 5.0
    honour_retry_after: bool = True
    seed: int = 1


@dataclass
class _Agent:
    index: int
    workload: int
    namespace: str
    pod: str
    identity: bytes  # this pod's identity facts, a serialised Snapshot fragment
    hello: pb.Hello
    backoff: Backoff
    rejected: Backoff
    version: int = 0
    drift: int = 0
    sequence: int = 0
    fingerprint: str = ""  # of the last snapshot sent
    acked_fingerprint: str = ""  # of the last snapshot acknowledged
    connected: bool = False
    first_data: int | None = None
    pending: dict[int, tuple[str, str, float, str]] = field(default_factory=dict)
    want_snapshot: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    failed: BaseException | None = None
    back_at: float | None = None  # first data ack after the reconnect phase began


def _percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


class _Worker:
    def __init__(self, conn: Connection, opts: FleetOptions, target: str, indices: range) -> None:
        self.conn = conn
        self.opts = opts
        self.target = target
        self.indices = indices
        self.rng = random.Random(opts.seed * 1000 + indices.start)
        self.base = base_facts()
        self.cache: dict[tuple[int, int, int], tuple[bytes, str]] = {}
        self.phase = "connect"
        self.latency: dict[tuple[str, str], list[float]] = {}
        self.sent: Counter[tuple[str, str]] = Counter()
        self.acked: Counter[tuple[str, str]] = Counter()
        self.first_write: dict[tuple[str, str], float] = {}
        self.last_ack: dict[tuple[str, str], float] = {}
        self.failures: Counter[str] = Counter()
        self.failure_details: dict[str, str] = {}  # the first details text of each kind
        self.refused = 0
        self.stopping = asyncio.Event()
        per_workload = max(1, math.ceil(opts.agents / opts.workloads))
        self.agents: list[_Agent] = []
        for i in indices:
            w = min(opts.workloads - 1, i // per_workload)
            ns, name = workload_name(w)
            pod = f"{name}-7d9f8b6c4-{i:05d}"
            node = f"gpu-node-{i // 8:04d}"
            ident = pb.Snapshot(
                facts=[
                    pb.Fact(
                        key=k,
                        value=pb.Value(string_value=v),
                        provenance=pb.Provenance(source="pod", method="k8s"),
                    )
                    for k, v in (
                        ("orchestration.pod", pod),
                        ("orchestration.pod_uid", str(uuid.UUID(int=i + 1))),
                        ("orchestration.pod_ip", f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"),
                        ("orchestration.node", node),
                    )
                ]
            ).SerializeToString()
            hello = pb.Hello(
                agent_id=f"{ns}/{pod}",
                pod=pb.PodIdentity(
                    namespace=ns,
                    pod=pod,
                    node=node,
                    workload=f"{ns}/Deployment/{name}",
                    workload_source="k8s",
                ),
                agent_version=__version__,
                protocol_version=PROTOCOL_VERSION,
                instance_id=uuid.uuid4().hex,
            )
            cap = max(5.0, min(60.0, opts.interval_s * 4))  # AgentStream's
            backoff = Backoff(cap_s=cap, rng=random.Random(self.rng.random()))
            rejected = Backoff(
                REJECTED_BASE_S, REJECTED_CAP_S, rng=random.Random(self.rng.random()), floor=0.5
            )
            self.agents.append(_Agent(i, w, ns, pod, ident, hello, backoff, rejected))
        n_channels = max(1, math.ceil(len(self.agents) / opts.streams_per_channel))
        self.channels = [
            grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS) for _ in range(n_channels)
        ]
        self.calls = [
            ch.stream_stream(
                FULL_METHOD, request_serializer=_raw, response_deserializer=pb.CollectorMessage.FromString
            )
            for ch in self.channels
        ]

    # ---- snapshot bytes

    def _snapshot(self, a: _Agent) -> tuple[bytes, str]:
        key = (a.workload, a.version, a.drift)
        got = self.cache.get(key)
        if got is None:
            msg = workload_snapshot(self.base, *key)
            got = (msg.SerializeToString(), msg.fingerprint.overall)
            self.cache[key] = got
        return got

    # ---- accounting

    def _wrote(self, a: _Agent, seq: int, kind: str, fp: str = "") -> None:
        now = time.monotonic()
        k = (self.phase, kind)
        self.sent[k] += 1
        self.first_write.setdefault(k, now)
        a.pending[seq] = (kind, self.phase, now, fp)

    def _ack(self, a: _Agent, seq: int) -> None:
        now = time.monotonic()
        while a.pending:
            first = next(iter(a.pending))
            if first > seq:
                break
            kind, phase, at, fp = a.pending.pop(first)
            k = (phase, kind)
            self.acked[k] += 1
            self.last_ack[k] = now
            self.latency.setdefault(k, []).append(now - at)
            if kind == "snapshot":
                a.acked_fingerprint = fp
        if a.first_data is not None and seq >= a.first_data and not a.connected:
            a.connected = True
            a.backoff.reset()
            a.rejected.reset()
            if self.phase == "reconnect" and a.back_at is None:
                a.back_at = now

    # ---- one agent

    async def _run_agent(self, a: _Agent, delay: float) -> None:
        await asyncio.sleep(delay)
        while not self.stopping.is_set():
            call: Any = None
            rejected, hint = False, 0.0
            try:
                call = self.calls[a.index % len(self.calls)]()
                await self._session(a, call)
            except asyncio.CancelledError:
                if call is not None:
                    call.cancel()
                raise
            except Exception as e:  # every failure is a reconnect, counted by kind
                rejected, hint = await self._failed(e, call)
            if call is not None:
                call.cancel()
            a.connected = False
            a.pending.clear()
            delay = (a.rejected if rejected else a.backoff).next_delay()
            if rejected and self.opts.honour_retry_after:
                delay = max(delay, hint)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), timeout=delay)

    async def _failed(self, e: Exception, call: Any) -> tuple[bool, float]:
        """Count a stream's failure; (rejected as the agent counts it, the retry-after hint)."""
        code: grpc.StatusCode | None = None
        metadata: Any = None
        details = str(e)
        if isinstance(e, grpc.aio.AioRpcError):
            code, metadata, details = e.code(), e.trailing_metadata(), e.details() or ""
        elif call is not None and call.done():
            try:
                code, metadata = await call.code(), await call.trailing_metadata()
                details = await call.details() or ""
            except Exception:
                code = None
        kind = code.name if code is not None else type(e).__name__
        self.failures[kind] += 1
        self.failure_details.setdefault(kind, details[:300])
        hint = 0.0
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            self.refused += 1
            for k, v in metadata or ():
                if k == RETRY_AFTER_METADATA:
                    with contextlib.suppress(ValueError):
                        hint = float(v)
        return code in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.INVALID_ARGUMENT), hint

    async def _session(self, a: _Agent, call: Any) -> None:
        a.first_data = None
        a.failed = None
        a.wake.clear()
        reader = asyncio.create_task(self._read(a, call))
        try:
            a.sequence += 1
            self._wrote(a, a.sequence, "hello")
            await call.write(pb.AgentMessage(sequence=a.sequence, hello=a.hello).SerializeToString())
            await self._send_snapshot(a, call)
            loop = asyncio.get_running_loop()
            next_hb = loop.time() + self.rng.uniform(0, self.opts.heartbeat_s)
            while True:
                timeout = next_hb - loop.time()
                if timeout > 0 and not a.wake.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(a.wake.wait(), timeout=timeout)
                a.wake.clear()
                if a.failed is not None or reader.done():
                    if reader.done() and not reader.cancelled() and reader.exception() is not None:
                        raise reader.exception()  # type: ignore[misc]
                    raise ConnectionError("collector closed the stream")
                if a.want_snapshot:
                    await self._send_snapshot(a, call)
                elif loop.time() >= next_hb:
                    a.sequence += 1
                    self._wrote(a, a.sequence, "heartbeat")
                    hb = pb.Heartbeat(
                        at=timestamp(time.time()),
                        overall_fingerprint=a.fingerprint,
                        engine_state=pb.ENGINE_STATE_RUNNING,
                    )
                    await call.write(pb.AgentMessage(sequence=a.sequence, heartbeat=hb).SerializeToString())
                    next_hb += self.opts.heartbeat_s
        except asyncio.InvalidStateError as e:
            await asyncio.wait({reader}, timeout=5)
            if reader.done() and not reader.cancelled() and reader.exception() is not None:
                raise reader.exception() from e  # type: ignore[misc]
            raise ConnectionError(f"the stream ended while sending: {e}") from e
        finally:
            reader.cancel()
            with contextlib.suppress(BaseException):  # its failure was read above
                await reader

    async def _send_snapshot(self, a: _Agent, call: Any) -> None:
        a.want_snapshot = False
        body, fp = self._snapshot(a)
        a.sequence += 1
        a.fingerprint = fp
        self._wrote(a, a.sequence, "snapshot", fp)
        if a.first_data is None:
            a.first_data = a.sequence
        stamp = pb.Snapshot(collected_at=timestamp(time.time())).SerializeToString()
        await call.write(frame_snapshot(a.sequence, body, a.identity, stamp))

    async def _read(self, a: _Agent, call: Any) -> None:
        try:
            while True:
                msg = await call.read()
                if msg is grpc.aio.EOF:
                    a.failed = ConnectionError("collector closed the stream")
                    return
                body = msg.WhichOneof("body")
                if body == "ack":
                    self._ack(a, msg.ack.sequence)
                elif body == "resync":
                    a.want_snapshot = True
                    a.wake.set()
        except BaseException as e:
            a.failed = e
            raise
        finally:
            a.wake.set()

    # ---- commands from the parent

    def _command(self) -> None:
        cmd, *args = self.conn.recv()
        if cmd == "phase":
            self.phase = args[0]
            if self.phase == "reconnect":
                for a in self.agents:
                    a.back_at = None
            self.conn.send(None)
        elif cmd == "change":
            share, over_s = args
            chosen = [a for a in self.agents if self.rng.random() < share]
            for a in chosen:
                asyncio.get_running_loop().call_later(self.rng.uniform(0, over_s), self._change, a, "drift")
            self.conn.send(len(chosen))
        elif cmd == "wave":
            (spread_s,) = args
            for a in self.agents:
                asyncio.get_running_loop().call_later(self.rng.uniform(0, spread_s), self._change, a, "wave")
            self.conn.send(len(self.agents))
        elif cmd == "query":
            self.conn.send(self._summary(full=False))
        elif cmd == "collect":
            self.conn.send(self._summary(full=True))
        elif cmd == "stop":
            self.stopping.set()
            self.conn.send(None)

    def _change(self, a: _Agent, how: str) -> None:
        if how == "drift":
            a.drift ^= 1
        else:
            a.version += 1
        a.want_snapshot = True
        a.wake.set()

    def _summary(self, full: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "agents": len(self.agents),
            "connected": sum(a.connected for a in self.agents),
            "back": sum(a.back_at is not None for a in self.agents),
            "sent": {"/".join(k): v for k, v in self.sent.items()},
            "acked": {"/".join(k): v for k, v in self.acked.items()},
            "pending_snapshots": sum(
                1 for a in self.agents for p in a.pending.values() if p[0] == "snapshot"
            ),
            "refused": self.refused,
            "failures": dict(self.failures),
            "failure_details": dict(self.failure_details),
            "cpu_s": _self_cpu(),
        }
        if full:
            out["latency"] = {"/".join(k): v for k, v in self.latency.items()}
            out["first_write"] = {"/".join(k): v for k, v in self.first_write.items()}
            out["last_ack"] = {"/".join(k): v for k, v in self.last_ack.items()}
            out["back_at"] = [a.back_at for a in self.agents if a.back_at is not None]
            out["pods"] = {
                f"{a.namespace}/{a.pod}": (a.fingerprint, a.acked_fingerprint) for a in self.agents
            }
        return out

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_reader(self.conn.fileno(), self._command)
        self.conn.send("ready")
        tasks = [
            asyncio.create_task(self._run_agent(a, self.rng.uniform(0, self.opts.connect_ramp_s)))
            for a in self.agents
        ]
        await self.stopping.wait()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for ch in self.channels:
            await ch.close()
        loop.remove_reader(self.conn.fileno())


def _raw(b: bytes) -> bytes:
    return b


def _self_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _worker_main(conn: Connection, opts: FleetOptions, target: str, start: int, stop: int) -> None:
    async def main() -> None:  # the channels must be made inside the loop that runs them
        await _Worker(conn, opts, target, range(start, stop)).run()

    asyncio.run(main())


class Fleet:
    """The parent's handle on the worker processes."""

    def __init__(self, opts: FleetOptions, target: str) -> None:
        self.opts = opts
        ctx = multiprocessing.get_context("spawn")
        n = max(1, min(opts.workers, opts.agents))
        bounds = [opts.agents * k // n for k in range(n + 1)]
        self.conns: list[Connection] = []
        self.procs: list[Any] = []
        for k in range(n):
            parent, child = ctx.Pipe()
            p = ctx.Process(
                target=_worker_main, args=(child, opts, target, bounds[k], bounds[k + 1]), daemon=True
            )
            p.start()
            child.close()
            self.conns.append(parent)
            self.procs.append(p)
        for c in self.conns:
            if not c.poll(120):
                raise RuntimeError("a fleet worker did not start")
            assert c.recv() == "ready"

    def pids(self) -> list[int]:
        return [int(p.pid) for p in self.procs]

    def command(self, *cmd: object) -> list[Any]:
        for c in self.conns:
            c.send(cmd)
        return [c.recv() for c in self.conns]

    def query(self) -> dict[str, Any]:
        """The workers' summaries, summed."""
        return merge(self.command("query"))

    def collect(self) -> dict[str, Any]:
        return merge(self.command("collect"))

    def wait(
        self, what: str, done: Any, timeout_s: float, progress_s: float = 2.0, strict: bool = True
    ) -> dict[str, Any]:
        """Poll until ``done(summary)``; progress on stderr. Past ``timeout_s`` raise TimeoutError,
        or (not ``strict``) return the summary with ``incomplete`` set and ``ended`` its time."""
        start = time.monotonic()
        last = start
        while True:
            q = self.query()
            q["ended"] = time.monotonic()
            if done(q):
                return q
            now = time.monotonic()
            if now - start > timeout_s:
                if not strict:
                    print(
                        f"  {what}: INCOMPLETE after {timeout_s:g} s: {brief(q)}", file=sys.stderr, flush=True
                    )
                    q["incomplete"] = True
                    return q
                raise TimeoutError(f"{what}: not done after {timeout_s:g} s: {brief(q)}")
            if now - last >= progress_s:
                print(f"  {what}: {now - start:5.1f} s {brief(q)}", file=sys.stderr, flush=True)
                last = now
            time.sleep(0.1)

    def stop(self) -> None:
        with contextlib.suppress(OSError, EOFError):
            self.command("stop")
        for p in self.procs:
            p.join(timeout=20)
            if p.is_alive():
                p.kill()


def merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in parts:
        for k, v in part.items():
            if isinstance(v, (int, float)) and k != "cpu_s":
                out[k] = out.get(k, 0) + v
            elif k == "cpu_s":
                out.setdefault("cpu_s", []).append(v)
            elif isinstance(v, dict):
                d = out.setdefault(k, {})
                for kk, vv in v.items():
                    if k == "first_write":
                        d[kk] = min(d.get(kk, vv), vv)
                    elif k == "last_ack":
                        d[kk] = max(d.get(kk, vv), vv)
                    elif k == "latency":
                        d.setdefault(kk, []).extend(vv)
                    elif k in ("pods", "failure_details"):
                        d[kk] = vv
                    else:
                        d[kk] = d.get(kk, 0) + vv
            elif isinstance(v, list):
                out.setdefault(k, []).extend(v)
    return out


def brief(q: dict[str, Any]) -> str:
    return (
        f"connected {q.get('connected', 0)}/{q.get('agents', 0)}, back {q.get('back', 0)}, "
        f"acked {q.get('acked', {})}, refused {q.get('refused', 0)}, failures {q.get('failures', {})}"
    )


def percentile(values: Sequence[float], q: float) -> float:
    return _percentile(values, q)
