"""``skewwatch baseline``: ``record|list|show|delete`` a workload's baseline.

The older form stays: ``baseline NAMESPACE/NAME`` shows, ``baseline NAMESPACE/NAME --record``
records (a documented contract). Routes: ``GET|POST|DELETE /api/v1/baselines/{ns}/{name}`` and
``GET /api/v1/baselines``.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.parse
from typing import Any

from collector.cli.client import (
    add_namespace_flags,
    credentials,
    get_json,
    in_namespace,
    workload_namespace,
)
from collector.cli.common import add_query_flags, show, usage_error, workload, workload_path
from collector.cli.output import Column, Table, age, emit, format_time
from collector.errors import ClientError

ACTIONS = ("record", "list", "show", "delete")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "baseline",
        help="a workload's baseline: record|list|show|delete (or NAMESPACE/NAME [--record])",
        description="skewwatch baseline show NAMESPACE/NAME shows the baseline and its older ones; "
        "record NAMESPACE/NAME records the current configuration and performance; list [-n NS] lists "
        "the latest of each workload; delete NAMESPACE/NAME forgets a workload's baselines. "
        "baseline NAMESPACE/NAME [--record] is the older form of show and record.",
    )
    p.add_argument("words", nargs="+", metavar="[record|list|show|delete] NAMESPACE/NAME")
    p.add_argument("--record", action="store_true", help="record now (the older form of 'record')")
    p.add_argument("--note", default="", help="a note stored with a recorded baseline")
    add_namespace_flags(p)
    add_query_flags(p)
    p.set_defaults(func=run_baseline)


def run_baseline(args: argparse.Namespace) -> int:
    words = list(args.words)
    action = words.pop(0) if words[0] in ACTIONS else ("record" if args.record else "show")
    command = f"baseline {action}" if args.words[0] in ACTIONS else "baseline"
    if action == "list":
        if len(words) > 1:
            return usage_error(command, "give at most one NAMESPACE/NAME")
        return _list(command, args, words[0] if words else None)
    if len(words) != 1:
        return usage_error(command, "give one NAMESPACE/NAME")
    try:
        name = workload(words[0])
    except argparse.ArgumentTypeError as e:
        return usage_error(command, str(e))
    path = "/api/v1/baselines/" + workload_path(name)
    if action == "show":
        return show(command, args, path, format_baseline_table)
    if action == "record":
        body = json.dumps({"note": args.note}).encode()
        return show(command, args, path, format_baseline_table, method="POST", body=body)
    return _delete(command, args, name, path)


def _list(command: str, args: argparse.Namespace, name: str | None) -> int:
    params: dict[str, str] = {}
    if name is not None:
        try:
            params["workload"] = workload(name)
        except argparse.ArgumentTypeError as e:
            return usage_error(command, str(e))
    if args.namespace:
        params["namespace"] = args.namespace

    def keep(data: dict[str, Any]) -> dict[str, Any]:
        rows = data.get("baselines", [])
        return {
            **data,
            "baselines": [b for b in rows if in_namespace(args, workload_namespace(b.get("workload")))],
        }

    query = "?" + urllib.parse.urlencode(params) if params else ""
    return show(command, args, "/api/v1/baselines" + query, format_baseline_list, keep=keep)


def _delete(command: str, args: argparse.Namespace, name: str, path: str) -> int:
    try:
        data = get_json(args.collector, path, args.timeout, "DELETE", auth=credentials(args))
    except ClientError as e:
        print(f"skewwatch {command}: error: {e}", file=sys.stderr)
        return 1
    answer = data if isinstance(data, dict) else {"deleted": {"workload": name}}
    emit(answer, args.format, lambda _d, _w: f"deleted the baselines of {name}\n")
    return 0


def format_baseline_table(data: dict[str, Any], wide: bool = False) -> str:
    b = data.get("baseline") or {}
    out = [
        f"{data.get('workload')}: baseline {b.get('id')} ({b.get('origin')}) "
        f"recorded {format_time(b.get('recorded_at'))} ({age(b.get('recorded_at'))} ago)",
        f"    fingerprint {str(b.get('fingerprint', ''))[:12]}, pods {', '.join(b.get('pods', []))}",
    ]
    if b.get("note"):
        out.append(f"    note: {b['note']}")
    load = ", ".join(f"{k} {v:.3g}" for k, v in sorted((b.get("load") or {}).items())) or "unknown"
    out.append(f"    load band: {load}")
    for k, v in sorted((b.get("performance") or {}).items()):
        out.append(f"    {k} = {v:.4g}")
    if b.get("facts") is not None:
        out.append(f"    {len(b['facts'])} configuration facts")
    older = data.get("history") or []
    if older:
        out.extend(
            [
                "",
                "older baselines:",
                format_baseline_list({"baselines": older}, wide).plain(wide).rstrip("\n"),
            ]
        )
    return "\n".join(out) + "\n"


def format_baseline_list(data: dict[str, Any], wide: bool = False) -> Table:
    rows = [
        [
            str(b.get("workload")),
            str(b.get("id")),
            str(b.get("origin")),
            age(b.get("recorded_at")),
            str(b.get("fingerprint") or "")[: None if wide else 12] or "-",
            str(len(b.get("pods") or [])),
            str(b.get("samples", "-")),
            str(b.get("note") or "-"),
        ]
        for b in data.get("baselines", [])
    ]
    columns = [Column(h) for h in ("WORKLOAD", "ID", "ORIGIN", "AGE", "FINGERPRINT", "PODS")]
    columns += [Column("SAMPLES", wide=True), Column("NOTE", wide=True)]
    return Table(columns, rows, empty="no baselines")
