"""Baselines: a workload's last-known-good configuration plus its performance at a known load. Pure.

``record`` takes the majority configuration of the live replicas (its facts, minus identity
keys) and, from their recent observation windows, the median of each performance metric and of
the load (requests/s, running requests) it was measured at. ``compare_config`` is exact: any
fact that differs from the baseline is a drift. ``compare_performance`` compares a replica only
when its current load is within the load tolerance of the baseline's (default ±30 % requests/s,
±30 % or ±2 running requests), and then each metric against its tolerance (``PERF_METRICS``,
overridable per metric by a SkewPolicy). Metrics or replicas at incomparable load are left
undecided, so their findings neither open nor resolve. ``judge_performance`` is that rule per
metric (values, comparability, within tolerance): the drift engine's findings and the incident
verification (``collector.service.probes``) both read it.

Replicas come with their workload's cluster facts joined (``collector.domain.cluster``), so a
baseline holds them too; a baseline recorded before the cluster watch knew the workload takes none
of the cluster facts that appear later as a change, and a cluster fact the watch cannot read now
is unknown, not removed.
"""

from __future__ import annotations

import fnmatch
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from collector.domain.baseline import Baseline, BaselineError
from collector.domain.cluster import CLUSTER_SOURCE
from collector.domain.diff import ChangeKind, diff_facts
from collector.domain.model import OBSERVATION_PREFIX, Drift, Reference, Replica
from collector.domain.replicas import config_facts, majority_group
from skewwatch.core.facts import Observation, SourceState


class Worse(StrEnum):
    LOWER = "lower"  # a drop is a regression (tokens/s)
    HIGHER = "higher"  # a rise is a regression (latency)
    BOTH = "both"


@dataclass(frozen=True)
class Metric:
    name: str
    worse: Worse
    max_decrease: float | None
    max_increase: float | None
    # A latency quantile rests on the requests of its windows: with fewer than ``min_samples``
    # of them (the ``<stem>_count`` observation) it is a histogram bucket boundary, not a
    # measurement, and is neither recorded nor judged.
    samples: str | None = None
    min_samples: int = 0
    # A throughput moves with the load it serves: it is compared per unit of this load
    # dimension (tokens per request), scaled to the baseline's load, so a load that wanders
    # within the comparable band is not a regression.
    per: str | None = None


# The performance baseline: observation name -> which way is worse and the default tolerance.
# Not ``batch_size_p95``: at a comparable request rate the requests in flight follow latency
# (Little's law), which is judged itself, and a smaller batch at the same rate means faster
# requests, not a regression. Its p95 over 20 gauge samples also moves with the load's own
# wander inside the comparable band (±30 % running requests): judged against a 30 % tolerance it
# opened findings on unchanged replicas (tests/e2e/test_restarts.py, 9 -> 6 after restarts).
PERF_METRICS: tuple[Metric, ...] = (
    Metric(
        "generation_tokens_per_s",
        Worse.LOWER,
        0.20,
        None,
        "e2e_latency_seconds_count",
        30,
        per="requests_per_s",
    ),
    Metric("ttft_seconds_p95", Worse.HIGHER, None, 0.30, "ttft_seconds_count", 40),
    Metric("ttft_seconds_p99", Worse.HIGHER, None, 0.30, "ttft_seconds_count", 100),
    Metric("e2e_latency_seconds_p95", Worse.HIGHER, None, 0.30, "e2e_latency_seconds_count", 40),
    Metric("e2e_latency_seconds_p99", Worse.HIGHER, None, 0.30, "e2e_latency_seconds_count", 100),
    Metric("gpu_utilization_ratio", Worse.BOTH, 0.30, 0.30),
    Metric("gpu_memory_used_bytes", Worse.BOTH, 0.20, 0.20),
)
# Load dimensions -> (relative tolerance, absolute floor): comparable when within either.
LOAD_METRICS: dict[str, tuple[float, float]] = {
    "requests_per_s": (0.30, 0.5),
    "requests_running": (0.30, 2.0),
}
BASELINE_WINDOWS = 20  # observation windows per replica the performance baseline is the median of


def _enough(m: Metric, windows: Sequence[Mapping[str, Observation]]) -> bool:
    """Do these windows hold enough requests to state ``m``? (Agents that send no count: yes.)"""
    if m.samples is None or not windows:
        return bool(windows)
    counts = [w[m.samples].value for w in windows if m.samples in w]
    return len(counts) < len(windows) or sum(counts) >= m.min_samples


