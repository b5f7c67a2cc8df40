"""The runner orders sources by what each declares it needs, and hands them what those found."""

from __future__ import annotations

import pytest

from agent.settings import AgentSettings
from agent.snapshot import SourceOrderError, order_sources, run_sources
from agent.sources.base import CollectContext, ProcessInfo, Source, SourceResult
from agent.sources.registry import default_sources


class _Probe:
    def __init__(self, name: str, needs: tuple[str, ...] = (), process: ProcessInfo | None = None) -> None:
        self.name, self.needs, self.process = name, needs, process
        self.saw: CollectContext | None = None

    async def collect(self, ctx: CollectContext) -> SourceResult:
        self.saw = ctx
        result = SourceResult.ok([])
        result.process = self.process
        return result


def _names(groups: list[list[Source]]) -> list[list[str]]:
    return [[s.name for s in g] for g in groups]


def test_the_default_sources_run_process_and_pod_first() -> None:
    groups = order_sources(default_sources(AgentSettings()))
    assert _names(groups) == [["process", "pod"], ["nvml", "model_files", "runtime_metrics"]]


def test_a_chain_of_needs_is_a_chain_of_groups() -> None:
    sources = [_Probe("c", ("b",)), _Probe("b", ("a",)), _Probe("a")]
    assert _names(order_sources(sources)) == [["a"], ["b"], ["c"]]


def test_an_unknown_need_and_a_cycle_are_errors() -> None:
    with pytest.raises(SourceOrderError, match="needs nope: no such source"):
        order_sources([_Probe("a", ("nope",))])
    with pytest.raises(SourceOrderError, match="cycle"):
        order_sources([_Probe("a", ("b",)), _Probe("b", ("a",))])
    # A need the context already holds is met: a source tested alone with a process given.
    assert _names(order_sources([_Probe("m", ("process",))], provided={"process"})) == [["m"]]


async def test_sources_get_what_their_needs_found_without_the_context_changing() -> None:
    process = ProcessInfo(pid=7, engine="vllm", argv=(), env={})
    first = _Probe("process", process=process)
    second = _Probe("model_files", ("process",))
    ctx = CollectContext(settings=AgentSettings())
    collected = await run_sources([second, first], ctx, timeout_s=5.0)
    assert collected.process is process
    assert second.saw is not None and second.saw.process is process
    assert set(second.saw.results) == {"process"}
    assert first.saw is not None and first.saw.process is None
    assert ctx.process is None and not ctx.results
