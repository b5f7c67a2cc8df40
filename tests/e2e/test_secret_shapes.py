"""Secret shapes on a real engine's command line and env never reach ``skewwatch facts``' output.

A real stand-in vLLM process (``demo.standin_vllm``) is started the way a pod would,
with secrets of every class the hardening issue names: a secret flag given by a unique prefix
(``--api-ke``), spelled with ``_``, several API keys, a secret inside a JSON-valued argument, an
``Authorization: Bearer`` header in an innocuously named variable, a ``KEY=VALUE`` list, URL
userinfo, arguments carried by ``VLLM_ADDITIONAL_ARGS``, and token-shaped values. A real
``skewwatch facts --match … --format json`` reads it through /proc and its endpoints; no raw
secret may appear in its output or its log, while the redacted digests do.

The stand-in's own /metrics and /v1/models carry no secrets (that would need editing it); the
runtime-reported classes are covered by tests/agent/test_redact_hardening.py with real-shaped
metrics text and info documents.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from demo.harness import Processes, free_port, wait_for
from demo.standin_vllm import install_launcher

pytestmark = pytest.mark.e2e

# Plain secrets no shape rule knows: only where they stand gives them away.
PREFIX_KEY = "Q7prefixKey0a1b2c3"
UNDERSCORE_KEY = "Q7underscoreKey4d5e"
SECOND_KEY = "Q7secondKey6f7g8h9"
JSON_TOKEN = "Q7jsonToken0i1j2k3"
HEADER_TOKEN = "Q7headerToken4l5m6"
LIST_TOKEN = "Q7listToken7n8o9p0"
URL_PASSWORD = "Q7urlPassword1q2r3"
CARRIED_KEY = "Q7carriedKey4s5t6u"
# Shaped secrets: redacted whatever they stand in.
HF = "hf_E2eShapeToken0123456789abcdefgh"
SK = "sk-e2eShapeKey0123456789abcdefghij"

SECRETS = (
    PREFIX_KEY,
    UNDERSCORE_KEY,
    SECOND_KEY,
    JSON_TOKEN,
    HEADER_TOKEN,
    LIST_TOKEN,
    URL_PASSWORD,
    CARRIED_KEY,
    HF,
    SK,
)


def test_secret_shapes_of_a_real_engine_never_reach_facts_output(tmp_path: Path) -> None:
    procs = Processes(tmp_path)
    ours = {k: v for k, v in os.environ.items() if not k.startswith(("SKEWWATCH_", "VLLM_", "HF_"))}
    ours["PYTHONUNBUFFERED"] = "1"
    vllm = install_launcher(tmp_path / "bin")
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(
        json.dumps({"torch_dtype": "bfloat16", "max_position_embeddings": 4096})
    )
    port = free_port()
    overrides = json.dumps({"hf_token": JSON_TOKEN, "rope_scaling": {"type": "yarn", "factor": 2}})
    argv = [str(vllm), "serve", str(model), "--port", str(port), "--dtype", "float16",
            "--api-ke", PREFIX_KEY, "--api_key", UNDERSCORE_KEY, SECOND_KEY,
            "--hf-overrides", overrides, f"--hf-token={HF}", "--served-model-name", "m"]  # fmt: skip
    engine_env = ours | {
        "VLLM_HTTP_HEADERS": f"Authorization: Bearer {HEADER_TOKEN}",
        "VLLM_EXTRA_ENV": f"A=1,HF_TOKEN={LIST_TOKEN},B=2",
        "VLLM_MODEL_URL": f"s3://reader:{URL_PASSWORD}@bucket.example/m",
        "VLLM_ADDITIONAL_ARGS": f"--max-num-seqs 8 --api-k {CARRIED_KEY}",
        "VLLM_NOTE": f"key {SK} rotated",
        "HF_TOKEN": HF,
    }
    try:
        procs.start("vllm", argv, engine_env)
        wait_for(
            "stand-in vLLM",
            lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).status == 200,
            procs,
        )
        match = f"{re.escape(str(vllm))} serve .*--port {port}( |$)"
        run = subprocess.run(
            [sys.executable, "-m", "skewwatch.cli", "--log-level", "DEBUG", "facts", "--match", match,
             "--format", "json", "--source-timeout", "20"],
            env=ours, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    finally:
        procs.stop_all()
    assert run.returncode == 0, run.stderr[-3000:]
    for secret in SECRETS:
        assert secret not in run.stdout, f"raw secret {secret[:8]}… in skewwatch facts output"
        assert secret not in run.stderr, f"raw secret {secret[:8]}… in skewwatch facts log"
    out = json.loads(run.stdout)
    facts = out["facts"]
    # The engine really was read: its flags, its env and its runtime.
    assert facts["runtime.engine"] == "vllm" and facts["serving.port"] == port
    assert facts["runtime.dtype"] == "float16"
    assert out["sources"]["runtime_metrics"]["status"] == "ok", out["sources"]
    assert facts["serving.api_key_required"] is True
    # The last --api-k* wins (the one VLLM_ADDITIONAL_ARGS appends): a digest, like every other.
    assert str(facts["runtime.args.api_key"]).startswith("redacted:sha256:")
    assert facts["runtime.env.VLLM_HTTP_HEADERS"].startswith("Authorization: Bearer redacted:sha256:")
    assert json.loads(facts["runtime.args.hf_overrides"])["rope_scaling"] == {"type": "yarn", "factor": 2}
    assert facts["runtime.env.HF_TOKEN"].startswith("redacted:sha256:")
