"""The probe's verdict and its output: thresholds judged per level, the result document, the table.

Thresholds (each optional; each judged at every concurrency level that ran):

=====================  ==================================  =========
flag                   metric                              passes if
=====================  ==================================  =========
``--max-ttft-ms``      ``ttft_ms.p95``                     ≤ limit
``--max-itl-p99-ms``   ``itl_ms.p99``                      ≤ limit
``--max-e2e-p99-ms``   ``e2e_ms.p99``                      ≤ limit
``--min-tokens-per-s`` ``output_tokens_per_s``             ≥ limit
``--max-error-rate``   ``error_rate`` (failed / measured)  ≤ limit
=====================  ==================================  =========

The verdict and exit code: ``pass`` (0); ``fail`` (1: the thresholds that failed, measured
against limit, at which level); ``inconclusive`` (2: only latency or throughput thresholds
failed and only at levels where the client itself was saturated, or ``--timeout`` stopped the
plan before it was done) and ``error`` (2: the endpoint is unreachable, or every request
failed). A metric that could not be measured (no successful request; no usage and no stream to
count) fails its threshold: a gate never passes on a number it does not have.

The JSON document (``-o json``, schema ``skewwatch.probe/v1``) is the stable form: the verdict,
the target, the plan (with its digest), the ``load`` section (shape, levels, requests, the
timeouts, retries 0), the per-level metrics keyed by ``concurrency`` and the thresholds. It never
carries the API key (only where it came from).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

from skewwatch import __version__
from skewwatch.probe import plan as plans
from skewwatch.probe.baseline import Comparison, compare, judged_line, not_compared
from skewwatch.probe.client import (
    ApiKey,
    ProbeClient,
    Timeouts,
    endpoint_url,
    plaintext_warning,
    read_api_key,
)
from skewwatch.probe.plan import Plan, ProbeUsageError
from skewwatch.probe.remote import (
    CollectorTarget,
    ProbeCollectorError,
    Stored,
    WorkloadRef,
    fetch_baseline,
    store_result,
    target,
    workload_ref,
)
from skewwatch.probe.stats import LOAD_SHAPE, Hook, LevelStats, Progress, level_stats, run_level

SCHEMA = "skewwatch.probe/v1"
Verdict = Literal["pass", "fail", "inconclusive", "error"]
EXIT_CODES: dict[Verdict, int] = {"pass": 0, "fail": 1, "inconclusive": 2, "error": 2}


@dataclass(frozen=True)
class Check:
    """One kind of threshold: its flag, the metric it reads and the way it passes."""

    flag: str
    dest: str
    metric: str
    get: Callable[[LevelStats], float | None]
    direction: Literal["max", "min"]
    unit: str
    client_bound: bool  # a number the client's own saturation can distort


CHECKS: tuple[Check, ...] = (
    Check("--max-ttft-ms", "max_ttft_ms", "ttft_ms.p95", lambda s: s.ttft_ms.p95, "max", "ms", True),
    Check("--max-itl-p99-ms", "max_itl_p99_ms", "itl_ms.p99", lambda s: s.itl_ms.p99, "max", "ms", True),
    Check("--max-e2e-p99-ms", "max_e2e_p99_ms", "e2e_ms.p99", lambda s: s.e2e_ms.p99, "max", "ms", True),
    Check(
        "--min-tokens-per-s", "min_tokens_per_s", "output_tokens_per_s",
        lambda s: s.output_tokens_per_s, "min", "tokens/s", True,
    ),
    Check("--max-error-rate", "max_error_rate", "error_rate", lambda s: s.error_rate, "max", "", False),
)  # fmt: skip
STREAM_ONLY = frozenset({"max_ttft_ms", "max_itl_p99_ms"})


@dataclass(frozen=True)
class Judgement:
    """One threshold at one level."""

    check: Check
    limit: float
    concurrency: int
    measured: float | None
    passed: bool
    saturated: bool

    def line(self) -> str:
        return threshold_line(self.as_dict())

    def as_dict(self) -> dict[str, Any]:
        return {
            "flag": self.check.flag,
            "metric": self.check.metric,
            "direction": self.check.direction,
            "limit": self.limit,
            "unit": self.check.unit,
            "concurrency": self.concurrency,
            "measured": None if self.measured is None else round(self.measured, 4),
            "passed": self.passed,
            "client_saturated": self.saturated,
        }


def judge(levels: Sequence[LevelStats], limits: dict[str, float]) -> list[Judgement]:
    """Every given threshold at every level."""
    out: list[Judgement] = []
    for check in CHECKS:
        limit = limits.get(check.dest)
        if limit is None:
            continue
        for level in levels:
            value = check.get(level)
            ok = value is not None and (value <= limit if check.direction == "max" else value >= limit)
            out.append(Judgement(check, limit, level.concurrency, value, ok, level.client.saturated))
    return out


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    reasons: tuple[str, ...]

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]


def decide(levels: Sequence[LevelStats], judgements: Sequence[Judgement], stopped: str | None) -> Outcome:
    """The verdict from the levels, the judgements and why the plan stopped early (None: it did not)."""
    if not any(level.measured + level.warmup for level in levels):
        return Outcome("error", (f"no request completed ({stopped or 'no level ran'})",))
    if not any(level.ok for level in levels):
        kinds: dict[str, int] = {}
        for level in levels:
            for kind, n in level.errors.items():
                kinds[kind] = kinds.get(kind, 0) + n
        examples = [e for level in levels for v in level.error_examples.values() for e in v][:1]
        what = ", ".join(f"{k} {n}" for k, n in kinds.items()) or "none sent"
        reason = f"every request failed ({what})" + (f": {examples[0]}" if examples else "")
        return Outcome("error", (reason + (f"; {stopped}" if stopped else ""),))
    failed = [j for j in judgements if not j.passed]
    blamed = [j for j in failed if not (j.saturated and j.check.client_bound)]
    if blamed:
        return Outcome("fail", tuple(j.line() for j in blamed))
    reasons = [j.line() for j in failed]
    if failed:
        reasons.insert(0, "only thresholds at levels where the client was saturated failed: not judged")
    if stopped:
        reasons.append(stopped)
    if failed or stopped:
        return Outcome("inconclusive", tuple(reasons))
    saturated = [lv.concurrency for lv in levels if lv.client.saturated]
    notes = (
        (f"client saturated at concurrency {saturated}: the server did at least this well",)
        if saturated
        else ()
    )
    return Outcome("pass", notes)


def combine(outcome: Outcome, comparison: Comparison | None) -> Outcome:
    """The verdict with the baseline comparison laid over the thresholds': a metric past tolerance
    fails (1) as a threshold does, unless the client was saturated at that level (inconclusive);
    no comparable level is inconclusive (2) unless the thresholds already failed (1)."""
    if comparison is None or outcome.verdict == "error":
        return outcome
    lines = tuple(comparison.lines())
    if not comparison.comparable:
        why = f"baseline {comparison.workload}: not comparable: {comparison.why_not}"
        if outcome.verdict == "fail":
            return Outcome("fail", (*outcome.reasons, why))
        return Outcome("inconclusive", (*outcome.reasons, why))
    failed = tuple(line for line in lines if line.startswith("FAIL "))
    saturated = comparison.level is not None and comparison.level.client.saturated
    if failed and not saturated:
        blamed = outcome.reasons if outcome.verdict == "fail" else ()
        return Outcome("fail", (*blamed, *failed))
    if failed:
        note = "only baseline metrics at a level where the client was saturated failed: not judged"
        verdict: Verdict = "fail" if outcome.verdict == "fail" else "inconclusive"
        return Outcome(verdict, (*outcome.reasons, note, *failed))
    return outcome


def document(
    *,
    outcome: Outcome,
    target: dict[str, Any],
    plan: dict[str, Any],
    load: dict[str, Any],
    levels: Sequence[LevelStats],
    judgements: Sequence[Judgement],
    started_at: str,
    duration_s: float,
    workload: str | None = None,
    comparison: Comparison | None = None,
) -> dict[str, Any]:
    """The stable result document (schema ``skewwatch.probe/v1``); ``workload`` is the Kubernetes
    workload it is for (``--baseline``/``--record``), ``comparison`` the baseline section."""
    return {
        "schema": SCHEMA,
        "verdict": outcome.verdict,
        "exit_code": outcome.exit_code,
        "reasons": list(outcome.reasons),
        "target": target,
        "workload": workload,
        "plan": plan,
        "load": load,
        "levels": [level.as_dict() for level in levels],
        "thresholds": [j.as_dict() for j in judgements],
        "baseline": None if comparison is None else comparison.as_dict(),
        "client": {
            "saturated": any(level.client.saturated for level in levels),
            "saturated_levels": [level.concurrency for level in levels if level.client.saturated],
        },
        "started_at": started_at,
        "duration_s": round(duration_s, 3),
        "tool": {"name": "skewwatch", "version": __version__},
    }


def render_json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False)


def _triple(d: dict[str, Any]) -> str:
    values = [d.get("p50"), d.get("p95"), d.get("p99")]
    return "/".join("-" if v is None else f"{v:.0f}" if v >= 10 else f"{v:.1f}" for v in values)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def render_table(doc: dict[str, Any]) -> str:
    """The result for a person: one row per level, the errors, the thresholds and the verdict."""
    t, w, load = doc["target"], doc["plan"], doc["load"]
    mode = "streaming" if w["stream"] else "non-streaming"
    lines = [
        f"skewwatch probe: {t['endpoint']} model {t['model']}, {w['api']} {mode}, "
        f"max_tokens {w['max_tokens']}",
        f"load: {load['description']}; plan {w['name']} v{w['version']} ({w['digest'][:19]}…)",
    ]
    if doc["levels"]:
        lines += ["", *_level_rows(doc["levels"])]
        warm = doc["levels"][0]["requests"]["warmup"]["sent"]
        lines.append(f"(warm-up: {warm} request(s) per level, excluded; percentiles from raw samples)")
        lines += _level_notes(doc["levels"])
    if doc["thresholds"]:
        lines.append("thresholds:")
        lines += ["  " + threshold_line(j) for j in doc["thresholds"]]
    if doc.get("baseline"):
        lines += _baseline_lines(doc["baseline"])
    lines.append(f"verdict: {doc['verdict'].upper()} (exit {doc['exit_code']})")
    # The thresholds' and the baseline's own lines are listed above; the other reasons (why not
    # judged, why it stopped) here.
    lines += [f"  {r}" for r in doc["reasons"] if not r.startswith(("PASS ", "FAIL ", "baseline "))]
    return "\n".join(lines)


def _level_rows(levels: Sequence[dict[str, Any]]) -> list[str]:
    header = ("conc", "ok/sent", "req/s", "tok/s", "TTFT p50/95/99 ms", "ITL p50/95/99 ms",
              "E2E p50/95/99 ms", "tokens", "client")  # fmt: skip
    rows = [header]
    for lv in levels:
        req = lv["requests"]
        source = "+".join(sorted(lv["token_source"])) or "-"
        rows.append((
            str(lv["concurrency"]), f"{req['ok']}/{req['measured']}", _num(lv["requests_per_s"]),
            _num(lv["output_tokens_per_s"]), _triple(lv["ttft_ms"]), _triple(lv["itl_ms"]),
            _triple(lv["e2e_ms"]), source, "SATURATED" if lv["client"]["saturated"] else "ok",
        ))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return [
        "  ".join(c.rjust(widths[i]) if i < 4 else c.ljust(widths[i]) for i, c in enumerate(r)).rstrip()
        for r in rows
    ]


def _level_notes(levels: Sequence[dict[str, Any]]) -> list[str]:
    """Each level's errors (with one example), Retry-After values and client saturation."""
    lines: list[str] = []
    for lv in levels:
        n = lv["concurrency"]
        for kind, count in lv["errors"].items():
            example = (lv["error_examples"].get(kind) or [""])[0]
            lines.append(f"errors at {n}: {kind} x{count}" + (f": {example}" if example else ""))
        if lv["retry_after"]:
            lines.append(f"  Retry-After seen at {n}: {', '.join(lv['retry_after'])} (not retried)")
        lines += [f"client saturated at {n}: {reason}" for reason in lv["client"]["reasons"]]
    return lines


