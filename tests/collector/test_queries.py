"""The service layer's queries over a real SQLite store: each typed result, each diff mode, the
last-good walk, the pod views and the recorder's commit hook (no HTTP, no gRPC)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from collector.domain.records import FindingQuery, HeartbeatResult
from collector.drift.engine import Debounce
from collector.errors import BadRequestError, ConflictError, NotFoundError
from collector.intent.directory import IntentRegistry
from collector.intent.model import parse_documents
from collector.service.evaluation import DriftService, DriftSettings
from collector.service.pods import Pods
from collector.service.queries import DIFF_MODES, LAST_GOOD_DEPTH, DiffRequest, Queries
from collector.service.recording import Recorder
from collector.store.sqlite import SqliteStore
from skewwatch.core.facts import FactValue, Observation, SourceState, SourceStatus, make_fact
from skewwatch.core.fingerprint import fingerprint_facts
from skewwatch.core.identity import PodIdentity, PodKey

WORKLOAD = "ml/Deployment/llm"
FACTS: dict[str, FactValue] = {
    "model.id": "meta-llama/Llama-3.1-8B-Instruct",
    "runtime.engine": "vllm",
    "runtime.dtype": "float16",
    "runtime.max_model_len": 8192,
}


def identity(pod: str) -> PodIdentity:
    return PodIdentity("ml", pod, "gpu-node-1", WORKLOAD, "env", f"ml/{pod}", "0.1.0")


@dataclass
class World:
    store: SqliteStore
    drift: DriftService
    queries: Queries
    pods: Pods
    recorder: Recorder
    commits: list[tuple[str, str]]
    seq: int = 1

    async def snapshot(self, pod: str, **changes: FactValue) -> None:
        values = {**FACTS, **changes, "orchestration.pod": pod}
        fs = [make_fact(k, v, "process", "arg", f"--{k.rsplit('.', 1)[-1]}") for k, v in values.items()]
        self.seq += 1
        await self.recorder.record_snapshot(
            identity(pod),
            self.seq,
            facts={f.key: f.value for f in fs},
            provenance={f.key: f.provenance for f in fs},
            sources={"process": SourceStatus("process", SourceState.OK)},
            fingerprint=fingerprint_facts(fs),
            collected_at=time.time(),
            received_at=time.time(),
        )

    async def id_of(self, pod: str) -> int:
        rec = await self.store.get_pod(PodKey("ml", pod))
        assert rec is not None and rec.current_snapshot_id is not None
        return rec.current_snapshot_id


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    store = SqliteStore(tmp_path / "q.db")
    await store.open()
    settings = DriftSettings(debounce=Debounce(snapshots=1, seconds=0.0), baseline_stable_s=None)
    drift = DriftService(store, IntentRegistry(None), settings)
    commits: list[tuple[str, str]] = []
    recorder = Recorder(store, on_commit=lambda i, kind: commits.append((i.pod, kind)))
    w = World(store, drift, Queries(store, drift), Pods(store, drift=drift), recorder, commits)
    try:
        yield w
    finally:
        await store.close()


async def two_pods(w: World) -> tuple[int, int]:
    """llm-0: bfloat16, then float16 (current); llm-1: bfloat16. Returns llm-0's two snapshot ids."""
    for pod in ("llm-0", "llm-1"):
        await w.recorder.hello(identity(pod), 1, time.time())
    await w.snapshot("llm-0", **{"runtime.dtype": "bfloat16"})
    first = await w.id_of("llm-0")
    await w.snapshot("llm-1", **{"runtime.dtype": "bfloat16"})
    await w.snapshot("llm-0")
    return first, await w.id_of("llm-0")


