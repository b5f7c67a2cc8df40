"""Every real manifest's inference container, run as a real process, read back by the agent.

The container's command, args and env are built the way the kubelet would (``$(VAR)`` expanded,
``envFrom`` ConfigMaps merged, ``secretKeyRef`` values replaced by a token-shaped placeholder),
and started for real under stand-ins of the engines' entry points (they sleep; only their command
line and environment matter). The process source then finds the engine process — through the
shell when the manifest starts one — and must report the right engine and the core facts of
DESIGN.md, and never the placeholder secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.settings import AgentSettings
from agent.sources.base import AgentPaths, CollectContext, SourceResult
from agent.sources.process import ProcessSource
from skewwatch.core.facts import SourceState
from tests.agent.helpers_process import (
    SECRET_FROM_REF,
    container_command,
    install_fake_engines,
    llmisvc_command,
)

# manifest → (image entrypoint when the container sets no command, expected facts)
EXPECTED: dict[str, tuple[list[str], dict[str, Any]]] = {
    "production-stack__vllm-gpu-deployment.yaml": (
        [],
        {
            "runtime.engine": "vllm",
            "model.id": "meta-llama/Llama-3.2-1B-Instruct",
            "runtime.tensor_parallel_size": 1,
            "runtime.max_num_seqs": 1024,
            "runtime.enable_lora": True,
            "serving.port": 8000,
        },
    ),
    "production-stack__vllm-disagg-prefill-deploy.yaml": (
        [],
        {
            "runtime.engine": "vllm",
            "model.path": "/var/mdl/YOUR-MODEL-PATH",
            "runtime.max_model_len": 512,
            "runtime.served_model_name": "YOUR-MODEL-NAME",
            "serving.port": 8000,
        },
    ),
    "kserve__clusterservingruntime-vllmserver.yaml": (
        [],
        {"runtime.engine": "vllm", "model.path": "/mnt/models", "serving.port": 8080},
    ),
    "kserve__llminferenceservice-deepseek-r1-dp-ep.yaml": (
        [],
        {
            "runtime.engine": "vllm",
            "model.path": "/mnt/models",
            "runtime.served_model_name": "deepseek-ai/DeepSeek-R1-0528",
            "runtime.data_parallel_size": 256,
            "runtime.tensor_parallel_size": 1,
            "runtime.enable_expert_parallel": True,
            "runtime.trust_remote_code": True,
            # from VLLM_ADDITIONAL_ARGS, spliced in by the preset's eval
            "runtime.gpu_memory_utilization": 0.95,
            "runtime.max_model_len": 8192,
            "runtime.enforce_eager": True,
            "serving.port": 8001,
        },
    ),
    "aibrix__sglang-deepseek-r1-distill-llama-8b-deployment.yaml": (
        [],
        {
            "runtime.engine": "sglang",
            "model.path": "/root/models/DeepSeek-R1-Distill-Llama-8B",
            "runtime.served_model_name": "DeepSeek-R1-Distill-Llama-8B",
            "runtime.attention_backend": "flashinfer",
            "serving.port": 8000,
        },
    ),
    # No command: the image's entrypoint runs; TGI is configured by env alone.
    "opea-genaiinfra__tgi-nv.yaml": (
        ["text-generation-launcher"],
        {"runtime.engine": "tgi", "model.id": "Intel/neural-chat-7b-v3-3", "serving.port": 2080},
    ),
}
# Not YAML until Helm renders it with the chart's values; its launch shape is covered by the
# rendered production-stack manifests above.
SKIPPED = {"production-stack__helm-template__deployment-vllm-multi.yaml.tpl"}


def manifest_command(path: Path) -> tuple[list[str], dict[str, str]]:
    if path.name.startswith("kserve__llminferenceservice"):
        return llmisvc_command(path)
    return container_command(path, EXPECTED[path.name][0])


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return install_fake_engines(tmp_path_factory.mktemp("engines"))


@pytest.fixture
def run_manifest(engines: tuple[Path, Path]) -> Iterator[Any]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[bytes]:
        bindir, lib = engines
        full_env = dict(env) | {"PATH": f"{bindir}:/usr/bin:/bin", "PYTHONPATH": str(lib)}
        proc = subprocess.Popen(
            argv,
            env=full_env,
            cwd=cwd,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        # A session of its own: the shell's children die with it.
        with contextlib.suppress(ProcessLookupError):  # the whole group already exited
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


async def read_engine(pid: int, engine: str) -> SourceResult:
    """The process source's result once the engine process under ``pid`` is up (5 s at most)."""
    source = ProcessSource()
    deadline = time.monotonic() + 5
    while True:
        result = await source.collect(CollectContext(settings=AgentSettings(pid=pid), paths=AgentPaths()))
        # A shell is found first; its engine child appears once the script gets there.
        up = result.process is not None and result.process.engine == engine
        if (up and not str(result.process.argv[0] if result.process else "").endswith("sh")) or (
            time.monotonic() > deadline
        ):
            return result
        await asyncio.sleep(0.05)


