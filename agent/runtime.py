"""The agent as one object: its sources, its context, one-shot collection and the streaming loop."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence

from agent.lifecycle import Carry, EngineState, EngineStatus, Event, Lifecycle
from agent.outbox import Outbox
from agent.settings import AgentSettings
from agent.snapshot import assemble_snapshot, run_sources
from agent.sources.base import AgentPaths, CollectContext, ProcessInfo, Source
from agent.sources.pod import pod_identity
from agent.sources.process import ProcessSource, TargetWatch
from agent.sources.registry import default_sources
from agent.stream import AgentStream, LatestSnapshot, collect_forever
from agent.transport import Transport
from skewwatch import __version__
from skewwatch.core.facts import Snapshot
from skewwatch.core.identity import PodIdentity

log = logging.getLogger(__name__)

# While a (re)started engine's sources are not all ready yet (``STARTING``), collect this often
# (at most every --interval) so that its snapshot follows its readiness, not the next tick.
STARTING_POLL_S = 1.0


class Agent:
    def __init__(
        self,
        settings: AgentSettings,
        environ: Mapping[str, str],
        paths: AgentPaths | None = None,
        sources: Sequence[Source] | None = None,
    ) -> None:
        self.settings = settings
        self.environ = dict(environ)
        self.paths = paths or AgentPaths()
        self.sources = list(sources) if sources is not None else default_sources(settings)
        self.cycles = 0
        self.carry = Carry()
        self.lifecycle = Lifecycle(settings.settle_s)
        self.process: ProcessInfo | None = None  # found by the latest collection
        tracker = next((s.tracker for s in self.sources if isinstance(s, ProcessSource)), None)
        self.watch = (
            TargetWatch(tracker, self.paths.procfs, settings, max(0.5, settings.watch_interval_s))
            if tracker is not None and settings.watch_interval_s > 0
            else None
        )
        self.wakeups = 0  # collections the watch brought forward

    async def collect(self) -> Snapshot:
        """One collection cycle over every source (each in a fresh context)."""
        ctx = CollectContext(settings=self.settings, paths=self.paths, environ=self.environ)
        collected_at = time.time()
        collected = await run_sources(
            self.sources, ctx, self.settings.source_timeout_s, self.carry, collected_at
        )
        self.process = collected.process
        self.cycles += 1
        return assemble_snapshot(collected, ctx, collected_at)

    def step(self, snapshot: Snapshot) -> tuple[Snapshot | None, EngineStatus, list[Event]]:
        """What a collection means: a configuration to publish or not, the engine state, events."""
        before = self.lifecycle.status
        step = self.lifecycle.step(snapshot, self.process, time.time())
        for e in step.events:
            log.info("%s (start time %s -> %s)", e.message, e.old_start_time, e.new_start_time)
        if before is None or before.state is not step.status.state:
            log.info(
                "engine %s%s",
                step.status.state.value,
                f": {step.status.message}" if step.status.message else "",
            )
        return step.snapshot, step.status, step.events

    def identity(self, snapshot: Snapshot | None = None) -> PodIdentity:
        """Who this agent speaks for; the workload the pod source resolved wins when there is one.

        The downward API gives namespace and pod at start; only a collection knows the workload the
        Kubernetes API names (Deployment via its ReplicaSet, LeaderWorkerSet, KServe…).
        """
        identity = pod_identity(self.environ, self.paths.podinfo).spoken_by(
            self.settings.agent_id or "", __version__
        )
        resolved = snapshot.facts.get("orchestration.workload") if snapshot is not None else None
        if resolved is not None and isinstance(resolved.value, str) and resolved.value:
            source = "k8s" if resolved.provenance.method == "k8s" else identity.workload_source
            identity = identity.with_workload(resolved.value, source)
        return identity

    async def pause(self, seconds: float) -> None:
        """Wait for the next tick, or less: until the engine ended or was replaced (the watch,
        every ``watch_interval_s``), or the next start-up poll while the engine is starting."""
        watch = self.watch
        if watch is None:
            await asyncio.sleep(seconds)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        status = self.lifecycle.status
        if status is not None and status.state is EngineState.STARTING:
            deadline = min(deadline, loop.time() + STARTING_POLL_S)
        step = self.settings.watch_interval_s
        while (left := deadline - loop.time()) > 0:
            await asyncio.sleep(min(step, left))
            if deadline - loop.time() <= 0:
                return
            if watch.steady():  # one small read on the loop; the full check off it
                continue
            reason = await asyncio.to_thread(watch.check)
            if reason is not None:
                self.wakeups += 1
                log.info("%s: collecting now", reason)
                return

    async def collect_forever(
        self, latest: LatestSnapshot, report: Callable[[Snapshot], None] | None = None
    ) -> None:
        """Collect every interval (and at once when the engine restarts), publishing to ``latest``."""
        await collect_forever(
            self.collect, latest, self.settings.interval_s, report, self.step, pause=self.pause
        )

    async def run(self) -> None:
        """Collect forever and stream to the collector; returns only when cancelled."""
        assert self.settings.collector is not None
        # What the collector has not acknowledged (every configuration change, events,
        # observations), bounded; on disk with --outbox-file (docs/security-delivery.md).
        outbox = Outbox(
            self.settings.outbox_max_messages, self.settings.outbox_max_bytes, self.settings.outbox_file
        )
        latest = LatestSnapshot(outbox)
        # TLS, client certificate and token read from their files at every (re)connect.
        transport = Transport.from_settings(self.settings)
        stream = AgentStream(
            self.settings.collector,
            self.identity,
            latest,
            self.settings.interval_s,
            connect=transport.connect,
        )

        last: dict[str, object] = {}

        def report(snapshot: Snapshot) -> None:
            # On change only: a steady agent is quiet.
            states = ", ".join(f"{n}={s.state.value}" for n, s in sorted(snapshot.sources.items()))
            now = {"fingerprint": snapshot.fingerprint.overall, "states": states}
            if now != last:
                last.update(now)
                log.info(
                    "collected %d facts, fingerprint %s (%s)",
                    len(snapshot.facts),
                    snapshot.fingerprint.overall[:12],
                    states,
                )

        tasks = [
            asyncio.create_task(self.collect_forever(latest, report)),
            asyncio.create_task(stream.run_forever()),
        ]
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
