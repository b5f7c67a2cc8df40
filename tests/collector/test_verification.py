"""The verification answer ("may the incident be closed?") over real HTTP on a real collector fed
over gRPC: snapshots of ml/llm and observation windows named as the vLLM agent names them, a
baseline recorded through the API, then each way an incident is not over yet (an open finding,
acknowledged or not; load too different from the baseline's; a metric 2x worse; no baseline) and
the way it is (findings resolved, the latest windows within tolerance at comparable load). Each
answer is checked against the served OpenAPI document; the judging is the drift engine's own
(collector.baseline.model.judge_performance), so the rule here is the rule of its findings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from collector.baseline.model import record
from collector.domain.baseline import Baseline
from collector.domain.model import Replica as DomainReplica
from collector.intent.binding import Bound
from collector.service import probes
from collector.service.probes import NO_BASELINE
from tests.collector.test_drift_engine import replica
from tests.support.cli_state import FLOAT32, settle
from tests.support.collector import (
    BASE_FACTS,
    AgentStream,
    Running,
    hello_msg,
    make_snapshot,
    observations_msg,
    settings_for,
    snapshot_msg,
    started,
)
from tests.support.openapi import DOC, conforms

TIMEOUT = aiohttp.ClientTimeout(total=20)
ROUTE = "/api/v1/workloads/{namespace}/{name}/verification"
URL = "/api/v1/workloads/ml/llm/verification"
# One 15 s scrape window of a vLLM replica serving 4 requests/s (the agent's observation names:
# agent/engines/vllm.py), with the request counts the latency quantiles rest on.
GOOD: dict[str, float] = {
    "requests_per_s": 4.0,
    "requests_running": 3.0,
    "generation_tokens_per_s": 900.0,
    "ttft_seconds_p95": 0.38,
    "ttft_seconds_p99": 0.52,
    "e2e_latency_seconds_p95": 2.1,
    "e2e_latency_seconds_p99": 2.6,
    "ttft_seconds_count": 60,
    "e2e_latency_seconds_count": 60,
    "gpu_utilization_ratio": 0.82,
    "gpu_memory_used_bytes": 71.5e9,
}
METRICS = [
    "generation_tokens_per_s",
    "ttft_seconds_p95",
    "ttft_seconds_p99",
    "e2e_latency_seconds_p95",
    "e2e_latency_seconds_p99",
    "gpu_utilization_ratio",
    "gpu_memory_used_bytes",
]


@dataclass
class Replica:
    """One agent's stream and its next sequence number."""

    stream: AgentStream
    seq: int = 3

    async def send(self, msg: Any) -> None:
        await self.stream.exchange(msg)
        self.seq += 1

    async def windows(self, values: dict[str, float], n: int = 3) -> None:
        """``n`` scrape windows of ``values``: the drift engine judges the newest three."""
        for _ in range(n):
            await self.send(observations_msg(self.seq, values))

    async def snapshot(self, facts: dict[str, Any]) -> None:
        await self.send(
            snapshot_msg(self.seq, make_snapshot({**BASE_FACTS, "orchestration.pod": "llm-0", **facts}))
        )


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[tuple[Running, aiohttp.ClientSession, Replica]]:
    settings = settings_for(tmp_path, shutdown_grace_s=0.5)  # no automatic baseline within a test
    async with (
        started(settings, tmp_path) as running,
        aiohttp.ClientSession(base_url=running.http, timeout=TIMEOUT) as http,
    ):
        s = running.stream()
        await s.exchange(hello_msg(1, pod="llm-0"))
        await s.exchange(snapshot_msg(2, make_snapshot({**BASE_FACTS, "orchestration.pod": "llm-0"})))
        replica = Replica(s)
        await replica.windows(GOOD)
        await settle(running)
        yield running, http, replica


