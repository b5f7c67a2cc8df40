"""Probe results stored with their workload, and the verification answer ("may the incident be closed?").

A probe result is the document ``skewwatch probe -o json`` writes (schema ``skewwatch.probe/v1``,
docs/probe.md), posted to the collector. ``parse_document`` checks the fields the collector reads
(schema, verdict, levels keyed by an integer concurrency, the per-level numbers the summary
takes, the thresholds) and answers ``BadRequestError`` naming the field at fault;
``redact_document`` passes every string of it (keys too) through the collector's redactor before
it is stored: the probe never sends its API key, and a key echoed in an error example still
does not reach the store. ``ProbeView`` is one stored result as the API serialises it (with its
``summary``), ``ProbeList`` a workload's newest ones.

``verification`` is the pure core of ``Queries.verification``: the workload's active findings,
its baseline and the latest observations of its live replicas, judged by the drift engine's own
performance rule (``collector.baseline.model.judge_performance``: comparable load first, then
each metric against its tolerance), into a ``Verification`` whose ``reasons`` say each why not.

The schema name is repeated here, not imported: the collector never imports ``skewwatch.probe``
(import-linter), and the document is its wire contract.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from collector.baseline.model import MetricResult, Worse, judge_performance
from collector.domain.baseline import Baseline
from collector.domain.model import FindingRecord, Replica, Status
from collector.errors import BadRequestError
from collector.intent.binding import Bound
from collector.intent.model import Tolerance
from collector.store.base import ProbeRecord
from skewwatch.redact import Redactor

JSON = dict[str, Any]
PROBE_SCHEMA = "skewwatch.probe/v1"
VERDICTS = ("pass", "fail", "inconclusive", "error")
MAX_PROBE_BYTES = 256 * 1024  # the body of a POST of one result
LIMIT_PROBE_BYTES = "max_probe_bytes"
MAX_LEVELS = 64
MAX_CONCURRENCY = 1_000_000
PROBES_KEEP = 50  # results kept per workload; the oldest are dropped
MAX_PROBES_LIMIT = 50
DEFAULT_PROBES_LIMIT = 10
MAX_ITEMS = 200  # findings a verification lists (the counts are always whole)
MAX_NAMED = 10  # findings one reason names before "and N more"
NO_BASELINE = "no baseline: record one before the incident or verify against thresholds with the probe"


# -- the document ----------------------------------------------------------------------------------


def _number(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequestError(f"{where}: expected a number or null, got {type(value).__name__}")
    return float(value)


def _object(value: Any, where: str, optional: bool = True) -> Mapping[str, Any]:
    if value is None and optional:
        return {}
    if not isinstance(value, dict):
        raise BadRequestError(f"{where}: expected an object, got {type(value).__name__}")
    return value


def _string(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequestError(f"{where}: expected a string, got {type(value).__name__}")
    return value


def _integer(value: Any) -> int | None:
    """An integer as JSON Schema reads one (``4`` and ``4.0`` alike), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _level(value: Any, where: str) -> dict[str, Any]:
    """The level, its concurrency and error counts as ints (``4.0`` is the integer 4 in JSON)."""
    level = dict(_object(value, where, optional=False))
    raw = level.get("concurrency")
    n = _integer(raw)
    if n is None:
        raise BadRequestError(f"{where}.concurrency: expected an integer, got {type(raw).__name__}")
    if not 1 <= n <= MAX_CONCURRENCY:
        raise BadRequestError(f"{where}.concurrency: {n} is not between 1 and {MAX_CONCURRENCY}")
    level["concurrency"] = n
    for field in ("requests_per_s", "output_tokens_per_s"):
        _number(level.get(field), f"{where}.{field}")
    for dist, quantile in (("ttft_ms", "p95"), ("e2e_ms", "p99")):
        _number(_object(level.get(dist), f"{where}.{dist}").get(quantile), f"{where}.{dist}.{quantile}")
    if level.get("errors") is not None:
        counts: dict[str, int] = {}
        for kind, count in _object(level["errors"], f"{where}.errors").items():
            c = _integer(count)
            if c is None:
                raise BadRequestError(f"{where}.errors.{kind[:40]}: expected an integer count")
            counts[kind] = c
        level["errors"] = counts
    return level