async def test_recorder_calls_the_hook_after_each_commit_evaluation_depends_on(world: World) -> None:
    w = world
    await w.recorder.hello(identity("llm-0"), 1, time.time())
    assert w.commits == []  # a hello changes no configuration
    await w.snapshot("llm-0")
    rec = await w.store.get_pod(PodKey("ml", "llm-0"))
    assert rec is not None and rec.fingerprint is not None
    stale = await w.recorder.record_heartbeat(identity("llm-0"), 10, "0" * 64, time.time())
    ok = await w.recorder.record_heartbeat(identity("llm-0"), 11, rec.fingerprint, time.time())
    await w.recorder.record_observations(
        identity("llm-0"),
        12,
        items={"x": Observation("x", 1.0)},
        at=time.time(),
        window_s=10,
        received_at=time.time(),
    )
    await w.recorder.record_event(identity("llm-0"), 13, time.time(), "restart", {"message": "restarted"})
    assert (stale, ok) == (HeartbeatResult.FINGERPRINT_MISMATCH, HeartbeatResult.OK)
    # the mismatched heartbeat and the event are no commit to evaluate
    assert w.commits == [("llm-0", "snapshot"), ("llm-0", "heartbeat"), ("llm-0", "observations")]


async def test_workloads_list_and_view(world: World) -> None:
    w = world
    await two_pods(w)
    assert await w.queries.workload_ids() == {WORKLOAD}
    assert await w.queries.resolve_workload("ml/llm", "workload") == WORKLOAD
    with pytest.raises(NotFoundError):
        await w.queries.resolve_workload("ml/other", "workload")
    with pytest.raises(BadRequestError, match="NAMESPACE/NAME"):
        await w.queries.resolve_workload("ml", "workload")
    [summary] = await w.queries.workloads()
    body = summary.as_dict()
    assert body["workload"] == WORKLOAD and (body["namespace"], body["kind"], body["name"]) == (
        "ml",
        "Deployment",
        "llm",
    )
    assert (body["pods"], body["replicas"], body["replicas_live"], body["configurations"]) == (2, 2, 2, 2)
    assert body["state"] == "serving" and body["baseline_recorded_at"] is None

    view = await w.queries.workload(WORKLOAD)
    assert view.majority == {"llm-0"}  # a split: the lowest pod name's group
    assert view.representative is not None and view.representative.pod == "llm-0"
    assert view.divergent_keys == ["runtime.dtype"]
    out = view.as_dict()
    assert [r["pod"] for r in out["replicas"]] == ["llm-0", "llm-1"]
    assert [r["in_majority"] for r in out["replicas"]] == [True, False]
    assert sorted(p for c in out["configurations"] for p in c["pods"]) == ["llm-0", "llm-1"]
    assert out["facts"]["runtime.dtype"] == "float16" and out["intent"] == {"bound": [], "checks": []}
    assert out["baseline"] is None and out["state"] == "serving"


async def test_each_diff_mode(world: World) -> None:
    w = world
    first, current = await two_pods(w)
    q = w.queries

    pods = (await q.diff(WORKLOAD, DiffRequest("pods", pods=("llm-0", "llm-1")))).as_dict()
    assert pods["from"] == {"label": "pod llm-0", "snapshot_id": current}
    assert pods["to"]["label"] == "pod llm-1"
    assert [(c["key"], c["before"], c["after"]) for c in pods["changes"]] == [
        ("runtime.dtype", "float16", "bfloat16")
    ]
    with pytest.raises(NotFoundError, match="not a live replica"):
        await q.diff(WORKLOAD, DiffRequest("pods", pods=("llm-0", "nope")))

    revs = (await q.diff(WORKLOAD, DiffRequest("revisions", revisions=(first, current)))).as_dict()
    assert revs["from"] == {"label": f"snapshot {first} of ml/llm-0", "snapshot_id": first}
    assert [c["key"] for c in revs["changes"]] == ["runtime.dtype"]
    with pytest.raises(NotFoundError, match="does not exist"):
        await q.diff(WORKLOAD, DiffRequest("revisions", revisions=(first, 10**9)))

    intent = (await q.diff(WORKLOAD, DiffRequest("intent"))).as_dict()
    assert intent == {
        "workload": WORKLOAD,
        "mode": "intent",
        "from": {"label": "no intent bound"},
        "to": {"label": "2 live replicas"},
        "changes": [],
        "checks": [],
    }

    with pytest.raises(NotFoundError, match="has no baseline"):
        await q.diff(WORKLOAD, DiffRequest("baseline"))
    b = await q.record_baseline(WORKLOAD, "by the test")
    base = (await q.diff(WORKLOAD, DiffRequest("baseline"))).as_dict()
    assert base["from"] == {"label": f"baseline {b.id} (manual)", "baseline_id": b.id}
    assert base["to"] == {"label": "current configuration (pod llm-0)", "snapshot_id": current}
    assert base["changes"] == [] and "checks" not in base

    with pytest.raises(BadRequestError, match="not one of"):
        await q.diff(WORKLOAD, DiffRequest("sideways"))
    assert DIFF_MODES == ("last_good", "baseline", "intent", "revisions", "pods")


