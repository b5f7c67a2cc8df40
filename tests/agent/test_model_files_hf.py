"""The model-files source on the Hugging Face cache layout, in the background, and on hostile trees."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import struct
from pathlib import Path

import pytest

from agent.engines import VLLM, parse_args
from agent.hashing import DigestCache, HashBudget, Hasher, StatKey, git_blob_sha1
from agent.hfcache import ModelRequest, locate_model, repo_folder
from agent.settings import AgentSettings
from agent.sources.base import CollectContext, ProcessInfo, SourceResult
from agent.sources.model_files import ModelFilesSource
from agent.sources.process import model_request
from skewwatch.core.facts import SourceState
from tests.support.models import safetensors_bytes
from tests.support.paths import REPO

COMMIT = "a" * 40
OLD_COMMIT = "b" * 40
REPO_ID = "acme/tiny-llm"
MINILM = REPO / ".cache" / "demo" / "all-MiniLM-L6-v2"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_hub(hub: Path, files: dict[str, bytes] | None = None) -> Path:
    """A hub cache with one repo: LFS files named by sha256, small files by Git blob id."""
    files = files or {
        "config.json": json.dumps(
            {"architectures": ["LlamaForCausalLM"], "torch_dtype": "bfloat16"}
        ).encode(),
        "tokenizer_config.json": json.dumps({"chat_template": "{{ messages }}"}).encode(),
        "model.safetensors": safetensors_bytes({"w": ("BF16", [8], b"\0" * 16)}),
    }
    repo = hub / repo_folder(REPO_ID)
    (repo / "blobs").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    snap = repo / "snapshots" / COMMIT
    snap.mkdir(parents=True)
    (repo / "snapshots" / OLD_COMMIT).mkdir()
    for rel, data in files.items():
        name = _sha(data) if rel.endswith(".safetensors") else git_blob_sha1(data)
        (repo / "blobs" / name).write_bytes(data)
        (snap / rel).symlink_to(Path("../../blobs") / name)
    return snap


def _source(cache: Path | None = None, wait_s: float = 60) -> ModelFilesSource:
    return ModelFilesSource(
        Hasher(HashBudget(threads=2, nice=0, ionice="none"), cache=DigestCache(cache)), wait_s=wait_s
    )


def _ctx(model_dir: Path | None = None, process: ProcessInfo | None = None) -> CollectContext:
    return CollectContext(settings=AgentSettings(model_dir=model_dir), process=process)


async def _collect(
    ctx: CollectContext, source: ModelFilesSource | None = None
) -> tuple[SourceResult, dict[str, object]]:
    own = source is None
    source = source or _source()
    try:
        result = await source.collect(ctx)
    finally:
        if own:
            source.close()
    return result, {f.key: f.value for f in result.facts}


# --- locating -------------------------------------------------------------------------------------


def _request(argv: list[str], env: dict[str, str]) -> ModelRequest:
    """What the process source would hand the model-files source for a vLLM command line."""
    return model_request(parse_args(VLLM, argv, env), VLLM, env, lambda _name, value: value)


def test_hub_id_is_found_through_hf_home_and_main_ref(tmp_path: Path) -> None:
    snap = make_hub(tmp_path / "hf" / "hub")
    loc = locate_model(None, None, _request(["vllm", "serve", REPO_ID], {"HF_HOME": str(tmp_path / "hf")}))
    assert loc is not None and loc.root == snap
    assert loc.hf is not None and (loc.hf.commit, loc.hf.refs) == (COMMIT, ("main",))


def test_revision_flag_picks_another_snapshot(tmp_path: Path) -> None:
    make_hub(tmp_path)
    argv = ["vllm", "serve", REPO_ID, "--download-dir", str(tmp_path), "--revision", OLD_COMMIT]
    loc = locate_model(None, None, _request(argv, {}))
    assert loc is not None and loc.hf is not None and loc.hf.commit == OLD_COMMIT


def test_hub_cache_is_reached_through_the_engines_root(tmp_path: Path) -> None:
    root = tmp_path / "proc" / "42" / "root"
    make_hub(root / "data" / "hub")
    loc = locate_model(None, None, _request(["vllm", "serve", REPO_ID], {"HF_HUB_CACHE": "/data/hub"}), root)
    assert loc is not None and "through the engine's root" in loc.how


# --- facts on the hub layout ------------------------------------------------------------------------


async def test_hub_snapshot_gives_revision_id_and_verified_integrity(tmp_path: Path) -> None:
    snap = make_hub(tmp_path)
    argv, env = ["vllm", "serve", REPO_ID], {"HF_HUB_CACHE": str(tmp_path)}
    process = ProcessInfo(pid=1, engine="vllm", argv=tuple(argv), env=env, model=_request(argv, env))
    result, facts = await _collect(_ctx(process=process))
    assert result.state is SourceState.OK, result.message
    assert facts["model.revision"] == COMMIT
    assert facts["model.id"] == REPO_ID
    assert facts["model.integrity"] == "ok"
    weights = (snap / "model.safetensors").read_bytes()
    assert facts["model.files.model.safetensors"] == {"sha256": _sha(weights), "bytes": len(weights)}
    assert facts["model.chat_template.digest"] == "sha256:" + _sha(b"{{ messages }}")
    assert facts["model.weights.dtypes"] == ["bf16"]
    assert facts["model.params"] == 8
    revision = next(f for f in result.facts if f.key == "model.revision")
    assert "refs/main" in revision.provenance.detail


async def test_blob_whose_content_does_not_match_its_name_is_an_integrity_finding(tmp_path: Path) -> None:
    snap = make_hub(tmp_path)
    weights = (snap / "model.safetensors").resolve()
    weights.chmod(0o644)
    weights.write_bytes(safetensors_bytes({"w": ("BF16", [8], b"\1" * 16)}))  # same size, other bytes
    config = (snap / "config.json").resolve()
    config.write_bytes(config.read_bytes().replace(b"bfloat16", b"float16 "))
    result, facts = await _collect(_ctx(snap))
    integrity = facts["model.integrity"]
    assert isinstance(integrity, dict)
    assert set(integrity) == {"model.safetensors", "config.json"}
    assert f"blob {weights.name} holds content with sha256" in str(integrity["model.safetensors"])
    assert "Git id" in str(integrity["config.json"])
    assert result.state is SourceState.OK  # a finding about the model, not a failure of the source
    assert "integrity: 2 problem(s)" in result.message


async def test_blob_names_that_are_not_content_addresses_are_not_mismatches(tmp_path: Path) -> None:
    # NVIDIA NIM's cache has the hub's shape but names blobs otherwise.
    repo = tmp_path / "models--nim--llama"
    (repo / "blobs").mkdir(parents=True)
    (repo / "blobs" / "0355b8d0421a12e6aeb6a2e9ef42ae60").write_text("{}")
    snap = repo / "snapshots" / "hf-8c22764-b"
    snap.mkdir(parents=True)
    (snap / "config.json").symlink_to("../../blobs/0355b8d0421a12e6aeb6a2e9ef42ae60")
    result, facts = await _collect(_ctx(repo))
    assert facts["model.integrity"] == "ok"
    assert facts["model.revision"] == "hf-8c22764-b"
    detail = next(f for f in result.facts if f.key == "model.integrity").provenance.detail
    assert "1 blob name(s) not content addresses" in detail


# --- in the background ----------------------------------------------------------------------------


async def test_first_collection_returns_pending_at_once_and_later_ones_report_digests(tmp_path: Path) -> None:
    snap = make_hub(tmp_path / "hub")
    big = snap.parent.parent / "blobs"
    data = safetensors_bytes({"w": ("U8", [8 * 1024 * 1024], os.urandom(8 * 1024 * 1024))})
    (big / _sha(data)).write_bytes(data)
    (snap / "model-2.safetensors").symlink_to(Path("../../blobs") / _sha(data))
    # 4 MB/s: the 8 MB shard takes about two seconds, so the first answer cannot have it.
    hasher = Hasher(HashBudget(threads=1, nice=0, ionice="none", bytes_per_s=4_000_000))
    source = ModelFilesSource(hasher, wait_s=0)
    try:
        first, facts = await _collect(_ctx(snap), source)
        assert first.state is SourceState.PENDING
        assert "hashing in the background" in first.message
        assert facts["model.weights.digest"] == "pending"
        assert facts["model.files.model-2.safetensors"] == {"sha256": "pending", "bytes": len(data)}
        assert facts["model.config.architectures"] == ["LlamaForCausalLM"]  # known before any hash
        # The same identities again share the futures of the first cycle: wait for all of them.
        files = [p.resolve() for p in snap.iterdir()]
        waits = [asyncio.wrap_future(hasher.submit(p, StatKey.of(p.stat()))) for p in files]
        await asyncio.wait_for(asyncio.gather(*waits), 60)
        later, facts = await _collect(_ctx(snap), source)
    finally:
        source.close()
    assert later.state is SourceState.OK, later.message
    assert facts["model.files.model-2.safetensors"] == {"sha256": _sha(data), "bytes": len(data)}
    assert str(facts["model.weights.digest"]).startswith("sha256:")


async def test_restarted_agent_answers_from_the_digest_cache_without_waiting(tmp_path: Path) -> None:
    snap = make_hub(tmp_path / "hub")
    cache = tmp_path / "cache" / "digests-v1.json"
    first = _source(cache)
    hashed, before = await _collect(_ctx(snap), first)
    assert hashed.state is SourceState.OK, hashed.message
    # Not closed (close saves too): the cache must already be on disk once the digests are known.
    restarted = _source(cache, wait_s=0)
    result, after = await _collect(_ctx(snap), restarted)
    restarted.close()
    first.close()
    assert result.state is SourceState.OK, result.message
    assert after == before
    assert restarted.hasher is not None and restarted.hasher.bytes_hashed == 0


# --- hostile trees ----------------------------------------------------------------------------------


async def test_hostile_tree_gives_per_file_status_and_keeps_the_rest(tmp_path: Path) -> None:
    root = tmp_path / "model"
    root.mkdir()
    (root / "config.json").write_text('{"architectures": ["X"]}')
    (tmp_path / "secret").write_text("outside")
    (root / "escape.safetensors").symlink_to(tmp_path / "secret")
    os.mkfifo(root / "pipe.safetensors")
    (root / "huge-header.safetensors").write_bytes(struct.pack("<Q", 40 * 1024**3) + b"{}")
    (root / "truncated.safetensors").write_bytes(safetensors_bytes({"w": ("F32", [4], b"\0" * 16)})[:-4])
    (root / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"w": "model-00001-of-00002.safetensors", "v": "truncated.safetensors"}})
    )
    result, facts = await asyncio.wait_for(_collect(_ctx(root)), timeout=60)
    integrity = facts["model.integrity"]
    assert isinstance(integrity, dict)
    assert "over the 100000000-byte limit" in str(integrity["huge-header.safetensors"])
    assert "truncated" in str(integrity["truncated.safetensors"])
    assert integrity["model-00001-of-00002.safetensors"] == "missing: named by model.safetensors.index.json"
    assert "escape.safetensors: symlink to" in result.message
    assert "pipe.safetensors: FIFO" in result.message
    assert "model.files.escape.safetensors" not in facts
    assert facts["model.config.architectures"] == ["X"]
    assert "model.files.huge-header.safetensors" in facts  # hashed like any file: its digest is a fact too


async def test_real_lfs_pointer_and_missing_shard_are_integrity_findings(real_fixtures: Path) -> None:
    d = real_fixtures / "models" / "meta-llama--Llama-2-7b-hf"
    _, facts = await _collect(_ctx(d))
    integrity = facts["model.integrity"]
    assert isinstance(integrity, dict)
    assert "Git LFS pointer" in str(integrity["model-00001-of-00002.safetensors"])
    assert integrity["model-00002-of-00002.safetensors"] == "missing: named by model.safetensors.index.json"


async def test_real_minilm_model(tmp_path: Path) -> None:
    if not (MINILM / "model.safetensors").is_file():
        pytest.skip(f"{MINILM} absent: ./scripts/demo.sh downloads it")
    result, facts = await _collect(_ctx(MINILM))
    assert result.state is SourceState.OK, result.message
    weights = (MINILM / "model.safetensors").read_bytes()
    assert facts["model.files.model.safetensors"] == {"sha256": _sha(weights), "bytes": len(weights)}
    assert facts["model.params"] == 22_713_728
    assert facts["model.weights.dtypes"] == ["f32", "i64"]
    assert facts["model.config.architectures"] == ["BertModel"]
    assert facts["model.integrity"] == "ok"
