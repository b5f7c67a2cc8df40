"""The probe against a baseline (pure): the comparable level by the collector's load rule, each
metric's ratio against the tolerance, a histogram bucket's upper bound, and how the comparison
changes the thresholds' verdict."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from collector.baseline.model import LOAD_METRICS
from skewwatch.probe.baseline import closest_level, compare
from skewwatch.probe.report import Outcome, combine, decide, judge
from skewwatch.probe.stats import LevelStats
from tests.probe.test_probe_report import level

PERF = {
    "ttft_seconds_p95": 0.2,
    "e2e_latency_seconds_p95": 1.0,
    "e2e_latency_seconds_p99": 1.0,
    "generation_tokens_per_s": 4.0,
}


def at(concurrency: int, rps: float, **kw: Any) -> LevelStats:
    return replace(level(concurrency, **kw), requests_per_s=rps)


def answer(
    rps: float, perf: dict[str, float] | None = None, bounds: dict[str, list[float]] | None = None
) -> Any:
    baseline = {
        "id": 3,
        "workload": "ml/Deployment/llm",
        "performance": PERF if perf is None else perf,
        "performance_bounds": bounds or {},
        "load": {"requests_per_s": rps, "requests_running": 4.0},
    }
    return {"workload": "ml/Deployment/llm", "baseline": baseline, "history": []}


def test_the_rule_is_the_collectors() -> None:
    assert LOAD_METRICS["requests_per_s"] == (0.30, 0.5)  # what docs/probe.md states


@pytest.mark.parametrize(
    ("base", "rate", "comparable"),
    [(10.0, 13.0, True), (10.0, 13.1, False), (10.0, 7.0, True), (1.0, 1.5, True), (1.0, 1.51, False)],
)
def test_a_level_is_comparable_within_30_percent_or_half_a_request_per_second(
    base: float, rate: float, comparable: bool
) -> None:
    found, why = closest_level([at(1, rate)], {"requests_per_s": base})
    assert found is not None and (why is None) is comparable


def test_the_level_closest_to_the_baselines_rate_is_compared() -> None:
    levels = [at(1, 1.0), at(4, 3.0), at(8, 6.0)]
    found, why = closest_level(levels, {"requests_per_s": 3.3})
    assert why is None and found is not None and found.concurrency == 4
    _, why = closest_level(levels, {})
    assert why == "the baseline holds no load.requests_per_s to find a comparable level by"


def test_each_metric_is_judged_by_its_ratio_in_the_baselines_unit() -> None:
    # level(): TTFT 0.2 s, end-to-end 1 s, 4 tokens a request, one request a second.
    c = compare([at(1, 1.0)], answer(1.0), 0.25, stream=True)
    assert c.comparable and not c.failed
    assert {j.metric.name: round(j.ratio or 0, 3) for j in c.judged} == dict.fromkeys(PERF, 1.0)
    slow = compare([at(1, 1.0, ttft=0.26)], answer(1.0), 0.25, stream=True)
    assert [j.metric.name for j in slow.failed] == ["ttft_seconds_p95"]
    assert slow.lines()[0].startswith(
        "FAIL baseline ttft_seconds_p95 at concurrency 1: probe ttft_ms.p95 0.26 s"
    )


def test_a_bucketed_baseline_latency_is_held_against_its_buckets_upper_bound() -> None:
    bounds = {"ttft_seconds_p95": [0.1, 0.25]}
    within = compare([at(1, 1.0, ttft=0.31)], answer(1.0, bounds=bounds), 0.25, stream=True)
    past = compare([at(1, 1.0, ttft=0.32)], answer(1.0, bounds=bounds), 0.25, stream=True)
    assert not within.failed  # 0.31 <= 0.25 x 1.25
    assert [j.metric.name for j in past.failed] == ["ttft_seconds_p95"]
    assert past.as_dict()["metrics"][0]["baseline_bounds"] == [0.1, 0.25]


def test_metrics_the_baseline_lacks_or_a_stream_needs_are_skipped_and_said() -> None:
    c = compare([at(1, 1.0)], answer(1.0, {"generation_tokens_per_s": 4.0}), 0.25, stream=False)
    assert [j.metric.name for j in c.judged] == ["generation_tokens_per_s"]
    assert dict(c.skipped)["ttft_seconds_p95"] == "not in the baseline"
    none = compare([at(1, 1.0)], answer(1.0, {"ttft_seconds_p95": 0.2}), 0.25, stream=False)
    assert (
        not none.comparable
        and none.why_not is not None
        and none.why_not.startswith("the baseline holds none")
    )
    assert dict(none.skipped)["ttft_seconds_p95"] == "not measured without a stream (--no-stream)"


def test_the_comparison_lays_over_the_thresholds_verdict() -> None:
    levels = [at(1, 1.0, ttft=0.3)]
    passed = decide(levels, [], None)
    failed_threshold = decide(levels, judge(levels, {"max_ttft_ms": 100}), None)
    slow = compare(levels, answer(1.0), 0.25, stream=True)
    far = compare(levels, answer(50.0), 0.25, stream=True)
    assert combine(passed, slow).verdict == "fail"
    assert combine(passed, far).verdict == "inconclusive"
    assert combine(passed, far).reasons[-1].startswith("baseline ml/Deployment/llm: not comparable: ")
    assert combine(failed_threshold, far).verdict == "fail"  # thresholds alone fail
    assert combine(Outcome("error", ("endpoint unreachable",)), far).verdict == "error"
    saturated = [at(1, 1.0, ttft=0.3, pool_wait=0.5)]
    assert saturated[0].client.saturated
    excused = combine(decide(saturated, [], None), compare(saturated, answer(1.0), 0.25, stream=True))
    assert excused.verdict == "inconclusive" and "client was saturated" in excused.reasons[-2]