async def test_last_good_walks_back_past_rows_that_break_the_peers(world: World) -> None:
    w = world
    first, current = await two_pods(w)
    out = (await w.queries.diff(WORKLOAD, DiffRequest("last_good"))).as_dict()
    # llm-0's current float16 breaks the other replica (bfloat16); its older bfloat16 row does not
    assert out["from"]["snapshot_id"] == first
    assert out["from"]["label"] == f"last-good configuration of pod llm-0 (snapshot {first})"
    why = out["from"]["why"]
    assert (
        why.startswith(f"snapshot {first}, received ")
        and "matches the majority of the other replicas (llm-1)" in why
    )
    assert why.endswith("; 1 newer stored configuration(s) broke a check or were incomplete")
    assert out["to"] == {"label": "current configuration (pod llm-0)", "snapshot_id": current}
    assert [(c["key"], c["before"], c["after"]) for c in out["changes"]] == [
        ("runtime.dtype", "bfloat16", "float16")
    ]
    assert LAST_GOOD_DEPTH == 100


async def test_last_good_falls_back_to_the_baseline_then_to_nothing(world: World) -> None:
    w = world
    for pod in ("llm-0", "llm-1"):
        await w.recorder.hello(identity(pod), 1, time.time())
    await w.snapshot("llm-1", **{"runtime.dtype": "bfloat16"})
    await w.snapshot("llm-0")  # one row only, and it breaks the peer
    none = (await w.queries.diff(WORKLOAD, DiffRequest("last_good"))).as_dict()
    assert none["from"]["label"] == "no good configuration stored for this replica"
    assert "is complete and matches its peers" in none["from"]["why"] and none["changes"] == []
    b = await w.queries.record_baseline(WORKLOAD, "")
    # the baseline is of llm-0's float16: the peer still breaks every row, the baseline stands in
    fallback = (await w.queries.diff(WORKLOAD, DiffRequest("last_good"))).as_dict()
    assert fallback["from"]["baseline_id"] == b.id
    assert fallback["from"]["why"].endswith(f"the recorded baseline {b.id} is the last known good")


async def test_findings_page_detail_and_notes(world: World) -> None:
    w = world
    await two_pods(w)
    await w.drift.evaluate_and_store(WORKLOAD)
    await w.drift.evaluate_and_store(WORKLOAD)
    page = await w.queries.findings(FindingQuery(workload=WORKLOAD, limit=1))
    assert len(page.findings) == 1
    body = page.as_dict()
    # The only finding fills the page, and nothing is older: the cursor says so, not "maybe more".
    assert (body["next_before"], body["more"]) == (None, False)
    fid = page.findings[0].id
    everything = await w.queries.findings(FindingQuery(limit=1000))
    assert everything.as_dict()["next_before"] is None
    detail = (await w.queries.finding(fid)).as_dict()
    assert detail["id"] == fid and isinstance(detail["history"], list)
    acked = (await w.queries.ack(fid, "on it", "sre")).as_dict()
    assert acked["acknowledged"]["reason"] == "on it" and acked["acknowledged"]["by"] == "sre"
    now = w.queries.now()
    silenced = (await w.queries.silence(fid, "known", "", at=now, until=now + 60)).as_dict()
    assert silenced["silence"]["until"] == now + 60
    assert (await w.queries.unsilence(fid)).as_dict()["silence"] is None
    assert (await w.queries.unack(fid)).as_dict()["acknowledged"] is None
    with pytest.raises(NotFoundError, match="does not exist"):
        await w.queries.finding(10**9)
    with pytest.raises(NotFoundError, match="does not exist"):
        await w.queries.ack(10**9, "x", "")