def _baseline_lines(b: dict[str, Any]) -> list[str]:
    """The baseline section for a person: which baseline, the level compared, each metric, the caveat."""
    load = ", ".join(f"{k} {v:.3g}" for k, v in sorted(b["load"].items())) or "no load recorded"
    lines = [f"baseline: {b['workload']} #{b['id']} ({b['origin']}), recorded at {load}"]
    if not b["comparable"]:
        lines.append(f"  not comparable: {b['why_not']}")
        return lines
    lines.append(
        f"  compared at concurrency {b['concurrency']}: {b['measured_requests_per_s']:.3g} requests/s "
        f"({b['load_rule']}); tolerance {b['tolerance']:g}"
    )
    lines += ["  " + judged_line(m, b["concurrency"]) for m in b["metrics"]]
    lines += [f"  skipped {s['metric']}: {s['why']}" for s in b["skipped"]]
    lines.append(f"  ({b['caveat']})")
    return lines


def threshold_line(j: dict[str, Any]) -> str:
    """One judged threshold as a line: PASS/FAIL, flag and limit, the metric at its level."""
    unit = f" {j['unit']}" if j["unit"] else ""
    measured = "not measured" if j["measured"] is None else f"{j['measured']:.4g}{unit}"
    op = "<=" if j["direction"] == "max" else ">="
    note = " (client saturated: not the server's number)" if j["client_saturated"] and not j["passed"] else ""
    return (
        f"{'PASS' if j['passed'] else 'FAIL'} {j['flag']} {j['limit']:g}: {j['metric']} at concurrency "
        f"{j['concurrency']} = {measured} (needs {op} {j['limit']:g}{unit}){note}"
    )


