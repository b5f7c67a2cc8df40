"""The model-files source: per-role digests, config.json parsing, what is skipped, and real models."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from pathlib import Path

import pytest

from agent.hashing import CHUNK_BYTES, DigestCache, Hasher
from agent.settings import AgentSettings
from agent.sources.base import CollectContext, ProcessInfo, SourceResult
from agent.sources.model_files import (
    ModelConfigError,
    ModelFilesSource,
    file_fact_key,
    group_digest,
    is_weight_file,
    parse_lfs_pointer,
    parse_model_config,
    walk_model_dir,
)
from skewwatch.core.facts import SourceState
from tests.support.models import safetensors_bytes

CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "torch_dtype": "bfloat16",
    "max_position_embeddings": 131072,
    "vocab_size": 128256,
    "rope_scaling": {"factor": 8.0, "rope_type": "llama3"},
    "quantization_config": {"quant_method": "fp8", "activation_scheme": "dynamic"},
}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _ctx(model_dir: Path | None = None, process_dir: Path | None = None) -> CollectContext:
    process = None
    if process_dir is not None:
        process = ProcessInfo(pid=1, engine="vllm", argv=(), env={}, model_dir=process_dir)
    return CollectContext(settings=AgentSettings(model_dir=model_dir), process=process)


def _write_model(root: Path) -> dict[str, bytes]:
    files = {
        "config.json": json.dumps(CONFIG).encode(),
        "generation_config.json": b'{"temperature": 0.6}',
        "tokenizer.json": b'{"model": {"type": "BPE"}}',
        "tokenizer_config.json": b"{}",
        # spans two hashing chunks
        "model-00001-of-00002.safetensors": safetensors_bytes(
            {"w": ("BF16", [CHUNK_BYTES // 2 + 9], b"\0" * (CHUNK_BYTES + 18))}
        ),
        "model-00002-of-00002.safetensors": safetensors_bytes({"b": ("F32", [25], b"\1" * 100)}),
        "training_args.bin": b"not weights",
        "README.md": b"# a model",
        "original/tokenizer.model": b"sentencepiece",
    }
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


def _source() -> ModelFilesSource:
    """A source that waits for its digests, with a cache that lives only in memory."""
    return ModelFilesSource(Hasher(cache=DigestCache(None)), wait_s=60)


async def _collect(ctx: CollectContext) -> tuple[SourceResult, dict[str, object]]:
    source = _source()
    try:
        result = await source.collect(ctx)
    finally:
        source.close()
    return result, {f.key: f.value for f in result.facts}


# --- pure parts -----------------------------------------------------------------------------------


def test_config_fields_are_typed_facts() -> None:
    out = parse_model_config(json.dumps(CONFIG).encode())
    assert out == {
        "architectures": ["LlamaForCausalLM"],
        "torch_dtype": "bfloat16",
        "max_position_embeddings": 131072,
        "model_type": "llama",
        "vocab_size": 128256,
        "rope_scaling": {"factor": 8.0, "rope_type": "llama3"},
        "quantization": "fp8",
        "quantization_config": {"quant_method": "fp8", "activation_scheme": "dynamic"},
    }


def test_absent_rope_scaling_and_quantization_are_null() -> None:
    out = parse_model_config(b'{"model_type": "opt"}')
    assert out == {
        "model_type": "opt",
        "rope_scaling": None,
        "quantization": None,
        "quantization_config": None,
    }


def test_new_dtype_field_name_and_text_config_fallback() -> None:
    doc = {"model_type": "llava", "dtype": "float16", "text_config": {"max_position_embeddings": 4096}}
    out = parse_model_config(json.dumps(doc).encode())
    assert out["torch_dtype"] == "float16"
    assert out["max_position_embeddings"] == 4096
    assert out["model_type"] == "llava"


def test_invalid_json_names_file_line_and_column() -> None:
    with pytest.raises(ModelConfigError, match=r"cfg/config.json: line 3 column 3"):
        parse_model_config(b'{\n  "a": 1\n  "b": 2\n}', "cfg/config.json")


def test_non_object_and_nan_are_rejected() -> None:
    with pytest.raises(ModelConfigError, match="not an object"):
        parse_model_config(b"[1, 2]")
    with pytest.raises(ModelConfigError, match="NaN"):
        parse_model_config(b'{"vocab_size": NaN}')


def test_real_configs_parse(real_fixtures: Path) -> None:
    configs = sorted((real_fixtures / "models").glob("*/config.json"))
    assert configs
    for path in configs:
        out = parse_model_config(path.read_bytes(), str(path))
        assert isinstance(out["architectures"], list)
        assert isinstance(out["max_position_embeddings"], int)
        assert out["quantization"] is None


def test_lfs_pointer_is_recognised() -> None:
    text = b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 9976578928\n"
    assert parse_lfs_pointer(text) is not None
    pointer = parse_lfs_pointer(text)
    assert pointer is not None and pointer.size == 9976578928 and pointer.oid == "sha256:abc"
    assert parse_lfs_pointer(b"\x00" * 64) is None


def test_weight_classification() -> None:
    assert is_weight_file("model.safetensors")
    assert is_weight_file("sub/pytorch_model-00001-of-00002.bin")
    assert is_weight_file("model-q4_k_m.gguf")
    assert not is_weight_file("training_args.bin")
    assert not is_weight_file("model.safetensors.index.json")


def test_group_digest_is_order_independent() -> None:
    a = group_digest([("a", "1"), ("b", "2")])
    assert a == group_digest([("b", "2"), ("a", "1")])
    assert a == "sha256:" + _sha(b"a:1\nb:2\n")
    assert a != group_digest([("a", "1"), ("b", "3")])


def test_file_key_escapes_whitespace() -> None:
    assert file_fact_key("dir/my file%.txt") == "model.files.dir/my%20file%25.txt"


# --- walking ----------------------------------------------------------------------------------------


def test_walk_skips_fifo_outside_symlink_and_git(tmp_path: Path) -> None:
    root = tmp_path / "model"
    root.mkdir()
    (root / "config.json").write_text("{}")
    (tmp_path / "secret").write_text("outside")
    (root / "escape.json").symlink_to(tmp_path / "secret")
    (root / "alias.json").symlink_to(root / "config.json")
    (root / "loop").symlink_to(root)
    (root / "dangling").symlink_to(root / "nope")
    os.mkfifo(root / "pipe")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref")
    walk = walk_model_dir(root)
    assert [e.rel for e in walk.entries] == ["alias.json", "config.json"]
    notes = " | ".join(walk.notes)
    assert "escape.json: symlink to" in notes and "outside the model dir" in notes
    assert "pipe: FIFO" in notes
    assert "loop: symlink to a directory" in notes
    assert "dangling: dangling symlink" in notes
    assert ".git/" in notes
    assert walk.problems == []


# --- the source ------------------------------------------------------------------------------------


async def test_no_model_dir_is_unavailable() -> None:
    result, _ = await _collect(_ctx())
    assert result.state is SourceState.UNAVAILABLE
    assert "no model dir" in result.message


async def test_missing_model_dir_is_unavailable(tmp_path: Path) -> None:
    result, _ = await _collect(_ctx(tmp_path / "absent"))
    assert result.state is SourceState.UNAVAILABLE
    assert str(tmp_path / "absent") in result.message


async def test_model_dir_facts(tmp_path: Path) -> None:
    files = _write_model(tmp_path)
    result, facts = await _collect(_ctx(process_dir=tmp_path))
    assert result.state is SourceState.OK, result.message
    for rel, data in files.items():
        assert facts[f"model.files.{rel}"] == {"sha256": _sha(data), "bytes": len(data)}
    shards = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    assert facts["model.weights.digest"] == group_digest((r, _sha(files[r])) for r in shards)
    assert facts["model.weights.bytes"] == sum(len(files[r]) for r in shards)
    tok = ["tokenizer.json", "tokenizer_config.json"]  # original/tokenizer.model is not the one loaded
    assert facts["model.tokenizer.digest"] == group_digest((r, _sha(files[r])) for r in tok)
    assert facts["model.config.digest"] == "sha256:" + _sha(files["config.json"])
    assert facts["model.generation_config.digest"] == "sha256:" + _sha(files["generation_config.json"])
    assert facts["model.config.torch_dtype"] == "bfloat16"
    assert facts["model.config.quantization"] == "fp8"
    assert facts["model.config.rope_scaling"] == {"factor": 8.0, "rope_type": "llama3"}
    assert all(f.provenance.method == "file" and f.provenance.source == "model_files" for f in result.facts)


async def test_changing_one_shard_changes_only_the_weights_digest(tmp_path: Path) -> None:
    _write_model(tmp_path)
    _, before = await _collect(_ctx(tmp_path))
    (tmp_path / "model-00002-of-00002.safetensors").write_bytes(
        safetensors_bytes({"b": ("F32", [25], b"\2" * 100)})
    )
    _, after = await _collect(_ctx(tmp_path))
    changed = {k for k in before if before[k] != after.get(k)}
    assert changed == {
        "model.weights.digest",
        "model.files.model-00002-of-00002.safetensors",
        "model.manifest.digest",
    }


async def test_invalid_config_is_an_error_that_keeps_the_file_facts(tmp_path: Path) -> None:
    _write_model(tmp_path)
    (tmp_path / "config.json").write_bytes(b'{"model_type": "llama",\n "vocab_size": 32000,,\n}')
    result, facts = await _collect(_ctx(tmp_path))
    assert result.state is SourceState.ERROR
    assert "config.json: line 2 column" in result.message
    assert "model.weights.digest" in facts
    assert "model.config.digest" in facts
    assert not any(k.startswith("model.config.") and k != "model.config.digest" for k in facts)


async def test_settings_dir_wins_over_process_dir(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "config.json").write_text('{"model_type": "a"}')
    result, facts = await _collect(_ctx(tmp_path / "a", process_dir=tmp_path / "absent"))
    assert result.state is SourceState.OK
    assert facts["model.config.model_type"] == "a"


async def test_unreadable_file_is_an_error_with_other_facts_kept(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads files whatever their mode")
    _write_model(tmp_path)
    (tmp_path / "README.md").chmod(0)
    result, facts = await _collect(_ctx(tmp_path))
    assert result.state is SourceState.ERROR
    assert "cannot read README.md" in result.message
    assert "model.weights.digest" in facts


async def test_cancellation_propagates(tmp_path: Path) -> None:
    _write_model(tmp_path)
    task = asyncio.create_task(_source().collect(_ctx(tmp_path)))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_real_models(real_fixtures: Path) -> None:
    dirs = sorted(p for p in (real_fixtures / "models").iterdir() if p.is_dir())
    assert dirs
    for d in dirs:
        result, facts = await _collect(_ctx(d))
        assert result.state is SourceState.OK, (d.name, result.message)
        assert facts["model.config.digest"] == "sha256:" + _sha((d / "config.json").read_bytes())
        assert "model.config.architectures" in facts
        assert "model.tokenizer.digest" in facts


async def test_real_invalid_generation_config_is_only_digested(real_fixtures: Path) -> None:
    d = real_fixtures / "models" / "Qwen1.5-moe-8x0.5B-Chat-community"
    result, facts = await _collect(_ctx(d))
    assert result.state is SourceState.OK
    assert facts["model.generation_config.digest"] == "sha256:" + _sha(
        (d / "generation_config.json").read_bytes()
    )


async def test_real_lfs_pointer_shard_is_noted(real_fixtures: Path) -> None:
    d = real_fixtures / "models" / "meta-llama--Llama-2-7b-hf"
    result, facts = await _collect(_ctx(d))
    assert "model-00001-of-00002.safetensors is a Git LFS pointer" in result.message
    assert "9976578928 bytes" in result.message
    assert facts["model.weights.bytes"] == 135
    assert facts["model.config.torch_dtype"] == "float16"