def judged_windows(replica: Replica, m: Metric, windows: int = 3) -> list[Mapping[str, Observation]]:
    """The newest windows ``m`` is judged on: at least ``windows`` of them, more until they hold
    ``min_samples`` requests; none when all the replica's windows together hold fewer."""
    have = [w for w in replica.observations if m.name in w]
    if m.samples is None or any(m.samples not in w for w in have[:windows]):
        return have[:windows]  # no request count (an older agent): the newest windows as they are
    total = 0.0
    for i, w in enumerate(have):
        total += w.get(m.samples, Observation(m.samples, 0.0)).value
        if i + 1 >= windows and total >= m.min_samples:
            return have[: i + 1]
    return []


def observed(replica: Replica, m: Metric, windows: int = 3, per_load: float | None = None) -> float | None:
    """The replica's recent value of ``m``: the median over its judged windows, if any.

    With ``per_load`` (the baseline's value of ``m.per``), a throughput is taken per unit of
    that load over the judged windows together and scaled to ``per_load``: what it would be at
    the baseline's load. Together, not window by window: requests complete one by one while
    tokens flow steadily, so a short window holds 1, 2 or 4 completions for the same tokens and
    its own ratio is mostly that count's noise (a median of such ratios moved by a quarter on
    an unchanged real vLLM); total tokens over total requests is the tokens per request.
    """
    judged = judged_windows(replica, m, windows)
    if m.per is not None and per_load:
        both = [w for w in judged if m.per in w]
        load = sum(w[m.per].value for w in both)
        if load <= 0:
            return None
        return sum(w[m.name].value for w in both) / load * per_load
    return _median([w[m.name].value for w in judged])


Bounds = tuple[float, float]


def bounds(m: Metric, windows: Sequence[Mapping[str, Observation]]) -> Bounds | None:
    """(lower, upper) of the median of ``m`` over ``windows``: the medians of their bounds, where
    its values are estimates of known resolution (quantiles of histogram buckets); else None.

    Each window's true value lies in its [lower, upper], so the sorted lowers and uppers bound
    the sorted true values one by one, and their medians bound the true median.
    """
    obs = [w[m.name] for w in windows if m.name in w]
    if not obs or all(o.lower is None and o.upper is None for o in obs):
        return None
    lo = statistics.median(o.value if o.lower is None else o.lower for o in obs)
    hi = statistics.median(o.value if o.upper is None else o.upper for o in obs)
    return float(lo), float(hi)


def _median(values: Sequence[float]) -> float | None:
    return float(statistics.median(values)) if values else None


def record(workload: str, replicas: Sequence[Replica], now: float, origin: str, note: str = "") -> Baseline:
    live = [r for r in replicas if r.facts]
    if not live:
        raise BaselineError(f"workload {workload} has no replica with a snapshot to record")
    group = majority_group(live, ())
    rep = max(group, key=lambda r: r.last_seen)
    facts = config_facts(rep.facts, ())
    performance: dict[str, float] = {}
    resolution: dict[str, Bounds] = {}
    load: dict[str, float] = {}
    samples = 0
    for name in LOAD_METRICS:
        med = _median([w[name].value for r in group for w in r.observations[:BASELINE_WINDOWS] if name in w])
        if med is not None:
            load[name] = med
    for m in PERF_METRICS:
        windows = [w for r in group for w in r.observations[:BASELINE_WINDOWS] if m.name in w]
        if not _enough(m, windows):
            continue
        values = [w[m.name].value for w in windows]
        per = _per_load(m, windows, load)
        med = per or _median(values)
        if med is not None:
            performance[m.name] = med
            samples = max(samples, len(values))
            found = None if per else bounds(m, windows)
            if found is not None:
                resolution[m.name] = found
    return Baseline(
        workload=workload,
        recorded_at=now,
        origin=origin,
        fingerprint=rep.fingerprint,
        facts=facts,
        provenance={k: v for k, v in rep.provenance.items() if k in facts},
        sources={n: s.state.value for n, s in rep.sources.items()},
        performance=performance,
        load=load,
        pods=tuple(sorted(r.pod for r in group)),
        samples=samples,
        note=note,
        bounds=resolution,
    )