class ProgressLine:
    """Progress on stderr when it is a terminal: one line rewritten in place, closed per level."""

    def __init__(self, err: TextIO) -> None:
        self.err = err
        self.enabled = bool(getattr(err, "isatty", lambda: False)())
        self._level: int | None = None

    def __call__(self, level: int, done: int, planned: int, failed: int) -> None:
        if not self.enabled:
            return
        self._level = level
        self.err.write(f"\rprobe: concurrency {level}: {done}/{planned} requests, {failed} failed ")
        self.err.flush()
        if done >= planned:
            self.err.write("\n")
            self._level = None

    def close(self) -> None:
        if self.enabled and self._level is not None:
            self.err.write("\n")
            self._level = None


# --- the command ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """What one probe run does: target, plan, key, pool, timeouts and thresholds."""

    endpoint: str
    model: str
    plan: Plan
    key: ApiKey | None
    max_connections: int
    timeout_s: float
    timeouts: Timeouts
    limits: dict[str, float]
    output: str
    collector: CollectorTarget | None = None
    workload: WorkloadRef | None = None
    compare: bool = False
    store: bool = False
    tolerance: float = 0.25


def configure(args: argparse.Namespace, env: Mapping[str, str]) -> Config:
    """The run's configuration from the flags; ProbeUsageError (exit 2) naming what is wrong."""
    w = plans.load(args.plan)
    w = plans.with_overrides(
        w, api=args.api, stream=args.stream, concurrency=args.concurrency, requests=args.requests,
        warmup=args.warmup, max_tokens=args.max_tokens,
    )  # fmt: skip
    limits = {c.dest: getattr(args, c.dest) for c in CHECKS if getattr(args, c.dest) is not None}
    if not w.stream and STREAM_ONLY & set(limits):
        flags = ", ".join(c.flag for c in CHECKS if c.dest in limits and c.dest in STREAM_ONLY)
        raise ProbeUsageError(f"{flags} need a stream to measure; drop --no-stream (or stream: false)")
    if not args.model.strip():
        raise ProbeUsageError("--model must name the served model")
    ref, compare_, store = _workload_flags(args)
    return Config(
        endpoint=endpoint_url(args.endpoint),
        model=args.model,
        plan=w,
        key=read_api_key(args.api_key_file, env),
        max_connections=int(args.max_connections or max(w.concurrency)),
        timeout_s=float(args.timeout),
        timeouts=Timeouts(args.connect_timeout, args.read_timeout, args.request_timeout),
        limits=limits,
        output=args.output,
        collector=None if ref is None else target(args, env),
        workload=ref,
        compare=compare_,
        store=store,
        tolerance=float(args.baseline_tolerance),
    )


