"""``skewwatch check --intent FILE --pid PID | --match REGEX`` against a real running process."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from demo.standin_vllm import install_launcher
from tests.check.helpers import run
from tests.support.fake_processes import Engines, standin_argv

MODELSPEC = """\
apiVersion: piqc.ai/v1alpha1
kind: ModelSpec
metadata: {{name: tiny}}
spec:
  identity:
    model: {{id: tiny, family: llama, task: chat, framework: vllm, precision: {precision}}}
  runtime:
    accelerator: {{vendor: nvidia, type: l4, count: 1}}
  operations:
    serving: {{protocol: http, port: {port}}}
"""


@pytest.fixture
def engines(tmp_path: Path) -> Iterator[Engines]:
    model = tmp_path / "models" / "tiny"
    model.mkdir(parents=True)
    (model / "config.json").write_text(
        json.dumps(
            {"architectures": ["LlamaForCausalLM"], "torch_dtype": "float16", "max_position_embeddings": 2048}
        )
    )
    e = Engines(tmp_path)
    try:
        yield e
    finally:
        e.close()


@pytest.fixture
def standin(engines: Engines, tmp_path: Path, port: int) -> subprocess.Popen[bytes]:
    """The stand-in vLLM, really running: ``vllm serve models/tiny --dtype float16 --port PORT``."""
    return engines.start(standin_argv(install_launcher(tmp_path / "bin"), port))


def intent(tmp_path: Path, port: int, precision: str) -> str:
    path = tmp_path / f"intent-{precision}.yaml"
    path.write_text(MODELSPEC.format(precision=precision, port=port))
    return str(path)


LIVE = ["--source-timeout", "5"]


def test_running_engine_in_intent_exits_zero(
    standin: subprocess.Popen[bytes], tmp_path: Path, port: int
) -> None:
    code, out, err = run(["--intent", intent(tmp_path, port, "fp16"), "--pid", str(standin.pid), *LIVE])
    assert code == 0, out + err
    assert ": in-intent (0 drift(s))" in out.splitlines()[0]


def test_running_engine_with_another_dtype_is_drift(
    standin: subprocess.Popen[bytes], tmp_path: Path, port: int
) -> None:
    code, out, err = run(
        ["--intent", intent(tmp_path, port, "bf16"), "--pid", str(standin.pid), *LIVE, "-o", "json"]
    )
    assert code == 1, err
    doc = json.loads(out)
    assert doc["result"] == "drift"
    [drift] = doc["drifts"]
    assert (drift["key"], drift["actual"]) == ("runtime.dtype", "float16")


def test_match_finds_the_process_by_its_command_line(
    standin: subprocess.Popen[bytes], tmp_path: Path, port: int
) -> None:
    code, out, err = run(["--intent", intent(tmp_path, port, "fp16"), "--match", f"--port {port}", *LIVE])
    assert code == 0, out + err


def test_no_such_process_cannot_run(tmp_path: Path, port: int) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    code, out, err = run(["--intent", intent(tmp_path, port, "fp16"), "--pid", str(dead.pid), *LIVE])
    assert code == 2 and out == ""
    assert err.startswith("no inference process to check:")


def test_manifests_and_pid_together_are_bad_usage(tmp_path: Path, port: int) -> None:
    code, _, err = run(["--intent", intent(tmp_path, port, "fp16"), "--pid", "1", "m.yaml"])
    assert code == 2 and "not both" in err
