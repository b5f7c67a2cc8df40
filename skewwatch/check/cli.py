"""``skewwatch check``: the pre-deploy skew check, and its one-shot live form (the parser and
its description: :mod:`skewwatch.check.command`)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from collections.abc import Sequence
from typing import TextIO

from agent.cli import settings_from_args
from agent.settings import AgentSettings, env_value
from collector.domain.model import Replica
from collector.errors import IntentError
from collector.intent.model import Intent, parse_documents
from skewwatch.check.derive import derive
from skewwatch.check.errors import CheckInputError, TargetNotFound
from skewwatch.check.manifests import read_manifests
from skewwatch.check.report import all_findings, render_json, render_sarif, render_table
from skewwatch.check.rules import TargetResult, check_target, evaluate_replica, shown_check
from skewwatch.core.facts import Snapshot, SourceState
from skewwatch.redact import Redactor

MAX_INPUT_BYTES = 1024 * 1024  # the YAML loader's own cap; a bigger file is refused, not truncated


def run(args: argparse.Namespace, stdin: TextIO, out: TextIO, err: TextIO) -> int:
    live = args.pid is not None or args.match is not None
    try:
        if live and args.manifests:
            raise CheckInputError("(arguments)", None, "give MANIFEST files or --pid/--match, not both")
        if not live and not args.manifests:
            raise CheckInputError("(arguments)", None, "give MANIFEST files ('-' for stdin) or --pid/--match")
        if [args.intent, *args.manifests].count("-") > 1:
            raise CheckInputError("-", None, "stdin can be read only once")
        intents = load_intents(args.intent, stdin)
        if live:
            return run_live(args, intents, out, err)
        results = check_manifests([(m, read_text(m, stdin)) for m in args.manifests], intents)
    except IntentError as e:
        for issue in e.issues:
            print(str(issue), file=err)
        return 2
    except (CheckInputError, TargetNotFound) as e:
        print(str(e), file=err)
        return 2
    if args.output == "json":
        out.write(render_json(results, args.intent) + "\n")
    elif args.output == "sarif":
        out.write(render_sarif(results) + "\n")
    else:
        out.write(render_table(results) + "\n")
    return 1 if all_findings(results) else 0


def read_text(name: str, stdin: TextIO) -> str:
    """A manifest or intent file's text; CheckInputError naming it when it cannot be read."""
    try:
        if name == "-":
            text = stdin.read(MAX_INPUT_BYTES + 1)
        else:
            with open(name, encoding="utf-8") as f:
                text = f.read(MAX_INPUT_BYTES + 1)
    except (OSError, UnicodeDecodeError) as e:
        raise CheckInputError(name, None, f"cannot read: {e.__class__.__name__}: {e}") from e
    if len(text) > MAX_INPUT_BYTES:
        raise CheckInputError(name, None, f"over {MAX_INPUT_BYTES} characters")
    return text


def load_intents(name: str, stdin: TextIO) -> list[Intent]:
    """The intents of ``--intent``, read by the collector's own loader (IntentError names file and line)."""
    intents = parse_documents(read_text(name, stdin), name)
    if not intents:
        raise CheckInputError(name, None, "no ModelSpec or SkewPolicy document in the file")
    return intents


def salt() -> str:
    return env_value(os.environ, "SKEWWATCH_REDACTION_SALT") or AgentSettings.redaction_salt


def check_manifests(sources: Sequence[tuple[str, str]], intents: Sequence[Intent]) -> list[TargetResult]:
    """Every inference container of the manifests, checked; CheckInputError when there is none."""
    redactor = Redactor(salt())
    views = read_manifests(sources)
    results = []
    for view in views:
        derived = derive(view, redactor)
        if derived is not None:
            results.append(check_target(derived, intents, redactor))
    if not results:
        names = ", ".join(f for f, _ in sources)
        seen = f"{len(views)} container(s)" if views else "no workload with containers"
        raise CheckInputError(
            sources[0][0] if len(sources) == 1 else names, None,
            f"no inference container found ({seen}; none starts vLLM, SGLang or TGI "
            "by its command, args or image)",
        )  # fmt: skip
    return results


def replica_of(snapshot: Snapshot) -> Replica:
    """A one-shot collection as the collector holds a replica's current snapshot."""
    facts = {k: f.value for k, f in snapshot.facts.items()}
    return Replica(
        pod=str(facts.get("orchestration.pod") or "local"),
        facts=facts,
        provenance={k: f.provenance for k, f in snapshot.facts.items()},
        sources=dict(snapshot.sources),
        fingerprint=snapshot.fingerprint.overall,
        observations=(dict(snapshot.observations),) if snapshot.observations else (),
    )


def run_live(args: argparse.Namespace, intents: Sequence[Intent], out: TextIO, err: TextIO) -> int:
    """Collect the local process once (the code ``skewwatch facts`` runs) and check it against the intent."""
    ns = argparse.Namespace(
        pid=args.pid, match=args.match, metrics_url=args.metrics_url, model_dir=args.model_dir,
        source_timeout=args.source_timeout,
    )  # fmt: skip
    settings = settings_from_args(ns, os.environ)
    from agent.runtime import Agent  # the sources and their libraries: only for a collection

    snapshot = asyncio.run(Agent(settings, os.environ).collect())
    process = snapshot.sources.get("process")
    if process is None or process.state is SourceState.UNAVAILABLE:
        raise TargetNotFound(
            f"no inference process to check: {process.message if process else 'no process source'}"
        )
    replica = replica_of(snapshot)
    workload = str(
        replica.facts.get("orchestration.workload") or f"local/Process/{replica.facts.get('runtime.pid')}"
    )
    evaluation, note = evaluate_replica(replica, workload, intents)
    if not evaluation.bound.model_specs and not evaluation.bound.policies:
        raise TargetNotFound(
            f"{args.intent}: no ModelSpec or SkewPolicy applies to {workload} "
            "(annotate the pod, bind a SkewPolicy, or keep one ModelSpec in the file)"
        )
    verdict = "drift" if evaluation.drifts else "in-intent"
    redactor = Redactor(settings.redaction_salt)
    if args.output == "table":
        out.write(f"{workload}: {verdict} ({len(evaluation.drifts)} drift(s))\n")
        for d in evaluation.drifts:
            out.write(f"  {d.severity:<8} {d.key}: {d.message}\n    hint: {d.hint}\n")
        unverified = [c for c in evaluation.checks if c.status == "unverifiable"]
        for c in unverified:
            out.write(f"  unverified {c.field}: {c.detail}\n")
        if note:
            out.write(f"  note: {note}\n")
    else:
        doc = {
            "schema": "skewwatch.check/v1",
            "mode": "live",
            "workload": workload,
            "result": verdict,
            "intents": dict(evaluation.bound.reasons),
            "drifts": [
                {"key": d.key, "severity": d.severity, "expected": redactor.tree(d.key, d.expected),
                 "actual": d.actual, "message": d.message, "hint": d.hint}
                for d in evaluation.drifts
            ],
            "checks": [
                shown_check(c.as_dict(), redactor) for c in evaluation.checks if c.status != "documentary"
            ],
            "notes": [note] if note else [],
        }  # fmt: skip
        out.write(json.dumps(doc, indent=2, ensure_ascii=False, default=str) + "\n")
    return 1 if evaluation.drifts else 0