def parse_document(doc: Any) -> JSON:
    """The posted result, checked where the collector reads it (the levels' integers as ints);
    BadRequestError naming the field."""
    if not isinstance(doc, dict):
        raise BadRequestError(
            f"body: expected the probe's JSON document (an object), got {type(doc).__name__}"
        )
    if doc.get("schema") != PROBE_SCHEMA:
        got = doc.get("schema")
        raise BadRequestError(f"body.schema: expected {PROBE_SCHEMA!r}, got {str(got)[:60]!r}")
    if doc.get("verdict") not in VERDICTS:
        raise BadRequestError(
            f"body.verdict: expected one of {', '.join(VERDICTS)}, got {str(doc.get('verdict'))[:40]!r}"
        )
    levels = doc.get("levels")
    if not isinstance(levels, list):
        raise BadRequestError(f"body.levels: expected a list, got {type(levels).__name__}")
    if len(levels) > MAX_LEVELS:
        raise BadRequestError(f"body.levels: at most {MAX_LEVELS} levels, got {len(levels)}")
    checked = [_level(level, f"body.levels[{i}]") for i, level in enumerate(levels)]
    target = _object(doc.get("target"), "body.target")
    for field in ("endpoint", "model"):
        _string(target.get(field), f"body.target.{field}")
    thresholds = doc.get("thresholds", [])
    if not isinstance(thresholds, list):
        raise BadRequestError(f"body.thresholds: expected a list, got {type(thresholds).__name__}")
    for i, t in enumerate(thresholds):
        item = _object(t, f"body.thresholds[{i}]", optional=False)
        if not isinstance(item.get("passed"), bool):
            raise BadRequestError(f"body.thresholds[{i}].passed: expected true or false")
        for field in ("flag", "metric"):
            _string(item.get(field), f"body.thresholds[{i}].{field}")
    return {**doc, "levels": checked}


def redact_document(doc: Any, redactor: Redactor) -> Any:
    """``doc`` with every string (object keys too) through ``redactor.text``; iterative, so a
    deep document cannot exhaust the stack (the API bounds its depth anyway)."""

    def one(value: Any) -> Any:
        return redactor.text(value) if isinstance(value, str) else value

    root: list[Any] = [doc]
    stack: list[tuple[Any, list[Any] | dict[str, Any], Any]] = [(doc, root, 0)]
    while stack:
        node, parent, slot = stack.pop()
        if isinstance(node, dict):
            copy: dict[str, Any] = {}
            parent[slot] = copy
            for k, v in node.items():
                key = one(k)
                copy[key] = None
                stack.append((v, copy, key))
        elif isinstance(node, list):
            items: list[Any] = [None] * len(node)
            parent[slot] = items
            stack.extend((v, items, i) for i, v in enumerate(node))
        else:
            parent[slot] = one(node)
    return root[0]


def summary(doc: Mapping[str, Any]) -> JSON:
    """The verdict, target, each level's headline numbers and the failed thresholds' names."""
    target = doc.get("target") or {}
    out: JSON = {"verdict": doc.get("verdict")}
    for field in ("endpoint", "model"):
        if isinstance(target.get(field), str):
            out[field] = target[field]
    out["levels"] = [
        {
            "concurrency": lv.get("concurrency"),
            "requests_per_s": lv.get("requests_per_s"),
            "output_tokens_per_s": lv.get("output_tokens_per_s"),
            "ttft_ms_p95": (lv.get("ttft_ms") or {}).get("p95"),
            "e2e_ms_p99": (lv.get("e2e_ms") or {}).get("p99"),
            "errors": dict(lv.get("errors") or {}),
        }
        for lv in doc.get("levels") or []
    ]
    failed: list[str] = []
    for t in doc.get("thresholds") or []:
        name = t.get("flag") or t.get("metric")
        if t.get("passed") is False and isinstance(name, str) and name not in failed:
            failed.append(name)
    out["failed"] = failed
    return out


