"""What a real vLLM says about itself, read the way a person would check it — not through skewwatch.

Four self-reports of the running engine: ``/version``; ``/v1/models`` (served name, context
length); the ``vllm:cache_config_info`` labels on ``/metrics``; and its start-up log: the parsed
arguments it prints (``non-default args: {...}``, a Python dict literal), the resolved engine
config (``Initializing a V1 LLM engine (v0.32.0) with config: model=..., dtype=torch.bfloat16,
max_seq_len=512, ...``) and the KV cache it sized (``CPU KV cache size: 1,048,576 tokens``).
The tests hold skewwatch's facts against these.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from typing import Any

from demo import realvllm
from demo.realvllm import VllmServer

_NON_DEFAULT = re.compile(r"non-default args: (\{.*\})\s*$", re.MULTILINE)
_ENGINE_CONFIG = re.compile(r"Initializing a V1 LLM engine \(v([^)]+)\) with config: (.*)$", re.MULTILINE)
_KV_TOKENS = re.compile(r"KV cache size: ([\d,]+) tokens")
# Top-level ``name=value`` pairs of the config line whose values are plain words (no nesting).
_CONFIG_WORDS = (
    "dtype", "max_seq_len", "kv_cache_dtype", "enforce_eager", "enable_prefix_caching",
    "enable_chunked_prefill", "tensor_parallel_size", "pipeline_parallel_size", "quantization",
    "seed", "trust_remote_code", "load_format", "tokenizer_mode", "device_config",
)  # fmt: skip
_TYPE = re.compile(r"^# TYPE (\S+) (\S+)$", re.MULTILINE)


@dataclass(frozen=True)
class EngineReport:
    version: str
    models: list[dict[str, Any]]
    cache_config: dict[str, str]
    args: dict[str, Any]  # the engine's own parsed non-default arguments
    config: dict[str, str]  # the resolved engine config line, plain-word values
    logged_version: str
    kv_cache_tokens: int

    @property
    def dtype(self) -> str:
        """The model dtype the engine runs: ``dtype=torch.bfloat16`` -> ``bfloat16``."""
        return self.config["dtype"].removeprefix("torch.")

    @property
    def kv_cache_dtype(self) -> str:
        """The KV cache's dtype: ``auto`` is the model dtype (vllm/config/cache.py)."""
        value = self.config["kv_cache_dtype"]
        return self.dtype if value == "auto" else value


def config_words(line: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in _CONFIG_WORDS:
        m = re.search(rf"(?:^|, ){name}=([^,]*)", line)
        if m:
            out[name] = m.group(1).strip()
    return out


def cache_config_labels(metrics: str) -> dict[str, str]:
    """The labels of ``vllm:cache_config_info``; a page without it fails the test."""
    labels = realvllm.cache_config_labels(metrics)
    if not labels:
        raise AssertionError("no vllm:cache_config_info on /metrics")
    return labels


def metric_types(metrics: str) -> dict[str, str]:
    """Every family a /metrics page declares, by its ``# TYPE`` line: name -> type, sorted."""
    return dict(sorted(_TYPE.findall(metrics)))


def read_report(server: VllmServer) -> EngineReport:
    log = server.log()
    args = _NON_DEFAULT.search(log)
    engine = _ENGINE_CONFIG.search(log)
    tokens = _KV_TOKENS.search(log)
    if args is None or engine is None or tokens is None:
        raise AssertionError(f"the start-up log lacks a self-report line:\n{log[-3000:]}")
    return EngineReport(
        version=server.get_json("/version")["version"],
        models=list(server.get_json("/v1/models")["data"]),
        cache_config=cache_config_labels(server.metrics()),
        args=dict(ast.literal_eval(args.group(1))),
        config=config_words(engine.group(2)),
        logged_version=engine.group(1),
        kv_cache_tokens=int(tokens.group(1).replace(",", "")),
    )


def typed_label(raw: str) -> Any:
    """A cache_config_info label as the engine meant it: None, booleans, ints, floats, else text."""
    if raw == "None":
        return None
    if raw in ("True", "False"):
        return raw == "True"
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            continue
    return raw