def _workload_flags(args: argparse.Namespace) -> tuple[WorkloadRef | None, bool, bool]:
    """(the workload, compare with its baseline?, store the result?) from --baseline / --record."""
    if args.baseline is not None:
        return workload_ref(args.baseline, "--baseline"), True, not args.no_store
    if args.record is not None:
        if args.no_store:
            raise ProbeUsageError("--record stores the result; --no-store contradicts it")
        return workload_ref(args.record, "--record"), False, True
    if args.collector is not None:
        raise ProbeUsageError(
            "--collector needs --baseline NAMESPACE/NAME or --record NAMESPACE/NAME: the workload the "
            "result belongs to"
        )
    if args.no_store:
        raise ProbeUsageError("--no-store needs --baseline NAMESPACE/NAME")
    return None, False, False


def run(
    args: argparse.Namespace,
    out: TextIO,
    err: TextIO,
    env: Mapping[str, str],
    hook: Hook | None,
) -> int:
    """Run the probe as the flags say, print the result, return the exit code."""
    try:
        cfg = configure(args, env)
    except ProbeUsageError as e:
        err.write(f"skewwatch probe: error: {e}\n")
        return 2
    warning = plaintext_warning(cfg.endpoint, cfg.key)
    if warning:
        err.write(f"skewwatch probe: warning: {warning}\n")
    answer: dict[str, Any] | None = None
    if cfg.compare and cfg.collector is not None and cfg.workload is not None:
        try:  # before the first request: no load on the server for a comparison that cannot be made
            answer = fetch_baseline(cfg.collector, cfg.workload)
        except ProbeCollectorError as e:
            err.write(f"skewwatch probe: error: {e}\n")
            return 2
    progress = ProgressLine(err)
    try:
        doc = asyncio.run(execute(cfg, progress, hook, answer))
    except Exception as e:  # a fault of the probe itself: "could not run", never "fail" (exit 1)
        progress.close()
        why = cfg.key.redact(str(e)) if cfg.key else str(e)  # never the API key, whatever raised
        err.write(f"skewwatch probe: error: the probe could not run: {type(e).__name__}: {why}\n")
        return 2
    finally:
        progress.close()
    out.write((render_json(doc) if cfg.output == "json" else render_table(doc)) + "\n")
    code = int(doc["exit_code"])
    if cfg.store and cfg.collector is not None and cfg.workload is not None:
        stored = _store(cfg.collector, cfg.workload, doc, err)
        if stored is None:
            return 2  # the gate's record is not where it was asked to be: the run did not do its job
        (err if cfg.output == "json" else out).write(stored.line() + "\n")
    return code


