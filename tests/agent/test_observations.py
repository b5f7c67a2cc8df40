"""Observations over a window: histogram quantiles, rates, counter resets, sampled gauges."""

from __future__ import annotations

import math

import pytest

from agent.engines import SGLANG, TGI, VLLM
from agent.observations import (
    Histogram,
    ObservationWindow,
    Scrape,
    compute,
    extract,
    histogram_quantile,
    quantile_in_bucket,
)
from agent.promtext import parse_metrics_text
from skewwatch.core.facts import Observation

INF = math.inf


def test_quantile_interpolates_linearly_inside_the_bucket_like_prometheus() -> None:
    buckets = [(0.1, 0.0), (0.5, 10.0), (1.0, 20.0), (INF, 20.0)]
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.5)  # rank 10: top of (0.1, 0.5]
    assert histogram_quantile(0.95, buckets) == pytest.approx(0.95)  # rank 19 in (0.5, 1.0]
    assert histogram_quantile(0.25, buckets) == pytest.approx(0.3)  # rank 5: halfway into (0.1, 0.5]


def test_quantile_in_the_first_bucket_starts_from_zero() -> None:
    assert histogram_quantile(0.5, [(0.2, 4.0), (INF, 4.0)]) == pytest.approx(0.1)


def test_quantile_landing_in_the_inf_bucket_is_the_highest_finite_bound() -> None:
    assert histogram_quantile(0.99, [(1.0, 1.0), (2.0, 2.0), (INF, 10.0)]) == 2.0


def test_a_quantile_carries_the_bucket_it_lies_in() -> None:
    # The estimate is interpolated; the true quantile is anywhere in its bucket. All requests at
    # 0.29 s and two of twenty at 0.31 s read p95 0.285 and 0.4: their buckets say not +40 %.
    assert quantile_in_bucket(0.95, [(0.3, 20.0), (0.5, 20.0), (INF, 20.0)]) == pytest.approx(
        (0.285, 0.0, 0.3)
    )
    got = quantile_in_bucket(0.95, [(0.3, 18.0), (0.5, 20.0), (INF, 20.0)])
    assert got == pytest.approx((0.4, 0.3, 0.5))
    assert quantile_in_bucket(0.99, [(1.0, 1.0), (2.0, 2.0), (INF, 10.0)]) == (2.0, 2.0, None)
    assert quantile_in_bucket(0.5, [(1.0, 0.0), (INF, 0.0)]) is None


def test_window_quantiles_are_sent_with_their_bucket_bounds() -> None:
    prev = _scrape(100.0, 0, [(0.1, 0), (1.0, 0), (INF, 0)], 1)
    cur = _scrape(101.0, 10, [(0.1, 0), (1.0, 10), (INF, 10)], 1)
    obs, _ = compute(prev, cur, VLLM.metrics)
    by = {o.name: o for o in obs}
    assert (by["ttft_seconds_p50"].lower, by["ttft_seconds_p50"].upper) == (0.1, 1.0)
    assert by["ttft_seconds_p50"].lower <= by["ttft_seconds_p50"].value <= 1.0  # type: ignore[operator]
    assert by["generation_tokens_per_s"].lower is None and by["generation_tokens_per_s"].upper is None
    assert by["ttft_seconds_count"].lower is None  # an exact count


def test_empty_window_has_no_quantile() -> None:
    assert histogram_quantile(0.5, [(1.0, 0.0), (INF, 0.0)]) is None
    assert histogram_quantile(0.5, []) is None


def _scrape(at: float, tokens: float, ttft: list[tuple[float, float]], running: float) -> Scrape:
    return Scrape(
        at=at,
        counters={"generation_tokens_total": tokens},
        histograms={"time_to_first_token_seconds": Histogram(tuple(ttft), ttft[-1][1], 0.0)},
        gauges={"num_requests_running": running},
    )


def test_rates_and_percentiles_come_from_the_window_not_the_lifetime() -> None:
    # A long history of fast requests, then a window of slow ones: the window must show slow.
    prev = _scrape(100.0, 1_000_000, [(0.1, 10_000), (1.0, 10_000), (INF, 10_000)], 4)
    cur = _scrape(115.0, 1_000_300, [(0.1, 10_000), (1.0, 10_010), (INF, 10_010)], 8)
    obs, notes = compute(prev, cur, VLLM.metrics)
    by = {o.name: o.value for o in obs}
    assert by["generation_tokens_per_s"] == pytest.approx(20.0)
    assert by["ttft_seconds_p50"] == pytest.approx(0.55)  # all ten in (0.1, 1.0]
    assert by["requests_running"] == 6.0  # mean of the window's samples
    assert notes == []


