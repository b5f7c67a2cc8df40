"""The checkpoint's quantization beyond config.json's quantization_config: ModelOpt's
``hf_quant_config.json`` (what TensorRT-LLM reads for a quantized Hugging Face checkpoint) and a
TensorRT-LLM checkpoint's own config.json ``quantization`` block.

The shapes are the published ones: ModelOpt's export writes ``{"producer": {"name": "modelopt",
"version": …}, "quantization": {"quant_algo": "FP8", "kv_cache_quant_algo": "FP8",
"exclude_modules": ["lm_head"]}}`` (its convert_hf_config docstring; the nvidia/*-FP8 hub
repositories), NVFP4 with ``"group_size": 16``; TensorRT-LLM's convert_checkpoint.py writes
``{"architecture": …, "dtype": …, "quantization": {"quant_algo": …, "kv_cache_quant_algo": …}}``
(tensorrt_llm/llmapi/llm_utils.py ``get_model_format`` tells it by ``architecture`` and ``dtype``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from pathlib import Path

import pytest

from agent.hashing import DigestCache, Hasher
from agent.settings import AgentSettings
from agent.sources.base import CollectContext
from agent.sources.model_files import (
    HF_QUANT_CONFIG_FILE,
    MAX_CONFIG_BYTES,
    ModelConfigError,
    ModelFilesSource,
    parse_hf_quant_config,
    parse_model_config,
)
from skewwatch.core.facts import Fact, SourceState

FP8_KV_FP8 = {
    "producer": {"name": "modelopt", "version": "0.19.0"},
    "quantization": {"quant_algo": "FP8", "kv_cache_quant_algo": "FP8", "exclude_modules": ["lm_head"]},
}
NVFP4 = {
    "producer": {"name": "modelopt", "version": "0.29.0"},
    "quantization": {
        "quant_algo": "NVFP4",
        "kv_cache_quant_algo": "FP8",
        "group_size": 16,
        "exclude_modules": ["lm_head"],
    },
}
HF_CONFIG = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "torch_dtype": "bfloat16"}


def test_hf_quant_config_gives_the_algorithm_the_kv_cache_and_the_block() -> None:
    out = parse_hf_quant_config(json.dumps(NVFP4).encode())
    assert out == {
        "quantization": "nvfp4",
        "kv_cache_quantization": "fp8",
        "quantization_config": NVFP4["quantization"],
    }


def test_an_unquantized_kv_cache_reports_no_kv_fact() -> None:
    doc = {"producer": {"name": "modelopt"}, "quantization": {"quant_algo": "W4A16_AWQ", "group_size": 128}}
    out = parse_hf_quant_config(json.dumps(doc).encode())
    assert out["quantization"] == "w4a16_awq"
    assert "kv_cache_quantization" not in out


def test_a_trtllm_checkpoint_config_names_its_quantization() -> None:
    doc = {
        "architecture": "LlamaForCausalLM",
        "dtype": "float16",
        "quantization": {"quant_algo": "W8A16", "kv_cache_quant_algo": "INT8"},
    }
    out = parse_model_config(json.dumps(doc).encode())
    assert (out["quantization"], out["kv_cache_quantization"]) == ("w8a16", "int8")


def test_modelopts_hf_export_in_config_json_keeps_its_quant_method() -> None:
    doc = {
        **HF_CONFIG,
        "quantization_config": {
            "quant_method": "modelopt",
            "quant_algo": "FP8",
            "kv_cache_quant_algo": "FP8",
        },
    }
    out = parse_model_config(json.dumps(doc).encode())
    assert (out["quantization"], out["kv_cache_quantization"]) == ("modelopt", "fp8")


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"{not json", "hf_quant_config.json: "),
        (b"[1, 2]", "top level is a JSON list, not an object"),
        (b'{"quantization": "FP8"}', "'quantization' is a JSON str, not an object"),
        (b'{"producer": {}}', "'quantization' is a JSON NoneType, not an object"),
        (b"[" * 100_000 + b"]" * 100_000, "hf_quant_config.json: "),
    ],
)
def test_hostile_hf_quant_config_is_a_typed_error_naming_the_file(data: bytes, says: str) -> None:
    with pytest.raises(ModelConfigError) as e:
        parse_hf_quant_config(data)
    assert says in str(e.value) and str(e.value).startswith(HF_QUANT_CONFIG_FILE)


# --- through the source, on disk ----------------------------------------------------------------


def _collect(root: Path) -> tuple[SourceState, str, dict[str, Fact]]:
    source = ModelFilesSource(Hasher(cache=DigestCache(None)), wait_s=60)
    try:
        result = asyncio.run(source.collect(CollectContext(settings=AgentSettings(model_dir=root))))
    finally:
        source.close()
    return result.state, result.message, {f.key: f for f in result.facts}


def _model(root: Path, config: Mapping[str, object], quant: bytes | None) -> Path:
    root.mkdir()
    (root / "config.json").write_text(json.dumps(config))
    if quant is not None:
        (root / HF_QUANT_CONFIG_FILE).write_bytes(quant)
    return root


def test_source_reports_hf_quant_config_facts_naming_that_file(tmp_path: Path) -> None:
    state, _, facts = _collect(_model(tmp_path / "m", HF_CONFIG, json.dumps(FP8_KV_FP8).encode()))
    assert state == SourceState.OK
    q = facts["model.config.quantization"]
    assert (q.value, q.provenance.method, q.provenance.detail) == (
        "fp8",
        "file",
        "hf_quant_config.json field",
    )
    assert facts["model.config.kv_cache_quantization"].value == "fp8"
    assert facts["model.config.torch_dtype"].provenance.detail == "config.json field"
    assert f"model.files.{HF_QUANT_CONFIG_FILE}" in facts  # hashed like every file


def test_config_json_quantization_wins_over_hf_quant_config(tmp_path: Path) -> None:
    config = {**HF_CONFIG, "quantization_config": {"quant_method": "modelopt", "quant_algo": "NVFP4"}}
    _, _, facts = _collect(_model(tmp_path / "m", config, json.dumps(NVFP4).encode()))
    assert facts["model.config.quantization"].value == "modelopt"
    assert facts["model.config.quantization"].provenance.detail == "config.json field"


def test_an_unquantized_model_says_null_and_no_kv_fact(tmp_path: Path) -> None:
    _, _, facts = _collect(_model(tmp_path / "m", HF_CONFIG, None))
    assert facts["model.config.quantization"].value is None
    assert "model.config.kv_cache_quantization" not in facts


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"{broken", "hf_quant_config.json: "),
        (b'{"quantization": ["FP8"]}', "'quantization' is a JSON list"),
        (b" " * (MAX_CONFIG_BYTES + 1), f"hf_quant_config.json: over {MAX_CONFIG_BYTES} bytes"),
    ],
)
def test_a_broken_hf_quant_config_is_an_error_but_the_rest_still_counts(
    tmp_path: Path, data: bytes, says: str
) -> None:
    state, message, facts = _collect(_model(tmp_path / "m", HF_CONFIG, data))
    assert state == SourceState.ERROR
    assert says in message
    assert facts["model.config.torch_dtype"].value == "bfloat16"
    assert facts["model.config.quantization"].value is None  # config.json's own answer stands
