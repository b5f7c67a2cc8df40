"""``skewwatch revisions NAMESPACE/NAME``: a workload's pod-template revisions, and how ``diff``
shows a pod-template diff (``--revisions A B`` with workload revisions, and ``--last-good``'s
``template``).

A revision is named ``rN`` / ``revision:N`` (the controller's number), by its template hash
(``hash:H`` for one of digits only), ``current`` or ``last-good`` (the revision the baseline was
recorded on). Route: ``GET /api/v1/workloads/{ns}/{name}/revisions``; the diff is ``GET
/api/v1/diff?workload=…&revisions=A,B``. Tables are pure functions of the API's answer.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from collector.cli.client import add_namespace_flags
from collector.cli.common import add_query_flags, show, usage_error, workload_path
from collector.cli.output import Column, Table, age, format_time

VALUE_WIDTH = 60


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "revisions",
        help="a workload's pod-template revisions, newest first (current and last-good marked)",
        description="skewwatch revisions NAMESPACE/NAME (or NAME -n NAMESPACE) lists the pod-template "
        "revisions the cluster watch stored for the workload; diff them with "
        "'skewwatch diff NAMESPACE/NAME --revisions last-good current' (or rN, a template hash).",
    )
    p.add_argument("workload", metavar="NAMESPACE/NAME")
    add_namespace_flags(p)
    add_query_flags(p)
    p.set_defaults(func=run_revisions)


def namespaced(text: str, namespace: str | None) -> str:
    """``NAMESPACE/NAME`` or ``NAMESPACE/KIND/NAME`` as given, or ``NAME`` completed by ``-n``;
    ArgumentTypeError naming what is wrong."""
    parts = text.split("/")
    if len(parts) == 1 and text and namespace:
        return f"{namespace}/{text}"
    if len(parts) not in (2, 3) or not all(parts):
        raise argparse.ArgumentTypeError(
            f"must be NAMESPACE/NAME, NAMESPACE/KIND/NAME or NAME with -n NAMESPACE, got {text!r}"
        )
    if namespace and parts[0] != namespace:
        raise argparse.ArgumentTypeError(f"{text} is not in namespace {namespace} (-n)")
    return text


def run_revisions(args: argparse.Namespace) -> int:
    try:
        name = namespaced(args.workload, args.namespace)
    except argparse.ArgumentTypeError as e:
        return usage_error("revisions", str(e))
    parts = workload_path(name).split("?", 1)
    path = f"/api/v1/workloads/{parts[0]}/revisions" + (f"?{parts[1]}" if len(parts) > 1 else "")
    return show("revisions", args, path, format_revisions_table)


def format_revisions_table(data: dict[str, Any], wide: bool = False) -> Table:
    good = data.get("last_good") or {}
    rows = [
        [
            f"r{r['revision']}" if r.get("revision") else "-",
            str(r.get("template_hash") or "-"),
            "yes" if r.get("current") else "",
            "yes"
            if good.get("template_hash") and r.get("template_hash") == good.get("template_hash")
            else "",
            age(r.get("created_at")),
            age(r.get("last_seen")),
            format_time(r.get("first_seen")),
            str(r.get("source") or "-"),
        ]
        for r in data.get("revisions", [])
    ]
    columns = [Column(h) for h in ("REVISION", "TEMPLATE HASH", "CURRENT", "LAST GOOD", "AGE", "LAST SEEN")]
    columns += [Column("FIRST SEEN", wide=True), Column("SOURCE", wide=True)]
    notes = [f"last-good: {good['why']}"] if good.get("why") else []
    empty = str(data.get("message") or f"no pod-template revision of {data.get('workload')} is stored")
    return Table(columns, rows, notes=notes, empty=empty)


def _cell(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= VALUE_WIDTH else text[: VALUE_WIDTH - 1] + "…"


def _before_after(change: dict[str, Any]) -> str:
    kind = change.get("change")
    before = "(absent)" if kind == "added" else _cell(change.get("before"))
    after = "(absent)" if kind == "removed" else _cell(change.get("after"))
    return f"{before} → {after}"


def is_template_diff(data: dict[str, Any]) -> bool:
    """Whether a diff answer compares two pod-template revisions (its sides name a template hash)."""
    return "template_hash" in (data.get("from") or {})


def format_template_changes(data: dict[str, Any], title: str) -> list[str]:
    """``title: FROM -> TO: N difference(s)``, the last-good side's why, then the table of changes:
    CATEGORY, KEY, CHANGE, BEFORE → AFTER."""
    src = (data.get("from") or {}).get("label", "-")
    dst = (data.get("to") or {}).get("label", "-")
    changes = data.get("changes", [])
    out = [f"{title}: {src} -> {dst}: {len(changes)} difference(s)"]
    for side in ("from", "to"):
        why = (data.get(side) or {}).get("why")
        if why:
            out.append(f"    ({why})")
    if changes:
        rows = [
            [str(c.get("category", "")), str(c["key"]), str(c.get("change", "")), _before_after(c)]
            for c in changes
        ]
        table = Table([Column(h) for h in ("CATEGORY", "KEY", "CHANGE", "BEFORE → AFTER")], rows)
        out.extend("    " + line for line in table.plain().rstrip("\n").splitlines())
    return out


def format_last_good_template(data: dict[str, Any]) -> list[str]:
    """The ``--last-good`` answer's pod-template part: its diff, or why there is none."""
    if "template" not in data:
        return []
    template = data.get("template")
    if template is None:
        return [f"pod template: no diff ({data.get('template_why') or 'unknown'})"]
    return format_template_changes(template, "pod template")


__all__ = [
    "format_last_good_template",
    "format_revisions_table",
    "format_template_changes",
    "is_template_diff",
    "namespaced",
    "register",
]