def _per_load(
    m: Metric, windows: Sequence[Mapping[str, Observation]], load: Mapping[str, float]
) -> float | None:
    """A throughput as it is judged (:func:`observed`): per unit of its load over the windows
    together, at the recorded load. Not the median throughput: the recorded load is a median of
    windows that each hold a whole number of completions (2 or 3 a second for 2.4 requests/s:
    median 2), so the median throughput over that load was off by a sixth on a steady engine."""
    per_load = load.get(m.per) if m.per else None
    if not per_load or m.per is None:
        return None
    both = [w for w in windows if m.per in w]
    total = sum(w[m.per].value for w in both)
    return sum(w[m.name].value for w in both) / total * per_load if total > 0 else None


def compare_config(
    baseline: Baseline, replicas: Sequence[Replica], ignore: Sequence[str] = ()
) -> list[Drift]:
    """Every fact that differs from the baseline, exactly, grouped by key over the replicas."""

    per_key: dict[str, dict[str, Any]] = {}
    present: dict[str, dict[str, bool]] = {}
    evidence: dict[str, dict[str, Any]] = {}
    base = config_facts(baseline.facts, ignore)
    for r in replicas:
        if not r.facts:
            continue
        mine = config_facts(r.facts, ignore)
        for change in diff_facts(base, mine):
            key = change.key
            if change.kind is ChangeKind.REMOVED and not _source_reports_now(baseline, r, key):
                continue  # its source is down now: unknown, not drifted
            if change.kind is ChangeKind.ADDED and not _baseline_source_ok(baseline, r, key):
                continue
            if change.kind is not ChangeKind.REMOVED and not r.known(key):
                continue  # carried from before its source went away: unknown now
            per_key.setdefault(key, {})[r.pod] = (
                change.after if change.kind is not ChangeKind.REMOVED else None
            )
            present.setdefault(key, {})[r.pod] = change.kind is not ChangeKind.REMOVED
            prov = r.provenance.get(key)
            if prov is not None:
                evidence.setdefault(key, {})[r.pod] = prov.as_dict()
    drifts = []
    when = "recorded baseline" if baseline.origin == "manual" else "auto-promoted baseline"
    for key, pods in sorted(per_key.items()):
        values = list(pods.values())
        actual = max(values, key=lambda v: sum(1 for x in values if x == v))
        expected = base.get(key)
        exp_text = "(absent)" if key not in base else _show(expected)
        drifts.append(
            Drift(
                Reference.BASELINE,
                key,
                expected if key in base else None,
                actual,
                pods,
                f"{len(pods)} of {len(replicas)} replicas differ on {key} from the baseline's {exp_text}",
                f"{when} (id {baseline.id})",
                evidence.get(key, {}),
                present=present[key],
                expected_text=f"expected {exp_text}",
            )
        )
    return drifts


def _source_reports_now(baseline: Baseline, replica: Replica, key: str) -> bool:
    """Could the source that reported ``key`` into the baseline report it on ``replica`` now?

    A cluster fact is joined to a replica only while the cluster watch knows its workload: after
    a collector restart (before the watch's first list), or with the watch off, the replica has no
    ``cluster`` source at all, and the baseline's cluster facts are unknown, not removed."""
    prov = baseline.provenance.get(key)
    if prov is not None and prov.source == CLUSTER_SOURCE:
        status = replica.sources.get(CLUSTER_SOURCE)
        return status is not None and status.state is SourceState.OK
    return replica.source_ok(key)


def _baseline_source_ok(baseline: Baseline, replica: Replica, key: str) -> bool:
    """Was the source of ``key`` (new since the baseline) able to report it when it was recorded?

    A key new since the baseline whose source was not ok then (e.g. nvml unavailable at
    recording) is not a drift; one from a source that was ok then is. A source the baseline does
    not list at all is taken as ok, as it always was: provenance sources are not all source names
    (``effective`` for values the agent resolved), and an agent reports every source it has in
    every snapshot. The cluster watch is the exception: a baseline recorded before it ran (or
    with it off) never knew the workload's autoscaler, Services or ConfigMaps, so every cluster
    fact is new to it, and none of them is a change of configuration."""
    prov = replica.provenance.get(key)
    if prov is None:
        return True
    state = baseline.sources.get(prov.source)
    if prov.source == CLUSTER_SOURCE:
        return state == SourceState.OK.value
    return state is None or state == SourceState.OK.value


