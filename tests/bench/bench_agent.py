"""The agent's steady state, as a real ``skewwatch agent`` process: CPU per cycle and resident memory.

Set-up: a real collector (SQLite in a temp dir), the stand-in vLLM serving its ~300-line V1
``/metrics``, a small unchanged model directory, and ``skewwatch agent --pid … --interval 0.5``
streaming to the collector. The interval is short so that many cycles fit in the run; the work of
one cycle does not depend on it (the target is stated for 15 s). Figures, read from ``/proc``:

- ``agent.cycle_cpu``: the agent process's CPU seconds (utime + stime of all its threads, from
  ``/proc/<pid>/stat``) per collection cycle, over ``CYCLES`` cycles after a warm-up, counted from
  its own per-cycle log lines. Everything between cycles (heartbeats, acks) is included.
  Reference: one "floor" cycle doing only the I/O a cycle cannot avoid — read the process's
  cmdline and environ, GET ``/metrics`` once, stat the model files — without parsing, measured
  in this process. Target: under 20 ms.
- ``agent.rss``: the agent's resident memory (VmRSS) at the end; ``agent.rss_peak`` its high-water
  mark (VmHWM). Reference: a bare ``python -c 'import time; time.sleep(…)'`` process's VmRSS.
  Target: under 60 MiB.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from demo.harness import free_port
from demo.standin_vllm import install_launcher
from tests.bench.common import Figure, per_call_cpu, proc_status_bytes

CYCLES = 40
WARMUP_CYCLES = 5
INTERVAL_S = 0.5
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _model_dir(root: Path) -> Path:
    d = root / "model"
    d.mkdir()
    (d / "config.json").write_text(
        json.dumps(
            {
                "architectures": ["LlamaForCausalLM"],
                "torch_dtype": "bfloat16",
                "max_position_embeddings": 4096,
            }
        )
    )
    (d / "tokenizer.json").write_text(json.dumps({"model": {"vocab": {f"t{i}": i for i in range(5000)}}}))
    (d / "model.safetensors").write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}" + os.urandom(4 << 20))
    return d


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all threads) from /proc/<pid>/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _wait(what: str, ok: object, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if ok():  # type: ignore[operator]
                return
        except OSError:
            pass  # not listening yet
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what}")


def _cycles(log: Path) -> int:
    return log.read_text(errors="replace").count(" collected ")


def run() -> list[Figure]:
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SKEWWATCH_")}
        try:
            model = _model_dir(root)
            vllm_port, grpc_port, http_port = free_port(), free_port(), free_port()
            launcher = install_launcher(root / "bin")
            serve = [str(launcher), "serve", str(model), "--port", str(vllm_port), "--dtype", "bfloat16"]
            vllm = subprocess.Popen(
                [sys.executable, *serve], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
            )
            procs.append(vllm)
            url = f"http://127.0.0.1:{vllm_port}/metrics"
            _wait("stand-in vLLM", lambda: urllib.request.urlopen(url, timeout=2).status == 200)
            body = urllib.request.urlopen(url, timeout=2).read()
            lines = body.count(b"\n")
            collector = subprocess.Popen(
                [sys.executable, "-m", "skewwatch.cli", "collector", "--grpc", f"127.0.0.1:{grpc_port}",
                 "--http", f"127.0.0.1:{http_port}", "--store", f"sqlite:///{root}/store.db"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
            )  # fmt: skip
            procs.append(collector)
            _wait(
                "collector", lambda: urllib.request.urlopen(f"http://127.0.0.1:{http_port}/readyz", timeout=2)
            )

            log = root / "agent.log"
            with log.open("wb") as out:
                agent = subprocess.Popen(
                    [sys.executable, "-m", "skewwatch.cli", "agent", "--collector", f"127.0.0.1:{grpc_port}",
                     "--pid", str(vllm.pid), "--metrics-url", url, "--model-dir", str(model),
                     "--interval", str(INTERVAL_S), "--hash-cache-dir", str(root / "hash-cache")],
                    stdout=out, stderr=subprocess.STDOUT,
                    env=env | {"POD_NAMESPACE": "bench", "POD_NAME": "bench-0", "NODE_NAME": "bench-node"},
                )  # fmt: skip
            procs.append(agent)
            _wait("agent warm-up", lambda: _cycles(log) >= WARMUP_CYCLES, 60)
            start_cycles, start_cpu = _cycles(log), proc_cpu_seconds(agent.pid)
            _wait("agent cycles", lambda: _cycles(log) >= start_cycles + CYCLES, 60 + CYCLES * INTERVAL_S * 4)
            end_cycles, end_cpu = _cycles(log), proc_cpu_seconds(agent.pid)
            rss, peak = proc_status_bytes(agent.pid, "VmRSS"), proc_status_bytes(agent.pid, "VmHWM")
            if agent.poll() is not None:
                raise RuntimeError(f"agent exited: {log.read_text()[-2000:]}")
            agent_cpu = (end_cpu - start_cpu) / (end_cycles - start_cycles)

            def floor_cycle() -> None:
                Path(f"/proc/{vllm.pid}/cmdline").read_bytes()
                Path(f"/proc/{vllm.pid}/environ").read_bytes()
                urllib.request.urlopen(url, timeout=5).read()
                for p in model.rglob("*"):
                    p.stat()

            floor = per_call_cpu(floor_cycle, CYCLES)
            bare = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
            procs.append(bare)
            time.sleep(0.5)
            bare_rss = proc_status_bytes(bare.pid, "VmRSS")
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(timeout=10)
    return [
        Figure(f"agent.cycle_cpu[/metrics {lines} lines]", agent_cpu, "s", "floor I/O cycle cpu", floor),
        Figure("agent.rss", float(rss), "bytes", "bare python process rss", float(bare_rss)),
        Figure("agent.rss_peak", float(peak), "bytes", "bare python process rss", float(bare_rss)),
    ]
