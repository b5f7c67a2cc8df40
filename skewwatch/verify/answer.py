"""The collector's verification answer, parsed into typed values. Pure: no I/O.

``GET /api/v1/workloads/{namespace}/{name}/verification`` answers::

    {"workload", "may_close": bool, "reasons": [str],
     "findings": {"open": n, "pending": n, "items": [{"id", "key", "severity", "reference", "status"}]},
     "baseline": {"id", "recorded_at", "origin"} | null,
     "performance": [{"metric", "baseline", "current", "ratio", "tolerance", "comparable": bool,
                      "within": bool | null, "why"}],
     "latest_probe": {"id", "workload", "recorded_at", "verdict", "summary"} | null}

:func:`parse` checks exactly the fields the decision and the table read, and raises
:class:`AnswerError` naming the first one that is missing or of the wrong type; fields it does not
read are kept in the raw document (the JSON output carries it unchanged), so a collector that adds
fields stays compatible.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from skewwatch.verify.errors import AnswerError

Scalar = str | int | float | None


@dataclass(frozen=True)
class FindingItem:
    id: Scalar
    key: str
    severity: str
    reference: str
    status: str


@dataclass(frozen=True)
class Findings:
    open: int
    pending: int
    items: tuple[FindingItem, ...]


@dataclass(frozen=True)
class BaselineRef:
    id: Scalar
    recorded_at: Scalar
    origin: str


@dataclass(frozen=True)
class PerformanceCheck:
    """One metric of the latest observations against the baseline's."""

    metric: str
    baseline: float | None
    current: float | None
    ratio: float | None
    tolerance: str  # as shown: "-10% +25%" (how much lower / higher passes), "-" when none
    comparable: bool
    within: bool | None
    why: str

    @property
    def status(self) -> str:
        """``ok``, ``not`` (outside tolerance), ``incomparable`` (no comparable load) or ``unknown``."""
        if not self.comparable:
            return "incomparable"
        if self.within is None:
            return "unknown"
        return "ok" if self.within else "not"


@dataclass(frozen=True)
class ProbeRef:
    id: Scalar
    recorded_at: Scalar
    verdict: str
    summary: str


@dataclass(frozen=True)
class Verification:
    workload: str
    may_close: bool
    reasons: tuple[str, ...]
    findings: Findings
    baseline: BaselineRef | None
    performance: tuple[PerformanceCheck, ...]
    latest_probe: ProbeRef | None


def parse(doc: Any) -> Verification:
    """The typed answer; AnswerError naming the field (``findings.items[2].key``) that is wrong."""
    d = _object(doc, "the answer")
    findings = _object(_get(d, "findings", ""), "findings")
    items = tuple(
        _finding(x, f"findings.items[{i}]") for i, x in enumerate(_array(findings, "items", "findings"))
    )
    return Verification(
        workload=_workload(_get(d, "workload", "")),
        may_close=_bool(d, "may_close", ""),
        reasons=tuple(_str(r, f"reasons[{i}]") for i, r in enumerate(_array(d, "reasons", ""))),
        findings=Findings(
            _count(findings, "open", "findings"), _count(findings, "pending", "findings"), items
        ),
        baseline=_baseline(d.get("baseline")),
        performance=tuple(
            _performance(x, f"performance[{i}]") for i, x in enumerate(_array(d, "performance", ""))
        ),
        latest_probe=_probe(d.get("latest_probe")),
    )


def _where(parent: str, key: str) -> str:
    return f"{parent}.{key}" if parent else key


def _get(d: Mapping[str, Any], key: str, parent: str) -> Any:
    if key not in d:
        raise AnswerError(_where(parent, key), "missing")
    return d[key]


