"""A fleet of thousands of simulated agents against one real collector process, on loopback.

The generator is ``tests/bench/fleet.py`` (its docstring says how the ~215-fact snapshots are
built from the real captures and how the agents behave). Phases, in one run:

1. References: raw ``sqlite3`` per-row insert+commit of the fleet's serialised snapshot bytes
   (WAL, synchronous=FULL: the durability an ack promises), as bench_ingest does; the p99 round
   trip of a trivial gRPC bidirectional echo (raw bytes, one stream, sequential) on loopback to a
   separate server process, measured before the fleet starts (an unloaded machine).
2. A collector (SQLite store in a temp dir, stream limits raised to the fleet size, the missed-
   injection check off); its idle VmRSS.
3. Connect: every agent opens its stream within ``SKEWWATCH_BENCH_CONNECT_RAMP_S`` (Hello, full
   snapshot); done when every agent's snapshot is acknowledged.
4. Steady state for ``SKEWWATCH_BENCH_STEADY_S``: heartbeats every ``SKEWWATCH_BENCH_HEARTBEAT_S``
   (default 15 s, the agent's default interval; not scaled), 5 % of the agents changing their
   configuration at random times in the window. Ack latencies of heartbeats and snapshots written
   in the window; the collector's VmRSS / VmHWM at its end.
5. Rollout wave: every agent sends a new snapshot within ``SKEWWATCH_BENCH_WAVE_SPREAD_S``
   (default 2 s, i.e. offered faster than the collector can store, so the rate measured is the
   collector's); done when all are acknowledged.
6. Reconnect: the collector is SIGKILLed with the fleet connected and restarted on the same
   ports and store at once; every agent reconnects with the agent's real Backoff. The spread is
   measured from the restarted collector's /readyz to each agent's first acknowledged report.
7. PostgreSQL: phases 2, 3 and 5 again with ``--store postgresql://…`` on a throwaway server
   (``tests.support.postgres.PostgresServer``), when that helper and the collector's PostgreSQL
   store are present; otherwise the figure is skipped with its reason on stderr.

Figures:

- ``fleet.snapshots_per_s.sqlite``: wave snapshots acknowledged per second (first wave write to
  last wave ack), one collector process; reference: the raw per-row commit rate (goal ≥ 0.7).
- ``fleet.snapshots_per_s.postgresql``: the same on PostgreSQL; reference: raw psycopg per-row
  insert+commit of the same bytes into the same server.
- ``fleet.ack_p99_ms``: p99 ack latency (write → the ack covering it) of the heartbeats and
  snapshots written in the steady window, acks that arrive after it included (read after the
  wave; a write whose stream failed before its ack is not counted); reference: the echo's p99
  (goal < 250 ms absolute).
- ``fleet.collector_rss``: the collector's VmRSS with every agent connected at the end of the
  steady window; reference: its VmRSS idle, before any agent (goal < 1.5 GiB).
- ``fleet.rollout_wave_s``: seconds to absorb the wave (first write to last ack); reference: the
  ideal time, agents / raw per-row commit rate.
- ``fleet.reconnect_spread_s``: seconds from the restarted collector's readiness until 90 % of
  the agents are back (first report acked); reference: the agents' Backoff cap (60 s at a 15 s
  interval). The p10/p50/p100 and the streams refused with RESOURCE_EXHAUSTED go to stderr.

Sizes by environment: ``SKEWWATCH_BENCH_AGENTS`` (default 10000; 200 is a quick smoke),
``SKEWWATCH_BENCH_FLEET_WORKERS`` (2), ``SKEWWATCH_BENCH_STEADY_S`` (30),
``SKEWWATCH_BENCH_HEARTBEAT_S`` (15), ``SKEWWATCH_BENCH_WAVE_SPREAD_S`` (2),
``SKEWWATCH_BENCH_CONNECT_RAMP_S`` (10), ``SKEWWATCH_BENCH_CHANGE_SHARE`` (0.05),
``SKEWWATCH_BENCH_PHASE_TIMEOUT_S`` (300: a phase not done by then ends, its figures computed over
what was acknowledged and marked INCOMPLETE in their reference text),
``SKEWWATCH_BENCH_FLEET_POSTGRES`` (1: run the PostgreSQL phase when available; 0: skip it),
``SKEWWATCH_BENCH_COLLECTOR_SRC`` (run the collector from another source tree),
``SKEWWATCH_BENCH_COLLECTOR_PROFILE`` (PREFIX: the collector under cProfile, written on stop).

Progress, the generator's and the collector's CPU per phase (seconds of CPU per second of wall
time: 1.0 is one core saturated; the machine's cores are printed too) and the collector's
``/metrics`` ingest and store lines go to stderr.
"""

