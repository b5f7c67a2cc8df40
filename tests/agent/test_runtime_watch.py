"""The agent watches its engine between collections: a restart is collected at once, not at the
next ``--interval`` tick. Settings and the watch's rules on a fake /proc; the restart for real: a
stand-in vLLM restarted with another ``--dtype`` under an agent with ``--interval 30``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import time
from pathlib import Path

import pytest

from agent.cli import settings_from_args
from agent.errors import SettingsError
from agent.runtime import Agent
from agent.settings import AgentSettings
from agent.sources.process import CLOCK_TICKS, ProcessSource, ProcFS, TargetTracker, TargetWatch
from agent.stream import LatestSnapshot
from demo.standin_vllm import install_launcher
from tests.support.fake_processes import Engines, fake_process, fake_procfs, process_context, standin_argv

# --- settings -----------------------------------------------------------------------------------


def _args(**given: object) -> argparse.Namespace:
    base: dict[str, object] = dict(pid=None, match=None, metrics_url=None, model_dir=None,
                                   source_timeout=None, collector="127.0.0.1:1", interval=None,
                                   agent_id=None, settle=None, watch_interval=None)  # fmt: skip
    base.update(given)
    return argparse.Namespace(**base)


def test_watch_interval_defaults_to_a_quarter_second_and_zero_turns_it_off() -> None:
    assert settings_from_args(_args(), {}).watch_interval_s == 0.25
    assert settings_from_args(_args(), {"SKEWWATCH_WATCH_INTERVAL": "0"}).watch_interval_s == 0
    assert (
        settings_from_args(_args(watch_interval=1.5), {"SKEWWATCH_WATCH_INTERVAL": "0"}).watch_interval_s
        == 1.5
    )
    assert Agent(AgentSettings(watch_interval_s=0), {}).watch is None
    assert Agent(AgentSettings(), {}).watch is not None
    assert Agent(AgentSettings(), {}, sources=[]).watch is None  # no process source: nothing to watch


@pytest.mark.parametrize("bad", [-1.0, 0.001, 4000.0])
def test_watch_interval_out_of_range_is_refused(bad: float) -> None:
    with pytest.raises(SettingsError, match="--watch-interval: must be 0 \\(off\\) or between"):
        AgentSettings(watch_interval_s=bad).validate()
    with pytest.raises(SettingsError, match="SKEWWATCH_WATCH_INTERVAL: expected a number"):
        settings_from_args(_args(), {"SKEWWATCH_WATCH_INTERVAL": "soon"})


# --- the watch's rules on a fake /proc ----------------------------------------------------------


def test_watch_says_an_end_once_and_a_replacement_once(tmp_path: Path) -> None:
    procfs = fake_procfs(tmp_path)
    argv = ["vllm", "serve", "m", "--port", "8000", "--dtype", "float16"]
    fake_process(procfs, 100, argv)
    ctx = process_context(procfs)
    tracker = TargetTracker()
    tracker.find(ProcFS(procfs), ctx.settings)
    now = [0.0]
    watch = TargetWatch(tracker, procfs, ctx.settings, scan_every_s=0.5, clock=lambda: now[0])
    assert watch.check() is None  # running: two reads, nothing to say
    (procfs / "100" / "cmdline").unlink()
    assert watch.check() == "engine pid 100 ended"
    assert watch.check() is None  # said once
    fake_process(procfs, 200, ["vllm", "serve", "m", "--port", "8001"])  # another replica
    now[0] = 1.0
    assert watch.check() is None
    fake_process(procfs, 300, [*argv[:-1], "bfloat16"], start_ticks=4242)
    now[0] = 1.2  # scanned 0.2 s ago: not again yet
    assert watch.check() is None
    now[0] = 1.6
    assert watch.check() == "engine pid 100 ended and pid 300 replaces it"
    now[0] = 3.0
    assert watch.check() is None  # said once; the collection attaches it
    assert not watch.steady()  # the ended target is still the one attached
    tracker.find(ProcFS(procfs), ctx.settings)
    assert tracker.target is not None and tracker.target.pid == 300
    assert watch.steady()  # the new target, judged by its own stat line before any check()
    assert watch.check() is None


# --- for real -----------------------------------------------------------------------------------


def boottime_of(pid: int) -> float:
    """When ``pid`` started, on CLOCK_BOOTTIME (the clock /proc start times count on)."""
    ticks = ProcFS(Path("/proc")).start_ticks(pid)
    assert ticks is not None
    return ticks / CLOCK_TICKS


def boottime_now() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


async def _listening(port: int) -> float:
    """CLOCK_BOOTTIME when ``port`` first accepts a connection."""
    while True:
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return boottime_now()
        await asyncio.sleep(0.01)


def _dtype(latest: LatestSnapshot) -> object:
    fact = latest.snapshot.facts.get("runtime.dtype") if latest.snapshot is not None else None
    return None if fact is None else fact.value


async def test_a_restart_with_a_changed_arg_is_published_within_2_s_at_interval_30(
    engines: Engines, tmp_path: Path, port: int
) -> None:
    launcher = install_launcher(tmp_path / "bin")
    argv = standin_argv(launcher, port)
    engines.start(argv)
    settings = AgentSettings(
        match=f"{re.escape(str(launcher))} serve .*--port {port}( |$)", interval_s=30.0, settle_s=20.0
    ).validate()
    agent = Agent(settings, dict(os.environ), sources=[ProcessSource()])
    latest = LatestSnapshot()
    loop_task = asyncio.create_task(agent.collect_forever(latest))
    try:
        async with asyncio.timeout(15):
            while _dtype(latest) != "float16":  # noqa: ASYNC110 - polling what the loop publishes
                await asyncio.sleep(0.02)
        first = engines.procs[0]
        engines.kill(first)
        await asyncio.sleep(0.05)  # a start time of its own
        second = engines.start(
            [*argv[: argv.index("float16")], "bfloat16", *argv[argv.index("float16") + 1 :]]
        )
        listening = asyncio.create_task(_listening(port))
        born = boottime_of(second.pid)
        async with asyncio.timeout(15):
            while _dtype(latest) != "bfloat16":  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        seen = boottime_now()
        ready = await asyncio.wait_for(listening, 15)
    finally:
        loop_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop_task
    assert latest.snapshot is not None
    assert agent.process is not None and agent.process.pid == second.pid
    assert agent.wakeups >= 1  # brought forward by the watch, not the 30 s tick
    assert agent.watch is not None and agent.watch.steady()  # the new engine, by its stat line alone
    # The process source needs no engine start-up; the goal has it as a margin anyway.
    assert seen - born <= 2.0 + max(0.0, ready - born), (seen - born, ready - born)
