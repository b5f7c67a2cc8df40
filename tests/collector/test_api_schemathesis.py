"""schemathesis against the real collector: every check, over every operation of the served document.

A real collector (SQLite store, gRPC ingest, drift routes) on a real port, one pod fed through
gRPC so list routes have content; schemathesis loads /api/v1/openapi.json from it and runs its
examples, coverage, fuzzing and stateful phases with every check. The run must end with no
failure: no 500 (the last-resort handler never fires), every status and body as declared.

``positive_data_acceptance`` expects schema-valid requests to succeed; a few operations take
input whose rules JSON Schema cannot say (diff: exactly one of five flags; silence: ``until``
within 90 days of now; intents: any YAML string, validated against ModelSpec / SkewPolicy, and
PUT's body naming the path's kind and name; findings: ``status`` and its alias ``state`` given
different; a posted probe result: a document free-form beyond the fields checked, whose integers
anywhere are bounded to 32 digits, ``max_int_digits``), so for those a 400 is also expected.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from schemathesis.engine import Status, events

from tests.support.collector import Running, feed, settings_for, started
from tests.support.openapi import DOC

# Examples per operation (fuzzing: per generation mode too) and stateful scenarios: a few thousand
# requests in all, about a minute on two cores.
MAX_EXAMPLES = 10
FUZZ_EXAMPLES = 30
STATEFUL_EXAMPLES = 10
SEED = 20240601
# The stateful phase (last) runs scenarios until this budget: it bounds the whole run. Examples,
# coverage and fuzzing (before it) must have completed.
BUDGET_S = 70.0
UNEXPRESSIBLE = (
    "diff",
    "silenceFinding",
    "createIntents",
    "putIntent",
    "listFindings",
    "createWorkloadProbe",
)


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Running]:
    async with started(settings_for(tmp_path, shutdown_grace_s=0.5), tmp_path) as running:
        await feed(running)
        yield running


def config() -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "workers": 1,
            "max-time": BUDGET_S,
            "suppress-health-check": ["all"],
            "request-timeout": 10.0,
            "generation": {"max-examples": MAX_EXAMPLES, "database": "none", "deterministic": True},
            "checks": {"enabled": True, "max_response_time": 5.0},
            "phases": {
                "fuzzing": {"generation": {"max-examples": FUZZ_EXAMPLES}},
                "stateful": {"max-steps": 20, "generation": {"max-examples": STATEFUL_EXAMPLES}},
            },
            "operations": [
                {
                    "include-operation-id": op,
                    "checks": {
                        "positive_data_acceptance": {"expected-statuses": ["2xx", "400", "404", "409", "5xx"]}
                    },
                }
                for op in UNEXPRESSIBLE
            ],
        }
    )


def run(url: str) -> dict[str, Any]:
    schema = schemathesis.openapi.from_url(url, config=config())
    cases = 0
    by_phase: dict[str, int] = {}
    labels: set[str] = set()
    failures: list[str] = []
    errors: list[str] = []
    stop = None
    for event in schemathesis.engine.from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            cases += len(event.recorder.cases)
            by_phase[event.phase.value] = by_phase.get(event.phase.value, 0) + len(event.recorder.cases)
            if event.recorder.cases and event.phase.value != "stateful":
                labels.add(event.recorder.label)
            for case_id, checks in event.recorder.checks.items():
                for check in checks:
                    if check.status == Status.FAILURE and check.failure_info is not None:
                        case = event.recorder.cases[case_id].value
                        failures.append(
                            f"{event.recorder.label}: {check.name}: {check.failure_info.failure.title}: "
                            f"{check.failure_info.failure.message[:300]}\n  {case.as_curl_command()[:400]}"
                        )
        elif isinstance(event, events.NonFatalError):
            errors.append(f"{event.label}: {event.info.format()[:500]}")
        elif isinstance(event, events.FatalError):
            errors.append(f"fatal: {event.exception!r}")
        elif isinstance(event, events.EngineFinished):
            stop = event.stop_reason
    return {
        "cases": cases,
        "by_phase": by_phase,
        "labels": labels,
        "failures": failures,
        "errors": errors,
        "stop": stop,
    }


@pytest.mark.timeout(240)
async def test_schemathesis_finds_no_failure(served: Running) -> None:
    start = time.monotonic()
    result = await asyncio.to_thread(run, f"{served.http}/api/v1/openapi.json")
    took = time.monotonic() - start
    print(
        f"schemathesis: {result['cases']} cases in {took:.1f} s {result['by_phase']}, stop: {result['stop']}"
    )
    unique = sorted(set(result["failures"]))
    assert not unique, f"{len(unique)} failures:\n" + "\n".join(unique[:40])
    assert not result["errors"], "\n".join(result["errors"][:20])
    assert result["cases"] >= 1000, result["cases"]
    assert str(result["stop"]) in ("completed", "max_time"), result["stop"]
    assert result["by_phase"].get("coverage", 0) > 0 and result["by_phase"].get("fuzzing", 0) > 0
    assert result["by_phase"].get("stateful", 0) > 0, result["by_phase"]
    # Every operation of the document was exercised outside the stateful phase, new routes
    # included (the run reports no case of its own for the document's route, which takes no input).
    operations = {f"{m.upper()} {path}" for path, ops in DOC["paths"].items() for m in ops}
    operations -= {"GET /api/v1/openapi.json"}
    assert operations <= result["labels"], sorted(operations - result["labels"])
