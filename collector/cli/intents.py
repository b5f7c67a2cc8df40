"""``skewwatch intent``: ``validate FILE…`` offline, and ``list|show|apply|delete`` against the API.

``validate`` runs the collector's own intent loader (collector/intent) on each file and prints
every problem as ``FILE:LINE: path: message``; exit 0 when all are valid, 1 when any is not, 2 on
bad usage (a file that cannot be read). ``apply`` validates the same way first, then creates or
replaces each document with ``PUT /api/v1/intents/{kind}/{name}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from collector.cli.client import credentials, request_json
from collector.cli.common import add_query_flags, quote, show, usage_error
from collector.cli.output import Column, Table, add_output_flag, emit
from collector.errors import ClientError, IntentError, IntentIssue
from collector.intent import modelspec_schema
from collector.intent.model import POLICY_KIND, Intent, parse_documents

KINDS = (modelspec_schema.KIND, POLICY_KIND)
MAX_FILE_BYTES = 4 * 1024 * 1024


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "intent",
        help="intent documents: validate FILE… (offline), list, show|delete KIND/NAME, apply FILE…",
        description="ModelSpec and SkewPolicy documents. validate checks files offline with the "
        "collector's own loader; list, show, apply and delete talk to a collector.",
    )
    p.set_defaults(func=lambda _a: usage_error("intent", "give validate, list, show, apply or delete"))
    sub = p.add_subparsers(dest="intent_command", metavar="{validate,list,show,apply,delete}")

    v = sub.add_parser(
        "validate",
        help="check intent files offline: FILE:LINE: path: message for each problem",
        description="Exit 0 when every file is valid, 1 when any is not, 2 when a file cannot be read.",
    )
    v.add_argument("files", nargs="+", type=Path, metavar="FILE")
    add_output_flag(v)
    v.set_defaults(func=run_validate)

    ls = sub.add_parser("list", help="the intents a collector holds, and the errors of its directory")
    add_query_flags(ls)
    ls.set_defaults(func=run_list)

    s = sub.add_parser("show", help="one intent document")
    s.add_argument("target", type=kind_name, metavar="KIND/NAME")
    add_query_flags(s)
    s.set_defaults(func=run_show)

    a = sub.add_parser("apply", help="validate FILE… then create or replace each document on the collector")
    a.add_argument("files", nargs="+", type=Path, metavar="FILE")
    add_query_flags(a)
    a.set_defaults(func=run_apply)

    d = sub.add_parser("delete", help="delete an intent the API created")
    d.add_argument("target", type=kind_name, metavar="KIND/NAME")
    add_query_flags(d)
    d.set_defaults(func=run_delete)


def kind_name(value: str) -> tuple[str, str]:
    """``ModelSpec/NAME`` or ``SkewPolicy/NAME``; the kind in any letter case."""
    kind, _, name = value.partition("/")
    canonical = {k.lower(): k for k in KINDS}.get(kind.lower())
    if canonical is None or not name or "/" in name:
        raise argparse.ArgumentTypeError(
            f"must be KIND/NAME with KIND one of {', '.join(KINDS)}, got {value!r}"
        )
    return canonical, name


def issue_line(issue: IntentIssue) -> str:
    """``FILE:LINE: path: message``; a problem with no known line is put at the file's first."""
    return f"{issue.file}:{issue.line or 1}: {issue.path or '(document)'}: {issue.message}"


def load(path: Path) -> tuple[list[Intent], list[IntentIssue]]:
    """The file's intents and its problems; OSError when it cannot be read."""
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a directory")
    data = path.read_bytes()[: MAX_FILE_BYTES + 1]
    if len(data) > MAX_FILE_BYTES:
        return [], [IntentIssue(str(path), 1, "", f"larger than {MAX_FILE_BYTES} bytes")]
    try:
        intents = parse_documents(data, str(path))
    except IntentError as e:
        return [], list(e.issues)
    if not intents:
        return [], [IntentIssue(str(path), 1, "", "no intent document in it (only empty or null documents)")]
    return intents, []


