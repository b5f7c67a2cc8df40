"""Evaluation coalesces a burst: the replicas of a rolling workload report within moments of each
other, and each evaluation loads every replica, so a burst must cost one evaluation, not one per
snapshot (real SQLite store, real DriftService)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from collector.intent.directory import IntentRegistry
from collector.service.evaluation import DriftService, DriftSettings
from collector.service.recording import Recorder
from collector.store.sqlite import SqliteStore
from skewwatch.core.identity import PodIdentity
from tests.support.collector import BASE_FACTS, make_snapshot


def pod(i: int) -> PodIdentity:
    return PodIdentity("ml", f"llm-{i}", "node", "ml/Deployment/llm", "env", f"a-{i}", "0.1.0")


async def burst(tmp_path: Path, coalesce_s: float) -> int:
    store = SqliteStore(tmp_path / f"c{coalesce_s}.db")
    await store.open()
    drift = DriftService(
        store, IntentRegistry(None), DriftSettings(baseline_stable_s=None, coalesce_s=coalesce_s)
    )
    await drift.start()
    recorder = Recorder(store, on_commit=drift.notify)
    try:
        for i in range(10):  # ten replicas report one after another, 20 ms apart
            snap = make_snapshot({**BASE_FACTS, "orchestration.pod": f"llm-{i}"})
            await recorder.hello(pod(i), 1, time.time())
            await recorder.record_snapshot(
                pod(i),
                2,
                facts={k: f.value for k, f in snap.facts.items()},
                provenance={k: f.provenance for k, f in snap.facts.items()},
                sources=snap.sources,
                fingerprint=snap.fingerprint,
                collected_at=snap.collected_at,
                received_at=time.time(),
            )
            await asyncio.sleep(0.02)  # the behaviour: a burst spread over 0.2 s
        await drift.settled()
        return drift.evaluations
    finally:
        await drift.stop()
        await recorder.close()
        await store.close()


async def test_a_burst_of_one_workload_is_one_evaluation_once_coalesced(tmp_path: Path) -> None:
    at_once = await burst(tmp_path, 0.0)
    coalesced = await burst(tmp_path, 0.5)
    assert coalesced == 1, coalesced
    assert at_once >= 5, at_once  # without coalescing, about one evaluation per snapshot
