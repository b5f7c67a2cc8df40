"""Check a workload's replicas against its bound intents, row by row of the mapping table. Pure.

Every row with a value in an intent gives one ``Check`` (ok / drift / unverifiable / documentary)
for the workload's intent view, and every drifting row one ``Drift`` (reference: intent). A fact
a replica does not report is *unverifiable*, never a drift: absence usually means a source was
unavailable (no GPU visible, metrics not up yet), and a false finding is worse than a gap that
the intent view shows. SkewPolicy pins come before ModelSpec rows, so where both constrain a key
the (more specific) pin is the one reported.

Pins mean what users mean: a value that asks the engine to choose (``auto`` for the dtype and
the KV-cache dtype, ``mapping.SYMBOLIC_VALUES``) is compared with what was *requested*, not with
what the engine's rule resolved it to; ``quantization: null`` (and a float ModelSpec precision)
is checked against the engine's and the checkpoint's quantization together (``mapping.READS_ALL``).

Some rows are answered by the cluster facts the service joins to each replica: the scaling bounds
compare with the autoscaler's (``orchestration.autoscaling.min`` / ``max``) and fall back to the
live-replica count (``Row.fallback_compare``) only where no replica reports them.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any

from collector.domain.model import OBSERVATION_PREFIX, Drift, Reference, Replica
from collector.intent.binding import Bound
from collector.intent.mapping import (
    MODELSPEC_ROWS,
    NO_QUANTIZATION,
    POLICY_ROWS,
    READS_ALL,
    Row,
    Symbolic,
    conforms,
    symbolic,
    unconstrained,
)
from collector.intent.model import Intent, ModelSpec
from skewwatch.core.facts import SourceState

REDACTED = "redacted:"
COUNT_FALLBACK = "replicas"  # a row target / fallback: the workload's live-replica count


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
        if row.target is None:  # a documentary map (metadata.labels.*): each entry is documentary
            return [(f"{base}.{k}", v, None) for k, v in values.items()]
        prefix = row.target.removesuffix("*")
        return [(f"{base}.{k}", v, prefix + k) for k, v in values.items()]
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
    if target == COUNT_FALLBACK:
        return "orchestration.replicas"
    if target.startswith("source:"):
        return "serving.metrics_endpoint"
    return target


@dataclass(frozen=True)
class _Seen:
    """What one replica says for one row: a value with its evidence, or why nothing can be said."""

    known: bool
    value: Any = None
    evidence: Any = None
    note: str = ""  # why unknown; for a known value not plainly read from the row's fact, whence
    origin: str = ""  # where a known value came from, after the value in a drift's message


def _fact(replica: Replica, key: str) -> tuple[str, Any, Any]:
    """("absent" | "redacted" | "carried" | "ok", value, provenance dict) of one fact."""
    if key not in replica.facts:
        return "absent", None, None
    value = replica.facts[key]
    if isinstance(value, str) and value.startswith(REDACTED):
        return "redacted", None, None
    prov = replica.provenance.get(key)
    if prov is not None and prov.carried:
        return "carried", None, None
    return "ok", value, prov.as_dict() if prov else None


def _unknown(state: str, key: str) -> _Seen:
    why = {
        "redacted": f"{key} is redacted in the pod; its value cannot be compared",
        "carried": f"{key} is carried from an earlier collection (its source is not ready)",
    }.get(state, f"{key} not reported")
    return _Seen(False, note=why)


def _whence(key: str, prov: Mapping[str, Any] | None) -> str:
    return key + (f" ({prov['source']}/{prov['method']}: {prov['detail']})" if prov else "")


def _actual(replica: Replica, row: Row, target: str, expected: Any = None) -> _Seen:
    """What ``replica`` says for ``row`` (whose intent value is ``expected``)."""
    if target.startswith("observation:"):
        name = target.split(":", 1)[1]
        value = replica.observed(name)
        if value is None:
            return _Seen(False, note=f"observation {name} not reported")
        return _Seen(True, value, {"source": "runtime_metrics", "method": "observation", "detail": name})
    if target.startswith("source:"):
        name = target.split(":", 1)[1]
        status = replica.sources.get(name)
        if status is None:
            return _Seen(False, note=f"source {name} not reported")
        ok = status.state is SourceState.OK
        return _Seen(True, ok, {"source": name, "method": "status", "detail": status.message})
    sym = symbolic(target, expected)
    if sym is not None:
        return _requested(replica, target, sym)
    if row.compare in READS_ALL:
        return _quantization(replica, (target, *row.fallbacks))
    for key in (target, *row.fallbacks):
        state, value, prov = _fact(replica, key)
        if state == "ok":
            return _Seen(True, value, prov)
        if state != "absent":
            return _unknown(state, key)
    if row.compare == "present":
        return _Seen(True, False)
    return _Seen(False, note=f"{target} not reported")


def _requested(replica: Replica, key: str, sym: Symbolic) -> _Seen:
    """What was asked for ``key``, for a pin of the symbolic value ``sym`` (``Symbolic`` says how)."""
    for k in sym.requested:
        state, value, prov = _fact(replica, k)
        if state == "ok":
            origin = f"requested by {_whence(k, prov)}"
            return _Seen(True, value, prov, f"{_show(value)} {origin}", origin)
        if state != "absent":
            return _unknown(state, k)
    state, value, prov = _fact(replica, key)
    method = (prov or {}).get("method")
    if state == "ok" and method == "default":
        origin = f"requested as {_whence(key, prov)}"
        return _Seen(True, value, prov, f"{_show(value)} {origin}", origin)
    if state == "ok" and method == "derived":
        # An engine's rule resolves a setting only where it was unset or left to the symbolic value.
        note = f"{sym.value} requested: {key} = {_show(value)}, {sym.means}, by {_whence(key, prov)}"
        return _Seen(True, sym.value, prov, note)
    if state == "ok" and isinstance(value, str) and value.strip().lower() == sym.value:
        origin = f"as reported by {_whence(key, prov)}"
        return _Seen(True, value, prov, f"{value} {origin}", origin)
    if state not in ("ok", "absent"):
        return _unknown(state, key)
    flags = " or ".join(sym.requested)
    engine = replica.facts.get("runtime.engine")
    default = sym.engine_defaults.get(engine) if isinstance(engine, str) else None
    process = replica.sources.get("process")
    if default is not None and process is not None and process.state is SourceState.OK:
        origin = f"the {engine} default (the command line read has no {flags})"
        return _Seen(True, default, None, f"{default} requested: {origin}", origin)
    return _Seen(False, note=f"what was requested for {key} is not reported (no {flags})")


def _quantization(replica: Replica, keys: tuple[str, ...]) -> _Seen:
    """The quantization method the first of ``keys`` to name one names; None (not quantized) when
    those reported name none; unknown only when none of them is reported."""
    said: list[str] = []
    missing: list[str] = []
    for key in keys:
        state, value, prov = _fact(replica, key)
        if state != "ok":
            missing.append(_unknown(state, key).note)
            continue
        if value is not None and str(value).strip().lower() not in NO_QUANTIZATION:
            origin = f"from {_whence(key, prov)}"
            return _Seen(True, value, prov, f"{_show(value)} {origin}", origin)
        said.append(f"{key} = {_show(value)}")
    if not said:
        return _Seen(False, note="; ".join(missing))
    return _Seen(True, None, None, "not quantized: " + ", ".join(said + missing))


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


@dataclass
class _Judged:
    """Each live replica's value for one row, judged against the expectation."""

    drifting: dict[str, Any] = dc_field(default_factory=dict)  # pod -> its value, where it breaks the row
    evidence: dict[str, Any] = dc_field(default_factory=dict)
    notes: dict[str, str] = dc_field(default_factory=dict)  # pod -> where its value came from, if not plain
    origins: dict[str, str] = dc_field(default_factory=dict)
    unknown: list[str] = dc_field(default_factory=list)
    judged: int = 0

    def detail(self) -> str:
        """What could not be judged, then where the judged values came from (drifting pods first)."""
        said = sorted(self.notes.items(), key=lambda pn: pn[0] not in self.drifting)
        items = self.unknown + [f"{pod}: {note}" for pod, note in said]
        return "; ".join(items[:3]) + (f" (+{len(items) - 3} more)" if len(items) > 3 else "")


