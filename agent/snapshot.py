"""The collection runner: calls every source with a timeout and assembles one snapshot.

Sources run in the order their declared ``needs`` give (:func:`order_sources`, a topological order
in groups): ``process`` and ``pod`` need nothing and run first; the model-files, NVML and runtime-
metrics sources need ``process`` and run next, concurrently, with its result (the engine's parsed
settings: model request, metrics URL, environment) in a fresh context. One broken or slow source
never stops the others: its failure becomes its status. When two sources give the same key, the
effective value wins by provenance: what the runtime reports beats files, hardware and the cluster,
which beat args and env, which beat defaults. After the merge, the engine's rules for settings left
to ``auto`` (``agent.engines.effective``) resolve them from the other sources' facts (``--dtype
auto`` from ``model.config.torch_dtype``), and every fact's provenance names what it follows from
(``agent.engines.links``), so the collector can tell a cause from its consequences.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from agent.bounds import bound_snapshot
from agent.engines import launched_engine
from agent.engines.effective import derive_effective
from agent.engines.links import link_inputs
from agent.lifecycle import Carry
from agent.sources.base import CollectContext, ProcessInfo, Source, SourceResult, needs_of
from skewwatch.core.facts import Fact, Observation, Snapshot, SourceStatus
from skewwatch.core.fingerprint import fingerprint_facts
from skewwatch.redact import redact_collected

log = logging.getLogger(__name__)


class SourceOrderError(ValueError):
    """The sources' declared needs name no source, or go round in a cycle."""


# Higher wins when two sources report the same key.
METHOD_PRECEDENCE: dict[str, int] = {
    "default": 0,
    "derived": 1,
    "env": 2,
    "arg": 3,
    "k8s": 4,
    "file": 5,
    "nvml": 5,
    "runtime-reported": 6,
}


async def run_source(source: Source, ctx: CollectContext, timeout_s: float) -> tuple[SourceResult, float]:
    """Run one source under a timeout; any failure becomes an error result, never an exception."""
    started = time.monotonic()
    try:
        result = await asyncio.wait_for(source.collect(ctx), timeout=timeout_s)
    except TimeoutError:
        result = SourceResult.error(f"timed out after {timeout_s:g} s")
    except asyncio.CancelledError:
        raise
    except Exception as e:  # a source bug must not stop the other sources
        log.exception("source %s failed", source.name)
        result = SourceResult.error(f"{type(e).__name__}: {e}")
    return result, time.monotonic() - started


def merge_facts(results: Sequence[SourceResult]) -> dict[str, Fact]:
    merged: dict[str, Fact] = {}
    for result in results:
        for fact in result.facts:
            current = merged.get(fact.key)
            if current is None or METHOD_PRECEDENCE.get(fact.provenance.method, 0) > METHOD_PRECEDENCE.get(
                current.provenance.method, 0
            ):
                merged[fact.key] = fact
    return merged


def order_sources(sources: Sequence[Source], provided: Iterable[str] = ()) -> list[list[Source]]:
    """Groups to run one after another, each source after every source it needs (Kahn's order,
    the list's order within a group). ``provided``: names whose results the context already
    holds. SourceOrderError on a need nothing provides, or on a cycle."""
    names = {s.name for s in sources}
    given = set(provided) - names
    for source in sources:
        unknown = [n for n in needs_of(source) if n not in names and n not in given]
        if unknown:
            raise SourceOrderError(f"source {source.name} needs {', '.join(unknown)}: no such source")
    done: set[str] = set(given)
    left = list(sources)
    groups: list[list[Source]] = []
    while left:
        ready = [s for s in left if all(n in done for n in needs_of(s))]
        if not ready:
            cycle = ", ".join(f"{s.name} needs {'/'.join(needs_of(s))}" for s in left)
            raise SourceOrderError(f"the sources' needs go round in a cycle: {cycle}")
        groups.append(ready)
        done.update(s.name for s in ready)
        left = [s for s in left if s not in ready]
    return groups


@dataclass
class Collected:
    """What one cycle's sources returned: results (carried facts in) and statuses by name."""

    results: dict[str, SourceResult] = field(default_factory=dict)
    statuses: dict[str, SourceStatus] = field(default_factory=dict)
    process: ProcessInfo | None = None  # the process source's find, as it returned it


async def run_sources(
    sources: Sequence[Source],
    ctx: CollectContext,
    timeout_s: float,
    carry: Carry | None = None,
    collected_at: float | None = None,
) -> Collected:
    """Every source once, in the order of their needs; each group gets a context holding what
    the groups before it found. ``ctx`` itself is not changed."""
    collected_at = time.time() if collected_at is None else collected_at
    provided = set(ctx.results) | ({"process"} if ctx.process is not None else set())
    out = Collected(process=ctx.process)
    for group in order_sources(sources, provided):
        view = replace(ctx, process=out.process, results={**ctx.results, **out.results})
        outcomes = await asyncio.gather(*(run_source(s, view, timeout_s) for s in group))
        for source, (result, elapsed) in zip(group, outcomes, strict=True):
            out.statuses[source.name] = SourceStatus(source.name, result.state, result.message, elapsed)
            out.results[source.name] = (
                result if carry is None else carry.apply(source.name, result, collected_at)
            )
            if result.process is not None:
                out.process = result.process
    return out


def assemble_snapshot(collected: Collected, ctx: CollectContext, collected_at: float) -> Snapshot:
    """One snapshot from a cycle's results: merged, derived, linked, redacted and bounded."""
    results = list(collected.results.values())
    facts = merge_facts(results)
    for fact in derive_effective(facts):
        facts[fact.key] = fact
    engine = facts.get("runtime.engine")
    launcher = facts.get("runtime.launcher")
    # A Dynamo worker's own spellings (dynamo.trtllm's --kv-block-size) link as its launcher reads them.
    spec = launched_engine(
        str(engine.value) if engine is not None else "",
        str(launcher.value) if launcher is not None and isinstance(launcher.value, str) else None,
    )
    facts = link_inputs(facts, spec)
    # One redaction pass over every fact and message, whatever its source (skewwatch.redact).
    facts, statuses = redact_collected(facts, collected.statuses, ctx.settings.redaction_salt)
    # Within what the collector accepts (agent.bounds): the excess is dropped and said.
    facts, statuses = bound_snapshot(facts, statuses)
    observations: dict[str, Observation] = {}
    for result in results:
        for obs in result.observations:
            observations[obs.name] = obs
    return Snapshot(
        facts=facts,
        sources=statuses,
        fingerprint=fingerprint_facts(facts.values()),
        collected_at=collected_at,
        observations=observations,
    )


async def collect_snapshot(
    sources: Sequence[Source], ctx: CollectContext, timeout_s: float, carry: Carry | None = None
) -> Snapshot:
    """Run all sources and build a snapshot with per-source status and fingerprints.

    With ``carry``, a source that is not ok has the facts of its last good collection carried
    in, marked unknown since then (``agent.lifecycle``); its status stays what it is now.
    """
    collected_at = time.time()
    return assemble_snapshot(
        await run_sources(sources, ctx, timeout_s, carry, collected_at), ctx, collected_at
    )