async def verification(http: aiohttp.ClientSession) -> dict[str, Any]:
    async with http.get(URL) as r:
        body: dict[str, Any] = await r.json()
        assert r.status == 200, body
    conforms(body, DOC["paths"][ROUTE]["get"]["responses"]["200"]["content"]["application/json"]["schema"])
    assert body["may_close"] is (body["reasons"] == [])
    return body


async def record_baseline(http: aiohttp.ClientSession) -> dict[str, Any]:
    async with http.post("/api/v1/baselines/ml/llm") as r:
        body: dict[str, Any] = await r.json()
        assert r.status == 201, body
    recorded: dict[str, Any] = body["baseline"]
    return recorded


def by_metric(answer: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["metric"]: m for m in answer["performance"]}


async def test_without_a_baseline_the_incident_may_not_be_closed(rig: Any) -> None:
    _, http, _ = rig
    answer = await verification(http)
    assert answer["workload"] == "ml/Deployment/llm"
    assert answer["may_close"] is False and answer["reasons"] == [NO_BASELINE]
    assert answer["baseline"] is None and answer["performance"] == [] and answer["latest_probe"] is None
    assert answer["findings"] == {"open": 0, "pending": 0, "items": []}
    async with http.get("/api/v1/workloads/ml/ghost/verification") as r:
        assert r.status == 404


async def test_an_open_finding_blocks_until_it_is_resolved_then_it_may_close(rig: Any) -> None:
    running, http, replica = rig
    baseline = await record_baseline(http)
    await replica.snapshot(FLOAT32)  # the incident: restarted with --dtype float32
    await replica.windows(GOOD)
    await settle(running)
    answer = await verification(http)
    [item] = [i for i in answer["findings"]["items"] if i["key"] == "runtime.dtype"]
    assert item["status"] == "open" and item["severity"] == "high"
    assert answer["findings"]["open"] == len(answer["findings"]["items"]) >= 1
    assert answer["may_close"] is False
    assert answer["reasons"][0].startswith(f"{answer['findings']['open']} open finding")
    assert f"#{item['id']} runtime.dtype (high)" in answer["reasons"][0]
    # Acknowledged is still open, and the reason says so.
    async with http.post(f"/api/v1/findings/{item['id']}/ack", json={"reason": "rolling back"}) as r:
        assert r.status == 200, await r.text()
    answer = await verification(http)
    assert f"#{item['id']} runtime.dtype (high, acknowledged: still open)" in answer["reasons"][0]
    assert answer["may_close"] is False
    # Silenced is still open too: it only counts apart.
    async with http.post(
        f"/api/v1/findings/{item['id']}/silence", json={"reason": "known", "for": "1h"}
    ) as r:
        assert r.status == 200, await r.text()
    answer = await verification(http)
    assert f"#{item['id']} runtime.dtype (high, silenced: still open)" in answer["reasons"][0]
    assert answer["may_close"] is False and answer["findings"]["open"] >= 1
    # The fix: the configuration back as recorded, the latest windows as before.
    await replica.snapshot({})
    await replica.windows(GOOD)
    await settle(running)
    answer = await verification(http)
    assert answer["reasons"] == [] and answer["may_close"] is True, answer["reasons"]
    assert answer["findings"] == {"open": 0, "pending": 0, "items": []}
    assert answer["baseline"] == {
        "id": baseline["id"],
        "recorded_at": baseline["recorded_at"],
        "origin": "manual",
    }
    metrics = by_metric(answer)
    assert list(metrics) == METRICS  # every metric the baseline holds, GPU utilisation and memory too
    for name, m in metrics.items():
        assert m["comparable"] is True and m["within"] is True, m
        assert m["baseline"] == pytest.approx(GOOD[name]) and m["ratio"] == pytest.approx(1.0), m
        assert m["why"].startswith("within tolerance")
    assert metrics["ttft_seconds_p95"]["tolerance"] == {"max_decrease": None, "max_increase": 0.3}
    assert metrics["gpu_memory_used_bytes"]["tolerance"] == {"max_decrease": 0.2, "max_increase": 0.2}


