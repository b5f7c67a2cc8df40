"""The check's output: an aligned table, JSON (``skewwatch.check/v1``) or SARIF 2.1.0.

Every value shown comes from the derived facts, which the agent's redaction has already passed:
a secret (``secretKeyRef``, ``HF_TOKEN``, ``--api-key``) appears only as ``redacted:sha256:…``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from skewwatch import __version__
from skewwatch.check.rules import RULES, Finding, TargetResult

SCHEMA = "skewwatch.check/v1"
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
SARIF_LEVEL = {"critical": "error", "high": "error", "medium": "warning", "low": "note", "info": "note"}
SEVERITY_ORDER = {"critical": 0, "high": 1, "medium": 2, "low": 3, "info": 4}


def all_findings(results: Sequence[TargetResult]) -> list[Finding]:
    return [f for r in results for f in r.findings]


def _target(r: TargetResult) -> dict[str, Any]:
    d = r.derived
    v = d.view
    return {
        "file": v.obj.file,
        "line": v.line,
        "object": {"kind": v.obj.kind, "name": v.obj.name, "namespace": v.obj.namespace or None},
        "container": v.name,
        "role": v.role or None,
        "engine": d.spec.name,
        "implied_command": v.implied or None,
        "intents": r.bound,
        "checks": r.checks,
        "notes": r.notes,
        "findings": [f.as_dict() for f in r.findings],
    }


def render_json(results: Sequence[TargetResult], intent_file: str) -> str:
    findings = all_findings(results)
    doc = {
        "schema": SCHEMA,
        "intent": intent_file,
        "result": "findings" if findings else "clean",
        "summary": {
            "targets": len(results),
            "findings": len(findings),
            "by_severity": {
                s: sum(1 for f in findings if f.severity == s)
                for s in SEVERITY_ORDER
                if any(f.severity == s for f in findings)
            },
        },
        "targets": [_target(r) for r in results],
    }
    return json.dumps(doc, indent=2, ensure_ascii=False, default=str)


def _cell(value: str, width: int) -> str:
    return value if len(value) <= width else value[: width - 1] + "…"


def render_table(results: Sequence[TargetResult]) -> str:
    rows: list[tuple[str, str, str, str, str]] = []
    for r in results:
        for f in sorted(r.findings, key=lambda f: (SEVERITY_ORDER.get(f.severity, 9), f.line)):
            rows.append(
                (f"{f.file}:{f.line}", f.rule, f.severity, f"{f.kind}/{f.name}/{f.container}", f.message)
            )
    lines: list[str] = []
    if rows:
        head = ("LOCATION", "RULE", "SEVERITY", "OBJECT", "MESSAGE")
        # The location stays whole (editors and terminals open FILE:LINE); the object is capped.
        widths = [max(len(row[i]) for row in [head, *rows]) for i in range(4)]
        widths[3] = min(widths[3], 60)
        for row in [head, *rows]:
            cells = [_cell(row[i], widths[i]).ljust(widths[i]) for i in range(4)]
            lines.append("  ".join([*cells, row[4]]))
        lines.append("")
        for r in results:
            for f in r.findings:
                lines.append(f"{f.file}:{f.line}: {f.rule} hint: {f.hint}")
        lines.append("")
    targets = ", ".join(f"{r.derived.view.where} ({r.derived.spec.name})" for r in results)
    count = len(rows)
    lines.append(
        f"{count} finding{'s' if count != 1 else ''} in {len(results)} inference container(s): {targets}"
    )
    return "\n".join(lines)


def render_sarif(results: Sequence[TargetResult]) -> str:
    rules = list(RULES.values())
    index = {r.id: i for i, r in enumerate(rules)}
    sarif_results = []
    for f in all_findings(results):
        sarif_results.append(
            {
                "ruleId": f.rule,
                "ruleIndex": index[f.rule],
                "level": SARIF_LEVEL.get(f.severity, "warning"),
                "message": {"text": f"{f.message}. Hint: {f.hint}"},
                "locations": [
                    {
                        "physicalLocation": {
                            "artifactLocation": {"uri": _uri(f.file)},
                            "region": {"startLine": max(1, f.line)},
                        },
                        "logicalLocations": [
                            {"name": f.container, "fullyQualifiedName": f"{f.kind}/{f.name}/{f.container}"}
                        ],
                    }
                ],
                "properties": {"severity": f.severity, "key": f.key or None},
            }
        )
    doc = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "skewwatch",
                        "version": __version__,
                        "rules": [
                            {
                                "id": r.id,
                                "name": r.name,
                                "shortDescription": {"text": r.what},
                                "fullDescription": {"text": f"{r.what}: {r.why}"},
                                "help": {"text": r.fix},
                                "defaultConfiguration": {"level": SARIF_LEVEL[r.severity]},
                                "properties": {"severity": r.severity},
                            }
                            for r in rules
                        ],
                    }
                },
                "results": sarif_results,
            }
        ],
    }
    return json.dumps(doc, indent=2, ensure_ascii=False, default=str)


def _uri(file: str) -> str:
    """A relative URI reference for a file name (stdin stays ``-`` spelled as ``stdin``)."""
    if file == "-":
        return "stdin"
    return file.replace("\\", "/").replace(" ", "%20")
