"""What ``skewwatch verify`` prints: the result document (``-o json|yaml``) and the table.

The document, schema ``skewwatch.verify/v1``: ``workload``, ``verdict`` (``closable``,
``not_closable``, ``unverified``), ``may_close``, ``exit_code``, ``reasons`` (every reason, one
line each), ``verification`` (the collector's answer, unchanged), ``probe`` (null, or this run's:
``verdict``, ``exit_code``, ``reasons``, ``stored`` (the collector's record, null when not stored),
``result`` (the probe's ``skewwatch.probe/v1`` document)), ``evidence`` (null, or ``path``,
``format``, ``bytes``) and ``checked_at`` (RFC 3339 UTC).

The table has one row per check (findings, each active finding, the baseline, each performance
metric with baseline → current, ratio, tolerance; the latest stored probe, this run's probe and
the evidence file), then the verdict and every reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from collector.cli.output import Column, Table, format_time
from skewwatch.verify.answer import Scalar, Verification
from skewwatch.verify.decide import Decision
from skewwatch.verify.evidence import Written

SCHEMA = "skewwatch.verify/v1"
HEADLINES = {
    "closable": "MAY CLOSE: the incident may be closed",
    "not_closable": "NOT YET: the incident may not be closed",
    "unverified": "COULD NOT VERIFY",
}


@dataclass(frozen=True)
class ProbeShown:
    """This run's probe as the output shows it."""

    verdict: str
    exit_code: int
    reasons: tuple[str, ...]
    stored: dict[str, Any] | None
    result: dict[str, Any] | None


@dataclass(frozen=True)
class Result:
    """Everything one verification found, for the document and the table."""

    workload: str
    decision: Decision
    raw: dict[str, Any]
    verification: Verification
    probe: ProbeShown | None
    evidence: Written | None
    checked_at: str


def document(r: Result) -> dict[str, Any]:
    """The stable result document (schema ``skewwatch.verify/v1``)."""
    probe = r.probe
    return {
        "schema": SCHEMA,
        "workload": r.workload,
        "verdict": r.decision.outcome,
        "may_close": r.decision.may_close,
        "exit_code": r.decision.exit_code,
        "reasons": list(r.decision.reasons),
        "verification": r.raw,
        "probe": None
        if probe is None
        else {
            "verdict": probe.verdict,
            "exit_code": probe.exit_code,
            "reasons": list(probe.reasons),
            "stored": probe.stored,
            "result": probe.result,
        },
        "evidence": None
        if r.evidence is None
        else {"path": str(r.evidence.path), "format": r.evidence.format, "bytes": r.evidence.size},
        "checked_at": r.checked_at,
    }


def num(value: float | None) -> str:
    if value is None:
        return "-"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.4g}"


def _scalar(value: Scalar) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return num(value)
    return str(value)


def _when(value: Scalar) -> str:
    # The route gives Unix seconds, or an RFC 3339 string: either is shown as UTC.
    if isinstance(value, int | float):
        return format_time(float(value))
    return _scalar(value)


def rows(r: Result) -> list[list[str]]:
    v = r.verification
    f = v.findings
    status = "not" if f.open else "pending" if f.pending else "ok"
    out = [["findings", status, f"{f.open} open, {f.pending} pending"]]
    for item in f.items:
        ref = f" ({item.reference})" if item.reference else ""
        out.append(
            [f"  finding #{_scalar(item.id)}", item.status or "-", f"{item.severity or '-'} {item.key}{ref}"]
        )
    if v.baseline is None:
        out.append(["baseline", "none", "no baseline recorded: performance cannot be compared"])
    else:
        b = v.baseline
        out.append(
            ["baseline", "ok", f"#{_scalar(b.id)} ({b.origin or '-'}), recorded {_when(b.recorded_at)}"]
        )
    for p in v.performance:
        detail = f"{num(p.baseline)} -> {num(p.current)}, ratio {num(p.ratio)}, tolerance {p.tolerance}"
        out.append([p.metric, p.status, detail + (f" ({p.why})" if p.why else "")])
    lp = v.latest_probe
    if lp is None:
        out.append(["latest probe", "none", "no probe stored for this workload"])
    else:
        summary = f": {lp.summary}" if lp.summary else ""
        out.append(["latest probe", lp.verdict, f"#{_scalar(lp.id)} at {_when(lp.recorded_at)}{summary}"])
    if r.probe is not None:
        stored = r.probe.stored
        where = f"stored as #{_scalar(stored.get('id'))}" if stored else "not stored"
        out.append(["probe (this run)", r.probe.verdict, where])
    if r.evidence is not None:
        e = r.evidence
        out.append(["evidence", "written", f"{e.path} ({e.format}, {e.size} bytes)"])
    return out


def table(r: Result) -> Table:
    d = r.decision
    notes = ["", f"verdict: {HEADLINES[d.outcome]} (exit {d.exit_code})"]
    label = "why not:" if d.outcome != "closable" else "notes:"
    if d.reasons:
        notes += [label, *(f"  - {reason}" for reason in d.reasons)]
    if r.evidence is not None:
        notes.append(f"evidence: {r.evidence.path}")
    return Table([Column("CHECK"), Column("STATUS"), Column("DETAIL")], rows(r), notes)
