"""The probe against the real vLLM (0.32.0, CPU build), and its stand-in held to the same engine.

- ``skewwatch probe`` (a real process) against the real OpenAI server: every measured request
  succeeds, the streamed token count comes from the engine's own usage chunk and equals what was
  asked (``ignore_eos``), TTFT lies inside the end-to-end time, and the API key never appears in
  what the probe prints; non-streamed completions work too.
- The stand-in the probe's tests use (``tests/probe/standin_server.py``) streams in the same
  shape as the real engine: the same sequence of chunk kinds (the role chunk, content, the
  finish, the usage chunk, ``[DONE]``) for a chat and a completions stream.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from typing import Any

import pytest

from demo.harness import Processes
from demo.realvllm import VllmServer
from tests.probe.standin_server import MODEL, Behaviour, serve
from tests.support.realvllm import RealVllm

pytestmark = [pytest.mark.e2e, pytest.mark.real_engine, pytest.mark.timeout(900)]

KEY = "sk-probeRealVllmKey0123456789abcdef"
SERVED = "tiny-llama"


@pytest.fixture(scope="module")
def server(real_vllm: RealVllm, tmp_path_factory: pytest.TempPathFactory) -> Any:
    procs = Processes(tmp_path_factory.mktemp("vllm-probe"))
    try:
        yield VllmServer.launch(
            procs, real_vllm.python, real_vllm.bf16, "--dtype", "bfloat16", "--max-model-len", "512",
            "--served-model-name", SERVED, "--enforce-eager", api_key=KEY,
        ).start()  # fmt: skip
    finally:
        procs.stop_all()


def probe(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SKEWWATCH_", "OPENAI_"))}
    env["SKEWWATCH_PROBE_API_KEY"] = KEY
    return subprocess.run(
        [sys.executable, "-m", "skewwatch.cli", "probe", "--endpoint", url, "--model", SERVED,
         "--warmup", "1", "--requests", "4", "--max-tokens", "8", "-o", "json", *args],
        env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


def test_the_probe_measures_the_real_engine(server: VllmServer) -> None:
    run = probe(server.url, "--concurrency", "1,2")
    assert run.returncode == 0, run.stderr[-2000:]
    assert KEY not in run.stdout and KEY not in run.stderr
    doc = json.loads(run.stdout)
    assert doc["verdict"] == "pass" and doc["load"]["shape"] == "closed-loop"
    assert [lv["concurrency"] for lv in doc["levels"]] == [1, 2]
    for level in doc["levels"]:
        text = json.dumps(level)
        assert level["requests"]["ok"] == level["requests"]["measured"] == 4, text
        # vLLM honours stream_options.include_usage: every request's tokens are the engine's count.
        assert level["token_source"] == {"usage": 4}, text
        assert level["output_tokens"] == 4 * 8, text  # ignore_eos: exactly what was asked
        assert 0 < level["ttft_ms"]["p50"] <= level["e2e_ms"]["p50"], text
        assert level["itl_ms"]["n"] > 0 and level["output_tokens_per_s"] > 0, text


def test_the_probe_reads_a_non_streamed_completion_of_the_real_engine(server: VllmServer) -> None:
    run = probe(server.url, "--concurrency", "1", "--api", "completions", "--no-stream")
    assert run.returncode == 0, run.stderr[-2000:]
    (level,) = json.loads(run.stdout)["levels"]
    assert level["requests"]["ok"] == 4 and level["output_tokens"] == 4 * 8, level


def stream_shape(url: str, path: str, body: dict[str, Any], key: str | None) -> list[str]:
    """The kinds of the SSE events a stream sends, in order (consecutive content collapsed)."""
    req = urllib.request.Request(
        url + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})},
    )
    kinds: list[str] = []
    with urllib.request.urlopen(req, timeout=120) as resp:
        for raw in resp.read().decode().split("\n\n"):
            line = raw.strip()
            if not line:
                continue
            assert line.startswith("data: "), line
            data = line[len("data: ") :]
            if data == "[DONE]":
                kinds.append("done")
                continue
            doc = json.loads(data)
            if not doc.get("choices"):
                kinds.append("usage" if doc.get("usage") else "empty")
                continue
            choice = doc["choices"][0]
            delta = choice.get("delta") or {}
            text = delta.get("content") if "delta" in choice else choice.get("text")
            kind = "role" if delta.get("role") and not text else "content" if text else "no-text"
            if choice.get("finish_reason"):
                kind += "+finish"
            if not kinds or kinds[-1] != kind or kind != "content":
                kinds.append(kind)
    return kinds


@pytest.mark.parametrize("api", ["chat", "completions"])
def test_the_stand_in_streams_in_the_real_engines_shape(server: VllmServer, api: str) -> None:
    path = "/v1/chat/completions" if api == "chat" else "/v1/completions"
    ask: dict[str, Any] = {"max_tokens": 6, "ignore_eos": True, "stream": True,
                           "stream_options": {"include_usage": True}}  # fmt: skip
    if api == "chat":
        ask["messages"] = [{"role": "user", "content": "the quick brown fox"}]
    else:
        ask["prompt"] = "the quick brown fox"
    real = stream_shape(server.url, path, {**ask, "model": SERVED}, KEY)
    with serve(Behaviour(first_token_delay=0.0, token_delay=0.0)) as (url, _):
        standin = stream_shape(url, path, {**ask, "model": MODEL}, None)
    assert standin == real, (standin, real)
    assert real[-2:] == ["usage", "done"]
