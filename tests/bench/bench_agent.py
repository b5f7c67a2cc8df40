"""The agent's cost per collection cycle, against the floor of the I/O a cycle must do.

Set-up: a stand-in vLLM process serving a ~300-line ``/metrics``, a small unchanged model
directory, the agent in this process with ``--pid``. Figures:

- ``agent.cycle_cpu``: CPU seconds (user + system, all threads) per ``Agent.collect()``;
  reference: one "floor" cycle doing only the unavoidable I/O — read the process's cmdline and
  environ, GET ``/metrics`` once, stat the model files — with no parsing.
- ``agent.rss``: resident memory after the cycles; reference: this Python process's RSS before the
  agent was created (interpreter + imports).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from agent.runtime import Agent
from agent.settings import AgentSettings
from skewwatch.demo.standin_vllm import install_launcher
from tests.bench.common import Figure, cpu_seconds, per_call_cpu, rss_bytes
from tests.conftest import free_port

CYCLES = 40


def _model_dir(root: Path) -> Path:
    d = root / "model"
    d.mkdir()
    (d / "config.json").write_text(
        json.dumps({"architectures": ["LlamaForCausalLM"], "torch_dtype": "bfloat16"})
    )
    (d / "tokenizer.json").write_text(json.dumps({"model": {"vocab": {f"t{i}": i for i in range(5000)}}}))
    (d / "model.safetensors").write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}" + os.urandom(4 << 20))
    return d


def run() -> list[Figure]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = _model_dir(root)
        port = free_port()
        launcher = install_launcher(root / "bin")
        proc = subprocess.Popen(
            [sys.executable, str(launcher), "serve", str(model), "--port", str(port), "--dtype", "bfloat16"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            url = f"http://127.0.0.1:{port}/metrics"
            deadline = time.monotonic() + 30
            while True:
                try:
                    body = urllib.request.urlopen(url, timeout=2).read()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            lines = body.count(b"\n")

            def floor_cycle() -> None:
                Path(f"/proc/{proc.pid}/cmdline").read_bytes()
                Path(f"/proc/{proc.pid}/environ").read_bytes()
                urllib.request.urlopen(url, timeout=5).read()
                for p in model.rglob("*"):
                    p.stat()

            floor = per_call_cpu(floor_cycle, CYCLES)
            rss_before = rss_bytes()
            settings = AgentSettings(pid=proc.pid, metrics_url=url, model_dir=model).validate()
            agent = Agent(settings, {"POD_NAMESPACE": "bench", "POD_NAME": "bench-0"})

            async def cycles() -> float:
                await agent.collect()  # warm-up
                start = cpu_seconds()
                for _ in range(CYCLES):
                    await agent.collect()
                return (cpu_seconds() - start) / CYCLES

            agent_cpu = asyncio.run(cycles())
            rss_after = rss_bytes()
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    return [
        Figure(f"agent.cycle_cpu[/metrics {lines} lines]", agent_cpu, "s", "floor I/O cycle cpu", floor),
        Figure("agent.rss", float(rss_after), "bytes", "interpreter+imports rss", float(rss_before)),
    ]
