"""What every fact source shares: the collection context it reads and the result it returns.

A source never raises for "nothing to read here": it returns ``SourceResult.unavailable``. Errors
in its input are ``SourceResult.error`` with a message naming the file, field or URL; a result
may carry facts *and* an error (a partial failure). The runner (``agent.snapshot``) adds
timeouts, so sources need not.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from agent.hfcache import ModelRequest
from agent.settings import AgentSettings
from skewwatch.core.facts import Fact, FactValue, Observation, SourceState, make_fact


@dataclass(frozen=True)
class ProcessInfo:
    """The inference process as the process source found it (env already redacted)."""

    pid: int
    engine: str  # vllm | sglang | tgi | unknown
    argv: tuple[str, ...]  # the redacted command line
    env: Mapping[str, str]  # the redacted environment
    model_dir: Path | None = None
    metrics_url: str | None = None
    # When the process started (epoch seconds, from /proc/<pid>/stat and btime), None if unknown:
    # a new pid or a new start time is a restarted engine.
    start_time: float | None = None
    # The model the engine was asked to load, from the engine parser's settings: where the
    # model-files source looks (no source re-reads the command line).
    model: ModelRequest = field(default_factory=ModelRequest)


@dataclass(frozen=True)
class AgentPaths:
    """Injectable roots so tests and non-standard hosts can point sources elsewhere."""

    procfs: Path = Path("/proc")
    podinfo: Path = Path("/etc/podinfo")
    serviceaccount: Path = Path("/var/run/secrets/kubernetes.io/serviceaccount")


@dataclass
class CollectContext:
    """What a source may read: settings, roots, the agent's environment, and what the sources it
    declares it ``needs`` found this cycle (``results`` by source name; ``process``, the process
    source's typed find, with the engine's parsed settings). The runner hands each group of
    sources a fresh copy; it never changes the one it was given."""

    settings: AgentSettings
    paths: AgentPaths = field(default_factory=AgentPaths)
    process: ProcessInfo | None = None
    environ: Mapping[str, str] = field(default_factory=dict)
    results: Mapping[str, SourceResult] = field(default_factory=dict)


@dataclass
class SourceResult:
    state: SourceState
    message: str = ""
    facts: list[Fact] = field(default_factory=list)
    observations: list[Observation] = field(default_factory=list)
    process: ProcessInfo | None = None  # only the process source sets this

    @classmethod
    def ok(
        cls, facts: list[Fact], observations: list[Observation] | None = None, message: str = ""
    ) -> SourceResult:
        return cls(SourceState.OK, message, facts, observations or [])

    @classmethod
    def unavailable(cls, message: str) -> SourceResult:
        return cls(SourceState.UNAVAILABLE, message)

    @classmethod
    def error(
        cls, message: str, facts: list[Fact] | None = None, observations: list[Observation] | None = None
    ) -> SourceResult:
        """A failure; facts and observations read before it still count (a partial failure)."""
        return cls(SourceState.ERROR, message, facts or [], observations or [])


class Source(Protocol):
    """A fact source. It may declare ``needs: tuple[str, ...]``, the names of the sources whose
    results it reads from the context (see :func:`needs_of`); the runner orders by them."""

    name: str

    async def collect(self, ctx: CollectContext) -> SourceResult: ...


def needs_of(source: Source) -> tuple[str, ...]:
    """The sources ``source`` declares it reads (its ``needs``); none when it declares none."""
    needs = getattr(source, "needs", ())
    return tuple(needs)


class FactBuilder:
    """Collects facts for one source, naming the source in every provenance."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.facts: list[Fact] = []

    def add(self, key: str, value: FactValue, method: str, detail: str = "") -> None:
        self.facts.append(make_fact(key, value, self.source, method, detail))
