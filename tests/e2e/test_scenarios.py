"""The skew playbook's symptom patterns, end to end: real collector, agents and stand-in vLLM
processes over loopback, findings read back through the API and the CLI.

- "same model, suddenly slower": dtype float16 → float32 opens a dtype finding against both the
  recorded baseline and the ModelSpec's precision and an end-to-end latency finding at comparable
  load, with the playbook's hint.
- "quality worse but weights unchanged": the tokenizer changes under an unchanged checkpoint; the
  finding names the tokenizer digest (baseline and the SkewPolicy pin), never the weights.
- "staging OK, prod bad": one intent bound to two namespaces; 1 of 3 prod replicas runs another
  max-model-len, giving an intent finding and a peers finding on prod and nothing on staging.
"""

# ruff: noqa: E501  (process command lines read better unwrapped)

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from skewwatch.demo.run import Processes, get_json, wait_for
from skewwatch.demo.standin_vllm import install_launcher
from tests.conftest import free_port

pytestmark = pytest.mark.e2e

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


def skewwatch(*args: str) -> list[str]:
    return [sys.executable, "-m", "skewwatch.cli", *args]


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


def open_finding(
    sc: Scenario, workload: str, reference: str, key: str
) -> Callable[[], dict[str, Any] | None]:
    def find() -> dict[str, Any] | None:
        for f in sc.findings(workload=workload, reference=reference, status="open"):
            if f["key"] == key:
                return f
        return None

    return find


def test_same_model_suddenly_slower(sc: Scenario) -> None:
    (sc.intents / "llama.yaml").write_text(MODELSPEC)
    (sc.intents / "ports.yaml").write_text(PORTS_POLICY)
    sc.start_collector()
    sc.start_replica("llama-7d9f8b6c5-abcde", "team-a")
    sc.wait("float16 with observations", lambda: (p := sc.pod("team-a", "llama-7d9f8b6c5-abcde"))
            and p["facts"].get("runtime.dtype") == "float16" and len(p["observations"]) >= 3)  # fmt: skip
    sc.wait(
        "tokens/s observed",
        lambda: "generation_tokens_per_s" in sc.pod("team-a", "llama-7d9f8b6c5-abcde")["observations"],
    )
    # Enough windows for the performance baseline: its latency quantiles need 40 requests, 100 for p99.
    time.sleep(12)
    assert sc.findings(status="open") == []  # conforms to its intent before the change
    recorded = sc.cli("baseline", "team-a/llama", "--record", "--format", "json")
    baseline = json.loads(recorded)["baseline"]
    assert baseline["facts"]["runtime.dtype"] == "float16"

    changed_at = time.time()
    sc.restart_replica("llama-7d9f8b6c5-abcde", "team-a", dtype="float32")
    find = open_finding(sc, "team-a/llama", "baseline", "runtime.dtype")
    sc.wait("baseline dtype finding", find)
    f = find()
    assert f is not None and f["expected_by_reference"]["baseline"] == "float16" and f["actual"] == "float32"
    assert (
        f["severity"] == "high" and "--dtype" in f["hint"] and f["symptom"] == "same model, suddenly slower"
    )
    assert f["first_seen"] >= changed_at and f["evidence"]["llama-7d9f8b6c5-abcde"]["source"] in {"process",
                                                                                                   "runtime_metrics"}  # fmt: skip
    # One root cause, one finding: the ModelSpec's precision and the baseline name the same drift.
    assert set(f["references"]) == {"intent", "baseline"} and f["expected_by_reference"]["intent"] == "fp16"
    assert "ModelSpec/llama-3-8b-chat" in f["source"]
    assert [x["key"] for x in sc.findings(workload="team-a/llama", status="open")] == ["runtime.dtype"]
    assert baseline["performance"]["e2e_latency_seconds_p95"] > 0 and baseline["load"]["requests_per_s"] > 0

    # The stand-in decodes float32 at half speed: per-token latency doubles at the same request rate,
    # a consequence of the dtype on the replica that changed it, listed in the dtype finding.
    def slow() -> dict[str, Any] | None:
        g = find()
        rel = {r["key"]: r for r in (g or {}).get("related", [])}
        return rel.get("observation.e2e_latency_seconds_p95")

    sc.wait("latency at comparable load, in the dtype finding", slow, timeout_s=60)
    perf = slow()
    assert perf is not None and perf["role"] == "consequence" and perf["references"] == ["baseline"]
    assert perf["actual_by_pod"]["llama-7d9f8b6c5-abcde"] > perf["expected"] * 1.3
    g = find()
    assert g is not None and "observation.e2e_latency_seconds_p95" in g["message"]
    table = sc.cli("findings", "team-a/llama")
    assert "runtime.dtype" in table and "float32" in table and "hint:" in table
    diff = sc.cli("diff", "team-a/llama", "--baseline")
    assert "runtime.dtype" in diff and "float16" in diff and "float32" in diff
    assert "runtime.dtype" in sc.cli("diff", "team-a/llama", "--intent")
    assert "runtime.dtype" in sc.cli("diff", "team-a/llama", "--last-good")