async def test_baselines_and_intents(world: World) -> None:
    w = world
    await two_pods(w)
    q = w.queries
    with pytest.raises(NotFoundError, match="has no baseline"):
        await q.baseline(WORKLOAD)
    first = await q.record_baseline(WORKLOAD, "one")
    second = await q.record_baseline(WORKLOAD, "two")
    hist = (await q.baseline(WORKLOAD)).as_dict()
    assert hist["baseline"]["id"] == second.id and [b["id"] for b in hist["history"]] == [first.id]
    assert [b.id for b in await q.baselines()] == [second.id]

    doc = (
        "apiVersion: skewwatch.io/v1alpha1\nkind: SkewPolicy\nmetadata: {name: p}\n"
        "spec:\n  pins:\n    runtime:\n      tensorParallelSize: 1\n"
    )
    intents = parse_documents(doc, "test")
    await q.create_intents(intents)
    with pytest.raises(ConflictError, match="already exist"):
        await q.create_intents(intents)
    assert q.intent("SkewPolicy", "p").name == "p"
    listing = q.intents().as_dict()
    assert set(listing) == {"intents", "errors", "directory"} and listing["directory"] is None
    assert await q.put_intent(intents[0]) is False
    await q.delete_intent("SkewPolicy", "p")
    with pytest.raises(NotFoundError):
        q.intent("SkewPolicy", "p")
    with pytest.raises(NotFoundError, match="was not posted"):
        await q.delete_intent("SkewPolicy", "p")


@dataclass
class _Claim:
    def describe(self) -> str:
        return "agent 'a' (instance i)"

    def as_dict(self) -> dict[str, Any]:
        return {"agent_id": "a", "instance_id": "i", "peer": "p", "since": 1.0}


class _Conflicts:
    def as_dict(self) -> dict[str, Any]:
        return {"count": 1}


class FakeStreams:
    def __init__(self) -> None:
        self.streaming: set[PodKey] = set()
        self.forgotten: list[PodKey] = []

    def live(self, key: PodKey) -> Sequence[_Claim]:
        return [_Claim()] if key in self.streaming else []

    def conflicts(self, key: PodKey) -> _Conflicts:
        return _Conflicts()

    def forget(self, key: PodKey) -> None:
        self.forgotten.append(key)

    def readiness(self) -> dict[str, Any]:
        return {"saturated": False}


async def test_pod_views_history_and_delete(world: World) -> None:
    w = world
    first, current = await two_pods(w)
    streams = FakeStreams()
    pods = Pods(w.store, streams, drift=w.drift)
    listed = await pods.list()
    assert [v.record.identity.pod for v in listed] == ["llm-0", "llm-1"]
    assert listed[0].liveness.conflicts == {"count": 1} and listed[0].observations is None
    key = PodKey("ml", "llm-0")
    view = await pods.get(key)
    assert view.record.current_snapshot_id == current and not view.liveness.fields(view.record)["stale"]
    page = await pods.history(key, 1)
    assert [r.id for r in page.shown] == [current] and page.next_before == current
    older = await pods.history(key, 1, before=page.next_before)
    assert [r.id for r in older.shown] == [first] and older.next_before is None
    with pytest.raises(NotFoundError, match="not known"):
        await pods.get(PodKey("ml", "nope"))
    streams.streaming.add(key)
    with pytest.raises(ConflictError, match="live agent stream"):
        await pods.delete(key)
    streams.streaming.clear()
    await pods.delete(key)
    assert streams.forgotten == [key]
    with pytest.raises(NotFoundError):
        await pods.delete(key)
    assert pods.streams_readiness() == {"saturated": False}
    await pods.ping(2.0)
    # without ingest: nothing streams, and the readiness says so in the registry's shape
    bare = Pods(w.store)
    assert (await bare.list())[0].liveness.streams == []
    assert bare.streams_readiness()["saturated"] is False
