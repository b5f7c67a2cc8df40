"""Observations: performance over a window, from the deltas between consecutive ``/metrics`` scrapes.

Never from one scrape and never from lifetime totals: a rate is a counter's delta over the time
between two scrapes, a latency percentile comes from the histogram buckets' deltas (linear
interpolation inside the bucket, as Prometheus' ``histogram_quantile`` does), a gauge is the mean
of its samples in the window. A counter or histogram that went down means the server restarted:
the new value is the delta since the restart (Prometheus' ``rate()`` rule), and a note says so.

:func:`extract` (families → the few numbers the engine's table asks for) and :func:`compute`
(two scrapes → observations) are pure; :class:`ObservationWindow` is the state a source keeps
between collection cycles.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from agent.engines.base import MetricsSpec, ObservationSpec
from agent.promtext import MetricFamily
from skewwatch.core.facts import Observation

# How many scrapes the sampled-gauge quantile (effective batch p95) looks back over.
GAUGE_HISTORY = 20


@dataclass(frozen=True)
class Histogram:
    """One histogram summed over its series: cumulative counts per upper bound, count and sum."""

    buckets: tuple[tuple[float, float], ...]  # (le, cumulative count), sorted, +Inf last
    count: float
    sum: float


@dataclass(frozen=True)
class Scrape:
    """What one scrape says about the numbers the observations need (names without prefix)."""

    at: float  # seconds on a monotonic clock
    counters: Mapping[str, float] = field(default_factory=dict)
    histograms: Mapping[str, Histogram] = field(default_factory=dict)
    gauges: Mapping[str, float] = field(default_factory=dict)


def _counter_value(fam: MetricFamily) -> float | None:
    # The reference parser names a counter family without "_total"; its samples keep it, and
    # "_created" samples are timestamps, not counts.
    values = [
        s.value
        for s in fam.samples
        if (s.name == fam.name or s.name == fam.name + "_total") and math.isfinite(s.value)
    ]
    return float(sum(values)) if values else None


def _histogram(fam: MetricFamily) -> Histogram | None:
    by_le: dict[float, float] = {}
    count = total = 0.0
    seen = False
    for s in fam.samples:
        if s.name == fam.name + "_bucket":
            try:
                le = float(s.labels.get("le", "nan"))
            except ValueError:
                continue
            if math.isnan(le) or not math.isfinite(s.value):
                continue
            by_le[le] = by_le.get(le, 0.0) + s.value  # sum by (le) over the series
            seen = True
        elif s.name == fam.name + "_count" and math.isfinite(s.value):
            count += s.value
        elif s.name == fam.name + "_sum" and math.isfinite(s.value):
            total += s.value
    if not seen:
        return None
    buckets = tuple(sorted(by_le.items()))
    if buckets[-1][0] != math.inf:
        buckets += ((math.inf, count),)
    return Histogram(buckets, count or buckets[-1][1], total)


def _gauge(fam: MetricFamily, combine: str) -> float | None:
    values = [s.value for s in fam.samples if s.name == fam.name and math.isfinite(s.value)]
    if not values:
        return None
    return float(max(values) if combine == "max" else sum(values))


def extract(families: Iterable[MetricFamily], prefix: str, spec: MetricsSpec, at: float) -> Scrape:
    """The counters, histograms and gauges ``spec``'s observations read, from one scrape. Pure."""
    by_name: dict[str, list[MetricFamily]] = {}
    for fam in families:
        if fam.name.startswith(prefix):
            by_name.setdefault(fam.name[len(prefix) :], []).append(fam)
    counters: dict[str, float] = {}
    histograms: dict[str, Histogram] = {}
    gauges: dict[str, float] = {}
    for obs in spec.observations:
        for metric in obs.metrics:
            # Counter families lose "_total" in the parser; a repeated family is read once.
            fams = by_name.get(metric) or by_name.get(metric.removesuffix("_total")) or []
            if not fams:
                continue
            fam = fams[0]
            if obs.kind == "counter_rate":
                value = _counter_value(fam)
                if value is not None:
                    counters[metric] = value
                    break
            elif obs.kind in ("histogram_quantiles", "histogram_sum_rate"):
                hist = _histogram(fam)
                if hist is not None:
                    histograms[metric] = hist
                    break
            else:
                value = _gauge(fam, obs.combine)
                if value is not None:
                    gauges[metric] = value
                    break
    return Scrape(at, counters, histograms, gauges)


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """Prometheus' ``histogram_quantile`` over cumulative (le, count) buckets; None without data."""
    found = quantile_in_bucket(q, buckets)
    return None if found is None else found[0]


def quantile_in_bucket(
    q: float, buckets: Sequence[tuple[float, float]]
) -> tuple[float, float, float | None] | None:
    """(estimate, lower, upper): Prometheus' interpolated quantile and the bounds of the bucket
    it falls in, where the true quantile lies (upper None: the open +Inf bucket). A bucket is
    the resolution of the estimate: all requests at 0.29 s read p95 0.285 in a (0, 0.3] bucket,
    a few at 0.31 s read 0.43 in (0.3, 0.5], a change of some percent read as one of half."""
    if not buckets or buckets[-1][0] != math.inf or len(buckets) < 2:
        return None
    total = buckets[-1][1]
    if total <= 0:
        return None
    rank = q * total
    prev_le, prev_count = 0.0, 0.0
    for i, (le, count) in enumerate(buckets):
        if count >= rank:
            if le == math.inf:
                top = buckets[-2][0]  # the highest finite bound: all Prometheus can say
                return top, top, None
            if i == 0 and le <= 0:
                return le, le, le
            lower = min(prev_le, le)
            in_bucket = count - prev_count
            if in_bucket <= 0:
                return le, lower, le
            value = prev_le + (le - prev_le) * ((rank - prev_count) / in_bucket)
            return min(max(value, lower), le), lower, le
        prev_le, prev_count = le, count
    top = buckets[-2][0]
    return top, top, None