def test_quality_worse_but_weights_unchanged(sc: Scenario) -> None:
    (sc.intents / "ports.yaml").write_text(PORTS_POLICY)
    sc.start_collector()
    pod = "llama-7d9f8b6c5-qwert"
    sc.start_replica(pod, "team-a")
    sc.wait(
        "tokenizer digest",
        lambda: "model.tokenizer.digest" in (sc.pod("team-a", pod) or {"facts": {}})["facts"],
    )
    before = sc.pod("team-a", pod)["facts"]
    pin = f"""
apiVersion: skewwatch.io/v1alpha1
kind: SkewPolicy
metadata: {{name: llama-pins}}
spec:
  bindings: [{{namespaces: [team-a], workloads: [llama]}}]
  pins:
    model: {{tokenizerDigest: "{before["model.tokenizer.digest"]}"}}
"""
    sc.post("/api/v1/intents", pin.encode())
    sc.cli("baseline", "team-a/llama", "--record")

    (sc.model / "tokenizer.json").write_text(
        '{"version": "1.0", "model": {"type": "BPE", "vocab": {"b": 0}}}'
    )
    sc.restart_replica(pod, "team-a")
    find = open_finding(sc, "team-a/llama", "baseline", "model.tokenizer.digest")
    sc.wait("tokenizer finding", find)
    f = find()
    assert (
        f is not None and f["category"] == "model" and f["symptom"] == "quality worse but weights unchanged"
    )
    assert "tokenizer" in f["hint"] and f["expected"] == before["model.tokenizer.digest"]
    pinned = open_finding(sc, "team-a/llama", "intent", "model.tokenizer.digest")
    sc.wait("pin finding", pinned)
    after = sc.pod("team-a", pod)["facts"]
    for key in ("model.weights.digest", "model.config.digest"):
        assert after.get(key) == before.get(key)
    keys = {x["key"] for x in sc.findings(status="open")}
    assert not any(k.startswith(("model.weights", "model.config")) for k in keys), keys


def test_staging_ok_prod_bad(sc: Scenario) -> None:
    (sc.intents / "llama.yaml").write_text(MODELSPEC)
    (sc.intents / "ports.yaml").write_text(PORTS_POLICY)
    sc.start_collector()
    sc.start_replica("llama-5c7d9-stg01", "staging")
    for i in (1, 2):
        sc.start_replica(f"llama-5c7d9-prd0{i}", "prod")
    sc.start_replica("llama-5c7d9-prd03", "prod", "--max-model-len", "4096")
    peers = open_finding(sc, "prod/llama", "peers", "runtime.max_model_len")
    sc.wait("peers finding on prod", peers)
    f = peers()
    assert f is not None and f["pods"] == ["llama-5c7d9-prd03"]
    assert f["message"].startswith(
        "runtime.max_model_len differs on 1 of 3 replicas: 4096 on llama-5c7d9-prd03"
    )
    assert "peers: expected 2048 (as on 2 of 3 replicas" in f["message"]
    # The intent and the peers name the same drift: one finding breaking both.
    assert set(f["references"]) == {"intent", "peers"} and f["expected_by_reference"]["intent"] == 2048
    assert sc.findings(workload="staging/llama", status="open") == []
    status = sc.cli("status")
    assert "prod/Deployment/llama" in status and "staging/Deployment/llama" in status
    detail = sc.cli("status", "prod/llama")
    assert "3 live replica(s), 2 configuration(s)" in detail and "ModelSpec/llama-3-8b-chat" in detail
    pods = sc.cli("diff", "prod/llama", "--pods", "llama-5c7d9-prd01", "llama-5c7d9-prd03")
    assert "runtime.max_model_len: 2048 -> 4096" in pods

    # The fix: the odd replica goes back to the intended context length; both findings resolve.
    sc.restart_replica("llama-5c7d9-prd03", "prod")
    sc.wait("resolved", lambda: not sc.findings(workload="prod/llama", status="open"))
    resolved = sc.findings(workload="prod/llama", status="resolved")
    assert [(sorted(x["references"]), x["key"]) for x in resolved] == [
        (["intent", "peers"], "runtime.max_model_len")
    ]
    assert all(x["resolved_at"] for x in resolved)
