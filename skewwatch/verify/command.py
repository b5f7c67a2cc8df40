"""``skewwatch verify NAMESPACE/NAME``: the steps of one post-fix verification, in order.

1. Ask the collector's verification route (``GET /api/v1/workloads/{ns}/{name}/verification``):
   unreachable, an unknown workload, a refused token or an answer of another shape end the run
   here (exit 2, nothing written), before a probe loads the endpoint.
2. With ``--probe``: run the probe in this process, store its result with the workload (``POST
   …/probes``), and ask the verification route again, so that its ``latest_probe`` is this run's.
3. Write the post-fix evidence bundle (``GET …/evidence``), whatever the verdict: it is the record
   of the check.
4. Decide (:mod:`skewwatch.verify.decide`), print per ``-o``, return the exit code.

Every failure after step 1 is one ``skewwatch verify: error: …`` line on stderr and a reason in the
output; the run goes on, so the output still says all that was found.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from collector.cli.client import Credentials, credentials, get_json, request_json
from collector.cli.output import emit
from collector.errors import ClientError
from skewwatch.verify import evidence, probing
from skewwatch.verify.answer import Verification, parse
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
        probe_args = _probe_args(args)
        target: Path = args.evidence_file or evidence.default_path(args.workload, now, Path.cwd())
        fmt = evidence.evidence_format(target)
        auth = credentials(args)
        raw, verification = fetch_verification(args, auth)
    except (VerifyUsageError, ClientError, AnswerError) as e:
        error(str(e))
        return 2
    problems: list[str] = []
    shown: ProbeShown | None = None
    if probe_args is not None:
        shown = _probe(args, probe_args, auth, os.environ, problems)
        try:
            raw, verification = fetch_verification(args, auth)
        except (ClientError, AnswerError) as e:
            _problem(problems, f"the verification after the probe: {e}")
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


def _probe_args(args: argparse.Namespace) -> argparse.Namespace | None:
    if args.probe:
        return probing.probe_args(args, args.workload)
    extra = probing.given(args)
    if extra:
        flags = ", ".join("--" + name.replace("_", "-") for name in extra)
        raise VerifyUsageError(f"{flags}: probe flags need --probe")
    return None


def _problem(problems: list[str], message: str) -> None:
    error(message)
    problems.append(message)


def fetch_verification(args: argparse.Namespace, auth: Credentials) -> tuple[dict[str, Any], Verification]:
    """The route's answer as it came, and parsed; ClientError or AnswerError (one line each)."""
    raw = get_json(args.collector, workload_route(args.workload, "verification"), args.timeout, auth=auth)
    if not isinstance(raw, dict):
        raise AnswerError("the answer", "expected an object")
    return raw, parse(raw)


def _probe(
    args: argparse.Namespace,
    probe_args: argparse.Namespace,
    auth: Credentials,
    env: Mapping[str, str],
    problems: list[str],
) -> ProbeShown:
    """Run the probe and store its result; what could not be done goes into ``problems``."""
    try:
        run = probing.run_probe(probe_args, sys.stderr, env)
    except Exception as e:  # the probe is another component: whatever stops it, this run says so
        _problem(problems, f"the probe could not run: {type(e).__name__}: {e}")
        return ProbeShown("error", 2, (f"could not run: {e}",), None, None)
    doc = run.document
    if doc is None:
        reason = f"the probe could not run (exit {run.exit_code}; its error is above)"
        problems.append(reason)
        return ProbeShown("error", run.exit_code, (reason,), None, None)
    verdict = str(doc.get("verdict", "error"))
    reasons = tuple(str(r) for r in doc.get("reasons") or ())
    stored: dict[str, Any] | None = None
    try:
        status, answer = request_json(
            args.collector,
            workload_route(args.workload, "probes"),
            args.timeout,
            "POST",
            json.dumps(doc, ensure_ascii=False).encode(),
            auth=auth,
        )
        probe = answer.get("probe") if isinstance(answer, dict) else None
        if status != 201 or not isinstance(probe, dict):
            raise ClientError(f"POST probes: expected 201 with a probe, got HTTP {status}")
        stored = probe
    except ClientError as e:
        _problem(problems, f"the probe's result could not be stored with the collector: {e}")
    return ProbeShown(verdict, run.exit_code, reasons, stored, doc)
