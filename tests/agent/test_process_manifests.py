"""Every real manifest's inference container, run as a real process, read back by the agent.

The container's command, args and env are built the way the kubelet would (``$(VAR)`` expanded,
``envFrom`` ConfigMaps merged, ``secretKeyRef`` values replaced by a token-shaped placeholder),
and started for real under stand-ins of the engines' entry points (they sleep; only their command
line and environment matter). The process source then finds the engine process — through the
shell when the manifest starts one — and must report the right engine and the core facts of
DESIGN.md, and never the placeholder secret.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from skewwatch.core.facts import SourceState
from tests.support.fake_processes import (
    SECRET_FROM_REF,
    install_fake_engines,
    llmisvc_command,
)
from tests.support.manifests import EXPECTED, SKIPPED, manifest_command, read_engine


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
