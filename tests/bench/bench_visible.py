"""A changed fact, from the engine's restart to the collector's ``GET /metrics``.

Set-up (``tests/support/scenario.py``): a real collector process, a stand-in vLLM
(``demo/standin_vllm.py`` through its launcher) and a real ``skewwatch agent --interval 2`` on it
(its engine watch at the default 0.25 s). Then N trials, each restarting the stand-in with the
other ``--dtype`` (float16 ↔ bfloat16): SIGTERM to the old one, the new one started at once. Two
clocks per trial, on CLOCK_BOOTTIME (what /proc start times count on):

- (a) the restart issued → ``GET /metrics`` shows ``skewwatch_workload_config_info{…,dtype="<new>"}``
  (the identity info series: the fact itself, exported; no finding debounce in the way);
- (b) the new process exists (its /proc start time) → ``GET /api/v1/pods/…`` shows the new
  ``runtime.dtype`` (the snapshot stored at the collector).

Both are polled every 10 ms. Figures: ``visible.restart_to_metric_p50`` / ``_p99`` and
``visible.process_to_snapshot_p50`` / ``_p99`` (seconds), as ratios against the agent's
collection interval (2 s); the goals are (a) p99 ≤ interval + 2 s (ratio ≤ 2) and (b) ≤ 2 s
(ratio ≤ 1). ``visible.engine_startup_p50`` (new process to its port listening) is the part of
both that is the stand-in's own start-up, not the agent's.
"""

from __future__ import annotations

import re
import socket
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path

from agent.sources.process import CLOCK_TICKS, ProcFS
from demo.harness import free_port, get_json, skewwatch, wait_for
from tests.bench.common import Figure
from tests.support.scenario import SERVED, Scenario

TRIALS = 10
INTERVAL_S = 2.0
POLL_S = 0.01
TIMEOUT_S = 30.0
NS, POD = "prod", "visible-0"
DTYPES = ("float16", "bfloat16")


def _now() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def _born(pid: int) -> float:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        ticks = ProcFS(Path("/proc")).start_ticks(pid)
        if ticks is not None:
            return ticks / CLOCK_TICKS
        time.sleep(0.005)
    raise RuntimeError(f"no start time for pid {pid}")


def _metrics(api: str) -> str:
    with urllib.request.urlopen(f"{api}/metrics", timeout=5) as r:
        return str(r.read().decode())


def _exported(text: str, dtype: str) -> bool:
    """The workload's identity series names ``dtype``, and no other dtype (the old one is gone)."""
    dtypes = {
        m.group(1)
        for line in text.splitlines()
        if line.startswith("skewwatch_workload_config_info{") and "visible" in line
        if (m := re.search(r'\bdtype="([^"]*)"', line))
    }
    return dtypes == {dtype}


def _stored(sc: Scenario, dtype: str) -> bool:
    pod = get_json(f"{sc.api}/api/v1/pods/{NS}/{POD}")
    return bool(pod) and pod.get("facts", {}).get("runtime.dtype") == dtype


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _argv(sc: Scenario, port: int, dtype: str) -> list[str]:
    return [str(sc.vllm), "serve", str(sc.model), "--dtype", dtype, "--port", str(port),
            "--served-model-name", SERVED, "--max-model-len", "2048"]  # fmt: skip


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run() -> list[Figure]:
    with tempfile.TemporaryDirectory(prefix="bench-visible-") as d:
        sc = Scenario(Path(d))
        try:
            return _measure(sc)
        finally:
            sc.procs.stop_all()


def _measure(sc: Scenario) -> list[Figure]:
    sc.start_collector()
    port = free_port()
    sc.procs.start("vllm", _argv(sc, port, DTYPES[0]), sc.env)
    wait_for("stand-in listening", lambda: _listening(port), sc.procs)
    env = dict(sc.env, POD_NAMESPACE=NS, POD_NAME=POD, NODE_NAME="node-1",
               SKEWWATCH_WORKLOAD=f"{NS}/Deployment/visible")  # fmt: skip
    match = f"{re.escape(str(sc.vllm))} serve .*--port {port}( |$)"
    sc.procs.start(
        "agent",
        skewwatch("agent", "--collector", f"127.0.0.1:{sc.grpc_port}", "--match", match,
                  "--interval", str(INTERVAL_S)),
        env,
    )  # fmt: skip
    wait_for("first snapshot exported", lambda: _exported(_metrics(sc.api), DTYPES[0]), sc.procs, TIMEOUT_S)
    to_metric: list[float] = []
    to_snapshot: list[float] = []
    startup: list[float] = []
    for i in range(TRIALS):
        dtype = DTYPES[(i + 1) % 2]
        issued = _now()
        sc.procs.stop("vllm")
        pid = sc.procs.start("vllm", _argv(sc, port, dtype), sc.env).pid
        born = _born(pid)
        stored = exported = ready = None
        deadline = time.monotonic() + TIMEOUT_S
        while stored is None or exported is None or ready is None:
            if time.monotonic() > deadline:
                sc.procs.check_alive()
                raise RuntimeError(f"trial {i}: {dtype} not visible after {TIMEOUT_S:g} s")
            if ready is None and _listening(port):
                ready = _now()
            if stored is None and _stored(sc, dtype):
                stored = _now()
            if exported is None and _exported(_metrics(sc.api), dtype):
                exported = _now()
            time.sleep(POLL_S)
        to_metric.append(exported - issued)
        to_snapshot.append(stored - born)
        startup.append(ready - born)
    ref = f"the agent's collection interval ({INTERVAL_S:g} s)"
    return [
        Figure("visible.restart_to_metric_p50", statistics.median(to_metric), "s", ref, INTERVAL_S),
        Figure("visible.restart_to_metric_p99", _pct(to_metric, 0.99), "s", ref, INTERVAL_S),
        Figure("visible.process_to_snapshot_p50", statistics.median(to_snapshot), "s", ref, INTERVAL_S),
        Figure("visible.process_to_snapshot_p99", _pct(to_snapshot, 0.99), "s", ref, INTERVAL_S),
        Figure("visible.engine_startup_p50", statistics.median(startup), "s", ref, INTERVAL_S),
    ]
