"""The engine's memory and CPU through psutil: observations, never made-up zeros."""

from __future__ import annotations

import os
from pathlib import Path

from agent.sources.process import EngineUsage


def test_rss_at_once_and_cpu_from_the_second_look_at_the_same_process() -> None:
    usage = EngineUsage()
    first = {o.name: o for o in usage.observe(os.getpid(), Path("/proc"))}
    assert set(first) == {"process_rss_bytes"}
    assert first["process_rss_bytes"].value > 1e6 and first["process_rss_bytes"].unit == "By"
    sum(i * i for i in range(200_000))  # some CPU between the looks
    second = {o.name: o for o in usage.observe(os.getpid(), Path("/proc"))}
    assert set(second) == {"process_rss_bytes", "process_cpu_cores"}
    assert second["process_cpu_cores"].value >= 0 and second["process_cpu_cores"].unit == "{core}"


def test_another_proc_root_or_a_gone_process_gives_nothing(tmp_path: Path) -> None:
    usage = EngineUsage()
    assert usage.observe(os.getpid(), tmp_path) == []
    assert usage.observe(2**22 + 12345, Path("/proc")) == []
