"""``skewwatch verify NAMESPACE/NAME``: the steps of one post-fix verification, in order.

1. Ask the collector's verification route (``GET /api/v1/workloads/{ns}/{name}/verification``):
   unreachable, an unknown workload, a refused token or an answer of another shape end the run
   here (exit 2, nothing written), before a probe loads the endpoint.
2. With ``--probe``: run the probe in this process (:mod:`skewwatch.verify.probing`), which
   compares with the workload's baseline when it has one and stores its result with it (``POST
   …/probes``); then ask the verification route again, so that its ``latest_probe`` is this run's.
3. Write the post-fix evidence bundle (``GET …/evidence``), whatever the verdict: it is the record
   of the check.
4. Decide (:mod:`skewwatch.verify.decide`), print per ``-o``, return the exit code.

Every failure after step 1 is one ``skewwatch verify: error: …`` line on stderr and a reason in the
output; the run goes on, so the output still says all that was found.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from collector.cli.client import Credentials, credentials, get_json
from collector.cli.output import emit
from collector.errors import ClientError
from skewwatch.verify import evidence, probing
from skewwatch.verify.answer import ProbeRef, Verification, parse
from skewwatch.verify.decide import ProbeVerdict, decide
from skewwatch.verify.errors import AnswerError, EvidenceWriteError, VerifyUsageError
from skewwatch.verify.render import ProbeShown, Result, document, table
from skewwatch.verify.routes import workload_route

COMMAND = "verify"


def error(message: str) -> None:
    print(f"skewwatch {COMMAND}: error: {message}", file=sys.stderr)


def run_verify(args: argparse.Namespace) -> int:
    """The command: exit 0 may close, 1 not yet, 2 could not verify."""
    now = datetime.now(UTC)
    try:
        probing.check_probe_flags(args)
        target: Path = args.evidence_file or evidence.default_path(args.workload, now, Path.cwd())
        fmt = evidence.evidence_format(target)
        auth = credentials(args)
        raw, verification = fetch_verification(args, auth)
    except (VerifyUsageError, ClientError, AnswerError) as e:
        error(str(e))
        return 2
    problems: list[str] = []
    shown: ProbeShown | None = None
    if args.probe:
        before = verification.latest_probe
        probe_args = probing.probe_args(args, args.workload, verification.baseline is not None)
        run = _run_probe(probe_args, os.environ, problems)
        try:
            raw, verification = fetch_verification(args, auth)
        except (ClientError, AnswerError) as e:
            _problem(problems, f"the verification after the probe: {e}")
        shown = _shown(run, before, raw, verification, problems)
    written: evidence.Written | None = None
    try:
        data = evidence.fetch(args.collector, args.workload, fmt, args.timeout, auth)
        written = evidence.write_atomically(target, data, fmt)
    except ClientError as e:
        _problem(problems, f"the evidence bundle could not be fetched: {e}")
    except EvidenceWriteError as e:
        _problem(problems, str(e))
    verdict = None if shown is None else ProbeVerdict(shown.verdict, shown.reasons)
    result = Result(
        workload=args.workload,
        decision=decide(verification, verdict, problems),
        raw=raw,
        verification=verification,
        probe=shown,
        evidence=written,
        checked_at=now.isoformat(timespec="seconds").replace("+00:00", "Z"),
    )
    emit(document(result), args.format, lambda _data, _wide: table(result))
    return result.decision.exit_code


def _problem(problems: list[str], message: str) -> None:
    error(message)
    problems.append(message)


def fetch_verification(args: argparse.Namespace, auth: Credentials) -> tuple[dict[str, Any], Verification]:
    """The route's answer as it came, and parsed; ClientError or AnswerError (one line each)."""
    raw = get_json(args.collector, workload_route(args.workload, "verification"), args.timeout, auth=auth)
    if not isinstance(raw, dict):
        raise AnswerError("the answer", "expected an object")
    return raw, parse(raw)


def _run_probe(
    probe_args: argparse.Namespace, env: Mapping[str, str], problems: list[str]
) -> probing.ProbeRun | None:
    try:
        return probing.run_probe(probe_args, sys.stderr, env)
    except Exception as e:  # the probe is another component: whatever stops it, this run says so
        _problem(problems, f"the probe could not run: {type(e).__name__}: {e}")
        return None


def _shown(
    run: probing.ProbeRun | None,
    before: ProbeRef | None,
    raw: dict[str, Any],
    verification: Verification,
    problems: list[str],
) -> ProbeShown:
    """This run's probe for the output; what it could not do goes into ``problems``.

    The probe stores its result itself (its own error line says when it could not): it was stored
    when the verification asked after it names a newer latest probe than the one asked before."""
    if run is None:
        return ProbeShown("error", 2, ("could not run",), None, None)
    doc = run.document
    if doc is None:
        reason = f"the probe could not run (exit {run.exit_code}; its error is above)"
        problems.append(reason)
        return ProbeShown("error", run.exit_code, (reason,), None, None)
    verdict = str(doc.get("verdict", "error"))
    reasons = tuple(str(r) for r in doc.get("reasons") or ())
    latest = verification.latest_probe
    stored: dict[str, Any] | None = None
    if latest is not None and (before is None or latest.id != before.id):
        stored = raw.get("latest_probe")
    else:
        problems.append("the probe's result is not stored with the collector (its error is above)")
    return ProbeShown(verdict, run.exit_code, reasons, stored, doc)