def _source(where: _Where) -> str:
    return f"{where.label} {where.path}" + (f" (line {where.line})" if where.line else "")


def _check_row(
    result: IntentResult, where: _Where, expected: Any, replicas: Sequence[Replica], seen_keys: set[str]
) -> None:
    row = where.row
    if where.target == COUNT_FALLBACK:
        _check_replica_count(result, where, expected, replicas, seen_keys, compare=row.compare)
        return
    if COUNT_FALLBACK in row.fallbacks and not any(_reports(r, where.target) for r in replicas):
        # No autoscaler facts (no cluster watch, or nothing scales the workload): the bound is
        # the live-replica count's.
        counted = _Where(
            where.label, where.path, where.line, row, COUNT_FALLBACK, _finding_key(COUNT_FALLBACK)
        )
        _check_replica_count(result, counted, expected, replicas, seen_keys, compare=row.fallback_compare)
        return
    silent = unconstrained(row.compare, expected)
    if silent is not None:
        result.checks.append(
            Check(where.label, where.path, where.line, where.target, expected, "documentary", silent)
        )
        return
    j = _judge(where, expected, replicas)
    if j.drifting:
        status = "drift"
    elif j.judged:
        status = "ok"
    else:
        status = "unverifiable"
        result.indeterminate.add((Reference.INTENT.value, where.key))
    result.checks.append(
        Check(where.label, where.path, where.line, where.target, expected, status, j.detail(), j.drifting)
    )
    if j.drifting and where.key not in seen_keys:
        seen_keys.add(where.key)
        result.drifts.append(_drift(where, expected, j, len(replicas)))


