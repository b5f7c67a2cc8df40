"""End to end: a real collector process serving gRPC with TLS, mutual TLS and agent tokens, and
real ``skewwatch agent`` processes against a stand-in vLLM. The agent with its CA, client
certificate and token streams its pod; the same agent without its token is refused
UNAUTHENTICATED (its log says so) and its pod never shows."""

# ruff: noqa: E501  (process command lines read better unwrapped)

from __future__ import annotations

import json
import os
import secrets
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from demo.harness import Processes, free_port, get_json, skewwatch, wait_for
from demo.standin_vllm import install_launcher
from tests.support.tls import Pki, make_pki

pytestmark = pytest.mark.e2e

NS, POD, OTHER = "team-a", "llama-7d9f8b6c5-tls", "llama-7d9f8b6c5-notoken"
TOKEN = "team-a-" + secrets.token_hex(16)


class Rig:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs = Processes(tmp)
        self.grpc_port, self.http_port, self.vllm_port = free_port(), free_port(), free_port()
        self.api = f"http://127.0.0.1:{self.http_port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SKEWWATCH_")}
        self.env["PYTHONUNBUFFERED"] = "1"
        self.pki: Pki = make_pki(tmp / "pki", namespace=NS)
        self.tokens = tmp / "agent-tokens"
        self.tokens.write_text(f"{NS} {TOKEN}\n")
        self.token_file = tmp / "token"
        self.token_file.write_text(TOKEN + "\n")
        self.vllm = install_launcher(tmp / "bin")
        self.model = tmp / "model"
        self.model.mkdir()
        (self.model / "config.json").write_text(
            json.dumps({"architectures": ["LlamaForCausalLM"], "torch_dtype": "bfloat16"})
        )
        (self.model / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")

    def start(self) -> None:
        p = self.pki
        self.procs.start(
            "collector",
            skewwatch("collector", "--grpc", f"127.0.0.1:{self.grpc_port}", "--http", f"127.0.0.1:{self.http_port}",
                      "--store", f"sqlite:///{self.tmp}/store.db",
                      "--grpc-tls-cert", str(p.server.cert), "--grpc-tls-key", str(p.server.key),
                      "--grpc-client-ca", str(p.ca.cert), "--agent-tokens", str(self.tokens)),
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

    def start_agent(self, name: str, pod: str, *, token: bool) -> None:
        p = self.pki
        env = dict(self.env, POD_NAMESPACE=NS, POD_NAME=pod, NODE_NAME=f"node-{name}")
        args = ["agent", "--collector", f"127.0.0.1:{self.grpc_port}", "--match", f"{self.vllm} serve", "--interval", "0.5",
                "--tls-ca", str(p.ca.cert), "--tls-cert", str(p.spiffe.cert), "--tls-key", str(p.spiffe.key)]  # fmt: skip
        if token:
            args += ["--token-file", str(self.token_file)]
        self.procs.start(name, skewwatch(*args), env)

    def pods(self) -> list[str]:
        listed: Any = get_json(f"{self.api}/api/v1/pods")
        return sorted(f"{p['namespace']}/{p['pod']}" for p in (listed or {"pods": []})["pods"])

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path)
    try:
        yield r
    finally:
        r.procs.stop_all()


def test_an_agent_with_certificate_and_token_streams_and_one_without_its_token_is_refused(rig: Rig) -> None:
    rig.start()
    rig.start_agent("agent", POD, token=True)
    wait_for("the agent's pod", lambda: rig.pods() == [f"{NS}/{POD}"], rig.procs, 60)
    wait_for("agent connected", lambda: "connected to collector" in rig.log("agent"), rig.procs, 30)

    rig.start_agent("no-token", OTHER, token=False)
    wait_for(
        "the refusal in the agent's log", lambda: "UNAUTHENTICATED" in rig.log("no-token"), rig.procs, 60
    )
    assert "no bearer token" in rig.log("no-token")
    assert "connected to collector" not in rig.log("no-token")
    wait_for("the collector's count", lambda: 'reason="unauthenticated"' in _metrics(rig), rig.procs, 30)
    assert rig.pods() == [f"{NS}/{POD}"]
    for name in ("collector", "agent", "no-token"):
        assert TOKEN not in rig.log(name), name  # the token is never logged


def _metrics(rig: Rig) -> str:
    with urllib.request.urlopen(f"{rig.api}/metrics", timeout=5) as r:
        return str(r.read().decode())