from __future__ import annotations

import asyncio
import importlib
import multiprocessing
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import grpc

from proto.skewwatch.v1 import skewwatch_pb2 as pb
from skewwatch.wire import timestamp
from tests.bench.common import Figure
from tests.bench.fleet import (
    CollectorProcess,
    Fleet,
    FleetOptions,
    base_facts,
    frame_snapshot,
    percentile,
    proc_cpu,
    workload_snapshot,
)

RAW_ROWS = 2000
ECHO_ROUND_TRIPS = 2000
PROGRESS_S = 10.0


def _env(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    return float(raw) if raw else default


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- references


def sample_snapshot_bytes() -> bytes:
    """One pod's snapshot as the fleet sends it (workload part, identity facts, timestamp)."""
    snap = workload_snapshot(base_facts(), 0, 0, 0).SerializeToString()
    ident = pb.Snapshot(
        facts=[
            pb.Fact(key="orchestration.pod", value=pb.Value(string_value="llm-000-7d9f8b6c4-00000"),
                    provenance=pb.Provenance(source="pod", method="k8s"))
        ],
        collected_at=timestamp(time.time()),
    ).SerializeToString()  # fmt: skip
    return frame_snapshot(2, snap, ident)


def raw_sqlite_rate(body: bytes, path: Path, n: int = RAW_ROWS) -> float:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, pod TEXT, seq INTEGER, body BLOB)")
    start = time.perf_counter()
    for i in range(n):
        db.execute("BEGIN")
        db.execute("INSERT INTO t (pod, seq, body) VALUES (?, ?, ?)", (f"ns/pod-{i % 1000}", i, body))
        db.execute("COMMIT")
    elapsed = time.perf_counter() - start
    db.close()
    return n / elapsed


def raw_postgres_rate(body: bytes, url: str, n: int = RAW_ROWS) -> float:
    psycopg: Any = importlib.import_module("psycopg")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE raw_bench (id BIGSERIAL PRIMARY KEY, pod TEXT, seq BIGINT, body BYTEA)")
        start = time.perf_counter()
        for i in range(n):
            with conn.transaction():
                conn.execute(
                    "INSERT INTO raw_bench (pod, seq, body) VALUES (%s, %s, %s)",
                    (f"ns/pod-{i % 1000}", i, body),
                )
        elapsed = time.perf_counter() - start
        conn.execute("DROP TABLE raw_bench")
    return n / elapsed


def _raw(b: bytes) -> bytes:
    return b


def _echo_main(conn: Connection) -> None:
    async def serve() -> None:
        async def echo(requests: Any, _context: Any) -> Any:
            async for m in requests:
                yield m

        server = grpc.aio.server()
        server.add_generic_rpc_handlers(
            [
                grpc.method_handlers_generic_handler(
                    "bench.Echo", {"Stream": grpc.stream_stream_rpc_method_handler(echo)}
                )
            ]
        )
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        conn.send(port)
        await server.wait_for_termination()

    asyncio.run(serve())


