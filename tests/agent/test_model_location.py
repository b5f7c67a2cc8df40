"""Where the model is comes from the engine parser: a model named only inside ``--config`` is found.

The process source parses the command line (and its ``--config`` file, and environment) once;
the model-files source looks where that parse says (``ProcessInfo.model``), in a real hub cache
tree, without reading the command line again.
"""

from __future__ import annotations

from pathlib import Path

from agent.engines import GENERIC, TGI, VLLM, EngineSpec, parse_args
from agent.hashing import DigestCache, HashBudget, Hasher
from agent.hfcache import ModelRequest, hub_cache_candidates, locate_model, repo_folder
from agent.settings import AgentSettings
from agent.sources.base import AgentPaths, CollectContext
from agent.sources.model_files import ModelFilesSource
from agent.sources.process import collect_process, model_request
from skewwatch.core.facts import SourceState
from tests.support.fake_processes import fake_process

COMMIT = "c" * 40
OTHER = "d" * 40
REPO_ID = "acme/tiny-llm"


def _keep(name: str, value: str) -> str:
    del name
    return value


def make_hub(hub: Path) -> Path:
    """A hub cache with ``REPO_ID`` at two commits, ``refs/main`` naming the first."""
    repo = hub / repo_folder(REPO_ID)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    (repo / "blobs").mkdir()
    for commit in (COMMIT, OTHER):
        snap = repo / "snapshots" / commit
        snap.mkdir(parents=True)
        (snap / "config.json").write_text('{"architectures": ["LlamaForCausalLM"]}')
    return repo / "snapshots" / COMMIT


def _request(
    spec: EngineSpec, argv: list[str], env: dict[str, str], files: dict[str, str] | None = None
) -> ModelRequest:
    return model_request(parse_args(spec, argv, env, _keep, files), spec, env, _keep)


def test_model_named_only_in_a_config_file_is_found_in_the_hub_cache(tmp_path: Path) -> None:
    snap = make_hub(tmp_path / "hub")
    argv = ["vllm", "serve", "--config", "cfg.yaml"]
    request = _request(
        VLLM, argv, {"HF_HUB_CACHE": str(tmp_path / "hub")}, {"cfg.yaml": f"model: {REPO_ID}\n"}
    )
    assert (request.model, request.hub_id) == (REPO_ID, REPO_ID)
    location = locate_model(None, None, request)
    assert location is not None and location.root == snap


def test_revision_and_download_dir_come_from_the_engine_table(tmp_path: Path) -> None:
    make_hub(tmp_path / "models")
    argv = ["vllm", "serve", REPO_ID, "--download-dir", str(tmp_path / "models"), "--revision", OTHER]
    request = _request(VLLM, argv, {})
    assert request.revision == OTHER and request.hub_caches[0] == str(tmp_path / "models")
    location = locate_model(None, None, request)
    assert location is not None and location.hf is not None and location.hf.commit == OTHER


def test_tgi_reads_model_and_revision_from_its_variables() -> None:
    request = _request(TGI, ["text-generation-launcher"], {"MODEL_ID": REPO_ID, "REVISION": OTHER})
    assert (request.hub_id, request.revision) == (REPO_ID, OTHER)
    # vLLM reads neither variable: its table says so.
    assert _request(VLLM, ["vllm", "serve"], {"MODEL_ID": REPO_ID, "REVISION": OTHER}) == ModelRequest(
        hub_caches=tuple(hub_cache_candidates(None, {}))
    )


def test_an_unknown_engine_is_looked_up_by_every_engines_model_flags_without_facts() -> None:
    parsed = parse_args(GENERIC, ["python", "serve.py", "--model-path=/m", "--revision", "v1"], {}, _keep)
    assert (parsed.model_arg, parsed.revision) == ("/m", "v1")
    assert parsed.get("model.path") is None and parsed.get("model.revision") is None


def test_hub_caches_follow_huggingface_precedence() -> None:
    env = {"HF_HOME": "/hf", "HF_HUB_CACHE": "/hub", "HOME": "/home/u"}
    assert hub_cache_candidates("/models", env) == [
        "/models",
        "/hub",
        "/hf/hub",
        "/home/u/.cache/huggingface/hub",
        "/root/.cache/huggingface/hub",
    ]


async def test_process_source_then_model_files_source_find_a_config_file_model(tmp_path: Path) -> None:
    make_hub(tmp_path / "hub")
    config = tmp_path / "cfg.yaml"
    config.write_text(f"model: {REPO_ID}\nmax-model-len: 4096\n")
    procfs = tmp_path / "proc"
    fake_process(
        procfs, 4242, ["vllm", "serve", "--config", str(config)], env={"HF_HUB_CACHE": str(tmp_path / "hub")}
    )
    ctx = CollectContext(settings=AgentSettings(pid=4242), paths=AgentPaths(procfs=procfs))
    found = collect_process(ctx)
    assert found.process is not None, found.message
    assert found.process.model.hub_id == REPO_ID
    ctx.process = found.process
    source = ModelFilesSource(
        Hasher(HashBudget(threads=1, nice=0, ionice="none"), cache=DigestCache(None)), wait_s=30
    )
    try:
        result = await source.collect(ctx)
    finally:
        source.close()
    facts = {f.key: f.value for f in result.facts}
    assert result.state is SourceState.OK, result.message
    assert facts["model.revision"] == COMMIT and facts["model.id"] == REPO_ID
    assert facts["model.config.architectures"] == ["LlamaForCausalLM"]
