"""End to end: real agent, collector and stand-in vLLM processes over loopback gRPC and HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from demo.harness import Processes, free_port, get_json, skewwatch, wait_for
from demo.standin_vllm import install_launcher

pytestmark = pytest.mark.e2e

HF = "hf_E2eE2eE2eE2eE2eE2eE2eE2eE2e0123"
SK = "sk-e2e-0123456789abcdefghijklmnopqr"
NS, POD = "team-a", "llama-7d9f8b6c5-abcde"


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    d = tmp_path / "model"
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
    (d / "tokenizer.json").write_text('{"version": "1.0", "model": {"type": "BPE"}}')
    (d / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    return d


class Rig:
    def __init__(self, tmp: Path, model_dir: Path) -> None:
        self.tmp = tmp
        self.model_dir = model_dir
        self.procs = Processes(tmp)
        self.grpc_port, self.http_port, self.vllm_port = free_port(), free_port(), free_port()
        self.api = f"http://127.0.0.1:{self.http_port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SKEWWATCH_")}
        self.env["PYTHONUNBUFFERED"] = "1"
        self.vllm = install_launcher(tmp / "bin")

    def start_collector(self) -> None:
        self.procs.start(
            "collector",
            skewwatch("collector", "--grpc", f"127.0.0.1:{self.grpc_port}",
                      "--http", f"127.0.0.1:{self.http_port}", "--store", f"sqlite:///{self.tmp}/store.db"),
            self.env,
        )  # fmt: skip
        wait_for("collector ready", lambda: get_json(f"{self.api}/readyz") is not None, self.procs)

    def start_vllm(self, dtype: str) -> None:
        argv = [str(self.vllm), "serve", str(self.model_dir), "--dtype", dtype, "--port", str(self.vllm_port),
                "--max-model-len", "2048", "--api-key", SK]  # fmt: skip
        self.procs.start("vllm", argv, dict(self.env, HF_TOKEN=HF))
        wait_for(
            "vllm metrics",
            lambda: (
                urllib.request.urlopen(f"http://127.0.0.1:{self.vllm_port}/metrics", timeout=2).status == 200
            ),
            self.procs,
        )

    def start_agent(self) -> None:
        env = dict(self.env, POD_NAMESPACE=NS, POD_NAME=POD, NODE_NAME="node-1")
        self.procs.start(
            "agent",
            skewwatch("agent", "--collector", f"127.0.0.1:{self.grpc_port}", "--match",
                      f"{self.vllm} serve", "--interval", "0.5"),
            env,
        )  # fmt: skip

    def pod(self) -> Any:
        return get_json(f"{self.api}/api/v1/pods/{NS}/{POD}")

    def wait_fact(self, key: str, value: object, timeout_s: float = 60) -> None:
        wait_for(f"{key} = {value!r}", lambda: self.pod()["facts"].get(key) == value, self.procs, timeout_s)


@pytest.fixture
def rig(tmp_path: Path, model_dir: Path) -> Iterator[Rig]:
    r = Rig(tmp_path, model_dir)
    try:
        yield r
    finally:
        r.procs.stop_all()


def test_dtype_change_travels_to_the_collector_as_a_new_snapshot(rig: Rig) -> None:
    rig.start_collector()
    rig.start_vllm("float16")
    rig.start_agent()
    rig.wait_fact("runtime.dtype", "float16")
    first = rig.pod()
    assert first["facts"]["runtime.engine"] == "vllm"
    assert first["sources"]["process"]["status"] == "ok"
    assert first["sources"]["nvml"]["status"] in {"unavailable", "ok"}
    assert any(k.startswith("model.files.") for k in first["facts"])

    rig.procs.stop("vllm")
    rig.start_vllm("float32")
    rig.wait_fact("runtime.dtype", "float32")

    history = get_json(f"{rig.api}/api/v1/pods/{NS}/{POD}/history")["snapshots"]
    assert len(history) >= 2
    newest, previous = history[0], history[1]
    assert newest["fingerprint"]["overall"] != previous["fingerprint"]["overall"]
    changes = {c["key"]: c for c in newest["changes"]}
    assert changes["runtime.dtype"]["before"] == "float16"
    assert changes["runtime.dtype"]["after"] == "float32"
    # Only configuration moved: the model files and hardware stay the same.
    assert not any(k.startswith(("model.", "hardware.")) for k in changes)

    table = subprocess.run(
        skewwatch("history", f"{NS}/{POD}", "--collector", rig.api, "--format", "table"),
        env=rig.env, capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    assert "runtime.dtype" in table.stdout and "float32" in table.stdout


def test_no_raw_secret_reaches_store_api_or_logs(rig: Rig) -> None:
    rig.start_collector()
    rig.start_vllm("float16")
    rig.start_agent()
    rig.wait_fact("runtime.dtype", "float16")
    pod = rig.pod()
    assert str(pod["facts"]["runtime.env.HF_TOKEN"]).startswith("redacted:sha256:")
    assert pod["facts"]["serving.api_key_required"] is True
    served = json.dumps(pod) + json.dumps(get_json(f"{rig.api}/api/v1/pods/{NS}/{POD}/history?facts=true"))
    served += json.dumps(get_json(f"{rig.api}/api/v1/pods"))
    assert HF not in served and SK not in served
    rig.procs.stop_all()
    for path in rig.tmp.iterdir():
        if path.is_file() and path.name != "vllm.log":
            data = path.read_bytes()
            assert HF.encode() not in data, path.name
            assert SK.encode() not in data, path.name


def test_agent_outlives_a_collector_that_is_down_and_catches_up(rig: Rig) -> None:
    rig.start_vllm("bfloat16")
    rig.start_agent()  # the collector is not there yet
    wait_for("agent retries", lambda: "unreachable" in (rig.tmp / "agent.log").read_text() or
             "UNAVAILABLE" in (rig.tmp / "agent.log").read_text(), rig.procs, 30)  # fmt: skip
    rig.start_collector()
    rig.wait_fact("runtime.dtype", "bfloat16")
    # The collector goes away and comes back on the same store: the agent reconnects.
    rig.procs.stop("collector")
    rig.procs.stop("vllm")
    rig.start_vllm("float16")
    rig.start_collector()
    rig.wait_fact("runtime.dtype", "float16")
    assert rig.procs.children["agent"].poll() is None


def test_facts_command_prints_the_contract_json_shape(rig: Rig) -> None:
    rig.start_vllm("float16")
    out = subprocess.run(
        skewwatch("facts", "--match", f"{rig.vllm} serve"),
        env=rig.env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    data = json.loads(out.stdout)
    assert set(data) >= {"facts", "provenance", "observations", "sources", "fingerprint"}
    assert set(data["sources"]) == {"process", "nvml", "model_files", "runtime_metrics", "pod"}
    assert data["facts"]["runtime.dtype"] == "float16"
    assert data["provenance"]["runtime.dtype"]["source"] in {"process", "runtime_metrics"}
    assert set(data["fingerprint"]) == {"overall", "model", "runtime", "hardware", "serving", "orchestration"}
    assert HF not in out.stdout and SK not in out.stdout


def test_facts_without_a_process_reports_sources_unavailable(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKEWWATCH_")}
    out = subprocess.run(
        skewwatch("facts", "--pid", "999999999"),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 1, out.stderr  # the target was not found; the facts are still printed
    data = json.loads(out.stdout)
    assert data["sources"]["process"]["status"] == "unavailable"
    assert data["sources"]["process"]["message"]


@pytest.mark.parametrize(
    "argv",
    [
        ["facts", "--pid", "notanumber"],
        ["facts", "--format", "xml"],
        ["agent", "--collector", "nohostport"],
        ["agent", "--collector", "127.0.0.1:1", "--interval", "-5"],
        ["facts", "--match", "("],
        ["nosuchcommand"],
    ],
)
def test_bad_cli_arguments_give_one_line_and_exit_2(argv: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKEWWATCH_")}
    out = subprocess.run(skewwatch(*argv), env=env, capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 2, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "Traceback" not in out.stderr