@dataclass(frozen=True)
class ProbeView:
    """One stored probe result as the API shows it."""

    record: ProbeRecord

    def as_dict(self, document: bool = True) -> JSON:
        r = self.record
        out: JSON = {
            "id": r.id,
            "workload": r.workload,
            "recorded_at": r.recorded_at,
            "verdict": r.verdict,
            "summary": summary(r.document),
        }
        if document:
            out["document"] = r.document
        return out


@dataclass(frozen=True)
class ProbeList:
    """A workload's newest probe results, newest first (documents left out)."""

    workload: str
    probes: Sequence[ProbeView]

    def as_dict(self) -> JSON:
        return {"workload": self.workload, "probes": [p.as_dict(document=False) for p in self.probes]}


# -- verification ----------------------------------------------------------------------------------


def policy_tolerances(bound: Bound) -> tuple[dict[str, Tolerance], dict[str, float]]:
    """The bound policies' performance and load tolerances, the first policy naming one winning,
    as the drift engine merges them for its own evaluation."""
    tolerances: dict[str, Tolerance] = {}
    load: dict[str, float] = {}
    for p in bound.policies:
        for k, t in p.tolerances.items():
            tolerances.setdefault(k, t)
        for k, v in p.load_tolerance.items():
            load.setdefault(k, v)
    return tolerances, load


@dataclass(frozen=True)
class FindingItem:
    id: int
    key: str
    severity: str
    reference: str
    status: str

    def as_dict(self) -> JSON:
        return {
            "id": self.id,
            "key": self.key,
            "severity": self.severity,
            "reference": self.reference,
            "status": self.status,
        }


@dataclass(frozen=True)
class MetricCheck:
    """One baseline metric now: the median of the judged replicas, the ratio, within or not, why."""

    metric: str
    baseline: float
    current: float | None
    tolerance: Mapping[str, float | None]  # max_decrease, max_increase (fractions)
    comparable: bool  # some live replica is at a load comparable with the baseline's
    within: bool | None  # None: not judged (no replica at comparable load, or too few samples)
    why: str

    @property
    def ratio(self) -> float | None:
        return None if self.current is None or not self.baseline else self.current / self.baseline

    def as_dict(self) -> JSON:
        return {
            "metric": self.metric,
            "baseline": self.baseline,
            "current": self.current,
            "ratio": self.ratio,
            "tolerance": dict(self.tolerance),
            "comparable": self.comparable,
            "within": self.within,
            "why": self.why,
        }


@dataclass(frozen=True)
class Verification:
    """May the incident on ``workload`` be closed: only when ``reasons`` is empty."""

    workload: str
    reasons: Sequence[str]
    open_findings: int
    pending_findings: int
    items: Sequence[FindingItem]
    baseline: Baseline | None
    performance: Sequence[MetricCheck]
    latest_probe: ProbeView | None

    @property
    def may_close(self) -> bool:
        return not self.reasons

    def as_dict(self) -> JSON:
        b = self.baseline
        return {
            "workload": self.workload,
            "may_close": self.may_close,
            "reasons": list(self.reasons),
            "findings": {
                "open": self.open_findings,
                "pending": self.pending_findings,
                "items": [i.as_dict() for i in self.items],
            },
            "baseline": {"id": b.id, "recorded_at": b.recorded_at, "origin": b.origin} if b else None,
            "performance": [m.as_dict() for m in self.performance],
            "latest_probe": self.latest_probe.as_dict(document=False) if self.latest_probe else None,
        }


def _unit(metric: str) -> str:
    if "_seconds_" in metric:
        return " s"
    if metric.endswith("_bytes"):
        return " B"
    return ""


def _factor(x: float) -> str:
    return f"{x:.2g}x"


def _tolerance_text(res: MetricResult) -> str:
    dec, inc = res.tolerance
    low = _factor(1 - dec) if dec is not None and res.metric.worse is not Worse.HIGHER else None
    high = _factor(1 + inc) if inc is not None and res.metric.worse is not Worse.LOWER else None
    return " to ".join(t for t in (low, high) if t) or "none"