async def test_observations_at_an_incomparable_load_may_not_close_it(rig: Any) -> None:
    running, http, replica = rig
    await record_baseline(http)
    quiet = {**GOOD, "requests_per_s": 0.4, "requests_running": 0.3, "generation_tokens_per_s": 90.0}
    await replica.windows(quiet)
    await settle(running)
    answer = await verification(http)
    assert answer["may_close"] is False
    assert answer["reasons"] == [
        "requests_per_s 0.4 is not comparable with the baseline's 4: load too different to judge"
    ]
    for m in answer["performance"]:
        assert m["comparable"] is False and m["within"] is None and m["current"] is None, m


async def test_a_metric_twice_as_bad_as_the_baseline_is_named(rig: Any) -> None:
    running, http, replica = rig
    await record_baseline(http)
    await replica.windows({**GOOD, "ttft_seconds_p95": 0.8})
    await settle(running)
    answer = await verification(http)
    assert answer["may_close"] is False
    assert "ttft_seconds_p95 0.8 s is 2.1x the baseline's 0.38 s (tolerance 1.3x)" in answer["reasons"], (
        answer
    )
    ttft = by_metric(answer)["ttft_seconds_p95"]
    assert ttft["comparable"] is True and ttft["within"] is False
    assert ttft["current"] == pytest.approx(0.8) and ttft["ratio"] == pytest.approx(0.8 / 0.38)
    others = [m for m in answer["performance"] if m["metric"] != "ttft_seconds_p95"]
    assert all(m["within"] is True for m in others), others
    # The drift engine judges it the same way: its performance finding on the same metric.
    findings = answer["findings"]["items"]
    assert [f["key"] for f in findings] == ["observation.ttft_seconds_p95"], findings
    assert answer["reasons"][0] == (
        f"1 {findings[0]['status']} finding"
        + (" (seen, not yet past the debounce)" if findings[0]["status"] == "pending" else "")
        + f": #{findings[0]['id']} observation.ttft_seconds_p95 ({findings[0]['severity']})"
    )


# -- the pure core: what the routes above do not reach -------------------------------------------


def _verify(baseline: Baseline, replicas: list[DomainReplica]) -> probes.Verification:
    return probes.verification(
        "ml/Deployment/llm",
        active=[],
        baseline=baseline,
        replicas=replicas,
        bound=Bound(),
        ignore=[],
        latest_probe=None,
        now=0.0,
    )


def test_a_baseline_without_performance_numbers_cannot_close_it() -> None:
    idle = record("ml/Deployment/llm", [replica("a")], 0.0, "manual")  # recorded with no traffic
    assert idle.performance == {}
    answer = _verify(idle, [replica("a", obs=[GOOD] * 3)])
    assert answer.may_close is False and answer.performance == []
    assert answer.reasons == [
        f"the baseline (id {idle.id}) holds no performance numbers to compare with: record one while the "
        "workload serves traffic"
    ]


def test_too_few_samples_or_no_live_replica_is_not_judged() -> None:
    base = record("ml/Deployment/llm", [replica("a", obs=[GOOD] * 3)], 0.0, "manual")
    # Comparable load, but 5 requests a window: a p95 of 15 requests is a bucket boundary, not a measurement.
    sparse = {**GOOD, "ttft_seconds_count": 5.0, "e2e_latency_seconds_count": 5.0}
    answer = _verify(base, [replica("a", obs=[sparse] * 3)])
    checks = {c.metric: c for c in answer.performance}
    assert checks["ttft_seconds_p95"].comparable is True and checks["ttft_seconds_p95"].within is None
    assert "too few samples of ttft_seconds_p95 at comparable load to judge" in answer.reasons
    assert checks["gpu_utilization_ratio"].within is True  # no request count: judged on its windows
    gone = _verify(base, [])
    assert gone.may_close is False and gone.reasons == ["no live replica to compare with the baseline"]
    assert all(c.comparable is False and c.within is None for c in gone.performance)
