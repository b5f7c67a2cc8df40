"""End to end: two real ``skewwatch agent`` processes claim the same pod (one POD_NAMESPACE/POD_NAME)
against one stand-in vLLM and a real collector process. The second is refused ALREADY_EXISTS and
the conflict shows in the API and ``skewwatch pods``, while the first keeps streaming; once the
first stops, the pod is released and the second takes it."""

# ruff: noqa: E501  (process command lines read better unwrapped)

from __future__ import annotations

import json
import os
import re
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from demo.harness import Processes, free_port, get_json, skewwatch, wait_for
from demo.standin_vllm import install_launcher

pytestmark = pytest.mark.e2e

NS, POD = "team-a", "llama-7d9f8b6c5-twins"
HOLDER_RE = re.compile(
    r"ALREADY_EXISTS: hello\.pod: pod team-a/llama-7d9f8b6c5-twins is already streamed by agent 'team-a/llama-7d9f8b6c5-twins' \(instance ([0-9a-f]{32}), peer (\S+), since"
)


class Rig:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs = Processes(tmp)
        self.grpc_port, self.http_port, self.vllm_port = free_port(), free_port(), free_port()
        self.api = f"http://127.0.0.1:{self.http_port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SKEWWATCH_")}
        self.env["PYTHONUNBUFFERED"] = "1"
        self.vllm = install_launcher(tmp / "bin")
        self.model = tmp / "model"
        self.model.mkdir()
        (self.model / "config.json").write_text(
            json.dumps({"architectures": ["LlamaForCausalLM"], "torch_dtype": "bfloat16"})
        )
        (self.model / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")

    def start(self) -> None:
        self.procs.start(
            "collector",
            skewwatch("collector", "--grpc", f"127.0.0.1:{self.grpc_port}", "--http", f"127.0.0.1:{self.http_port}",
                      "--store", f"sqlite:///{self.tmp}/store.db"),
            self.env,
        )  # fmt: skip
        wait_for("collector ready", lambda: get_json(f"{self.api}/readyz") is not None, self.procs)
        argv = [str(self.vllm), "serve", str(self.model), "--dtype", "float16", "--port", str(self.vllm_port),
                "--max-model-len", "2048"]  # fmt: skip
        self.procs.start("vllm", argv, self.env)
        wait_for(
            "vllm metrics",
            lambda: (
                urllib.request.urlopen(f"http://127.0.0.1:{self.vllm_port}/metrics", timeout=2).status == 200
            ),
            self.procs,
        )

    def start_agent(self, name: str) -> None:
        env = dict(self.env, POD_NAMESPACE=NS, POD_NAME=POD, NODE_NAME=f"node-{name}")
        self.procs.start(
            name,
            skewwatch("agent", "--collector", f"127.0.0.1:{self.grpc_port}", "--match", f"{self.vllm} serve", "--interval", "0.5"),
            env,
        )  # fmt: skip

    def pod(self) -> Any:
        return get_json(f"{self.api}/api/v1/pods/{NS}/{POD}")

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path)
    try:
        yield r
    finally:
        r.procs.stop_all()


def test_a_second_agent_claiming_the_same_pod_is_refused_and_shown(rig: Rig) -> None:
    rig.start()
    rig.start_agent("agent-1")
    wait_for("agent 1 streams", lambda: rig.pod()["facts"].get("runtime.dtype") == "float16" and len(rig.pod()["streams"]) == 1, rig.procs, 60)  # fmt: skip
    (holder,) = rig.pod()["streams"]
    assert len(holder["instance_id"]) == 32 and holder["agent_id"] == f"{NS}/{POD}"

    rig.start_agent("agent-2")
    wait_for("agent 2 refused", lambda: HOLDER_RE.search(rig.log("agent-2")) is not None, rig.procs, 60)
    match = HOLDER_RE.search(rig.log("agent-2"))
    assert match is not None and match.group(1) == holder["instance_id"] and match.group(2) == holder["peer"]
    wait_for("conflict visible", lambda: rig.pod()["conflicts"]["count"] >= 1, rig.procs, 30)
    pod = rig.pod()
    conflicts = pod["conflicts"]
    assert conflicts["last_claimant_agent_id"] == f"{NS}/{POD}"
    assert conflicts["last_claimant_instance_id"] not in ("", holder["instance_id"])
    assert conflicts["last_claimant_peer"].startswith("ipv4:127.0.0.1:") and conflicts["last_refused_at"] > 0
    assert pod["node"] == "node-agent-1"  # nothing of the refused claims was stored

    # The first keeps streaming: its sequence moves on, on the same stream, and agent 2 stays out.
    seq = pod["last_sequence"]
    wait_for("agent 1 keeps streaming", lambda: rig.pod()["last_sequence"] >= seq + 4, rig.procs, 30)
    after = rig.pod()
    assert after["streams"] == [holder] and after["node"] == "node-agent-1" and after["stale"] is False
    assert "connected to collector" not in rig.log("agent-2")
    listed = get_json(f"{rig.api}/api/v1/pods")["pods"]
    assert [(p["pod"], p["live_streams"], p["conflicts"]["count"] >= 1) for p in listed] == [(POD, 1, True)]

    table = subprocess.run(skewwatch("pods", "--collector", rig.api), env=rig.env, capture_output=True, text=True, timeout=30, check=True).stdout  # fmt: skip
    header, row = table.splitlines()
    assert "CONFLICTS" in header and row[header.index("CONFLICTS") :].split()[0].isdigit()
    refused = subprocess.run(skewwatch("pods", "delete", f"{NS}/{POD}", "--collector", rig.api), env=rig.env, capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
    assert refused.returncode == 1 and "HTTP 409" in refused.stderr

    # The first agent goes away: its stream ends, the pod is released, the second one takes it.
    rig.procs.stop("agent-1")
    wait_for("agent 2 takes over", lambda: [s["instance_id"] for s in rig.pod()["streams"]] == [conflicts["last_claimant_instance_id"]], rig.procs, 60)  # fmt: skip
    wait_for("agent 2's node", lambda: rig.pod()["node"] == "node-agent-2", rig.procs, 30)
    # The node is stored with agent 2's Hello; the agent says "connected" only once its first
    # snapshot is acknowledged, a moment later (one group commit): wait for it, don't race it.
    wait_for("agent 2 connected", lambda: "connected to collector" in rig.log("agent-2"), rig.procs, 30)
