"""The ``check`` command's parser, apart from the check itself: registering it costs the CLI's
start-up nothing (the agent's sources, the drift engine and their libraries are imported by
:func:`cmd_check` when the command runs)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

DESCRIPTION = """\
``skewwatch check --intent FILE MANIFEST…`` (``-`` reads stdin, e.g. ``kubectl kustomize …
| skewwatch check --intent spec.yaml -``) reads the manifests with no cluster and reports
findings; exit 0 clean, 1 findings, 2 bad input (``FILE:LINE: message`` on stderr).
``skewwatch check --intent FILE --pid PID | --match REGEX`` collects the local process once, as
``skewwatch facts`` does, and runs the collector's intent check on it: exit 0 in intent, 1 drift,
2 cannot run (no such process, no intent applies, bad intent).
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "check",
        help="pre-deploy skew check: manifests (or one local process) against a ModelSpec / SkewPolicy",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--intent", required=True, metavar="FILE", help="ModelSpec / SkewPolicy YAML ('-': stdin)")
    p.add_argument("manifests", nargs="*", metavar="MANIFEST", help="Kubernetes YAML files; '-' reads stdin")
    target = p.add_mutually_exclusive_group()
    target.add_argument(
        "--pid", type=int, default=None, help="check this running process instead of manifests"
    )
    target.add_argument(
        "--match", default=None, metavar="REGEX", help="check the process whose command matches"
    )
    p.add_argument("--metrics-url", default=None, help="live mode: the runtime's /metrics URL")
    p.add_argument("--model-dir", type=Path, default=None, help="live mode: the model directory")
    p.add_argument("--source-timeout", type=float, default=None, help="live mode: seconds per source")
    p.add_argument(
        "-o", "--output", "--format", dest="output", choices=["table", "json", "sarif"], default="table",
        help="table (default), json (schema skewwatch.check/v1) or sarif (SARIF 2.1.0)",
    )  # fmt: skip
    p.set_defaults(func=cmd_check)


def build_parser() -> argparse.ArgumentParser:
    """A parser with only ``check``, for tests and for callers without the whole CLI."""
    parser = argparse.ArgumentParser(prog="skewwatch")
    register(parser.add_subparsers(dest="command", required=True))
    return parser


def main(argv: Sequence[str], stdin: TextIO | None = None, stdout: TextIO | None = None) -> int:
    from skewwatch.check.cli import run

    args = build_parser().parse_args(["check", *argv])
    return run(args, stdin or sys.stdin, stdout or sys.stdout, sys.stderr)


def cmd_check(args: argparse.Namespace) -> int:
    from skewwatch.check.cli import run

    return run(args, sys.stdin, sys.stdout, sys.stderr)
