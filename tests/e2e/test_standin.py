"""The stand-in vLLM behaves as the real one at its edges: it refuses flags it does not know, says
the dtype it resolved only where vLLM does (its start-up log), never on its port, and serves the
real vLLM 0.32's /metrics families and /v1/models shape (as the real-engine tests captured them
into tests/golden/real-vllm/)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.engines.vllm import VLLM_METRICS
from demo.harness import Processes, free_port, get_json, wait_for
from demo.standin_vllm import install_launcher, parse_args, resolve_dtype
from tests.support.paths import GOLDEN, REPO
from tests.support.vllm_report import metric_types


def test_an_unknown_flag_is_refused_with_exit_2_as_vllm_does() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "demo.standin_vllm", "serve", "m", "--no-such-flag", "1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "unrecognized arguments: --no-such-flag" in done.stderr


def test_real_flags_it_does_not_simulate_are_accepted() -> None:
    args = parse_args(
        ["serve", "m", "--quantization", "fp8", "--tensor-parallel-size", "2", "--enforce-eager"]
    )
    assert args.model_tag == "m"


def test_auto_resolves_by_vllms_rule() -> None:
    assert resolve_dtype("auto", {"torch_dtype": "bfloat16"}) == "bfloat16"
    assert resolve_dtype("auto", {"torch_dtype": "float32"}) == "float16"
    assert resolve_dtype("half", {}) == "float16"


def test_flags_are_read_as_vllms_parser_reads_them() -> None:
    # A unique prefix, "_" for "-" in the name (never in the value), several API keys.
    args = parse_args(["serve", "m", "--api-ke", "k_1", "k_2", "--max_model_len=128", "--dtype", "half"])
    assert args.api_key == ["k_1", "k_2"] and args.max_model_len == 128 and args.dtype == "half"


# --- the stand-in against the real engine's own page (captured by tests/e2e/test_real_vllm.py) ------

REAL = GOLDEN / "real-vllm" / "0.32.0-cpu"


@pytest.fixture
def standin(tmp_path: Path) -> Iterator[str]:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(
        json.dumps({"architectures": ["LlamaForCausalLM"], "torch_dtype": "bfloat16"})
    )
    procs, port = Processes(tmp_path), free_port()
    argv = [
        str(install_launcher(tmp_path / "bin")),
        "serve",
        str(model),
        "--port",
        str(port),
        "--dtype",
        "float16",
    ]
    procs.start("standin", argv, dict(os.environ, PYTHONUNBUFFERED="1"))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for("the stand-in", lambda: get_json(f"{url}/v1/models") is not None, procs)
        yield url
    finally:
        procs.stop_all()


def test_every_vllm_family_the_standin_serves_is_the_real_engines_with_its_type(standin: str) -> None:
    real = json.loads((REAL / "metrics-families.json").read_text())
    with urllib.request.urlopen(f"{standin}/metrics", timeout=10) as resp:
        ours = metric_types(resp.read().decode())
    vllm_ours = {name: kind for name, kind in ours.items() if name.startswith("vllm:")}
    assert vllm_ours, "the stand-in serves no vllm: family"
    wrong = {name: (kind, real.get(name)) for name, kind in vllm_ours.items() if real.get(name) != kind}
    assert wrong == {}, f"families the real vLLM 0.32 does not serve so (stand-in, real): {wrong}"
    # Every family skewwatch reads from a real 0.32 engine, the stand-in serves too.
    read = {f"vllm:{m}" for spec in VLLM_METRICS.observations for m in spec.metrics} | {
        "vllm:cache_config_info"
    }
    real_read = {name.removesuffix("_total") for name in real if name.removesuffix("_total") in read}
    assert real_read <= {name.removesuffix("_total") for name in vllm_ours}


def test_the_standin_answers_v1_models_in_the_real_engines_shape(standin: str) -> None:
    real = json.loads((REAL / "v1-models-shape.json").read_text())
    (model,) = get_json(f"{standin}/v1/models")["data"]
    shape: dict[str, object] = {k: type(v).__name__ for k, v in sorted(model.items())}
    shape["permission[0]"] = {k: type(v).__name__ for k, v in sorted(model["permission"][0].items())}
    assert shape == real
