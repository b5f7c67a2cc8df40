"""The probe against a workload's performance baseline: the comparable level, each metric judged.

A collector's baseline (``GET /api/v1/baselines/{namespace}/{name}``, ``collector.baseline``)
holds the workload's performance at a known load: ``performance`` (``ttft_seconds_p95``,
``e2e_latency_seconds_p95``/``_p99``, ``generation_tokens_per_s``, …) and ``load``
(``requests_per_s``, ``requests_running``), medians over the replicas' observation windows.

**The comparable level.** The probe's levels are closed loops, so each ran at whatever rate the
server sustained. The level compared is the one whose measured requests/s is closest to the
baseline's ``load.requests_per_s``; it is comparable when within the collector's own load rule for
that dimension (``LOAD_METRICS["requests_per_s"]`` of :mod:`collector.baseline.model`: ±30 % of
the baseline's rate, or ±0.5 requests/s, whichever is wider). None within it: the comparison is
*not comparable*, with the closest level and the rule in the reason.

**Each metric** at that level, in the baseline's unit: measured / baseline is the ratio; a latency
fails above ``1 + tolerance``, output tokens/s below ``1 - tolerance`` (``--baseline-tolerance``,
default 0.25). Where the baseline's value is a quantile read from histogram buckets
(``performance_bounds``: where the true value can lie), a latency is judged against the bucket's
upper bound: a bucket boundary is not a regression. A metric the baseline lacks is skipped and
says so; one the probe could not measure fails, as a threshold does.

**What differs.** The baseline is measured server-side, from the engine's histograms over the
workload's own traffic; the probe client-side (network and client included) over its plan's
prompts and output lengths. The ratio says the server is in the range it was; the result says
so beside the numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from collector.baseline.model import LOAD_METRICS
from skewwatch.probe.stats import LevelStats

DEFAULT_TOLERANCE = 0.25
LOAD_KEY = "requests_per_s"
CAVEAT = (
    "the baseline is measured server-side (the engine's histograms, over the workload's own traffic), "
    "the probe client-side (network and client included, over its plan's prompts and output lengths): "
    "a ratio says the server is in the range it was, not that the two are one measurement"
)


def _ms_to_s(value: float | None) -> float | None:
    return None if value is None else value / 1000


@dataclass(frozen=True)
class BaselineMetric:
    """One baseline metric, the probe's metric it is compared with, and which way is worse."""

    name: str  # in the baseline's performance map
    probe_metric: str  # in the probe's level
    get: Callable[[LevelStats], float | None]  # in the baseline's unit
    worse: Literal["higher", "lower"]
    unit: str
    stream_only: bool


METRICS: tuple[BaselineMetric, ...] = (
    BaselineMetric("ttft_seconds_p95", "ttft_ms.p95", lambda s: _ms_to_s(s.ttft_ms.p95), "higher", "s", True),
    BaselineMetric(
        "e2e_latency_seconds_p95", "e2e_ms.p95", lambda s: _ms_to_s(s.e2e_ms.p95), "higher", "s", False
    ),
    BaselineMetric(
        "e2e_latency_seconds_p99", "e2e_ms.p99", lambda s: _ms_to_s(s.e2e_ms.p99), "higher", "s", False
    ),
    BaselineMetric(
        "generation_tokens_per_s", "output_tokens_per_s", lambda s: s.output_tokens_per_s, "lower",
        "tokens/s", False,
    ),
)  # fmt: skip


def load_rule() -> str:
    rel, floor = LOAD_METRICS[LOAD_KEY]
    return f"{LOAD_KEY} within ±{rel * 100:.0f}% or ±{floor:g} of the baseline's, whichever is wider"


def load_tolerance(base: float) -> float:
    rel, floor = LOAD_METRICS[LOAD_KEY]
    return max(abs(base) * rel, floor)


@dataclass(frozen=True)
class Judged:
    """One metric at the compared level."""

    metric: BaselineMetric
    baseline: float
    bounds: tuple[float, float] | None
    measured: float | None
    limit_ratio: float
    ok: bool

    @property
    def reference(self) -> float:
        """What the measured value is held against: the bucket's upper bound for a latency read from
        histogram buckets (a bucket boundary is not a regression), else the baseline's value."""
        if self.bounds is not None and self.metric.worse == "higher":
            return max(self.baseline, self.bounds[1])
        if self.bounds is not None:
            return min(self.baseline, self.bounds[0])
        return self.baseline

    @property
    def ratio(self) -> float | None:
        return None if self.measured is None else self.measured / self.baseline

    def as_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric.name,
            "probe_metric": self.metric.probe_metric,
            "unit": self.metric.unit,
            "worse": self.metric.worse,
            "baseline": self.baseline,
            "baseline_bounds": None if self.bounds is None else list(self.bounds),
            "measured": None if self.measured is None else round(self.measured, 6),
            "ratio": None if self.ratio is None else round(self.ratio, 4),
            "limit_ratio": self.limit_ratio,
            "ok": self.ok,
        }


