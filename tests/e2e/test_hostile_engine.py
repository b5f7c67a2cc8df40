"""A hostile engine end to end: a real collector, a real agent, and an engine (launched as
``vllm serve``) whose ``/metrics`` carries a ``vllm:cache_config_info`` with thousands of long
labels and whose ``/v1/models`` reports a 100-digit ``max_model_len``. The agent stays alive, the
collector stores a bounded snapshot, and the agent does not reconnect in a loop."""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from agent.bounds import MAX_FACTS_PER_SOURCE, MAX_INFO_LABELS
from demo.harness import Processes, free_port, get_json, skewwatch, wait_for

pytestmark = pytest.mark.e2e

LABELS = 4000
LABEL_CHARS = 1000  # under the per-label cap: the label count cap is what bounds this page

HOSTILE_ENGINE = f'''#!{sys.executable}
"""Launched as ``vllm serve MODEL --port P``: serves hostile /metrics and info endpoints."""
import http.server, sys

port = int(sys.argv[sys.argv.index("--port") + 1])
extra = ",".join(f'l{{i:05d}}="{{"x" * {LABEL_CHARS}}}"' for i in range({LABELS}))
METRICS = (
    "# TYPE vllm:cache_config_info gauge\\n"
    f'vllm:cache_config_info{{{{block_size="16",cache_dtype="auto",{{extra}}}}}} 1.0\\n'
    "# TYPE vllm:num_requests_running gauge\\n"
    'vllm:num_requests_running{{model_name="hostile"}} 1.0\\n'
).encode()
BODIES = {{
    "/metrics": (METRICS, "text/plain"),
    "/v1/models": (b'{{"data": [{{"id": "hostile", "max_model_len": {"1" * 100}}}]}}', "application/json"),
    "/version": (b'{{"version": "0.9.1"}}', "application/json"),
}}


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body, kind = BODIES.get(self.path, (b"not found", "text/plain"))
        self.send_response(200 if self.path in BODIES else 404)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
'''


def test_hostile_engine_does_not_kill_or_flood_the_agent(tmp_path: Path) -> None:
    procs = Processes(tmp_path)
    try:
        _run(tmp_path, procs)
    finally:
        procs.stop_all()


def _run(tmp: Path, procs: Processes) -> None:
    grpc_port, http_port, engine_port = free_port(), free_port(), free_port()
    api = f"http://127.0.0.1:{http_port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKEWWATCH_")}
    env["PYTHONUNBUFFERED"] = "1"
    bindir = tmp / "bin"
    bindir.mkdir()
    engine = bindir / "vllm"
    engine.write_text(HOSTILE_ENGINE)
    engine.chmod(0o755)
    model = tmp / "model"
    model.mkdir()

    procs.start(
        "collector",
        skewwatch("collector", "--grpc", f"127.0.0.1:{grpc_port}", "--http", f"127.0.0.1:{http_port}",
                  "--store", f"sqlite:///{tmp}/store.db"),
        env,
    )  # fmt: skip
    wait_for("collector ready", lambda: get_json(f"{api}/readyz") is not None, procs)
    procs.start(
        "engine",
        [str(engine), "serve", str(model), "--port", str(engine_port), "--max-model-len", "2048"],
        env,
    )
    metrics = f"http://127.0.0.1:{engine_port}/metrics"
    wait_for("hostile engine", lambda: get_json(f"http://127.0.0.1:{engine_port}/version") is not None, procs)
    agent_env = dict(env, POD_NAMESPACE="hostile", POD_NAME="engine-0", NODE_NAME="node-1")
    procs.start(
        "agent",
        skewwatch("agent", "--collector", f"127.0.0.1:{grpc_port}", "--metrics-url", metrics,
                  "--match", f"{re.escape(str(engine))} serve .*--port {engine_port}( |$)",
                  "--interval", "0.5", "--settle", "1"),
        agent_env,
    )  # fmt: skip

    pod: dict[str, Any] = {}

    def stored() -> bool:
        data = get_json(f"{api}/api/v1/pods/hostile/engine-0")
        pod.clear()
        pod.update(data or {})
        return bool(pod) and pod["facts"].get("runtime.block_size") == 16

    wait_for("a bounded snapshot stored", stored, procs, timeout_s=60)
    facts = pod["facts"]
    assert facts["runtime.version"] == "0.9.1"
    assert facts["runtime.max_model_len"] == 2048  # the command line's; the 100-digit one is lost
    extra = [k for k in facts if k.startswith("runtime.cache_config.")]
    assert len(extra) == MAX_INFO_LABELS - 2  # block_size and cache_dtype are canonical
    assert len(facts) < MAX_FACTS_PER_SOURCE
    message = pod["sources"]["runtime_metrics"]["message"]
    assert "max_model_len" in message and "int64" in message
    assert f"over the {MAX_INFO_LABELS}-label cap" in message

    log = tmp / "agent.log"
    before = log.read_text(errors="replace").count("reconnecting")
    time.sleep(10)
    procs.check_alive()  # the agent (and everything else) is still running
    text = log.read_text(errors="replace")
    reconnects = text.count("reconnecting") - before
    print(f"\nhostile engine e2e: {text.count('reconnecting')} reconnect(s) in total, {reconnects} in 10 s")
    assert reconnects <= 2, text[-3000:]
    assert "InvalidStateError" not in text and "Traceback" not in text


def test_a_collector_rejecting_every_snapshot_gets_backoff_not_a_hot_loop(tmp_path: Path) -> None:
    """With a 1 KiB message limit every snapshot is refused (INVALID_ARGUMENT) after an acked Hello."""
    procs = Processes(tmp_path)
    try:
        grpc_port, http_port = free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SKEWWATCH_")}
        env["PYTHONUNBUFFERED"] = "1"
        procs.start(
            "collector",
            skewwatch("collector", "--grpc", f"127.0.0.1:{grpc_port}", "--http", f"127.0.0.1:{http_port}",
                      "--store", f"sqlite:///{tmp_path}/store.db", "--max-message-bytes", "1024"),
            env,
        )  # fmt: skip
        wait_for(
            "collector ready", lambda: get_json(f"http://127.0.0.1:{http_port}/readyz") is not None, procs
        )
        agent_env = dict(env, POD_NAMESPACE="hostile", POD_NAME="big-0", NODE_NAME="node-1")
        procs.start(
            "agent",
            skewwatch("agent", "--collector", f"127.0.0.1:{grpc_port}", "--pid", str(os.getpid()),
                      "--interval", "0.5", "--settle", "0"),
            agent_env,
        )  # fmt: skip
        log = tmp_path / "agent.log"
        wait_for("a rejection", lambda: "INVALID_ARGUMENT" in log.read_text(errors="replace"), procs, 30)
        time.sleep(10)
        procs.check_alive()
        text = log.read_text(errors="replace")
        # Counted from the first refusal: a stream that failed before it (a transient INTERNAL at
        # the very first connect, seen once in CI) is the ordinary backoff's, not the refusals'.
        reconnects = text[text.index("INVALID_ARGUMENT") :].count("reconnecting")
        print(f"\nrejecting collector: {reconnects} reconnect(s) in about 10 s after the first refusal")
        assert 1 <= reconnects <= 5, text[-3000:]
        assert text.count("INVALID_ARGUMENT") <= 2  # logged when it changes, not per attempt
        assert "InvalidStateError" not in text
    finally:
        procs.stop_all()
