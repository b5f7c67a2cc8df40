"""The stand-in vLLM behaves as the real one at its edges: it refuses flags it does not know, and
says the dtype it resolved only where vLLM does (its start-up log), never on its port."""

from __future__ import annotations

import subprocess
import sys

from demo.standin_vllm import parse_args, resolve_dtype
from tests.support.paths import REPO


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