def _finding_note(f: FindingRecord, now: float) -> str:
    notes = [f.severity]
    if f.silenced(now):
        notes.append("silenced: still open")
    elif f.ack:
        notes.append("acknowledged: still open")
    return f"#{f.id} {f.key} ({', '.join(notes)})"


def _finding_reason(what: str, found: Sequence[FindingRecord], now: float, note: str = "") -> str:
    named = ", ".join(_finding_note(f, now) for f in found[:MAX_NAMED])
    more = f", and {len(found) - MAX_NAMED} more" if len(found) > MAX_NAMED else ""
    s = "" if len(found) == 1 else "s"
    return f"{len(found)} {what} finding{s}{note}: {named}{more}"


def _check(res: MetricResult, live: int) -> MetricCheck:
    name, unit = res.metric.name, _unit(res.metric.name)
    dec, inc = res.tolerance
    comparable = live > 0 and len(res.incomparable) < live
    current = res.current
    if live == 0:
        why = "no live replica to compare with the baseline"
    elif not comparable:
        why = "; ".join(sorted(set(res.incomparable.values())))
    elif not res.judged:
        why = f"too few samples of {name} at comparable load to judge"
    elif res.outside:
        now = float(statistics.median(res.outside.values()))
        ratio = now / res.baseline if res.baseline else float("inf")
        on = (
            f" on {len(res.outside)} of {len(res.values)} replicas"
            if len(res.outside) < len(res.values)
            else ""
        )
        why = (
            f"{name} {now:.3g}{unit} is {_factor(ratio)} the baseline's {res.baseline:.3g}{unit} "
            f"(tolerance {_tolerance_text(res)}){on}"
        )
    else:
        why = f"within tolerance ({_tolerance_text(res)}) at comparable load on {len(res.values)} replica(s)"
    return MetricCheck(
        name,
        res.baseline,
        current,
        {"max_decrease": dec, "max_increase": inc},
        comparable,
        res.within,
        why,
    )


def _performance_reasons(checks: Sequence[MetricCheck]) -> list[str]:
    reasons: list[str] = []
    for c in checks:
        # One load mismatch blocks every metric: it is said once, not once per metric.
        if c.within is not True and c.why not in reasons:
            reasons.append(c.why)
    return reasons


def verification(
    workload: str,
    *,
    active: Sequence[FindingRecord],
    baseline: Baseline | None,
    replicas: Sequence[Replica],
    bound: Bound,
    ignore: Sequence[str],
    latest_probe: ProbeRecord | None,
    now: float,
) -> Verification:
    """The verification of ``workload`` from its active (pending and open) findings, baseline,
    live replicas (with their newest observation windows) and the intents bound to it."""
    opened = [f for f in active if f.status is Status.OPEN]
    pending = [f for f in active if f.status is Status.PENDING]
    reasons: list[str] = []
    if opened:
        reasons.append(_finding_reason("open", opened, now))
    if pending:
        reasons.append(_finding_reason("pending", pending, now, " (seen, not yet past the debounce)"))
    checks: list[MetricCheck] = []
    if baseline is None:
        reasons.append(
            "no baseline: record one before the incident or verify against thresholds with the probe"
        )
    else:
        tolerances, load = policy_tolerances(bound)
        results = judge_performance(baseline, replicas, tolerances, load, ignore)
        checks = [_check(res, len(replicas)) for res in results]
        if not checks:
            reasons.append(
                f"the baseline (id {baseline.id}) holds no performance numbers to compare with: record one "
                "while the workload serves traffic"
            )
        reasons += _performance_reasons(checks)
    items = [FindingItem(f.id, f.key, f.severity, f.reference, f.status.value) for f in [*opened, *pending]][
        :MAX_ITEMS
    ]
    return Verification(
        workload=workload,
        reasons=reasons,
        open_findings=len(opened),
        pending_findings=len(pending),
        items=items,
        baseline=baseline,
        performance=checks,
        latest_probe=ProbeView(latest_probe) if latest_probe else None,
    )
