"""A Scenario of real processes on loopback: one collector, stand-in vLLM replicas, an agent each.

The end-to-end tests and the noise benchmark drive it; ``procs.stop_all()`` stops everything.
"""

# ruff: noqa: E501  (process command lines read better unwrapped)

from __future__ import annotations

import json
import os
import re
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from demo.harness import Processes, free_port, get_json, skewwatch, wait_for
from demo.standin_vllm import install_launcher

SERVED = "llama-3-8b"
MODELSPEC = f"""
apiVersion: piqc.ai/v1alpha1
kind: ModelSpec
metadata:
  name: llama-3-8b-chat
spec:
  identity:
    model: {{id: {SERVED}, family: llama-3, task: chat, framework: vllm, precision: fp16}}
  runtime:
    accelerator: {{vendor: nvidia, type: h100-80gb, count: 1}}
    batch: {{maxSequenceLengthTokens: 2048}}
"""
# Stand-ins share one host, so each listens on its own port; in a cluster replicas share one.
PORTS_POLICY = """
apiVersion: skewwatch.io/v1alpha1
kind: SkewPolicy
metadata:
  name: same-host-ports
spec:
  bindings:
    - namespaces: [staging, prod, team-a]
  ignore: ["serving.port", "runtime.args.port"]
"""


class Scenario:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs = Processes(tmp)
        self.grpc_port, self.http_port = free_port(), free_port()
        self.api = f"http://127.0.0.1:{self.http_port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SKEWWATCH_")}
        self.env["PYTHONUNBUFFERED"] = "1"
        self.vllm = install_launcher(tmp / "bin")
        self.intents = tmp / "intents"
        self.intents.mkdir()
        self.model = tmp / "model"
        self.model.mkdir()
        (self.model / "config.json").write_text(
            json.dumps(
                {
                    "architectures": ["LlamaForCausalLM"],
                    "torch_dtype": "bfloat16",
                    "max_position_embeddings": 4096,
                }
            )
        )
        (self.model / "tokenizer.json").write_text(
            '{"version": "1.0", "model": {"type": "BPE", "vocab": {"a": 0}}}'
        )
        (self.model / "generation_config.json").write_text('{"temperature": 0.6, "top_p": 0.9}')
        (self.model / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
        self.ports: dict[str, int] = {}

    def start_collector(self) -> None:
        env = dict(self.env, SKEWWATCH_DRIFT_TICK="0.2", SKEWWATCH_OBSERVATION_EVAL_INTERVAL="0.5",
                   SKEWWATCH_BASELINE_STABLE="0")  # fmt: skip
        self.procs.start(
            "collector",
            skewwatch("collector", "--grpc", f"127.0.0.1:{self.grpc_port}", "--http", f"127.0.0.1:{self.http_port}",
                      "--store", f"sqlite:///{self.tmp}/store.db", "--intents", str(self.intents)),
            env,
        )  # fmt: skip
        wait_for("collector ready", lambda: get_json(f"{self.api}/readyz") is not None, self.procs)

    def start_replica(self, name: str, namespace: str, *vllm_args: str, dtype: str = "float16") -> None:
        port = self.ports.setdefault(name, free_port())
        argv = [str(self.vllm), "serve", str(self.model), "--dtype", dtype, "--port", str(port),
                "--served-model-name", SERVED, "--max-model-len", "2048", *vllm_args]  # fmt: skip
        self.procs.start(f"vllm-{name}", argv, self.env)
        wait_for(
            f"vllm {name}",
            lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).status == 200,
            self.procs,
        )
        if f"agent-{name}" not in self.procs.children:
            env = dict(self.env, POD_NAMESPACE=namespace, POD_NAME=name, NODE_NAME="node-1",
                       SKEWWATCH_WORKLOAD=f"{namespace}/Deployment/llama")  # fmt: skip
            match = f"{re.escape(str(self.vllm))} serve .*--port {port}( |$)"
            self.procs.start(
                f"agent-{name}",
                skewwatch(
                    "agent",
                    "--collector",
                    f"127.0.0.1:{self.grpc_port}",
                    "--match",
                    match,
                    "--interval",
                    "0.5",
                ),
                env,
            )

    def restart_replica(self, name: str, namespace: str, *vllm_args: str, dtype: str = "float16") -> None:
        self.procs.stop(f"vllm-{name}")
        self.start_replica(name, namespace, *vllm_args, dtype=dtype)

    def pod(self, namespace: str, name: str) -> Any:
        return get_json(f"{self.api}/api/v1/pods/{namespace}/{name}")

    def wait(self, what: str, check: Callable[[], object], timeout_s: float = 30) -> None:
        wait_for(what, lambda: bool(check()), self.procs, timeout_s)

    def findings(self, **query: str) -> list[dict[str, Any]]:
        data = get_json(f"{self.api}/api/v1/findings?" + urllib.parse.urlencode(query))
        return list(data["findings"]) if data else []

    def post(self, path: str, body: bytes, method: str = "POST") -> Any:
        req = urllib.request.Request(self.api + path, data=body, method=method)
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def cli(self, *args: str) -> str:
        out = subprocess.run(skewwatch(*args, "--collector", self.api), env=self.env, capture_output=True,
                             text=True, timeout=30, check=True)  # fmt: skip
        return out.stdout