def echo_p99_ms() -> float:
    """p99 round trip (ms) of a heartbeat-sized message on one echo stream to another process."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_echo_main, args=(child,), daemon=True)
    proc.start()
    try:
        if not parent.poll(60):
            raise RuntimeError("echo server did not start")
        port = int(parent.recv())
        msg = pb.AgentMessage(
            sequence=7, heartbeat=pb.Heartbeat(at=timestamp(time.time()), overall_fingerprint="ab" * 32)
        ).SerializeToString()

        async def measure() -> list[float]:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
                call: Any = ch.stream_stream(
                    "/bench.Echo/Stream", request_serializer=_raw, response_deserializer=_raw
                )()
                out = []
                for i in range(ECHO_ROUND_TRIPS + 100):
                    t = time.perf_counter()
                    await call.write(msg)
                    await call.read()
                    if i >= 100:  # warm-up
                        out.append(time.perf_counter() - t)
                await call.done_writing()
                return out

        return percentile(asyncio.run(measure()), 0.99) * 1000
    finally:
        proc.terminate()
        proc.join(timeout=10)


# --------------------------------------------------------------------------- measuring


class Meter:
    """CPU of the collector and of the generator (workers + this process) over a phase."""

    def __init__(self, collector: CollectorProcess, fleet: Fleet | None) -> None:
        self.collector = collector
        self.fleet = fleet
        self.start()

    def _gen_cpu(self) -> float:
        own = os.times()
        total = own.user + own.system
        if self.fleet is not None:
            total += sum(proc_cpu(pid)[0] for pid in self.fleet.pids())
        return total

    def start(self) -> None:
        self.t = time.monotonic()
        self.c_cpu, self.c_io = self.collector.cpu()
        self.g_cpu = self._gen_cpu()

    def report(self, phase: str) -> dict[str, float]:
        wall = time.monotonic() - self.t
        c_cpu, c_io = self.collector.cpu()
        g = self._gen_cpu() - self.g_cpu
        out = {
            "wall_s": wall,
            "collector_cpu": (c_cpu - self.c_cpu) / wall,
            "collector_blkio": (c_io - self.c_io) / wall,
            "generator_cpu": g / wall,
        }
        workers = len(self.fleet.pids()) if self.fleet else 0
        _log(
            f"[{phase}] {wall:.1f} s wall; collector {out['collector_cpu']:.2f} CPU-s/s "
            f"(block-I/O delay {out['collector_blkio']:.2f} s/s, 0 unless kernel.task_delayacct=1); "
            f"generator {out['generator_cpu']:.2f} CPU-s/s ({workers} workers, parent); {os.cpu_count()} CPUs"
        )
        return out


def _metrics_lines(collector: CollectorProcess) -> None:
    try:
        text = str(collector.get("/metrics"))
    except OSError as e:
        _log(f"  /metrics: {e}")
        return
    keep = [
        line
        for line in text.splitlines()
        if not line.startswith("#")
        and any(w in line for w in ("ingest", "store", "stream", "evaluat", "drift"))
        and not line.split("{")[0].endswith("_bucket")
    ]
    _log("  collector /metrics (ingest/store/stream/evaluation lines):")
    for line in keep[:80]:
        _log(f"    {line}")


def _rate(q: dict[str, Any], key: str) -> tuple[float, float, int]:
    """(rate/s, seconds first write → last ack, acked) of one phase/kind."""
    acked = int(q["acked"].get(key, 0))
    span = q["last_ack"][key] - q["first_write"][key]
    return acked / span, span, acked


def _lat(q: dict[str, Any], *keys: str) -> list[float]:
    out: list[float] = []
    for k in keys:
        out.extend(q["latency"].get(k, []))
    return out


def _ms(values: list[float]) -> str:
    if not values:
        return "none"
    return (
        f"n={len(values)} p50 {percentile(values, 0.5) * 1000:.1f} p90 {percentile(values, 0.9) * 1000:.1f} "
        f"p99 {percentile(values, 0.99) * 1000:.1f} max {max(values) * 1000:.1f} ms"
    )


@contextmanager
def _running(collector: CollectorProcess, opts: FleetOptions) -> Iterator[Fleet]:
    fleet = Fleet(opts, collector.target)
    try:
        yield fleet
    finally:
        fleet.stop()


def _connect(fleet: Fleet, collector: CollectorProcess, agents: int, timeout_s: float) -> int:
    """Wait until every agent is connected (or the timeout); returns how many are."""
    meter = Meter(collector, fleet)
    q = fleet.wait("connect", lambda q: q["connected"] == agents, timeout_s, PROGRESS_S, strict=False)
    meter.report("connect")
    return int(q["connected"])


def _wave(
    fleet: Fleet, collector: CollectorProcess, agents: int, spread_s: float, timeout_s: float
) -> dict[str, Any]:
    fleet.command("phase", "wave")
    meter = Meter(collector, fleet)
    fleet.command("wave", spread_s)
    w = fleet.wait(
        "wave", lambda q: q["acked"].get("wave/snapshot", 0) >= agents, timeout_s, PROGRESS_S, strict=False
    )
    meter.report("wave")
    q = fleet.collect()
    if w.get("incomplete"):  # the wave lasted at least until the timeout
        q["last_ack"]["wave/snapshot"] = w["ended"]
        q["incomplete"] = True
    return q


# --------------------------------------------------------------------------- the run


def run() -> list[Figure]:
    agents = int(_env("SKEWWATCH_BENCH_AGENTS", 10_000))
    opts = FleetOptions(
        agents=agents,
        workers=int(_env("SKEWWATCH_BENCH_FLEET_WORKERS", 2)),
        workloads=min(100, max(1, agents // 10)),
        heartbeat_s=_env("SKEWWATCH_BENCH_HEARTBEAT_S", 15.0),
        connect_ramp_s=_env("SKEWWATCH_BENCH_CONNECT_RAMP_S", 10.0),
    )
    steady_s = _env("SKEWWATCH_BENCH_STEADY_S", 30.0)
    spread_s = _env("SKEWWATCH_BENCH_WAVE_SPREAD_S", 2.0)
    share = _env("SKEWWATCH_BENCH_CHANGE_SHARE", 0.05)
    timeout = _env("SKEWWATCH_BENCH_PHASE_TIMEOUT_S", 300.0)
    cap_s = max(5.0, min(60.0, opts.interval_s * 4))
    began = time.monotonic()
    figures: list[Figure] = []
    _log(f"bench_fleet: {agents} agents, {opts.workers} workers, {opts.workloads} workloads, "
         f"heartbeat {opts.heartbeat_s:g} s, steady {steady_s:g} s, wave spread {spread_s:g} s")  # fmt: skip
    body = sample_snapshot_bytes()
    _log(f"snapshot: {len(base_facts()) + 6} facts, {len(body)} bytes serialised")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        raw = raw_sqlite_rate(body, root / "raw.db")
        echo = echo_p99_ms()
        _log(f"references: raw sqlite3 per-row commit {raw:.0f}/s; gRPC echo p99 {echo:.3f} ms")

        collector = CollectorProcess(f"sqlite:///{root}/store.db", root, agents + 1000)
        collector.start()
        try:
            time.sleep(2)
            idle_rss, _ = collector.memory()
            _log(f"collector idle VmRSS {idle_rss / 2**20:.1f} MiB")
            with _running(collector, opts) as fleet:
                connected = _connect(fleet, collector, agents, timeout)
                note = "" if connected == agents else f"; INCOMPLETE: only {connected} of {agents} connected"
                # Steady state.
                fleet.command("phase", "steady")
                meter = Meter(collector, fleet)
                changed = sum(fleet.command("change", share, steady_s))
                time.sleep(steady_s)
                meter.report("steady")
                rss, hwm = collector.memory()
                q = fleet.collect()
                steady = _lat(q, "steady/heartbeat", "steady/snapshot")
                hb_ms, snap_ms = _ms(_lat(q, "steady/heartbeat")), _ms(_lat(q, "steady/snapshot"))
                _log(f"steady: {changed} configuration changes; heartbeat acks {hb_ms}; "
                     f"snapshot acks {snap_ms}")  # fmt: skip
                _log(f"collector with {q['connected']} agents: VmRSS {rss / 2**20:.1f} MiB, "
                     f"VmHWM {hwm / 2**20:.1f} MiB")  # fmt: skip
                # The rollout wave.
                q = _wave(fleet, collector, agents, spread_s, timeout)
                rate, span, acked = _rate(q, "wave/snapshot")
                # The steady window's writes again, now with the acks that came after its end (a p99
                # over only the acks back by then would leave out the slowest).
                steady = _lat(q, "steady/heartbeat", "steady/snapshot")
                _log(f"steady-window acks incl. late ones: {_ms(steady)}")
                wave_note = note + (
                    f"; wave INCOMPLETE: {acked} of {agents} acked in {timeout:g} s"
                    if q.get("incomplete")
                    else ""
                )
                hb_ms, snap_ms = _ms(_lat(q, "wave/heartbeat")), _ms(_lat(q, "wave/snapshot"))
                _log(f"wave: {acked} snapshots in {span:.2f} s = {rate:.0f}/s (offered over {spread_s:g} s); "
                     f"snapshot acks {snap_ms}; heartbeat acks {hb_ms}")  # fmt: skip
                _metrics_lines(collector)
                # Kill and restart.
                fleet.command("phase", "reconnect")
                refused_before = fleet.query()["refused"]
                killed = time.monotonic()
                collector.kill()
                ready = collector.start()
                meter = Meter(collector, fleet)
                _log(f"collector killed and ready again after {ready - killed:.2f} s")
                w = fleet.wait("reconnect", lambda q: q["back"] >= agents, timeout, PROGRESS_S, strict=False)
                meter.report("reconnect")
                q = fleet.collect()
                # Agents never back count as back at the phase's end (a lower bound).
                back = [t - ready for t in q["back_at"]] + [w["ended"] - ready] * (agents - len(q["back_at"]))
                back_note = note + (
                    f"; reconnect INCOMPLETE: {len(q['back_at'])} of {agents} back"
                    if w.get("incomplete")
                    else ""
                )
                refused = q["refused"] - refused_before
                p10, p50, p90 = (percentile(back, x) for x in (0.1, 0.5, 0.9))
                _log(f"reconnect after readiness: p10 {p10:.2f} s, p50 {p50:.2f} s, p90 {p90:.2f} s, "
                     f"all {max(back):.2f} s{back_note}; refused with RESOURCE_EXHAUSTED: {refused}; "
                     f"stream failures by kind (whole run): {q['failures']}")  # fmt: skip
                for kind, text in q["failure_details"].items():
                    _log(f"  first {kind}: {text}")
        finally:
            collector.stop()

        figures += [
            Figure("fleet.snapshots_per_s.sqlite", rate, "1/s",
                   "raw sqlite3 per-row insert+commit of the same bytes (WAL, synchronous=FULL)" + wave_note,
                   raw),
            Figure("fleet.ack_p99_ms", percentile(steady, 0.99) * 1000, "ms",
                   f"p99 round trip of a trivial gRPC stream echo, loopback (value: {agents} agents{note})",
                   echo),
            Figure("fleet.collector_rss", rss, "B",
                   f"collector VmRSS idle, 0 agents (value: {agents} agents{note})", idle_rss),
            Figure("fleet.rollout_wave_s", span, "s",
                   f"ideal: {agents} agents / raw sqlite3 per-row commit rate" + wave_note, agents / raw),
            Figure("fleet.reconnect_spread_s", p90, "s",
                   f"the agents' Backoff cap (time to 90 % of {agents} back after the collector is ready)"
                   + back_note,
                   cap_s),
        ]  # fmt: skip
        figures += _postgres(root, opts, body, spread_s, timeout)
    _log(f"bench_fleet took {time.monotonic() - began:.0f} s")
    return figures


def _postgres(root: Path, opts: FleetOptions, body: bytes, spread_s: float, timeout_s: float) -> list[Figure]:
    """The PostgreSQL figure, when ``tests.support.postgres`` and the collector's store exist."""
    if os.environ.get("SKEWWATCH_BENCH_FLEET_POSTGRES", "1") == "0":
        _log("fleet.snapshots_per_s.postgresql: skipped (SKEWWATCH_BENCH_FLEET_POSTGRES=0)")
        return []
    try:
        support: Any = importlib.import_module("tests.support.postgres")
        importlib.import_module("psycopg")
        server_class: Callable[[Path], Any] = support.PostgresServer
    except (ImportError, AttributeError) as e:
        _log(f"fleet.snapshots_per_s.postgresql: skipped: {e} (needs tests.support.postgres.PostgresServer)")
        return []
    pg_dir = root / "pg"
    pg_dir.mkdir()
    with server_class(pg_dir) as pg:
        raw = raw_postgres_rate(body, pg.create_database("raw_bench"))
        _log(f"reference: raw psycopg per-row insert+commit {raw:.0f}/s")
        collector = CollectorProcess(pg.create_database("fleet_bench"), root, opts.agents + 1000)
        try:
            collector.start()
        except RuntimeError as e:
            _log(f"fleet.snapshots_per_s.postgresql: skipped: {e}")
            return []
        try:
            with _running(collector, opts) as fleet:
                _connect(fleet, collector, opts.agents, timeout_s)
                q = _wave(fleet, collector, opts.agents, spread_s, timeout_s)
                rate, span, acked = _rate(q, "wave/snapshot")
                _log(f"wave (postgresql): {acked} snapshots in {span:.2f} s = {rate:.0f}/s")
                _metrics_lines(collector)
        finally:
            collector.stop()
    return [
        Figure("fleet.snapshots_per_s.postgresql", rate, "1/s",
               "raw psycopg per-row insert+commit of the same bytes into the same server", raw)
    ]  # fmt: skip