def _comparable(
    baseline: Baseline, replica: Replica, load_tolerance: Mapping[str, float]
) -> tuple[bool, str]:
    compared = 0
    for name, (rel, floor) in LOAD_METRICS.items():
        base = baseline.load.get(name)
        now = replica.observed(name)
        if base is None or now is None:
            continue
        compared += 1
        tol = max(abs(base) * load_tolerance.get(name, rel), floor)
        if abs(now - base) > tol:
            return False, (
                f"{name} {now:.3g} is not comparable with the baseline's {base:.3g}: "
                "load too different to judge"
            )
    if not compared:
        return False, "no load observation to compare with the baseline's"
    return True, ""


@dataclass(frozen=True)
class MetricResult:
    """One performance metric of a baseline judged on the replicas, by the one rule the drift
    engine applies (``compare_performance`` is built on it): a replica counts only at comparable
    load and with enough samples, and is outside when past tolerance *and* certainly moved."""

    metric: Metric
    baseline: float
    tolerance: tuple[float | None, float | None]  # (max decrease, max increase), policy applied
    per_load: float | None  # the baseline's load a throughput is scaled to, if it is one
    base_bounds: Bounds | None
    values: Mapping[str, float]  # pod -> its value now, for the replicas judged
    outside: Mapping[str, float]  # the judged replicas past tolerance
    incomparable: Mapping[str, str]  # pod -> why its load is not comparable with the baseline's

    @property
    def judged(self) -> bool:
        return bool(self.values)

    @property
    def current(self) -> float | None:
        """The median over the judged replicas (what ``performance_ratios`` divides)."""
        return _median(list(self.values.values()))

    @property
    def within(self) -> bool | None:
        """True when every judged replica is within tolerance; None when none could be judged."""
        return None if not self.values else not self.outside


def judge_performance(
    baseline: Baseline,
    replicas: Sequence[Replica],
    tolerances: Mapping[str, Any] | None = None,
    load_tolerance: Mapping[str, float] | None = None,
    ignore: Sequence[str] = (),
) -> list[MetricResult]:
    """Each metric the baseline holds (in ``PERF_METRICS`` order, ignored keys left out), judged
    on ``replicas``: which were comparable, their values, which are outside tolerance."""
    tolerances = tolerances or {}
    loads = {r.pod: _comparable(baseline, r, load_tolerance or {}) for r in replicas}
    incomparable = {pod: why for pod, (ok, why) in loads.items() if not ok}
    out: list[MetricResult] = []
    for m in PERF_METRICS:
        key = OBSERVATION_PREFIX + m.name
        base = baseline.performance.get(m.name)
        if base is None or any(fnmatch.fnmatchcase(key, g) for g in ignore):
            continue
        dec, inc = _tolerance(m, tolerances.get(m.name))
        per_load = baseline.load.get(m.per) if m.per else None
        base_bounds = baseline.bounds.get(m.name) if not per_load else None
        values: dict[str, float] = {}
        bad: dict[str, float] = {}
        for r in replicas:
            now = observed(r, m, per_load=per_load)
            if now is None or r.pod in incomparable:
                continue
            values[r.pod] = now
            now_bounds = None if per_load else bounds(m, judged_windows(r, m))
            if _outside(
                m, now, base, dec, inc, bounds=(now_bounds or (now, now), base_bounds or (base, base))
            ):
                bad[r.pod] = now
        out.append(MetricResult(m, base, (dec, inc), per_load, base_bounds, values, bad, incomparable))
    return out


def compare_performance(
    baseline: Baseline,
    replicas: Sequence[Replica],
    tolerances: Mapping[str, Any] | None = None,
    load_tolerance: Mapping[str, float] | None = None,
    ignore: Sequence[str] = (),
) -> tuple[list[Drift], set[tuple[str, str]]]:
    """(drifts, undecided identities): metrics outside tolerance on replicas at comparable load."""
    drifts: list[Drift] = []
    undecided: set[tuple[str, str]] = set()
    for res in judge_performance(baseline, replicas, tolerances, load_tolerance, ignore):
        if not res.judged:
            undecided.add((Reference.BASELINE.value, OBSERVATION_PREFIX + res.metric.name))
        elif res.outside:
            drifts.append(
                _regression(
                    baseline,
                    res.metric,
                    dict(res.outside),
                    base=res.baseline,
                    tolerance=res.tolerance,
                    replicas=len(replicas),
                    per_load=res.per_load,
                    base_bounds=res.base_bounds,
                )
            )
    return drifts, undecided