def _store(t: CollectorTarget, ref: WorkloadRef, doc: dict[str, Any], err: TextIO) -> Stored | None:
    try:
        return store_result(t, ref, doc)
    except ProbeCollectorError as e:
        err.write(f"skewwatch probe: error: {e}\n")
        return None


def _load(cfg: Config, levels: Sequence[LevelStats], stopped: str | None) -> dict[str, Any]:
    w = cfg.plan
    shown = ", ".join(str(n) for n in w.concurrency)
    return {
        "shape": LOAD_SHAPE,
        "description": f"closed loop, N concurrent workers per level (N = {shown}), each sending its next "
        "request when its previous one ends",
        "levels": list(w.concurrency),
        "levels_run": [lv.concurrency for lv in levels],
        "requests_per_level": w.requests,
        "warmup_per_level": w.warmup,
        "max_connections": cfg.max_connections,
        "retries": 0,
        "timeouts_s": {
            "overall": cfg.timeout_s,
            "request": cfg.timeouts.request_s,
            "connect": cfg.timeouts.connect_s,
            "read": cfg.timeouts.read_s,
        },
        "stopped_by_timeout": stopped is not None,
    }


async def execute(
    cfg: Config, progress: Progress | None, hook: Hook | None, answer: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Probe the endpoint level by level within ``--timeout`` and build the result document;
    ``answer``: the baseline (the collector's GET answer) to compare the levels with."""
    started = datetime.now(UTC).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    deadline = t0 + cfg.timeout_s
    w = cfg.plan
    levels: list[LevelStats] = []
    stopped: str | None = None
    judgements: list[Judgement] = []
    async with ProbeClient(
        cfg.endpoint, cfg.model, w.api, stream=w.stream, max_tokens=w.max_tokens, temperature=w.temperature,
        ignore_eos=w.ignore_eos, key=cfg.key, timeouts=cfg.timeouts, max_connections=cfg.max_connections,
    ) as client:  # fmt: skip
        unreachable = await client.reachable(max(0.001, deadline - time.perf_counter()))
        if unreachable is not None:
            outcome = Outcome("error", (f"endpoint unreachable: {unreachable}",))
        else:
            for n in w.concurrency:
                plan = w.level_requests()
                if time.perf_counter() >= deadline:
                    stopped = f"--timeout {cfg.timeout_s:g} s reached before concurrency {n}"
                    break
                results, lag, cut = await run_level(client, plan, n, deadline, progress=progress, hook=hook)
                levels.append(level_stats(n, len(plan), results, lag))
                if cut:
                    stopped = (f"--timeout {cfg.timeout_s:g} s reached at concurrency {n} after "
                               f"{len(results)} of {len(plan)} requests")  # fmt: skip
                    break
            judgements = judge(levels, cfg.limits)
            outcome = decide(levels, judgements, stopped)
    comparison: Comparison | None = None
    if answer is not None:
        comparison = (
            compare(levels, answer, cfg.tolerance, stream=w.stream)
            if levels
            else not_compared(
                answer, cfg.tolerance, outcome.reasons[0] if outcome.reasons else "no level ran"
            )
        )
        outcome = combine(outcome, comparison)
    return document(
        outcome=outcome,
        target={"endpoint": cfg.endpoint, "model": cfg.model, "api_key": cfg.key.source if cfg.key else None},
        plan=w.summary(),
        load=_load(cfg, levels, stopped),
        levels=levels,
        judgements=judgements,
        started_at=started,
        duration_s=time.perf_counter() - t0,
        workload=None if cfg.workload is None else str(cfg.workload),
        comparison=comparison,
    )