@dataclass(frozen=True)
class Comparison:
    """The probe against one baseline: the level compared (None: not comparable) and its metrics."""

    workload: str
    baseline_id: Any
    recorded_at: Any
    origin: Any
    load: Mapping[str, float]
    tolerance: float
    level: LevelStats | None
    why_not: str | None
    judged: tuple[Judged, ...]
    skipped: tuple[tuple[str, str], ...]

    @property
    def comparable(self) -> bool:
        return self.level is not None and self.why_not is None

    @property
    def failed(self) -> list[Judged]:
        return [j for j in self.judged if not j.ok]

    def lines(self) -> list[str]:
        """One line per judged metric, as the verdict's reasons and the table show them."""
        if self.level is None:
            return []
        n = self.level.concurrency
        return [judged_line(j.as_dict(), n) for j in self.judged]

    def as_dict(self) -> dict[str, Any]:
        level = self.level
        return {
            "workload": self.workload,
            "id": self.baseline_id,
            "recorded_at": self.recorded_at,
            "origin": self.origin,
            "load": dict(self.load),
            "load_rule": load_rule(),
            "tolerance": self.tolerance,
            "comparable": self.comparable,
            "why_not": self.why_not,
            "concurrency": None if level is None else level.concurrency,
            "measured_requests_per_s": None if level is None or level.requests_per_s is None
            else round(level.requests_per_s, 4),
            "client_saturated": bool(level is not None and level.client.saturated),
            "metrics": [j.as_dict() for j in self.judged],
            "skipped": [{"metric": m, "why": why} for m, why in self.skipped],
            "passed": self.comparable and not self.failed,
            "caveat": CAVEAT,
        }  # fmt: skip


def judged_line(j: Mapping[str, Any], concurrency: int) -> str:
    unit = j["unit"]
    measured = "not measured" if j["measured"] is None else f"{j['measured']:.4g} {unit}"
    ratio = "" if j["ratio"] is None else f", x{j['ratio']:.2f}"
    op = "<=" if j["worse"] == "higher" else ">="
    return (
        f"{'PASS' if j['ok'] else 'FAIL'} baseline {j['metric']} at concurrency {concurrency}: probe "
        f"{j['probe_metric']} {measured} vs baseline {j['baseline']:.4g} {unit}{ratio} "
        f"(needs {op} x{j['limit_ratio']:g})"
    )


def _numbers(value: object) -> dict[str, float]:
    if not isinstance(value, Mapping):
        return {}
    return {
        str(k): float(v) for k, v in value.items() if isinstance(v, int | float) and not isinstance(v, bool)
    }


def _bounds(value: object, name: str) -> tuple[float, float] | None:
    if not isinstance(value, Mapping):
        return None
    pair = value.get(name)
    if isinstance(pair, list) and len(pair) == 2 and all(isinstance(v, int | float) for v in pair):
        return float(pair[0]), float(pair[1])
    return None


def closest_level(
    levels: Sequence[LevelStats], load: Mapping[str, float]
) -> tuple[LevelStats | None, str | None]:
    """The level at the baseline's load, or (the closest level or None, why it is not comparable)."""
    base = load.get(LOAD_KEY)
    if base is None:
        return None, f"the baseline holds no load.{LOAD_KEY} to find a comparable level by"
    rated = [lv for lv in levels if lv.requests_per_s is not None]
    if not rated:
        return None, "no level measured a request rate (no request succeeded)"
    best = min(rated, key=lambda lv: abs(float(lv.requests_per_s or 0.0) - base))
    rate = float(best.requests_per_s or 0.0)
    if abs(rate - base) > load_tolerance(base):
        running = load.get("requests_running")
        hint = (
            f"; the baseline had {running:.3g} requests running: try --concurrency near it" if running else ""
        )
        return best, (
            f"no level ran at a comparable load: the closest, concurrency {best.concurrency}, at "
            f"{rate:.3g} requests/s, the baseline at {base:.3g} ({load_rule()}){hint}"
        )
    return best, None


def compare(
    levels: Sequence[LevelStats], answer: Mapping[str, Any], tolerance: float, *, stream: bool
) -> Comparison:
    """The probe's levels against ``answer``'s baseline (the GET answer, checked by the caller)."""
    b: Mapping[str, Any] = answer["baseline"]
    load = _numbers(b.get("load"))
    performance = _numbers(b.get("performance"))
    level, why_not = closest_level(levels, load)
    judged: list[Judged] = []
    skipped: list[tuple[str, str]] = []
    if level is not None and why_not is None:
        for m in METRICS:
            base = performance.get(m.name)
            if base is None or base <= 0:
                skipped.append((m.name, "not in the baseline" if base is None else "0 in the baseline"))
                continue
            if m.stream_only and not stream:
                skipped.append((m.name, "not measured without a stream (--no-stream)"))
                continue
            limit = 1 + tolerance if m.worse == "higher" else 1 - tolerance
            measured = m.get(level)
            j = Judged(
                m, base, _bounds(b.get("performance_bounds"), m.name), measured, round(limit, 4), False
            )
            ok = measured is not None and (
                measured <= j.reference * limit if m.worse == "higher" else measured >= j.reference * limit
            )
            judged.append(Judged(j.metric, j.baseline, j.bounds, measured, j.limit_ratio, ok))
        if not judged:
            why_not = "the baseline holds none of " + ", ".join(m.name for m in METRICS)
    return Comparison(
        workload=str(answer.get("workload") or b.get("workload") or ""),
        baseline_id=b.get("id"),
        recorded_at=b.get("recorded_at"),
        origin=b.get("origin"),
        load=load,
        tolerance=tolerance,
        level=level,
        why_not=why_not,
        judged=tuple(judged),
        skipped=tuple(skipped),
    )


def not_compared(answer: Mapping[str, Any], tolerance: float, why: str) -> Comparison:
    """The section when nothing ran to compare (the endpoint unreachable, no level)."""
    b: Mapping[str, Any] = answer["baseline"]
    return Comparison(
        str(answer.get("workload") or ""), b.get("id"), b.get("recorded_at"), b.get("origin"),
        _numbers(b.get("load")), tolerance, None, why, (), (),
    )  # fmt: skip
