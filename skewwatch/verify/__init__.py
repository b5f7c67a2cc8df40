"""``skewwatch verify NAMESPACE/NAME``: the post-fix verification — may the incident be closed?

It asks the collector whether the workload's findings are resolved and its latest observations
are back within tolerance of the baseline at comparable load (the collector's verification
route), optionally runs the probe against the fixed endpoint (``--probe``) and stores its result,
and writes the post-fix evidence bundle. Exit 0 the incident may be closed, 1 not yet (the output
says every reason), 2 could not verify (docs/verify.md).

The package sits above the agent and the collector: it uses the client commands' HTTP client and
flags (:mod:`collector.cli.client`) and the probe (:mod:`skewwatch.probe`); neither the agent nor
the collector imports it (an import-linter contract). ``register(sub)`` adds the command to the
``skewwatch`` entry point.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from collector.cli.client import add_client_flags
from collector.cli.common import workload
from skewwatch.verify.command import COMMAND, run_verify
from skewwatch.verify.probing import add_probe_flags

__all__ = ["build_parser", "register"]

OUTPUTS = ("table", "json", "yaml")
DESCRIPTION = """\
skewwatch verify NAMESPACE/NAME asks the collector whether the incident of a workload may be
closed: its active findings (open and pending) are resolved, its latest observations are back
within tolerance of the baseline at comparable load (tokens/s, latency p95/p99, GPU utilisation
and memory), and the latest probe. With --probe it first runs the probe against --endpoint for
--model (the probe's flags; --probe-timeout bounds it) and stores the result with the workload.
It always writes the post-fix evidence bundle: --evidence-file FILE (.json, .md or .tar.gz),
default evidence-<namespace>-<name>-<UTC time>.json here.

Exit 0 the incident may be closed, 1 not yet (every reason is printed), 2 could not verify
(collector unreachable, workload unknown, bad usage, the probe could not run or was
inconclusive, the evidence could not be written).
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        COMMAND,
        help="post-fix verification: may the incident be closed? (findings, baseline, probe, evidence)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("workload", type=workload, metavar="NAMESPACE/NAME")
    p.add_argument(
        "--evidence-file",
        type=Path,
        metavar="FILE",
        help="where to write the evidence bundle; its name says the format: .json, .md, .tar.gz "
        "(default: evidence-<namespace>-<name>-<UTC time>.json in the current directory)",
    )
    p.add_argument(
        "-o",
        "--output",
        "--format",
        dest="format",
        choices=OUTPUTS,
        default="table",
        help="table (default), json or yaml (schema skewwatch.verify/v1)",
    )
    add_client_flags(p)
    add_probe_flags(p)  # after the client flags: a probe flag of the same name gets --probe-
    p.set_defaults(func=run_verify)


def build_parser() -> argparse.ArgumentParser:
    """A parser with only ``verify``, for tests and callers without the whole CLI."""
    parser = argparse.ArgumentParser(prog="skewwatch")
    register(parser.add_subparsers(dest="command", required=True))
    return parser