def _delta(name: str, prev: float, cur: float, notes: list[str]) -> float:
    if cur < prev:
        notes.append(f"{name} went down from {prev:g} to {cur:g}: counter reset (server restarted)")
        return cur
    return cur - prev


def _histogram_delta(name: str, prev: Histogram, cur: Histogram, notes: list[str]) -> Histogram:
    prev_by_le = dict(prev.buckets)
    reset = cur.count < prev.count or any(c < prev_by_le.get(le, 0.0) for le, c in cur.buckets)
    if reset:
        notes.append(f"{name} went down: histogram reset (server restarted)")
        return cur
    buckets = tuple((le, c - prev_by_le.get(le, 0.0)) for le, c in cur.buckets)
    return Histogram(buckets, cur.count - prev.count, cur.sum - prev.sum)


def _quantile_name(stem: str, q: float) -> str:
    return f"{stem}_p{round(q * 100)}"


def compute(
    prev: Scrape, cur: Scrape, spec: MetricsSpec, gauge_history: Mapping[str, Sequence[float]] | None = None
) -> tuple[list[Observation], list[str]]:
    """Observations over the window from ``prev`` to ``cur``, and notes (resets, gaps). Pure.

    ``gauge_history`` holds each gauge's samples over the last scrapes (``cur`` included), for
    the sampled quantiles.
    """
    notes: list[str] = []
    out: list[Observation] = []
    dt = cur.at - prev.at
    if dt <= 0:
        return out, [f"scrapes {dt:g} s apart: no window"]
    for obs in spec.observations:
        for o in _one(obs, prev=prev, cur=cur, dt=dt, gauge_history=gauge_history or {}, notes=notes):
            # Finite samples can still sum past the float range (a hostile page of 1e308s): such
            # an observation is lost alone, with a note, never sent (the collector refuses it).
            if math.isfinite(o.value):
                out.append(o)
            else:
                notes.append(f"{o.name}: {o.value!r} is not finite (values past the float range); dropped")
    return out, notes


def _one(
    obs: ObservationSpec,
    *,
    prev: Scrape,
    cur: Scrape,
    dt: float,
    gauge_history: Mapping[str, Sequence[float]],
    notes: list[str],
) -> list[Observation]:
    for metric in obs.metrics:
        if obs.kind == "counter_rate":
            if metric in cur.counters and metric in prev.counters:
                delta = _delta(metric, prev.counters[metric], cur.counters[metric], notes)
                return [Observation(obs.name, delta / dt, obs.unit)]
        elif obs.kind in ("histogram_quantiles", "histogram_sum_rate"):
            if metric in cur.histograms and metric in prev.histograms:
                window = _histogram_delta(metric, prev.histograms[metric], cur.histograms[metric], notes)
                if obs.kind == "histogram_sum_rate":
                    return [Observation(obs.name, max(window.sum, 0.0) / dt, obs.unit)]
                values = []
                for q in obs.quantiles:
                    found = quantile_in_bucket(q, window.buckets)
                    if found is not None:  # nothing observed in the window: no latency to report
                        v, lower, upper = found
                        values.append(Observation(_quantile_name(obs.name, q), v, obs.unit, lower, upper))
                if values:
                    # How many requests the quantiles rest on: a p99 of three requests is a bucket
                    # boundary, not a latency, and the collector judges it only on enough of them.
                    values.append(Observation(f"{obs.name}_count", max(window.count, 0.0), "{request}"))
                return values
        elif obs.kind == "gauge_mean":
            if metric in cur.gauges and metric in prev.gauges:
                return [Observation(obs.name, (prev.gauges[metric] + cur.gauges[metric]) / 2, obs.unit)]
        elif obs.kind == "gauge_sample_quantile":
            samples = sorted(gauge_history.get(metric, ()))
            if len(samples) >= 2:
                return [
                    Observation(_quantile_name(obs.name, q), _sample_quantile(samples, q), obs.unit)
                    for q in obs.quantiles
                ]
    return []


def _sample_quantile(sorted_samples: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile of samples (numpy's default, ``quantile_over_time``'s rule)."""
    pos = q * (len(sorted_samples) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_samples) - 1)
    return sorted_samples[lo] + (sorted_samples[hi] - sorted_samples[lo]) * (pos - lo)


class ObservationWindow:
    """The state between scrapes: the last scrape and each gauge's recent samples.

    One per source instance (the agent keeps its sources across cycles). A scrape of another
    engine or prefix (a different server on the port) starts the window over.
    """

    def __init__(self, history: int = GAUGE_HISTORY) -> None:
        self.history = history
        self._key: tuple[str, ...] | None = None
        self._prev: Scrape | None = None
        self._gauges: dict[str, deque[float]] = {}

    def update(
        self, key: tuple[str, ...], scrape: Scrape, spec: MetricsSpec
    ) -> tuple[list[Observation], list[str]]:
        """Record ``scrape``; observations over the window it closes (none for the first)."""
        if key != self._key:
            self._key, self._prev, self._gauges = key, None, {}
        for name, value in scrape.gauges.items():
            self._gauges.setdefault(name, deque(maxlen=self.history)).append(value)
        prev, self._prev = self._prev, scrape
        if prev is None:
            return [], ["first scrape: observations need a second one to form a window"]
        return compute(prev, scrape, spec, self._gauges)
