"""The process source: /proc parsers, finding the engine process, and real processes end to end."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path

import pytest

from agent.settings import AgentSettings
from agent.sources.base import CollectContext, ProcessInfo, SourceResult
from agent.sources.process import (
    AccessDenied,
    NotFound,
    ProcessSource,
    ProcFS,
    find_process,
    parse_cmdline,
    parse_environ,
    parse_stat_ppid,
)
from skewwatch.core.facts import SourceState
from skewwatch.redact import REDACTED_PREFIX
from tests.support.fake_processes import fake_process, fake_procfs, process_context, wait_for_exec

SK = "sk-RealLookingApiKey0123456789xyz"
HF = "hf_RealLookingHubToken0123456789abcd"
# Beyond the kernel's pid_max ceiling (2^22): no process can have it.
MISSING_PID = 4_194_999


# --- pure parsers -------------------------------------------------------------------------------


def test_cmdline_splits_on_nul_and_drops_the_trailing_one() -> None:
    assert parse_cmdline(b"vllm\0serve\0/m\0--port\0\0") == ["vllm", "serve", "/m", "--port", ""]
    assert parse_cmdline(b"") == []
    assert parse_cmdline(b"setproctitle style") == ["setproctitle style"]


def test_cmdline_keeps_undecodable_bytes_losslessly() -> None:
    assert parse_cmdline(b"x\xff\0").__getitem__(0).encode("utf-8", "surrogateescape") == b"x\xff"


def test_environ_parses_name_value_pairs_and_values_with_equals() -> None:
    assert parse_environ(b"A=1\0B=x=y\0NOEQUALS\0=bad\0C=\0") == {"A": "1", "B": "x=y", "C": ""}


def test_stat_ppid_survives_command_names_with_spaces_and_parens() -> None:
    assert parse_stat_ppid("4242 (python3 (vllm) x) S 17 4242 4242 0 -1") == 17
    with pytest.raises(ValueError, match="unexpected /proc stat"):
        parse_stat_ppid("garbage")


# --- finding, on a fake /proc -------------------------------------------------------------------


def ctx_for(procfs: Path, **settings: object) -> CollectContext:
    return process_context(procfs, **settings)


async def collect(ctx: CollectContext) -> SourceResult:
    return await ProcessSource().collect(ctx)


@pytest.fixture
def procfs(tmp_path: Path) -> Path:
    return fake_procfs(tmp_path)


def test_engine_detection_picks_the_first_engine_process(procfs: Path) -> None:
    fake_process(procfs, 20, ["python3", "-m", "sglang.launch_server", "--model-path", "/m"])
    fake_process(procfs, 30, ["vllm", "serve", "x/y"])
    found = find_process(ProcFS(procfs), AgentSettings())
    assert (found.pid, found.how) == (20, "engine detection")


def test_shell_wrapper_yields_to_its_engine_child(procfs: Path) -> None:
    fake_process(procfs, 10, ["/bin/bash", "-c", "pip list; vllm serve x/y --port 9000"])
    fake_process(procfs, 11, ["pip", "list"], ppid=10)
    fake_process(
        procfs, 12, ["/usr/bin/python3", "/usr/local/bin/vllm", "serve", "x/y", "--port", "9000"], ppid=10
    )
    assert find_process(ProcFS(procfs), AgentSettings()).pid == 12  # the engine itself beats its shell
    found = find_process(ProcFS(procfs), AgentSettings(pid=10))
    assert found.pid == 12
    assert found.how == "--pid, child of shell 10"


def test_shell_matched_by_pattern_yields_to_a_matching_grandchild(procfs: Path) -> None:
    fake_process(procfs, 10, ["sh", "-c", "run-server --name my-llm"])
    fake_process(procfs, 11, ["sh", "-c", "exec my-llm-server"], ppid=10)
    fake_process(procfs, 12, ["my-llm-server", "--threads", "4"], ppid=11)
    assert find_process(ProcFS(procfs), AgentSettings(match="my-llm")).pid == 12


def test_shell_without_a_started_child_is_used_with_its_script(procfs: Path) -> None:
    fake_process(
        procfs, 10, ["/bin/bash", "-exc", "python -m vllm.entrypoints.openai.api_server --model x/y"]
    )
    found = find_process(ProcFS(procfs), AgentSettings())
    assert found.pid == 10


async def test_nothing_to_find_is_unavailable_naming_what_was_looked_for(procfs: Path) -> None:
    result = await collect(ctx_for(procfs))
    assert result.state is SourceState.UNAVAILABLE
    assert "no process matched a vLLM, SGLang or TGI command line" in result.message
    result = await collect(ctx_for(procfs, match="no-such-engine"))
    assert result.state is SourceState.UNAVAILABLE
    assert "no process matched --match 'no-such-engine'" in result.message


async def test_missing_pid_is_unavailable_not_an_exception(procfs: Path) -> None:
    result = await collect(ctx_for(procfs, pid=MISSING_PID))
    assert result.state is SourceState.UNAVAILABLE
    assert f"no process with pid {MISSING_PID}" in result.message
    assert result.process is None


async def test_missing_proc_root_is_unavailable(tmp_path: Path) -> None:
    result = await collect(ctx_for(tmp_path / "nope"))
    assert result.state is SourceState.UNAVAILABLE and "no /proc at" in result.message


async def test_unreadable_environment_is_an_error_naming_the_pid_with_the_args_still_reported(
    procfs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_process(procfs, 40, ["vllm", "serve", "x/y", "--dtype", "bf16"], env={"HF_TOKEN": HF})
    real_open = Path.open

    def guarded_open(self: Path, *args: object, **kwargs: object) -> object:
        if self.name == "environ":
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(Path, "open", guarded_open)
    result = await collect(ctx_for(procfs, pid=40))
    assert result.state is SourceState.ERROR
    assert "permission denied for pid 40" in result.message
    assert {f.key: f.value for f in result.facts}["runtime.dtype"] == "bfloat16"
    assert result.process is not None and result.process.env == {}


def test_access_denied_reading_the_command_line_names_the_pid(
    procfs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_process(procfs, 41, ["vllm", "serve", "x/y"])

    def denied(self: Path, *args: object, **kwargs: object) -> object:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "open", denied)
    with pytest.raises(AccessDenied, match="pid 41"):
        find_process(ProcFS(procfs), AgentSettings(pid=41))


def test_pid_without_command_line_is_not_found(procfs: Path) -> None:
    fake_process(procfs, 2, [])
    with pytest.raises(NotFound, match="kernel thread"):
        find_process(ProcFS(procfs), AgentSettings(pid=2))


async def test_unknown_engine_found_by_pid_reports_generic_args(procfs: Path) -> None:
    fake_process(procfs, 50, ["/opt/llm/server", "--port", "9000", "--token", SK], env={"NCCL_DEBUG": "INFO"})
    result = await collect(ctx_for(procfs, pid=50))
    assert result.state is SourceState.OK
    facts = {f.key: f for f in result.facts}
    assert facts["runtime.engine"].value == "unknown"
    assert facts["runtime.engine"].provenance.method == "derived"
    assert facts["runtime.args.port"].value == "9000"
    assert str(facts["runtime.args.token"].value).startswith(REDACTED_PREFIX)
    assert facts["runtime.env.NCCL_DEBUG"].value == "INFO"
    assert result.process is not None and result.process.metrics_url is None


async def test_relative_model_dir_resolves_against_the_process_cwd(procfs: Path, tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    (workdir / "models" / "llama").mkdir(parents=True)
    fake_process(
        procfs, 60, ["vllm", "serve", "models/llama", "--host", "::1", "--port", "8100"], cwd=workdir
    )
    result = await collect(ctx_for(procfs, pid=60))
    facts = {f.key: f.value for f in result.facts}
    assert facts["model.path"] == str(workdir / "models" / "llama")  # hub-id shaped, but a local dir
    assert "model.id" not in facts
    assert result.process is not None
    assert result.process.model_dir == workdir / "models" / "llama"
    assert result.process.metrics_url == "http://[::1]:8100/metrics"


async def test_model_dir_is_found_through_the_process_root(procfs: Path) -> None:
    # Under a shared pid namespace the engine's filesystem is /proc/<pid>/root.
    fake_process(procfs, 70, ["vllm", "serve", "/models/llama"])
    (procfs / "70" / "root" / "models" / "llama").mkdir(parents=True)
    result = await collect(ctx_for(procfs, pid=70))
    assert result.process is not None
    assert result.process.model_dir == procfs / "70" / "root" / "models" / "llama"


async def test_settings_override_model_dir_and_metrics_url(procfs: Path, tmp_path: Path) -> None:
    fake_process(procfs, 80, ["vllm", "serve", "x/y"])
    result = await collect(
        ctx_for(procfs, pid=80, model_dir=tmp_path, metrics_url="http://10.0.0.1:9999/metrics")
    )
    assert result.process is not None
    assert result.process.model_dir == tmp_path
    assert result.process.metrics_url == "http://10.0.0.1:9999/metrics"


async def test_tgi_process_configured_by_env_gets_its_port_from_env(procfs: Path) -> None:
    env = {"MODEL_ID": "org/model", "PORT": "2080", "HF_TOKEN": HF, "HOSTNAME": "tgi-0", "SECRET_SAUCE": SK}
    fake_process(procfs, 90, ["text-generation-launcher"], env=env)
    result = await collect(ctx_for(procfs))
    assert result.process is not None
    assert result.process.engine == "tgi"
    assert result.process.metrics_url == "http://127.0.0.1:2080/metrics"
    assert set(result.process.env) == {"MODEL_ID", "PORT", "HF_TOKEN"}  # only what the engine reports
    assert HF not in serialise(result) and SK not in serialise(result)


# --- real processes -----------------------------------------------------------------------------


def serialise(result: SourceResult) -> str:
    facts = [{"key": f.key, "value": f.value, **f.provenance.as_dict()} for f in result.facts]
    info = asdict(result.process) if result.process is not None else None
    return json.dumps({"facts": facts, "process": info, "message": result.message}, default=str)


@pytest.fixture
def fake_vllm(tmp_path: Path) -> Path:
    script = tmp_path / "vllm"
    script.write_text("import time\ntime.sleep(60)\n")
    (tmp_path / "models" / "tiny").mkdir(parents=True)
    return script


@contextlib.contextmanager
def spawn(argv: Sequence[str], cwd: Path, marker: str) -> Iterator[subprocess.Popen[bytes]]:
    env = {"PATH": os.environ.get("PATH", ""), "HF_TOKEN": HF, "VLLM_USE_V1": "1", "HOME": str(cwd)}
    # A session of its own, so a shell's children die with it (killpg) instead of lingering.
    proc = subprocess.Popen(argv, cwd=cwd, env=env, start_new_session=True)
    try:
        wait_for_exec(proc.pid, marker)
        yield proc
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.fixture
def vllm_process(fake_vllm: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    argv = [
        sys.executable, str(fake_vllm), "serve", "models/tiny", "--dtype", "float16",
        "--api-key", SK, "--max_model_len=4096", "--port", str(port), "--enable-prefix-caching",
    ]  # fmt: skip
    with spawn(argv, fake_vllm.parent, "--enable-prefix-caching") as proc:
        yield proc


def assert_reports_the_fake_vllm(result: SourceResult, pid: int, fake_vllm: Path, port: int) -> None:
    assert result.state is SourceState.OK, result.message
    facts = {f.key: f for f in result.facts}
    assert facts["runtime.engine"].value == "vllm"
    assert facts["runtime.engine"].provenance.detail == "vllm serve"
    assert facts["runtime.dtype"].value == "float16"
    assert facts["runtime.max_model_len"].value == 4096
    assert facts["runtime.enable_prefix_caching"].value is True
    assert facts["serving.port"].value == port
    assert facts["serving.api_key_required"].value is True
    model_dir = fake_vllm.parent / "models" / "tiny"
    assert facts["model.path"].value == str(model_dir)
    assert str(facts["runtime.args.api_key"].value).startswith(REDACTED_PREFIX)
    assert str(facts["runtime.env.HF_TOKEN"].value).startswith(REDACTED_PREFIX)
    assert facts["runtime.env.VLLM_USE_V1"].value == "1"
    assert "runtime.env.PATH" not in facts and "runtime.env.HOME" not in facts
    info = result.process
    assert isinstance(info, ProcessInfo)
    assert (info.pid, info.engine) == (pid, "vllm")
    assert info.model_dir == model_dir
    assert info.metrics_url == f"http://127.0.0.1:{port}/metrics"
    assert str(fake_vllm) in info.argv
    assert info.env["VLLM_USE_V1"] == "1"
    text = serialise(result)
    assert SK not in text and HF not in text, "a raw secret reached a fact or ProcessInfo"


async def test_real_process_found_by_match(
    vllm_process: subprocess.Popen[bytes], fake_vllm: Path, port: int
) -> None:
    ctx = CollectContext(settings=AgentSettings(match=re.escape(str(fake_vllm)) + " serve"))
    result = await collect(ctx)
    assert_reports_the_fake_vllm(result, vllm_process.pid, fake_vllm, port)
    assert "--match" in result.message


async def test_real_process_found_by_pid(
    vllm_process: subprocess.Popen[bytes], fake_vllm: Path, port: int
) -> None:
    result = await collect(CollectContext(settings=AgentSettings(pid=vllm_process.pid)))
    assert_reports_the_fake_vllm(result, vllm_process.pid, fake_vllm, port)


async def test_real_process_found_by_engine_detection(fake_vllm: Path, port: int) -> None:
    try:
        other = find_process(ProcFS(Path("/proc")), AgentSettings())
    except NotFound:
        other = None
    if other is not None:
        pytest.skip(
            f"another engine-like process (pid {other.pid}) runs on this host; detection picks the first"
        )
    argv = [sys.executable, str(fake_vllm), "serve", "models/tiny", "--dtype", "float16", "--api-key", SK,
            "--max_model_len=4096", "--port", str(port), "--enable-prefix-caching"]  # fmt: skip
    with spawn(argv, fake_vllm.parent, "--enable-prefix-caching") as proc:
        result = await collect(CollectContext(settings=AgentSettings()))
        assert_reports_the_fake_vllm(result, proc.pid, fake_vllm, port)


async def test_real_shell_wrapped_process_yields_its_child(fake_vllm: Path, port: int) -> None:
    # "; true" keeps bash from exec-ing the last command itself, so the shell stays the parent.
    script = f"{sys.executable} {fake_vllm} serve models/tiny --port {port} --api-key {SK}; true"
    with spawn(["/bin/bash", "-c", script], fake_vllm.parent, "serve") as shell:
        deadline = time.monotonic() + 10
        while True:
            result = await collect(CollectContext(settings=AgentSettings(pid=shell.pid)))
            if (result.process and result.process.pid != shell.pid) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.02)  # bash forks its child a moment after it starts
        assert result.process is not None and result.process.pid != shell.pid
        assert result.process.engine == "vllm"
        assert "child of shell" in result.message
        assert SK not in serialise(result)


async def test_process_info_argv_is_redacted_in_both_flag_forms(procfs: Path) -> None:
    fake_process(procfs, 95, ["vllm", "serve", "x/y", f"--api-key={SK}", "--hf-token", HF])
    result = await collect(ctx_for(procfs, pid=95))
    assert result.process is not None
    assert result.process.argv[:3] == ("vllm", "serve", "x/y")
    assert all(SK not in a and HF not in a for a in result.process.argv)
    assert SK not in serialise(result) and HF not in serialise(result)