def _reports(replica: Replica, key: str) -> bool:
    """Does ``replica`` report a value (not null) for ``key``, readable now?"""
    state, value, _ = _fact(replica, key)
    return state == "ok" and value is not None


def _check_replica_count(
    result: IntentResult,
    where: _Where,
    expected: Any,
    replicas: Sequence[Replica],
    seen_keys: set[str],
    *,
    compare: str,
) -> None:
    key = where.key
    count = len(replicas)
    verdict: bool | None = conforms(compare, expected, count) if replicas else None
    status = {True: "ok", False: "drift", None: "unverifiable"}[verdict]
    result.checks.append(
        Check(where.label, where.path, where.line, where.target, expected, status, f"{count} live replicas")
    )
    if verdict is False and key not in seen_keys:
        seen_keys.add(key)
        word = "at least" if compare == "min_count" else "at most"
        source = _source(where)
        message = f"{count} live replicas, expected {word} {expected} ({source})"
        result.drifts.append(
            Drift(
                Reference.INTENT,
                key,
                expected,
                count,
                {},
                message,
                source,
                expected_text=f"expected {word} {expected} live replicas",
            )
        )


def _judge(where: _Where, expected: Any, replicas: Sequence[Replica]) -> _Judged:
    row, target = where.row, where.target
    sym = symbolic(target, expected)
    j = _Judged()
    for r in replicas:
        seen = _actual(r, row, target, expected)
        if not seen.known:
            j.unknown.append(f"{r.pod}: {seen.note}")
            continue
        if sym is not None:
            verdict: bool | None = str(seen.value).strip().lower() == sym.value
        else:
            verdict = conforms(row.compare, expected, seen.value)
        if verdict is None:
            j.unknown.append(f"{r.pod}: {seen.value!r} cannot be compared with {expected!r}")
            continue
        j.judged += 1
        if seen.note:
            j.notes[r.pod] = seen.note
        if seen.origin:
            j.origins[r.pod] = seen.origin
        if not verdict:
            j.drifting[r.pod] = seen.value
            if seen.evidence is not None:
                j.evidence[r.pod] = seen.evidence
    return j


def _drift(where: _Where, expected: Any, j: _Judged, replicas: int) -> Drift:
    row, key, source = where.row, where.key, _source(where)
    values = list(j.drifting.values())
    actual = max(values, key=values.count)
    shown = _show(actual * 1000 if row.compare == "max_ms" else actual)
    unit = " ms" if row.compare == "max_ms" else ""
    origin = next((" " + j.origins[p] for p, v in j.drifting.items() if v == actual and p in j.origins), "")
    message = (
        f"{len(j.drifting)} of {replicas} replicas: {key} = {shown}{unit}{origin}, "
        f"expected {_expectation(row.compare)}{_show_expected(row, expected)}{unit} ({source})"
    )
    return Drift(
        Reference.INTENT,
        key,
        expected,
        actual,
        j.drifting,
        message,
        source,
        j.evidence,
        performance=where.target.startswith("observation:"),
        expected_text=f"expected {_expectation(row.compare)}{_show_expected(row, expected)}{unit}",
    )


def _expectation(compare: str) -> str:
    return {"max": "at most ", "max_ms": "at most ", "min_count": "at least ", "max_count": "at most ",
            "version_range": "in ", "present": "enabled = "}.get(compare, "")  # fmt: skip


def _show_expected(row: Row, expected: Any) -> str:
    if row.compare == "scaling_strategy":
        wants = {"reactive": "an autoscaler", "manual": "no autoscaler"}.get(str(expected).strip().lower())
        return f"{wants} (strategy {expected})" if wants else _show(expected)
    if row.compare == "quantization" and (
        expected is None or str(expected).strip().lower() in NO_QUANTIZATION
    ):
        return "not quantized"
    return _show(expected)


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value) if not isinstance(value, str) else value