def _object(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise AnswerError(where, f"expected an object, got {_kind(value)}")
    return value


def _array(d: Mapping[str, Any], key: str, parent: str) -> Sequence[Any]:
    value = _get(d, key, parent)
    if not isinstance(value, list):
        raise AnswerError(_where(parent, key), f"expected an array, got {_kind(value)}")
    return value


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise AnswerError(where, f"expected a string, got {_kind(value)}")
    return value


def _text(d: Mapping[str, Any], key: str, parent: str) -> str:
    """A string field that may be absent or null (shown as empty)."""
    value = d.get(key)
    return "" if value is None else _str(value, _where(parent, key))


def _bool(d: Mapping[str, Any], key: str, parent: str) -> bool:
    value = _get(d, key, parent)
    if not isinstance(value, bool):
        raise AnswerError(_where(parent, key), f"expected true or false, got {_kind(value)}")
    return value


def _count(d: Mapping[str, Any], key: str, parent: str) -> int:
    value = _get(d, key, parent)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise AnswerError(_where(parent, key), f"expected a count (an integer from 0), got {value!r}")
    return value


def _number(d: Mapping[str, Any], key: str, parent: str) -> float | None:
    value = d.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AnswerError(_where(parent, key), f"expected a number or null, got {_kind(value)}")
    return float(value)


def _scalar(d: Mapping[str, Any], key: str, parent: str) -> Scalar:
    value = d.get(key)
    if value is None or (isinstance(value, str | int | float) and not isinstance(value, bool)):
        return value
    raise AnswerError(_where(parent, key), f"expected a string, a number or null, got {_kind(value)}")


def _workload(value: Any) -> str:
    # A string (namespace/kind/name), or an object naming it: shown, never decided on.
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and isinstance(value.get("workload"), str):
        return str(value["workload"])
    raise AnswerError("workload", f"expected a workload name, got {_kind(value)}")


def _finding(value: Any, where: str) -> FindingItem:
    d = _object(value, where)
    return FindingItem(
        id=_scalar(d, "id", where),
        key=_str(_get(d, "key", where), f"{where}.key"),
        severity=_text(d, "severity", where),
        reference=_reference(d.get("reference"), f"{where}.reference"),
        status=_text(d, "status", where),
    )


def _reference(value: Any, where: str) -> str:
    # One reference, or the list of every reference a finding breaks.
    if value is None:
        return ""
    if isinstance(value, list):
        return ",".join(_str(v, f"{where}[{i}]") for i, v in enumerate(value))
    return _str(value, where)


def _baseline(value: Any) -> BaselineRef | None:
    if value is None:
        return None
    d = _object(value, "baseline")
    return BaselineRef(
        _scalar(d, "id", "baseline"), _scalar(d, "recorded_at", "baseline"), _text(d, "origin", "baseline")
    )


def _performance(value: Any, where: str) -> PerformanceCheck:
    d = _object(value, where)
    within = d.get("within")
    if within is not None and not isinstance(within, bool):
        raise AnswerError(f"{where}.within", f"expected true, false or null, got {_kind(within)}")
    return PerformanceCheck(
        metric=_str(_get(d, "metric", where), f"{where}.metric"),
        baseline=_number(d, "baseline", where),
        current=_number(d, "current", where),
        ratio=_number(d, "ratio", where),
        tolerance=_tolerance(d.get("tolerance"), f"{where}.tolerance"),
        comparable=_bool(d, "comparable", where),
        within=within,
        why=_text(d, "why", where),
    )


def _tolerance(value: Any, where: str) -> str:
    """``{"max_decrease", "max_increase"}`` (fractions, each may be null) as ``-10% +25%``; a bare
    number is one fraction either way (``±10%``)."""
    if value is None:
        return "-"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"±{_percent(value)}"
    d = _object(value, where)
    parts = []
    for key, sign in (("max_decrease", "-"), ("max_increase", "+")):
        bound = _number(d, key, where)
        if bound is not None:
            parts.append(f"{sign}{_percent(bound)}")
    return " ".join(parts) or "-"


def _percent(fraction: float) -> str:
    return f"{fraction * 100:.4g}%"


def _probe(value: Any) -> ProbeRef | None:
    if value is None:
        return None
    d = _object(value, "latest_probe")
    return ProbeRef(
        id=_scalar(d, "id", "latest_probe"),
        recorded_at=_scalar(d, "recorded_at", "latest_probe"),
        verdict=_str(_get(d, "verdict", "latest_probe"), "latest_probe.verdict"),
        summary=_summary(d.get("summary")),
    )


def _summary(value: Any) -> str:
    """The collector's summary of a probe result (``verdict``, ``levels`` with headline numbers,
    ``failed`` thresholds) as one line; a string as it is; anything else as compact JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and isinstance(value.get("levels"), list):
        parts = [_level_summary(lv) for lv in value["levels"] if isinstance(lv, Mapping)]
        failed = value.get("failed")
        if isinstance(failed, list) and failed:
            parts.append("failed " + ", ".join(str(f) for f in failed))
        return "; ".join(parts)
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(", ", ": "))


def _level_summary(lv: Mapping[str, Any]) -> str:
    def shown(key: str) -> str:
        v = lv.get(key)
        return f"{v:.4g}" if isinstance(v, int | float) and not isinstance(v, bool) else "-"

    return (
        f"concurrency {lv.get('concurrency')}: {shown('output_tokens_per_s')} tokens/s, "
        f"TTFT p95 {shown('ttft_ms_p95')} ms, e2e p99 {shown('e2e_ms_p99')} ms"
    )


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", str: "a string", int: "a number", float: "a number", list: "an array"}.get(
        type(value), "an object" if isinstance(value, Mapping) else type(value).__name__
    )