def performance_ratios(baseline: Baseline, replicas: Sequence[Replica]) -> dict[str, float]:
    """Observation name -> current / baseline: the median over the replicas at comparable load
    (default load tolerances) of what ``compare_performance`` judges; absent when none is."""
    comparable = [r for r in replicas if _comparable(baseline, r, {})[0]]
    out: dict[str, float] = {}
    for m in PERF_METRICS:
        base = baseline.performance.get(m.name)
        if not base:
            continue
        per_load = baseline.load.get(m.per) if m.per else None
        now = _median([v for r in comparable if (v := observed(r, m, per_load=per_load)) is not None])
        if now is not None:
            out[m.name] = now / base
    return out


def _tolerance(m: Metric, override: Any) -> tuple[float | None, float | None]:
    """(max decrease, max increase): the SkewPolicy's where it names them, else the metric's."""
    dec = override.max_decrease if override is not None and override.max_decrease is not None else None
    inc = override.max_increase if override is not None and override.max_increase is not None else None
    return (m.max_decrease if dec is None else dec), (m.max_increase if inc is None else inc)


def _outside(
    m: Metric, now: float, base: float, dec: float | None, inc: float | None, *, bounds: tuple[Bounds, Bounds]
) -> bool:
    """Past tolerance, and certainly moved: the value (an interpolated estimate for a quantile of
    buckets) is past tolerance, and where the true value can lie now is wholly past where the
    baseline's could (``bounds``: now's, the baseline's; both the value for exact metrics).

    A quantile of buckets is interpolated inside its bucket, so requests moving across one
    bucket boundary move the estimate by up to the bucket's width: every request under vLLM's
    0.3 s boundary reads p95 0.285, a few just over it 0.43, "+50 %" for a change of some
    percent. Adjacent or shared buckets cannot tell such a step from a regression; a bucket
    wholly above the baseline's (a whole bucket between them) can."""
    (now_lo, now_hi), (base_lo, base_hi) = bounds
    fell = (
        m.worse in (Worse.LOWER, Worse.BOTH)
        and dec is not None
        and now < base * (1 - dec)
        and now_hi < base_lo
    )
    rose = (
        m.worse in (Worse.HIGHER, Worse.BOTH)
        and inc is not None
        and now > base * (1 + inc)
        and now_lo > base_hi
    )
    return fell or rose


def _limit_text(m: Metric, dec: float | None, inc: float | None) -> str:
    if m.worse is Worse.BOTH:
        return f"±{max(dec or 0, inc or 0) * 100:.0f}%"
    if m.worse is Worse.LOWER and dec is not None:
        return f"-{dec * 100:.0f}%"
    return f"+{(inc or 0) * 100:.0f}%"


def _regression(
    baseline: Baseline,
    m: Metric,
    bad: dict[str, float],
    *,
    base: float,
    tolerance: tuple[float | None, float | None],
    replicas: int,
    per_load: float | None,
    base_bounds: Bounds | None = None,
) -> Drift:
    actual = statistics.median(bad.values())
    change = (actual - base) / base * 100 if base else 0.0
    limit = _limit_text(m, *tolerance)
    load = ", ".join(f"{k} {v:.3g}" for k, v in sorted(baseline.load.items()))
    return Drift(
        Reference.BASELINE,
        OBSERVATION_PREFIX + m.name,
        base,
        actual,
        bad,
        f"{len(bad)} of {replicas} replicas: {m.name} = {actual:.4g}, baseline {base:.4g} "
        f"({change:+.0f}%, tolerance {limit}) at comparable load ({load})",
        f"performance baseline (id {baseline.id})",
        {p: {"source": "runtime_metrics", "method": "observation", "detail": m.name} for p in bad},
        performance=True,
        expected_text=f"expected {base:.4g} (median change {change:+.0f}%, tolerance {limit}, "
        f"at comparable load: {load}"
        + (f"; per unit of {m.per}, scaled to the baseline's" if per_load else "")
        + (
            f"; read from histogram buckets, the baseline lies in "
            f"[{base_bounds[0]:.4g}, {base_bounds[1]:.4g}]"
            if base_bounds
            else ""
        )
        + ")",
    )


def _show(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)


__all__ = [
    "PERF_METRICS",
    "Baseline",
    "BaselineError",
    "Metric",
    "MetricResult",
    "compare_config",
    "compare_performance",
    "judge_performance",
    "performance_ratios",
    "record",
]