def test_every_real_manifest_is_covered(real_fixtures: Path) -> None:
    names = {p.name for p in (real_fixtures / "manifests").iterdir()}
    assert names == set(EXPECTED) | SKIPPED


@pytest.mark.parametrize("name", sorted(EXPECTED))
async def test_manifest_run_as_a_process_yields_engine_and_core_facts(
    name: str, real_fixtures: Path, run_manifest: Any, tmp_path: Path
) -> None:
    argv, env = manifest_command(real_fixtures / "manifests" / name)
    proc = run_manifest(argv, env, tmp_path)
    expected = EXPECTED[name][1]
    result = await read_engine(proc.pid, expected["runtime.engine"])
    assert result.state is SourceState.OK, result.message
    facts = {f.key: f.value for f in result.facts}
    for key, value in expected.items():
        assert facts.get(key) == value, f"{name}: {key} = {facts.get(key)!r}, expected {value!r}"
    # TGI claims no dtype or shard default from the command line: with no DTYPE or NUM_SHARD the
    # runtime decides, and its /info (runtime_metrics) says what it decided.
    core: tuple[str, ...] = ("serving.api_key_required", "serving.port")
    if expected["runtime.engine"] != "tgi":
        core += ("runtime.dtype", "runtime.tensor_parallel_size", "runtime.kv_cache_dtype")
    for key in core:
        assert key in facts, f"{name}: no {key}"
    assert result.process is not None
    assert result.process.engine == expected["runtime.engine"]

    # No raw secret anywhere the process source hands on.
    shipped = json.dumps(
        {
            "facts": facts,
            "provenance": [f.provenance.as_dict() for f in result.facts],
            "argv": result.process.argv,
            "env": dict(result.process.env),
            "message": result.message,
        }
    )
    assert SECRET_FROM_REF not in shipped
    for secret_name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        if secret_name in env:
            assert str(facts[f"runtime.env.{secret_name}"]).startswith("redacted:sha256:")


async def test_shell_launched_engine_is_read_from_its_child_not_the_shell(
    real_fixtures: Path, run_manifest: Any, tmp_path: Path
) -> None:
    argv, env = llmisvc_command(
        real_fixtures / "manifests" / "kserve__llminferenceservice-deepseek-r1-dp-ep.yaml"
    )
    proc = run_manifest(argv, env, tmp_path)
    result = await read_engine(proc.pid, "vllm")
    assert result.process is not None and result.process.pid != proc.pid
    assert "child of shell" in result.message
    prov = {f.key: f.provenance for f in result.facts}
    assert prov["runtime.max_model_len"].detail == "--max-model-len (via $VLLM_ADDITIONAL_ARGS)"


def test_helm_template_is_not_yaml_and_is_skipped_for_a_stated_reason(real_fixtures: Path) -> None:
    (name,) = SKIPPED
    text = (real_fixtures / "manifests" / name).read_text()
    assert "{{" in text  # Go template actions: it must be rendered with chart values first
    assert "vllm" in text and "serve" in text
