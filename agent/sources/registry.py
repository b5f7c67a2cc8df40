"""The agent's sources, in one list: the order is irrelevant, the runner orders them by what each
declares it ``needs``."""

from __future__ import annotations

from agent.settings import AgentSettings
from agent.sources.base import Source
from agent.sources.model_files import ModelFilesSource
from agent.sources.nvml import NvmlSource
from agent.sources.pod import PodSource
from agent.sources.process import ProcessSource
from agent.sources.runtime_metrics import RuntimeMetricsSource


def default_sources(settings: AgentSettings) -> list[Source]:
    del settings  # every source reads its settings from the collection context
    return [ProcessSource(), PodSource(), NvmlSource(), ModelFilesSource(), RuntimeMetricsSource()]