def _load_all(command: str, files: list[Path]) -> list[tuple[Path, list[Intent], list[IntentIssue]]] | None:
    out = []
    for f in files:
        try:
            intents, issues = load(f)
        except OSError as e:
            usage_error(command, f"{f}: cannot read: {e.strerror or e}")
            return None
        out.append((f, intents, issues))
    return out


def run_validate(args: argparse.Namespace) -> int:
    loaded = _load_all("intent validate", args.files)
    if loaded is None:
        return 2
    report = {
        "valid": all(not issues for _f, _i, issues in loaded),
        "files": [
            {
                "file": str(f),
                "valid": not issues,
                "intents": [f"{i.kind}/{i.name}" for i in intents],
                "issues": [x.as_dict() for x in issues],
            }
            for f, intents, issues in loaded
        ],
    }
    emit(report, args.format, _validate_text)
    return 0 if report["valid"] else 1


def _validate_text(report: dict[str, Any], _wide: bool) -> str:
    out = []
    for f in report["files"]:
        if f["valid"]:
            out.append(f"{f['file']}: valid ({', '.join(f['intents'])})")
        out.extend(
            issue_line(IntentIssue(i["file"], i["line"], i["path"], i["message"])) for i in f["issues"]
        )
    return "\n".join(out) + "\n"


def run_list(args: argparse.Namespace) -> int:
    return show("intent list", args, "/api/v1/intents", format_intent_list)


def format_intent_list(data: dict[str, Any], wide: bool = False) -> Table:
    rows = [
        [
            str(i.get("kind")),
            str(i.get("name")),
            str(i.get("origin")),
            str(i.get("state")),
            str(i.get("file")),
        ]
        for i in data.get("intents", [])
    ]
    notes = [
        "error: "
        + issue_line(IntentIssue(str(e["file"]), e.get("line"), str(e.get("path", "")), str(e["message"])))
        for e in data.get("errors", [])
    ]
    columns = [Column("KIND"), Column("NAME"), Column("ORIGIN"), Column("STATE"), Column("FILE", wide=True)]
    return Table(columns, rows, notes=notes, empty="no intents")


def run_show(args: argparse.Namespace) -> int:
    kind, name = args.target
    return show("intent show", args, f"/api/v1/intents/{kind}/{quote(name)}", format_intent)


def format_intent(data: dict[str, Any], wide: bool = False) -> str:
    head = f"# {data.get('kind')}/{data.get('name')} (from {data.get('file')})\n"
    return head + yaml.safe_dump(data.get("document"), sort_keys=False, allow_unicode=True)


def run_apply(args: argparse.Namespace) -> int:
    loaded = _load_all("intent apply", args.files)
    if loaded is None:
        return 2
    issues = [x for _f, _i, found in loaded for x in found]
    if issues:
        for x in issues:
            print(issue_line(x), file=sys.stderr)
        print(f"skewwatch intent apply: error: {len(issues)} problem(s); nothing applied", file=sys.stderr)
        return 1
    applied = []
    for _f, intents, _x in loaded:
        for i in intents:
            path = f"/api/v1/intents/{i.kind}/{quote(i.name)}"
            try:
                status, _ = request_json(
                    args.collector,
                    path,
                    args.timeout,
                    "PUT",
                    json.dumps(i.data).encode(),
                    auth=credentials(args),
                )
            except ClientError as e:
                print(f"skewwatch intent apply: error: {i.kind}/{i.name}: {e}", file=sys.stderr)
                return 1
            applied.append(
                {"kind": i.kind, "name": i.name, "result": "created" if status == 201 else "configured"}
            )
    emit({"applied": applied}, args.format, lambda d, _w: "".join(
        f"{a['kind']}/{a['name']} {a['result']}\n" for a in d["applied"]
    ))  # fmt: skip
    return 0


def run_delete(args: argparse.Namespace) -> int:
    kind, name = args.target
    return show(
        "intent delete",
        args,
        f"/api/v1/intents/{kind}/{quote(name)}",
        lambda _d, _w: f"{kind}/{name} deleted\n",
        method="DELETE",
    )
