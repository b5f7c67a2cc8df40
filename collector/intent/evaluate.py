"""Check a workload's replicas against its bound intents, row by row of the mapping table. Pure.

Every row with a value in an intent gives one ``Check`` (ok / drift / unverifiable / documentary)
for the workload's intent view, and every drifting row one ``Drift`` (reference: intent). A fact
a replica does not report is *unverifiable*, never a drift: absence usually means a source was
unavailable (no GPU visible, metrics not up yet), and a false finding is worse than a gap that
the intent view shows. SkewPolicy pins come before ModelSpec rows, so where both constrain a key
the (more specific) pin is the one reported.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any

from collector.drift.model import OBSERVATION_PREFIX, Drift, Reference, Replica
from collector.intent.binding import Bound
from collector.intent.mapping import MODELSPEC_ROWS, POLICY_ROWS, Row, conforms
from collector.intent.model import Intent, ModelSpec
from skewwatch.core.facts import SourceState

REDACTED = "redacted:"


@dataclass(frozen=True)
class Check:
    intent: str  # "ModelSpec/name" or "SkewPolicy/name"
    field: str
    line: int | None
    target: str | None
    expected: Any
    status: str  # ok | drift | unverifiable | documentary
    detail: str = ""
    pods: Mapping[str, Any] = dc_field(default_factory=dict)  # pod -> actual (drifting pods only)

    def as_dict(self) -> dict[str, Any]:
        return {
            "intent": self.intent,
            "field": self.field,
            "line": self.line,
            "target": self.target,
            "expected": self.expected,
            "status": self.status,
            "detail": self.detail,
            "pods": dict(self.pods),
        }


@dataclass
class IntentResult:
    checks: list[Check] = dc_field(default_factory=list)
    drifts: list[Drift] = dc_field(default_factory=list)
    # Identities (reference, key) the rows could not judge this time; their findings are kept.
    indeterminate: set[tuple[str, str]] = dc_field(default_factory=set)


def _entries(intent: Intent, row: Row) -> list[tuple[str, Any, str | None]]:
    """(field path, expected value, target key) for a row; ``.*`` rows expand per map entry."""
    get = intent.get if isinstance(intent, ModelSpec) else (lambda p: _get(intent.data, p))
    if row.field.endswith(".*"):
        base = row.field[:-2]
        values = get(base)
        if not isinstance(values, Mapping):
            return []
        prefix = (row.target or "")[:-1] if (row.target or "").endswith("*") else ""
        return [(f"{base}.{k}", v, (prefix + k) if row.target != "*" else k) for k, v in values.items()]
    if "[]" in row.field:
        return []
    value = get(row.field)
    exists = _has(intent.data, row.field)
    return [(row.field, value, row.target)] if exists else []


def _get(data: Mapping[str, Any], path: str) -> Any:
    node: Any = data
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _has(data: Mapping[str, Any], path: str) -> bool:
    node: Any = data
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


def _finding_key(target: str) -> str:
    if target.startswith("observation:"):
        return OBSERVATION_PREFIX + target.split(":", 1)[1]
    if target == "replicas":
        return "orchestration.replicas"
    if target.startswith("source:"):
        return "serving.metrics_endpoint"
    return target


def _actual(replica: Replica, row: Row, target: str) -> tuple[bool, Any, Any, str]:
    """(known, actual, evidence, why-unknown) for one replica."""
    if target.startswith("observation:"):
        name = target.split(":", 1)[1]
        value = replica.observed(name)
        if value is None:
            return False, None, None, f"observation {name} not reported"
        return True, value, {"source": "runtime_metrics", "method": "observation", "detail": name}, ""
    if target.startswith("source:"):
        name = target.split(":", 1)[1]
        status = replica.sources.get(name)
        if status is None:
            return False, None, None, f"source {name} not reported"
        ok = status.state is SourceState.OK
        return True, ok, {"source": name, "method": "status", "detail": status.message}, ""
    for key in (target, *row.fallbacks):
        if key in replica.facts:
            fact = replica.facts[key]
            if isinstance(fact, str) and fact.startswith(REDACTED):
                return False, None, None, f"{key} is redacted in the pod; its value cannot be compared"
            prov = replica.provenance.get(key)
            return True, fact, prov.as_dict() if prov else None, ""
    if row.compare == "present":
        return True, False, None, ""
    return False, None, None, f"{target} not reported"


def evaluate_intents(bound: Bound, replicas: Sequence[Replica], ignore: Sequence[str] = ()) -> IntentResult:
    result = IntentResult()
    seen_keys: set[str] = set()
    rows_by_kind: list[tuple[Intent, tuple[Row, ...]]] = [(p, POLICY_ROWS) for p in bound.policies]
    rows_by_kind += [(s, MODELSPEC_ROWS) for s in bound.model_specs]
    for intent, rows in rows_by_kind:
        label = f"{intent.kind}/{intent.name}"
        for row in rows:
            for path, expected, target in _entries(intent, row):
                line = intent.lines.get(tuple(path.split(".")))
                if target is None:
                    result.checks.append(Check(label, path, line, None, expected, "documentary", row.note))
                    continue
                key = _finding_key(target)
                if any(fnmatch.fnmatchcase(key, g) for g in ignore):
                    result.checks.append(Check(label, path, line, target, expected, "ignored", "ignore rule"))
                    continue
                where = _Where(label, path, line, row, target, key)
                _check_row(result, where, expected, replicas, seen_keys)
    return result


@dataclass(frozen=True)
class _Where:
    label: str
    path: str
    line: int | None
    row: Row
    target: str
    key: str


def _check_row(
    result: IntentResult, where: _Where, expected: Any, replicas: Sequence[Replica], seen_keys: set[str]
) -> None:
    label, path, line, row, target, key = (
        where.label,
        where.path,
        where.line,
        where.row,
        where.target,
        where.key,
    )
    source = f"{label} {path}" + (f" (line {line})" if line else "")
    if target == "replicas":
        count = len(replicas)
        verdict = conforms(row.compare, expected, count) if replicas else None
        status = {True: "ok", False: "drift", None: "unverifiable"}[verdict]
        result.checks.append(Check(label, path, line, target, expected, status, f"{count} live replicas"))
        if verdict is False and key not in seen_keys:
            seen_keys.add(key)
            word = "at least" if row.compare == "min_count" else "at most"
            result.drifts.append(
                Drift(
                    Reference.INTENT,
                    key,
                    expected,
                    count,
                    {},
                    f"{count} live replicas, expected {word} {expected} ({source})",
                    source,
                )
            )
        return
    drifting: dict[str, Any] = {}
    evidence: dict[str, Any] = {}
    unknown: list[str] = []
    judged = 0
    for r in replicas:
        known, actual, prov, why = _actual(r, row, target)
        if not known:
            unknown.append(f"{r.pod}: {why}")
            continue
        verdict = conforms(row.compare, expected, actual)
        if verdict is None:
            unknown.append(f"{r.pod}: {actual!r} cannot be compared with {expected!r}")
            continue
        judged += 1
        if not verdict:
            drifting[r.pod] = actual
            if prov is not None:
                evidence[r.pod] = prov
    if drifting:
        status = "drift"
    elif judged:
        status = "ok"
    else:
        status = "unverifiable"
        result.indeterminate.add((Reference.INTENT.value, key))
    detail = "; ".join(unknown[:3]) + (f" (+{len(unknown) - 3} more)" if len(unknown) > 3 else "")
    result.checks.append(Check(label, path, line, target, expected, status, detail, drifting))
    if not drifting or key in seen_keys:
        return
    seen_keys.add(key)
    values = list(drifting.values())
    actual = max(values, key=values.count)
    shown = _show(actual * 1000 if row.compare == "max_ms" else actual)
    unit = " ms" if row.compare == "max_ms" else ""
    message = (
        f"{len(drifting)} of {len(replicas)} replicas: {key} = {shown}{unit}, expected "
        f"{_expectation(row.compare)}{_show(expected)}{unit} ({source})"
    )
    result.drifts.append(
        Drift(
            Reference.INTENT,
            key,
            expected,
            actual,
            drifting,
            message,
            source,
            evidence,
            performance=target.startswith("observation:"),
        )
    )


def _expectation(compare: str) -> str:
    return {"max": "at most ", "max_ms": "at most ", "min_count": "at least ", "max_count": "at most ",
            "version_range": "in ", "present": "enabled = "}.get(compare, "")  # fmt: skip


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value) if not isinstance(value, str) else value
