"""The collection runner: calls every source with a timeout and assembles one snapshot.

Sources run in two phases: ``process`` and ``pod`` first (they find the inference process and
the pod identity), then the rest concurrently with the process in the context (the model dir,
metrics URL and visible GPUs come from it). One broken or slow source never stops the others:
its failure becomes its status. When two sources give the same key, the effective value wins by
provenance: what the runtime reports beats files, hardware and the cluster, which beat args and
env, which beat defaults. After the merge, the engine's rules for settings left to ``auto``
(``agent.engines.effective``) resolve them from the other sources' facts (``--dtype auto`` from
``model.config.torch_dtype``), and every fact's provenance names what it follows from
(``agent.engines.links``), so the collector can tell a cause from its consequences.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from agent.bounds import bound_snapshot
from agent.engines import engine_named
from agent.engines.effective import derive_effective
from agent.engines.links import link_inputs
from agent.lifecycle import Carry
from agent.redact import redact_collected
from agent.sources.base import CollectContext, Source, SourceResult
from skewwatch.core.facts import Fact, Observation, Snapshot, SourceStatus
from skewwatch.core.fingerprint import fingerprint_facts

log = logging.getLogger(__name__)

FIRST_PHASE = ("process", "pod")

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


async def collect_snapshot(
    sources: Sequence[Source], ctx: CollectContext, timeout_s: float, carry: Carry | None = None
) -> Snapshot:
    """Run all sources and build a snapshot with per-source status and fingerprints.

    With ``carry``, a source that is not ok has the facts of its last good collection carried
    in, marked unknown since then (``agent.lifecycle``); its status stays what it is now.
    """
    collected_at = time.time()
    first = [s for s in sources if s.name in FIRST_PHASE]
    rest = [s for s in sources if s.name not in FIRST_PHASE]
    statuses: dict[str, SourceStatus] = {}
    results: list[SourceResult] = []

    async def phase(group: Sequence[Source]) -> None:
        outcomes = await asyncio.gather(*(run_source(s, ctx, timeout_s) for s in group))
        for source, (result, elapsed) in zip(group, outcomes, strict=True):
            statuses[source.name] = SourceStatus(source.name, result.state, result.message, elapsed)
            results.append(result if carry is None else carry.apply(source.name, result, collected_at))
            if result.process is not None:
                ctx.process = result.process

    await phase(first)
    await phase(rest)
    facts = merge_facts(results)
    for fact in derive_effective(facts):
        facts[fact.key] = fact
    engine = facts.get("runtime.engine")
    facts = link_inputs(facts, engine_named(str(engine.value) if engine is not None else ""))
    # One redaction pass over every fact and message, whatever its source (agent.redact).
    facts, statuses = redact_collected(facts, statuses, ctx.settings.redaction_salt)
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
