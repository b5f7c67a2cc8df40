"""The probe's statistics: percentiles from raw samples, warm-up excluded, client saturation seen."""

from __future__ import annotations

import asyncio
import time

import pytest

from skewwatch.probe.client import RequestResult
from skewwatch.probe.plan import PlannedRequest, Prompt
from skewwatch.probe.stats import (
    LAG_P99_LIMIT_S,
    LoopLagMonitor,
    client_health,
    level_stats,
    percentile,
    run_level,
)


def test_percentiles_interpolate_between_closest_ranks() -> None:
    samples = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(samples, 50) == pytest.approx(50.5)
    assert percentile(samples, 95) == pytest.approx(95.05)
    assert percentile(samples, 99) == pytest.approx(99.01)
    assert percentile([3.0, 1.0, 2.0], 0) == 1.0 and percentile([3.0, 1.0, 2.0], 100) == 3.0
    assert percentile([], 50) is None
    assert percentile([7.0], 99) == 7.0


def result(
    index: int,
    *,
    warmup: bool = False,
    ttft: float = 0.1,
    itl: list[float] | None = None,
    tokens: int = 10,
    start: float = 0.0,
    end: float = 1.0,
    error: str | None = None,
) -> RequestResult:
    r = RequestResult(
        index,
        warmup,
        "p",
        start=start,
        end=end,
        ttft=ttft,
        itl=itl or [],
        completion_tokens=tokens,
        token_source="usage",
    )
    if error is not None:
        r.error = error  # type: ignore[assignment]
        r.detail = f"{error} happened"
        r.completion_tokens, r.token_source = 0, "none"
    return r


def test_itl_percentiles_pool_raw_gaps_instead_of_averaging_per_request_percentiles() -> None:
    # One request with 99 fast gaps, one with one slow gap: the pooled p99 sees the slow gap's
    # weight (1 of 100 samples); the mean of per-request p99s would call it 500 ms.
    fast = result(0, itl=[0.01] * 99)
    slow = result(1, itl=[1.0])
    stats = level_stats(2, 2, [fast, slow], [])
    mean_of_p99s = ((percentile([10.0] * 99, 99) or 0) + 1000.0) / 2
    assert stats.itl_ms.n == 100
    assert stats.itl_ms.p50 == pytest.approx(10.0)
    assert stats.itl_ms.p99 == pytest.approx(10.0 + (1000.0 - 10.0) * 0.01)
    assert stats.itl_ms.p99 != pytest.approx(mean_of_p99s)


def test_warmup_requests_are_excluded_and_reported() -> None:
    results = [
        result(0, warmup=True, ttft=5.0, start=0.0, end=6.0),
        result(1, warmup=True, error="timeout", start=0.0, end=6.0),
        result(2, ttft=0.2, start=6.0, end=7.0),
        result(3, ttft=0.3, start=7.0, end=8.0),
    ]
    stats = level_stats(1, 5, results, [])
    assert (stats.warmup, stats.warmup_failed, stats.measured, stats.ok, stats.not_sent) == (2, 1, 2, 2, 1)
    assert stats.ttft_ms.max == pytest.approx(300.0)  # the 5 s warm-up TTFT is not there
    assert stats.errors == {}
    assert stats.window_s == pytest.approx(2.0)  # from the first measured start to the last end
    assert stats.requests_per_s == pytest.approx(1.0)
    assert stats.output_tokens_per_s == pytest.approx(10.0)
    doc = stats.as_dict()
    assert doc["requests"]["warmup"] == {"sent": 2, "failed": 1, "excluded": True}


def test_errors_are_counted_by_kind_and_latencies_come_from_successes() -> None:
    results = [
        result(0, ttft=0.1),
        result(1, error="http_429"),
        result(2, error="http_429"),
        result(3, error="stream_error", ttft=9.0),
    ]
    stats = level_stats(4, 4, results, [])
    assert stats.errors == {"http_429": 2, "stream_error": 1}
    assert stats.error_rate == pytest.approx(0.75)
    assert stats.ttft_ms.n == 1 and stats.ttft_ms.max == pytest.approx(100.0)
    assert stats.error_examples["http_429"] == ["http_429 happened", "http_429 happened"]


def test_tokens_per_s_is_unknown_when_no_answer_said_how_many_tokens() -> None:
    r = result(0)
    r.completion_tokens, r.token_source = 0, "none"
    stats = level_stats(1, 1, [r], [])
    assert stats.output_tokens_per_s is None and stats.token_source == {"none": 1}


def test_client_health_names_loop_lag_and_pool_waits_past_their_limits() -> None:
    calm = client_health([0.001] * 100, [0.0] * 10, 1)
    assert not calm.saturated and calm.reasons == ()
    lagging = client_health([0.001] * 90 + [0.2] * 10, [0.0], 1)
    assert lagging.saturated and "event-loop lag p99" in lagging.reasons[0]
    queued = client_health([], [0.0, 0.05, 0.1], 1)
    assert queued.saturated and "connection-pool wait p99" in queued.reasons[0]


async def test_the_lag_monitor_sees_a_blocked_event_loop() -> None:
    monitor = LoopLagMonitor()
    monitor.start()
    await asyncio.sleep(0.05)
    time.sleep(0.1)  # noqa: ASYNC251 (the point: a loop blocked as a busy client's would be)
    await asyncio.sleep(0.05)
    lag = await monitor.stop()
    assert max(lag) >= 0.09
    assert max(lag) > LAG_P99_LIMIT_S


class _Sender:
    """Answers after ``delay`` and records how many were in flight at once."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.in_flight = 0
        self.most = 0
        self.seen: list[int] = []

    async def send(self, req: PlannedRequest) -> RequestResult:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        self.seen.append(req.index)
        start = time.perf_counter()
        await asyncio.sleep(self.delay)
        self.in_flight -= 1
        return RequestResult(
            req.index,
            req.warmup,
            req.prompt.id,
            start=start,
            end=time.perf_counter(),
            ttft=self.delay,
            completion_tokens=1,
            token_source="usage",
        )


def _plan(n: int, warmup: int = 0) -> list[PlannedRequest]:
    prompt = Prompt("p", "a b", 2)
    return [PlannedRequest(i, i < warmup, prompt, i) for i in range(n)]


async def test_a_level_is_a_closed_loop_of_exactly_n_workers() -> None:
    sender = _Sender(0.02)
    results, _lag, cut = await run_level(sender, _plan(12, warmup=2), 3, time.perf_counter() + 30)
    assert not cut and len(results) == 12
    assert sender.most == 3
    assert sender.seen == list(range(12))  # plan order: warm-up first


async def test_the_deadline_stops_a_level_and_says_so() -> None:
    sender = _Sender(0.05)
    results, _lag, cut = await run_level(sender, _plan(100), 2, time.perf_counter() + 0.12)
    assert cut
    assert 2 <= len(results) <= 6  # about two rounds of two; the ones in flight are not counted
