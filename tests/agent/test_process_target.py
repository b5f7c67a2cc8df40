"""The process source keeps its target: restarts, several matches, and skewwatch's own processes.

Pure rules run on fake /proc trees (start times written into ``stat`` field 22, ``btime`` into
``/proc/stat``); the restart cases also run for real: a stand-in vLLM started through its
launcher (``<tmp>/bin/vllm serve …``, as pip installs vLLM), killed, and started again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from agent.settings import AgentSettings
from agent.sources.base import CollectContext, ProcessInfo, SourceResult
from agent.sources.process import (
    CLOCK_TICKS,
    ProcessSource,
    ProcFS,
    find_process,
    is_skewwatch_process,
    parse_boot_time,
    parse_stat_start_ticks,
)
from demo.standin_vllm import install_launcher
from skewwatch.core.facts import SourceState
from tests.support.fake_processes import (
    Engines,
    fake_process,
    fake_procfs,
    process_context,
    standin_argv,
)

BTIME = 1_700_000_000
LOGGER = "agent.sources.process"
WAIT_S = 10.0


# --- pure parsers -------------------------------------------------------------------------------


def test_start_ticks_is_field_22_even_when_the_command_name_has_spaces_and_parens() -> None:
    line = "4242 (python3 (vllm) x) S 17 4242 4242 0 -1 4194560 0 0 0 0 5 6 0 0 20 0 9 0 123456 1000 100"
    assert parse_stat_start_ticks(line) == 123456
    with pytest.raises(ValueError, match="unexpected /proc stat"):
        parse_stat_start_ticks("4242 (vllm) S 1 4242 4242 0 -1 4194560 0 0 0 0")  # too short


def test_start_ticks_of_a_real_process_is_stable() -> None:
    text = Path("/proc/self/stat").read_text()
    assert parse_stat_start_ticks(text) == ProcFS(Path("/proc")).start_ticks(os.getpid())


def test_boot_time_comes_from_the_btime_line() -> None:
    assert parse_boot_time("cpu  1 2 3\nintr 5\nbtime 1700000000\nprocesses 9\n") == BTIME
    with pytest.raises(ValueError, match="no btime"):
        parse_boot_time("cpu  1 2 3\n")


def test_start_time_is_epoch_seconds_from_btime_and_none_without_it(tmp_path: Path) -> None:
    root = tmp_path / "proc"
    root.mkdir()
    engine(root, 40, vllm_argv(8000), ticks=250 * CLOCK_TICKS)
    assert ProcFS(root).start_ticks(40) == 250 * CLOCK_TICKS
    assert ProcFS(root).start_time(250 * CLOCK_TICKS) is None  # no /proc/stat: unknown, not guessed
    (root / "stat").write_text("cpu  1 2 3\n")
    assert ProcFS(root).start_time(250 * CLOCK_TICKS) is None  # no btime line
    (root / "stat").write_text(f"cpu  1 2 3\nbtime {BTIME}\n")
    assert ProcFS(root).start_time(250 * CLOCK_TICKS) == BTIME + 250.0
    real = ProcFS(Path("/proc"))
    started = real.start_time(real.start_ticks(os.getpid()))
    assert started is not None and started <= time.time() + 1


def test_process_info_start_time_is_optional() -> None:
    assert ProcessInfo(pid=1, engine="vllm", argv=(), env={}).start_time is None


# --- fake /proc ---------------------------------------------------------------------------------


def vllm_argv(port: int, *extra: str) -> list[str]:
    return ["/usr/bin/python3", "/usr/local/bin/vllm", "serve", "/models/m", "--port", str(port), *extra]


def engine(procfs: Path, pid: int, argv: Sequence[str], *, ticks: int, ppid: int = 1) -> None:
    """A fake process whose stat line carries a start time (field 22)."""
    fake_process(procfs, pid, argv, ppid=ppid)
    comm = os.path.basename(argv[0])[:15]
    stat = f"{pid} ({comm}) S {ppid} {pid} {pid} 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 {ticks} 1000 100\n"
    (procfs / str(pid) / "stat").write_text(stat)


def end(procfs: Path, pid: int) -> None:
    shutil.rmtree(procfs / str(pid))


@pytest.fixture
def procfs(tmp_path: Path) -> Path:
    return fake_procfs(tmp_path, btime=BTIME)


def ctx_for(procfs: Path, **settings: object) -> CollectContext:
    return process_context(procfs, **settings)


def messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == level]


async def test_pid_reuse_is_told_by_the_start_time(procfs: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    engine(procfs, 40, vllm_argv(8000), ticks=1000)
    source, ctx = ProcessSource(), ctx_for(procfs, pid=40)
    first = await source.collect(ctx)
    assert first.state is SourceState.OK, first.message
    assert first.process is not None and first.process.start_time == BTIME + 1000 / CLOCK_TICKS
    # The engine ends and its pid is reused by something else, started later.
    end(procfs, 40)
    engine(procfs, 40, ["sleep", "5"], ticks=9000)
    engine(procfs, 41, vllm_argv(8000), ticks=8000)
    second = await source.collect(ctx)
    assert second.state is SourceState.OK, second.message
    assert second.process is not None and second.process.pid == 41
    assert second.process.start_time == BTIME + 8000 / CLOCK_TICKS
    assert "engine pid 40 (start 2023-11-14T22:13:" in second.message and "ended" in second.message
    switched = [m for m in messages(caplog, logging.INFO) if "re-attached" in m]
    assert switched == [
        f"engine pid 40 (start {fmt(BTIME + 1000 / CLOCK_TICKS)}) ended; "
        "re-attached to pid 41, same vllm command line on port 8000"
    ]


async def test_same_pid_restarted_with_the_same_command_line_is_a_new_start(procfs: Path) -> None:
    engine(procfs, 40, vllm_argv(8000), ticks=1000)
    source, ctx = ProcessSource(), ctx_for(procfs, pid=40)
    first = await source.collect(ctx)
    end(procfs, 40)
    engine(procfs, 40, vllm_argv(8000), ticks=7000)
    second = await source.collect(ctx)
    assert first.process is not None and second.process is not None
    assert second.process.pid == 40
    assert second.process.start_time != first.process.start_time
    assert "engine pid 40" in second.message and "ended" in second.message


async def test_pid_gone_with_no_same_engine_is_unavailable_logged_once_then_reattaches(
    procfs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    engine(procfs, 40, vllm_argv(8000), ticks=1000)
    engine(procfs, 42, vllm_argv(8001), ticks=1100)  # another replica's engine
    source, ctx = ProcessSource(), ctx_for(procfs, pid=40)
    assert (await source.collect(ctx)).state is SourceState.OK
    end(procfs, 40)
    for _ in range(3):
        result = await source.collect(ctx)
        assert result.state is SourceState.UNAVAILABLE and result.process is None
        assert re.match(
            r"engine pid 40 not running since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ; "
            r"looking for vllm on port 8000; "
            r"1 other vllm process on other ports ignored \(pid 42: vllm on port 8001\)$",
            result.message,
        ), result.message
    assert len(messages(caplog, logging.WARNING)) == 1  # lost: said once, not every cycle
    engine(procfs, 45, vllm_argv(8000), ticks=5000)
    result = await source.collect(ctx)
    assert result.process is not None and result.process.pid == 45
    assert "--pid 40, re-attached by its command line (vllm on port 8000)" in result.message
    assert sum("re-attached to pid 45" in m for m in messages(caplog, logging.INFO)) == 1


async def test_pid_refind_prefers_the_identical_command_line(procfs: Path) -> None:
    engine(procfs, 40, vllm_argv(8000, "--dtype", "half"), ticks=1000)
    source, ctx = ProcessSource(), ctx_for(procfs, pid=40)
    await source.collect(ctx)
    end(procfs, 40)
    engine(procfs, 50, vllm_argv(8000, "--dtype", "float32"), ticks=2000)  # same port, other flags
    engine(procfs, 51, vllm_argv(8000, "--dtype", "half"), ticks=2000)
    result = await source.collect(ctx)
    assert result.process is not None and result.process.pid == 51
    end(procfs, 51)
    result = await source.collect(ctx)  # only a different command line on the port is left
    assert result.process is not None and result.process.pid == 50


async def test_unknown_engine_is_only_refound_by_its_identical_command_line(procfs: Path) -> None:
    argv = ["/opt/llm/server", "--listen", "9000"]
    engine(procfs, 40, argv, ticks=1000)
    source, ctx = ProcessSource(), ctx_for(procfs, pid=40)
    await source.collect(ctx)
    end(procfs, 40)
    engine(procfs, 41, ["/opt/llm/server", "--listen", "9001"], ticks=2000)
    result = await source.collect(ctx)
    assert result.state is SourceState.UNAVAILABLE
    assert "looking for the same unknown command line" in result.message
    engine(procfs, 42, argv, ticks=3000)
    result = await source.collect(ctx)
    assert result.process is not None and result.process.pid == 42


async def test_several_matches_state_count_pids_and_rule(procfs: Path) -> None:
    fake_process(procfs, 10, ["tail", "-f", "/var/log/x-serve.log"])
    engine(procfs, 11, vllm_argv(8000, "--served-model-name", "x-serve"), ticks=1)
    fake_process(procfs, 12, ["x-serve-helper"])
    result = await ProcessSource().collect(ctx_for(procfs, match="x-serve"))
    assert result.process is not None and result.process.pid == 11
    assert (
        "3 processes match --match 'x-serve' (pids 10, 11, 12): chose pid 11, "
        "the lowest pid a vLLM, SGLang or TGI table recognises as the engine itself"
    ) in result.message
    end(procfs, 11)
    result = await ProcessSource().collect(ctx_for(procfs, match="x-serve"))  # a fresh agent
    assert result.process is not None and result.process.pid == 10
    assert (
        "2 processes match --match 'x-serve' (pids 10, 12): chose pid 10, "
        "the lowest pid (none is a known engine command line)"
    ) in result.message


async def test_match_sticks_to_its_engine_and_never_takes_another_port(
    procfs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    engine(procfs, 20, vllm_argv(8000), ticks=100)
    engine(procfs, 21, vllm_argv(8001), ticks=100)
    source, ctx = ProcessSource(), ctx_for(procfs, match="vllm serve")
    result = await source.collect(ctx)
    assert result.process is not None and result.process.pid == 20
    # A lower pid with the same command line appears: the attached engine stays while it runs.
    engine(procfs, 5, vllm_argv(8000), ticks=200)
    result = await source.collect(ctx)
    assert result.process is not None and result.process.pid == 20
    assert "chose pid 20, the attached engine (vllm on port 8000) while it runs" in result.message
    end(procfs, 5)
    end(procfs, 20)  # restarting: only the other replica's engine matches now
    for _ in range(2):
        result = await source.collect(ctx)
        assert result.state is SourceState.UNAVAILABLE and result.process is None, result.message
        assert "engine pid 20 not running since" in result.message
        assert "1 other match on other ports ignored (pid 21: vllm on port 8001)" in result.message
    engine(procfs, 30, vllm_argv(8000), ticks=900)
    result = await source.collect(ctx)
    assert result.process is not None and result.process.pid == 30
    assert (
        "2 processes match --match 'vllm serve' (pids 21, 30): chose pid 30, the same vllm" in result.message
    )
    infos = messages(caplog, logging.INFO)
    assert len(infos) == 2 and "attached to engine pid 20" in infos[0] and "re-attached to pid 30" in infos[1]
    assert len(messages(caplog, logging.WARNING)) == 1


async def test_detection_also_keeps_its_engine(procfs: Path) -> None:
    engine(procfs, 20, vllm_argv(8000), ticks=100)
    source, ctx = ProcessSource(), ctx_for(procfs)
    assert (await source.collect(ctx)).process is not None
    end(procfs, 20)
    engine(procfs, 30, vllm_argv(8001), ticks=900)
    result = await source.collect(ctx)
    assert result.state is SourceState.UNAVAILABLE
    assert "1 other match on other ports ignored (pid 30: vllm on port 8001)" in result.message


async def test_a_shell_target_yields_to_its_child_without_calling_it_a_restart(
    procfs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    engine(procfs, 10, ["/bin/bash", "-c", "pip list; vllm serve /models/m --port 9000"], ticks=100)
    source, ctx = ProcessSource(), ctx_for(procfs, match="vllm serve")
    result = await source.collect(ctx)
    assert result.process is not None and result.process.pid == 10  # the child is not up yet
    engine(procfs, 12, ["/usr/bin/python3", "/usr/local/bin/vllm", "serve", "/models/m", "--port", "9000"],
           ticks=150, ppid=10)  # fmt: skip
    result = await source.collect(ctx)
    assert result.process is not None and result.process.pid == 12
    assert "child of shell 10" in result.message and "ended" not in result.message
    assert not any("re-attached" in m for m in messages(caplog, logging.INFO))


def test_is_skewwatch_process() -> None:
    venv = "/work/.venv/bin"
    ours = [
        [f"{venv}/python", f"{venv}/skewwatch", "agent", "--match", "vllm serve"],
        ["python3", "-m", "skewwatch.cli", "facts", "--match", "vllm"],
        ["python", "-u", "-m", "skewwatch", "agent"],
        ["/usr/bin/python3.12", "-mdemo.run"],
        ["skewwatch", "agent", "--pid", "7"],
        ["env", "SKEWWATCH_MATCH=vllm", "skewwatch", "agent"],
        ["/bin/sh", "-c", "exec skewwatch agent --match 'vllm serve'"],
    ]
    theirs = [
        ["python", "-m", "pytest", "tests/agent", "-k", "vllm"],
        [f"{venv}/python", "/tmp/x/bin/vllm", "serve", "/m", "--port", "8000"],  # the stand-in, launched
        ["python", "-m", "demo.standin_vllm", "serve", "/m"],
        ["/bin/bash", "-c", "skewwatch facts --match x; vllm serve /m"],  # the shell starts an engine
        ["vllm", "serve", "skewwatch/model"],
    ]
    assert [a for a in ours if not is_skewwatch_process(a)] == []
    assert [a for a in theirs if is_skewwatch_process(a)] == []


async def test_skewwatch_processes_never_match(procfs: Path) -> None:
    venv = "/work/.venv/bin"
    fake_process(procfs, 10, [f"{venv}/python", f"{venv}/skewwatch", "agent", "--match", "vllm serve"])
    fake_process(procfs, 11, ["python3", "-m", "skewwatch.cli", "facts", "--match", "vllm serve"])
    fake_process(procfs, 12, ["python3", "-m", "demo.run", "--vllm serve"])
    fake_process(procfs, 13, ["/bin/sh", "-c", "skewwatch agent --match 'vllm serve'"])
    fake_process(procfs, 14, ["python", "-m", "pytest", "-k", "vllm serve"])
    engine(procfs, 20, vllm_argv(8000), ticks=1)
    result = await ProcessSource().collect(ctx_for(procfs, match="vllm serve"))
    assert result.process is not None and result.process.pid == 20
    assert "2 processes match --match 'vllm serve' (pids 14, 20)" in result.message  # pytest is not ours
    assert find_process(ProcFS(procfs), AgentSettings()).pid == 20
    # A re-find by --pid skips them too, even one shaped like the engine's command line.
    source, ctx = ProcessSource(), ctx_for(procfs, pid=20)
    await source.collect(ctx)
    end(procfs, 20)
    fake_process(
        procfs, 30, ["python3", "-m", "skewwatch.cli", "vllm", "serve", "/models/m", "--port", "8000"]
    )
    result = await source.collect(ctx)
    assert result.state is SourceState.UNAVAILABLE, result.message


def fmt(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


# --- real processes -----------------------------------------------------------------------------


def cmdline_of(pid: int) -> list[bytes]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")


@pytest.fixture
def launcher(tmp_path: Path) -> Path:
    """The stand-in vLLM as its demo runs it: ``<tmp>/bin/vllm``, a console script."""
    return install_launcher(tmp_path / "bin")


async def collect_until(
    source: ProcessSource, ctx: CollectContext, done: Callable[[SourceResult], bool]
) -> SourceResult:
    deadline = time.monotonic() + WAIT_S
    while True:
        result = await source.collect(ctx)
        if done(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {WAIT_S:g} s; last result: {result.state} {result.message}")
        await asyncio.sleep(0.05)


def other_free_port(taken: int) -> int:
    from demo.harness import free_port

    while (p := free_port()) == taken:
        pass
    return p


async def test_real_engine_restarted_under_a_new_pid_is_reattached_by_pid(
    engines: Engines, launcher: Path, port: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    argv = standin_argv(launcher, port)
    first = engines.start(argv)
    cmdline = cmdline_of(first.pid)
    assert Path(cmdline[1].decode()) == launcher and cmdline[2] == b"serve"  # <python> <bin>/vllm serve …
    source, ctx = ProcessSource(), CollectContext(settings=AgentSettings(pid=first.pid))
    before = await source.collect(ctx)
    assert before.state is SourceState.OK, before.message
    assert before.process is not None and before.process.engine == "vllm"
    assert before.process.pid == first.pid and before.process.start_time is not None
    assert abs(before.process.start_time - time.time()) < 60

    engines.kill(first)
    gone = await source.collect(ctx)
    assert gone.state is SourceState.UNAVAILABLE and gone.process is None
    assert f"engine pid {first.pid} not running since" in gone.message
    assert f"looking for vllm on port {port}" in gone.message

    await asyncio.sleep(0.05)  # a start time of its own, a clock tick or more later
    second = engines.start(argv)
    assert second.pid != first.pid
    after = await collect_until(source, ctx, lambda r: r.process is not None)
    assert after.state is SourceState.OK, after.message
    assert after.process is not None and after.process.pid == second.pid
    assert after.process.start_time is not None and after.process.start_time > before.process.start_time
    assert {f.key: f.value for f in after.facts}["serving.port"] == port
    switched = [m for m in messages(caplog, logging.INFO) if "re-attached" in m]
    assert len(switched) == 1
    assert f"engine pid {first.pid} (start " in switched[0]
    assert switched[0].endswith(f"re-attached to pid {second.pid}, same vllm command line on port {port}")
    again = await source.collect(ctx)  # steady: no more logging
    assert again.process is not None and again.process.pid == second.pid
    assert len([m for m in messages(caplog, logging.INFO) if "re-attached" in m]) == 1


async def test_real_match_of_two_engines_never_switches_to_the_other_port(
    engines: Engines, launcher: Path, port: int
) -> None:
    other_port = other_free_port(port)
    a = engines.start(standin_argv(launcher, port))
    b = engines.start(standin_argv(launcher, other_port))
    pattern = re.escape(str(launcher)) + " serve"
    source, ctx = ProcessSource(), CollectContext(settings=AgentSettings(match=pattern))
    result = await source.collect(ctx)
    assert result.state is SourceState.OK, result.message
    attached, attached_port, other = (a, port, b) if a.pid < b.pid else (b, other_port, a)
    assert result.process is not None and result.process.pid == attached.pid  # the lowest pid
    low, high = sorted((a.pid, b.pid))
    assert (
        f"2 processes match --match {pattern!r} (pids {low}, {high}): chose pid {attached.pid}"
        in result.message
    )

    engines.kill(attached)
    for _ in range(3):
        result = await source.collect(ctx)
        assert result.state is SourceState.UNAVAILABLE and result.process is None, result.message
        assert f"1 other match on other ports ignored (pid {other.pid}: vllm on port" in result.message

    restarted = engines.start(standin_argv(launcher, attached_port))
    result = await collect_until(source, ctx, lambda r: r.process is not None)
    assert result.process is not None and result.process.pid == restarted.pid != other.pid
    assert {f.key: f.value for f in result.facts}["serving.port"] == attached_port


async def test_real_skewwatch_process_never_matches(engines: Engines, launcher: Path, port: int) -> None:
    # A process that runs as skewwatch's console script does, its command line full of the pattern.
    fake_cli = launcher.parent / "skewwatch"
    fake_cli.write_text("import time\ntime.sleep(60)\n")
    agent = engines.start([sys.executable, str(fake_cli), "agent", "--match", f"{launcher} serve"], "agent")
    engine_proc = engines.start(standin_argv(launcher, port))
    result = await ProcessSource().collect(
        CollectContext(settings=AgentSettings(match=re.escape(str(launcher))))
    )
    assert result.process is not None and result.process.pid == engine_proc.pid != agent.pid
    assert "processes match" not in result.message