def test_counter_reset_counts_from_zero_and_says_so() -> None:
    prev = _scrape(0.0, 5_000, [(1.0, 50), (INF, 50)], 1)
    cur = _scrape(10.0, 200, [(1.0, 3), (INF, 4)], 1)  # restarted: 200 tokens, 4 requests since
    obs, notes = compute(prev, cur, VLLM.metrics)
    by = {o.name: o.value for o in obs}
    assert by["generation_tokens_per_s"] == pytest.approx(20.0)
    assert by["ttft_seconds_p50"] == pytest.approx(2 / 3)  # rank 2 of the 3 in (0, 1.0]
    assert any("counter reset" in n for n in notes)
    assert any("histogram reset" in n for n in notes)


def test_idle_window_reports_zero_rates_and_no_latency() -> None:
    s = _scrape(0.0, 10, [(1.0, 5), (INF, 5)], 0)
    obs, _ = compute(s, Scrape(15.0, s.counters, s.histograms, s.gauges), VLLM.metrics)
    by = {o.name: o.value for o in obs}
    assert by["generation_tokens_per_s"] == 0.0
    assert not [n for n in by if n.startswith("ttft")]


def test_window_needs_two_scrapes_and_restarts_for_another_engine() -> None:
    w = ObservationWindow()
    assert w.update(("vllm", "vllm:"), _scrape(0, 1, [(1.0, 1), (INF, 1)], 1), VLLM.metrics)[0] == []
    assert w.update(("vllm", "vllm:"), _scrape(5, 11, [(1.0, 1), (INF, 1)], 3), VLLM.metrics)[0]
    # A different server answers on the port: its numbers are not deltas of the last one's.
    obs, notes = w.update(("sglang", "sglang:"), Scrape(10.0), SGLANG.metrics)
    assert obs == [] and "first scrape" in notes[0]


def test_effective_batch_p95_is_taken_over_the_sampled_running_requests() -> None:
    w = ObservationWindow(history=20)
    obs: list[Observation] = []
    for i, running in enumerate([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 100]):
        obs, _ = w.update(
            ("vllm", "vllm:"), _scrape(float(i), 0, [(1.0, 0), (INF, 0)], running), VLLM.metrics
        )
    by = {o.name: o.value for o in obs}
    # The last 20 samples are 2..20 and 100: the p95 interpolates between 20 and 100.
    assert by["batch_size_p95"] == pytest.approx(20 + 0.05 * 80)


def test_tgi_batch_size_comes_from_its_batch_histogram() -> None:
    page = """\
# TYPE tgi_batch_next_size histogram
tgi_batch_next_size_bucket{le="1"} {a}
tgi_batch_next_size_bucket{le="8"} {b}
tgi_batch_next_size_bucket{le="32"} {c}
tgi_batch_next_size_bucket{le="+Inf"} {c}
tgi_batch_next_size_sum 0
tgi_batch_next_size_count {c}
"""
    first = parse_metrics_text(page.replace("{a}", "0").replace("{b}", "0").replace("{c}", "0"))
    later = parse_metrics_text(page.replace("{a}", "0").replace("{b}", "0").replace("{c}", "100"))
    obs, _ = compute(
        extract(first, "tgi_", TGI.metrics, 0), extract(later, "tgi_", TGI.metrics, 5), TGI.metrics
    )
    by = {o.name: o.value for o in obs}
    assert by["batch_size_p95"] == pytest.approx(8 + 24 * 0.95)


def test_series_of_one_histogram_are_summed_by_bucket() -> None:
    page = """\
# TYPE vllm:e2e_request_latency_seconds histogram
vllm:e2e_request_latency_seconds_bucket{engine="0",le="1.0"} 2
vllm:e2e_request_latency_seconds_bucket{engine="0",le="+Inf"} 3
vllm:e2e_request_latency_seconds_count{engine="0"} 3
vllm:e2e_request_latency_seconds_sum{engine="0"} 4
vllm:e2e_request_latency_seconds_bucket{engine="1",le="1.0"} 1
vllm:e2e_request_latency_seconds_bucket{engine="1",le="+Inf"} 5
vllm:e2e_request_latency_seconds_count{engine="1"} 5
vllm:e2e_request_latency_seconds_sum{engine="1"} 9
"""
    scrape = extract(parse_metrics_text(page), "vllm:", VLLM.metrics, 0.0)
    hist = scrape.histograms["e2e_request_latency_seconds"]
    assert hist.buckets == ((1.0, 3.0), (INF, 8.0))
    assert (hist.count, hist.sum) == (8.0, 13.0)


def test_scrapes_at_the_same_instant_form_no_window() -> None:
    s = _scrape(1.0, 1, [(1.0, 1), (INF, 1)], 1)
    obs, notes = compute(s, s, VLLM.metrics)
    assert obs == [] and "no window" in notes[0]
