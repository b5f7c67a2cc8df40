"""Evaluation on ingest: runs the pure drift engine for a workload whenever its data changes.

``DriftService.notify(workload, reason)`` is called by the ingest session after a message is
committed. A snapshot schedules the workload at once; observations at most once per
``observation_interval_s`` per workload (performance moves slowly and arrives every agent
interval); a heartbeat only while the workload has pending findings (so a debounce counted in
reports can complete). Scheduled workloads are coalesced and evaluated by one worker task, in
arrival order, so a burst of snapshots from one workload's replicas costs one evaluation: once
woken, the worker waits ``coalesce_s`` for the rest of the burst, then evaluates each workload
marked meanwhile once (a rollout of 100 replicas costs a few evaluations, not 100, and each
evaluation loads every replica).

A tick (``tick_s``) reloads the intents directory (a change re-evaluates every workload),
re-evaluates workloads whose pending findings wait on a debounce in seconds, and promotes
baselines automatically: a workload with no baseline whose majority configuration has been
stable for ``baseline_stable_s`` with no open finding gets one (origin ``auto``).

With the cluster watch on (``cluster``: ``ClusterState``), each replica is evaluated with its
workload's cluster facts joined (``merge_cluster``: the autoscaler, Services, Ingresses, mounted
ConfigMaps; the agent's own facts win), so intents, baselines and the queries judge them too. An
InferencePool's id (``namespace/InferencePool/name``, scheduled by the watch when the pool
changes) is evaluated as a pseudo-workload: the live pods its selector matches, of whatever
workload, compared for homogeneity (``collector.peers.pools``); a member workload's evaluation
schedules its pools again only when what they judge of its pods changed. A pool has no baseline
and is never promoted one.

Several collectors on one store (PostgreSQL; ``Ownership``): a workload is evaluated only by the
collector that owns it. The others hand their commits of it over (the owner schedules it as if
it had received them), see the intents another collector stored on their tick, and take over
the workloads of a collector that died within ``claim_interval_s``. One owner at a time means
no duplicate findings, no debounce counted twice and no flapping between two evaluations.

Failures are logged and never stop the worker: evaluation is derived data, re-done on the next
change, and nothing stored is touched by a failed evaluation (its writes are one transaction).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from collector.baseline.model import record as record_baseline
from collector.domain.baseline import Baseline, BaselineError
from collector.domain.cluster import CLUSTER_SOURCE, PoolMembers, merge_cluster
from collector.domain.identity import split_workload, workload_id
from collector.domain.model import ChangeKind, Replica, Status
from collector.domain.records import ReplicaRecord
from collector.domain.replicas import config_facts, majority_group
from collector.drift.engine import (
    Debounce,
    Evaluation,
    PoolInput,
    WorkloadInput,
    evaluate,
    evaluate_pool,
    reconcile,
)
from collector.errors import CollectorError, StoreError
from collector.intent.directory import IntentRegistry
from collector.intent.model import parse_documents
from collector.peers.pools import POOL_HOMOGENEOUS_KEYS, PoolPod, labels_of, select_pods
from collector.service.cluster import ClusterState
from collector.service.events import NO_EVENTS, ServiceEvents
from collector.service.ports import Ownership
from collector.store.base import EvaluationStore
from skewwatch.core.fingerprint import canonical, fingerprint_values
from skewwatch.core.identity import PodIdentity

log = logging.getLogger(__name__)

POOL_KIND = "InferencePool"  # the kind of a pool id (namespace/InferencePool/name): never a pod's owner


@dataclass(frozen=True)
class DriftSettings:
    debounce: Debounce = field(default_factory=Debounce)
    replica_stale_s: float = 300.0  # a pod not heard from for this long is no longer a replica
    # Windows loaded per replica: enough that a short agent interval still reaches the request
    # counts latency quantiles are judged on (collector.baseline.model PERF_METRICS).
    observation_windows: int = 60
    observation_interval_s: float = 5.0
    tick_s: float = 2.0
    baseline_stable_s: float | None = 600.0  # None: never promote automatically
    # Several collectors on one store: how often one looks for workloads nobody owns.
    claim_interval_s: float = 10.0
    # How long the worker lets changes gather before it evaluates what they touched (0: at once).
    coalesce_s: float = 0.0


def workload_of(identity: PodIdentity) -> str:
    """The workload id ``namespace/kind/name``; a pod without one stands alone as ``ns/Pod/name``."""
    return workload_id(identity.namespace, identity.pod, identity.workload)


def to_replica(rec: ReplicaRecord) -> Replica:
    p = rec.pod
    cur = p.current
    return Replica(
        pod=p.identity.pod,
        facts=cur.facts if cur else {},
        provenance=cur.provenance if cur else {},
        sources=cur.sources if cur else {},
        fingerprint=cur.fingerprint.overall if cur else "",
        first_seen=p.first_seen,
        last_seen=p.last_seen,
        observations=tuple(o.items for o in rec.observations),
        snapshot_id=p.current_snapshot_id,
    )


class DriftService:
    def __init__(
        self,
        store: EvaluationStore,
        registry: IntentRegistry,
        settings: DriftSettings = DriftSettings(),
        clock: Callable[[], float] = time.time,
        events: ServiceEvents = NO_EVENTS,
        *,
        ownership: Ownership | None = None,
        cluster: ClusterState | None = None,
    ) -> None:
        self.store = store
        # What the Kubernetes API says (collector.cluster): joined to each replica, and the
        # InferencePools whose pods are judged for homogeneity.
        self.cluster = cluster
        self._pool_ids: set[str] = set()  # pools evaluated and not yet settled after they went away
        # workload -> (what pools see of its live pods, the pools that selected any of them)
        self._pool_view: dict[str, tuple[str, frozenset[str]]] = {}
        self.events = events
        # Several collectors on one store: evaluate only the workloads this one owns.
        self.ownership = ownership
        self.handed_over = 0
        self._last_claim = -1e18
        self._intents_seen: tuple[tuple[str, str, str], ...] | None = None
        self.registry = registry
        self.settings = settings
        self.clock = clock
        self._dirty: dict[str, None] = {}
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._last_obs_eval: dict[str, float] = {}
        self._pending: set[str] = set()
        self._active: set[str] = set()  # workloads with pending or open findings
        self._last_gone_check = 0.0
        self._stable: dict[str, tuple[str, float]] = {}
        self._known: set[str] = set()
        self.evaluations = 0
        self.failures = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._startup: tuple[int, float] | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        await self.load_api_intents()
        self.registry.poll()
        if self.ownership is not None:
            self.ownership.listen(self._handed_over)
        for brief in await self.store.pod_briefs():
            self._known.add(workload_id(brief.key.namespace, brief.key.pod, brief.workload))
        self._tasks = [
            _guarded(self._worker(), "drift evaluation worker"),
            _guarded(self._ticker(), "drift tick"),
        ]
        for w in sorted(self._known):
            self._schedule(w)
        self._startup = (len(self._known), time.monotonic())

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t

    async def load_api_intents(self) -> bool:
        """Load the intents posted through the API (any collector's); True when they changed."""
        records = await self.store.list_intents()
        seen = tuple(sorted((r.kind, r.name, r.body) for r in records))
        if seen == self._intents_seen:
            return False
        self._intents_seen = seen
        intents = []
        for rec in records:
            try:
                intents.extend(parse_documents(rec.body, f"api:{rec.kind}/{rec.name}"))
            except CollectorError as e:
                log.error("stored intent %s/%s no longer parses: %s", rec.kind, rec.name, e)
        self.registry.set_api(intents)
        return True

    # -- scheduling ----------------------------------------------------------------------------

    def notify(self, identity: PodIdentity, reason: str) -> None:
        workload = workload_of(identity)
        self._known.add(workload)
        if reason == "observations":
            now = self.clock()
            if now - self._last_obs_eval.get(workload, 0.0) < self.settings.observation_interval_s:
                return
            self._last_obs_eval[workload] = now
        elif reason == "heartbeat" and workload not in self._pending:
            return
        self._schedule(workload)

    def _handed_over(self, workload: str) -> None:
        """Another collector stored a change of a workload this one owns."""
        self._known.add(workload)
        self._schedule(workload)

    def schedule(self, workload: str) -> None:
        """Evaluate ``workload`` again soon (its baseline or intents changed through the API)."""
        self._schedule(workload)

    def _schedule(self, workload: str) -> None:
        self._dirty[workload] = None
        self._idle.clear()
        self._wake.set()

    def schedule_all(self) -> None:
        for w in sorted(self._known):
            self._schedule(w)

    async def settled(self, timeout_s: float = 10.0) -> None:
        """Wait until every scheduled evaluation has run (tests, benchmarks)."""
        await asyncio.wait_for(self._idle.wait(), timeout_s)

    async def _worker(self) -> None:
        while True:
            await self._wake.wait()
            if self.settings.coalesce_s > 0:
                # Let the rest of a burst arrive: the replicas of a rolling workload report within
                # moments of each other, and each evaluation loads every replica of it.
                await asyncio.sleep(self.settings.coalesce_s)
            self._wake.clear()
            while self._dirty:
                workload = next(iter(self._dirty))
                del self._dirty[workload]
                try:
                    if self.ownership is not None and not await self._own([workload]):
                        await self.ownership.hand_over(workload)
                        self.handed_over += 1
                        continue
                    await self.evaluate_and_store(workload)
                except (StoreError, CollectorError, ValueError, KeyError, TypeError) as e:
                    self.failures += 1
                    if isinstance(e, StoreError):
                        self.events.store_failed("evaluation")
                    log.error("drift evaluation of %s failed (retried on its next change): %s", workload, e)
            self._idle.set()
            if self._startup is not None:
                count, began = self._startup
                self._startup = None
                log.info("initial evaluation of %d workloads done in %.2f s", count, time.monotonic() - began)

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.settings.tick_s)
            try:
                await self.tick()
            except (StoreError, CollectorError, OSError) as e:
                log.error("drift tick failed: %s", e)

    async def tick(self) -> None:
        if self.ownership is not None:
            await self._shared_tick()
        if await asyncio.to_thread(self.registry.poll):
            self.schedule_all()
            return
        for w in sorted(self._pending):
            self._schedule(w)
        # Replicas go stale without a message: re-evaluate workloads with findings now and then,
        # so the findings of replicas that went away resolve as "gone".
        now = self.clock()
        if now - self._last_gone_check >= min(60.0, self.settings.replica_stale_s / 4):
            self._last_gone_check = now
            for w in sorted(self._active):
                self._schedule(w)
        stable_s = self.settings.baseline_stable_s
        if stable_s is not None:
            now = self.clock()
            for w, (_sig, since) in list(self._stable.items()):
                if now - since >= stable_s:
                    self._schedule(w)

    async def _own(self, workloads: list[str]) -> set[str]:
        """Those of ``workloads`` this collector owns, taking the free ones (logged)."""
        assert self.ownership is not None
        before = self.ownership.owned()
        owned = await self.ownership.own(workloads)
        for w in sorted(owned - before):
            log.info("evaluating %s: no other collector owns it", w)
        return owned

    async def _shared_tick(self) -> None:
        """With other collectors on the store: intents another one stored, and workloads whose
        owner died (its locks went with its session) or that only another one has heard of."""
        assert self.ownership is not None
        await self.ownership.check()
        if await self.load_api_intents():
            self.schedule_all()
        now = self.clock()
        if now - self._last_claim < self.settings.claim_interval_s:
            return
        self._last_claim = now
        for brief in await self.store.pod_briefs():
            self._known.add(workload_id(brief.key.namespace, brief.key.pod, brief.workload))
        unowned = sorted(self._known - self.ownership.owned())
        if unowned:
            for w in sorted(await self._own(unowned)):
                self._schedule(w)
        # Findings, pending debounces and promotions of workloads another collector owns are its.
        mine = self.ownership.owned()
        self._pending &= mine
        self._active &= mine
        for w in list(self._stable):
            if w not in mine:
                del self._stable[w]

    # -- evaluation ----------------------------------------------------------------------------

    async def replicas(self, workload: str) -> list[Replica]:
        """The workload's live replicas, each with the workload's cluster facts joined (the agent's
        own facts win): intent, baseline, peers and the queries all see them."""
        since = self.clock() - self.settings.replica_stale_s
        recs = await self.store.workload_replicas(workload, since, self.settings.observation_windows)
        facts = self.cluster.facts(workload) if self.cluster is not None else None
        return [merge_cluster(to_replica(r), facts) for r in recs]

    def is_pool(self, workload: str) -> bool:
        """Is this id an inference pool's (the watch reports it, it was evaluated as one before it
        went away, or its kind is InferencePool, which owns no pods)?"""
        return (
            workload in self._pool_ids
            or split_workload(workload)[1] == POOL_KIND
            or (self.cluster is not None and self.cluster.pool(workload) is not None)
        )

    async def pool_pods(self, pool: PoolMembers) -> list[PoolPod]:
        """The live pods of the pool's namespace that its selector matches, whatever workload owns
        them (no observation windows: a pool is judged on configuration only)."""
        since = self.clock() - self.settings.replica_stale_s
        members = sorted(
            {
                workload_id(b.key.namespace, b.key.pod, b.workload)
                for b in await self.store.pod_briefs()
                if b.key.namespace == pool.namespace and b.last_seen >= since
            }
        )
        candidates = []
        for w in members:
            if w == pool.pool:
                continue  # a pool id is never a workload of pods
            candidates += [PoolPod(w, to_replica(r)) for r in await self.store.workload_replicas(w, since, 0)]
        return select_pods(pool, candidates)

    async def _evaluate_pool(self, pool_id: str) -> tuple[Evaluation, list[Replica], Baseline | None]:
        pool = self.cluster.pool(pool_id) if self.cluster is not None else None
        # A pool that went away has no pods: its findings resolve as gone.
        pods = await self.pool_pods(pool) if pool is not None else []
        self._pool_ids.add(pool_id)
        inputs = PoolInput(pool_id, pods)
        ev = await asyncio.to_thread(evaluate_pool, inputs) if len(pods) > 1 else evaluate_pool(inputs)
        return ev, [p.replica for p in pods], None

    async def evaluate_only(self, workload: str) -> tuple[Evaluation, list[Replica], Baseline | None]:
        if self.is_pool(workload):
            return await self._evaluate_pool(workload)
        replicas = await self.replicas(workload)
        baseline = await self.store.latest_baseline(workload)
        inputs = WorkloadInput(workload, replicas, self.registry.intents(), baseline)
        # The engine is pure and takes tens of milliseconds for a workload of many replicas: on a
        # thread, the event loop goes on acknowledging agents meanwhile (the GIL is handed over
        # every few milliseconds) instead of holding every ack until the evaluation ends.
        ev = await asyncio.to_thread(evaluate, inputs) if len(replicas) > 1 else evaluate(inputs)
        return ev, replicas, baseline

    async def evaluate_and_store(self, workload: str) -> Evaluation:
        began = time.monotonic()
        ev = await self._evaluate_and_store(workload)
        self.events.evaluated(time.monotonic() - began)
        return ev

    async def _evaluate_and_store(self, workload: str) -> Evaluation:
        now = self.clock()
        ev, replicas, baseline = await self.evaluate_only(workload)
        previous = await self.store.active_findings(workload)
        changes = reconcile(workload, previous, ev, now, self.settings.debounce)
        written = await self.store.apply_findings(changes) if changes else []
        self.evaluations += 1
        for ch in changes:
            if ch.kind in (ChangeKind.OPENED, ChangeKind.RESOLVED):
                f = ch.finding
                if ch.kind is ChangeKind.OPENED:
                    self.events.finding_opened(f)
                else:
                    self.events.finding_resolved(f)
                log.info(
                    "finding %s on %s: %s [%s/%s] %s",
                    *(ch.kind.value, workload, f.key, f.reference, f.severity, f.message),
                )  # fmt: skip
        if any(f.status is Status.PENDING for f in written):
            self._pending.add(workload)
        else:
            self._pending.discard(workload)
        ended = {ch.finding.id for ch in changes if ch.kind in (ChangeKind.RESOLVED, ChangeKind.DROPPED)}
        if {f.id for f in previous} - ended or any(f.status is not Status.RESOLVED for f in written):
            self._active.add(workload)
        else:
            self._active.discard(workload)
        if self.is_pool(workload):
            # A pool has no baseline to promote; one that went away is forgotten once settled.
            if (
                workload not in self._active
                and self.cluster is not None
                and self.cluster.pool(workload) is None
            ):
                self._pool_ids.discard(workload)
            return ev
        await self._maybe_promote(
            workload, replicas, baseline, any(f.status is Status.OPEN for f in written), now
        )
        self._touch_pools(workload, replicas)
        return ev

    def _touch_pools(self, workload: str, replicas: list[Replica]) -> None:
        """Schedule the pools this workload's pods are (or were) in, when what a pool judges of
        them changed: which pods are live, their labels, their values of the pool's keys. An
        evaluation that changed none of it (observations, heartbeats) costs the pools nothing, and
        the worker coalesces a burst of member evaluations into one of each pool."""
        if self.cluster is None:
            return
        pools = self.cluster.pools(split_workload(workload)[0])
        old = self._pool_view.get(workload)
        if not pools and old is None:
            return
        view = canonical(
            [
                [r.pod, labels_of(r), [r.facts.get(k) for k in POOL_HOMOGENEOUS_KEYS]]
                for r in sorted(replicas, key=lambda r: r.pod)
            ]
        )
        if old is not None and old[0] == view:
            return
        selecting = frozenset(p.pool for p in pools if any(p.selects(labels_of(r)) for r in replicas))
        self._pool_view[workload] = (view, selecting)
        for pool_id in sorted(selecting | (old[1] if old else frozenset())):
            self._schedule(pool_id)

    async def _maybe_promote(
        self, workload: str, replicas: list[Replica], baseline: Baseline | None, has_open: bool, now: float
    ) -> None:
        stable_s = self.settings.baseline_stable_s
        if baseline is not None or stable_s is None or not replicas:
            self._stable.pop(workload, None)
            return
        if has_open:
            self._stable.pop(workload, None)
            return
        group = majority_group(replicas, ())
        sig = _configuration(group[0]) if group else ""
        prev = self._stable.get(workload)
        if prev is None or prev[0] != sig:
            prev = self._stable[workload] = (sig, now)
        if now - prev[1] < stable_s:
            return
        try:
            b = await self.record(
                workload, origin="auto", note=f"stable for {now - prev[1]:.0f} s with no open finding"
            )
        except BaselineError as e:
            log.info("no baseline promoted for %s: %s", workload, e)
            return
        self._stable.pop(workload, None)
        log.info("baseline auto-promoted for %s (fingerprint %s)", workload, b.fingerprint[:12])

    async def record(self, workload: str, origin: str = "manual", note: str = "") -> Baseline:
        """Record a baseline of the workload's current majority configuration and performance
        (with its cluster facts: a later change of its autoscaler or Ingress is a drift)."""
        if self.is_pool(workload):
            raise BaselineError(
                f"{workload} is an inference pool: its pods are compared with each other, not a baseline"
            )
        replicas = await self.replicas(workload)
        b = await self.store.save_baseline(record_baseline(workload, replicas, self.clock(), origin, note))
        self._stable.pop(workload, None)
        self._schedule(workload)
        return b


def _configuration(replica: Replica) -> str:
    """What must stay unchanged for an automatic baseline: the agent's fingerprint, and the
    cluster facts joined to the replica (its fingerprint does not cover those)."""
    if CLUSTER_SOURCE not in replica.sources:
        return replica.fingerprint
    return fingerprint_values(config_facts(replica.facts, ())).overall


def _guarded(coro: Any, what: str) -> asyncio.Task[None]:
    """Start a long-running task whose unexpected end is logged, not silently lost."""
    task: asyncio.Task[None] = asyncio.create_task(coro, name=what)

    def done(t: asyncio.Task[None]) -> None:
        if not t.cancelled() and t.exception() is not None:
            log.error("%s stopped: %r", what, t.exception())

    task.add_done_callback(done)
    return task
