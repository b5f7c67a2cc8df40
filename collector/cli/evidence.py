"""``skewwatch evidence NAMESPACE/NAME``: a workload's evidence bundle, to attach to an incident.

``-o json`` (default) prints the bundle (schema ``skewwatch.evidence/v1``, docs/evidence.md),
``-o markdown`` the same data for a ticket, ``-o tar`` a ``.tar.gz`` with both and each pod's
stored snapshot. ``--output-file F`` writes it to F instead of stdout; ``-o tar`` needs one unless
stdout is not a terminal (binary is never written to a terminal). Route: ``GET
/api/v1/workloads/{namespace}/{name}/evidence?format=…``. Exit codes: 0 written, 1 the collector
failed or answered an error (or the file could not be written), 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from collector.cli.client import add_client_flags, credentials, get_json, request_bytes
from collector.cli.common import usage_error, workload, workload_path
from collector.errors import ClientError

FORMATS = ("json", "markdown", "tar")
COMMAND = "evidence"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        COMMAND,
        help="a workload's evidence bundle: pods, image, args and env (redacted), GPU, metrics, "
        "diff against last-good, open findings, restarts, intents and baseline",
        description="Fetch a workload's evidence bundle from the collector: JSON (default), Markdown, or "
        "a .tar.gz with both and each pod's stored snapshot. -o tar needs --output-file unless stdout "
        "is redirected.",
    )
    p.add_argument("workload", type=workload, metavar="NAMESPACE/NAME")
    p.add_argument(
        "-o",
        "--output",
        "--format",
        dest="format",
        choices=FORMATS,
        default="json",
        help="json (default), markdown or tar (.tar.gz)",
    )
    p.add_argument("--output-file", type=Path, metavar="FILE", help="write the bundle to FILE, not stdout")
    add_client_flags(p)
    p.set_defaults(func=run_evidence)


def _path(name: str, fmt: str) -> str:
    route = f"/api/v1/workloads/{workload_path(name)}"
    # workload_path appends ?kind= for NAMESPACE/KIND/NAME: the route goes before the query.
    route, _, query = route.partition("?")
    return f"{route}/evidence?format={fmt}" + (f"&{query}" if query else "")


def _fetch(args: argparse.Namespace) -> bytes:
    path = _path(args.workload, args.format)
    if args.format == "json":
        # Decoded and printed again: checked to be JSON, indented, in the bundle's own key order.
        return (
            json.dumps(
                get_json(args.collector, path, args.timeout, auth=credentials(args)),
                indent=2,
                ensure_ascii=False,
            )
            + "\n"
        ).encode()
    return request_bytes(args.collector, path, args.timeout, accept="*/*", auth=credentials(args))[1]


def run_evidence(args: argparse.Namespace) -> int:
    out: Path | None = args.output_file
    if args.format == "tar" and out is None and sys.stdout.isatty():
        return usage_error(COMMAND, "-o tar writes a .tar.gz: give --output-file FILE or redirect stdout")
    try:
        data = _fetch(args)
    except ClientError as e:
        print(f"skewwatch {COMMAND}: error: {e}", file=sys.stderr)
        return 1
    if out is None:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return 0
    try:
        out.write_bytes(data)
    except OSError as e:
        print(f"skewwatch {COMMAND}: error: cannot write {out}: {e.strerror or e}", file=sys.stderr)
        return 1
    print(f"skewwatch {COMMAND}: wrote {args.format} bundle of {args.workload} to {out}", file=sys.stderr)
    return 0
