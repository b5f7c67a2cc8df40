"""``skewwatch probe``: the pre-rollout performance sanity test against an OpenAI-compatible endpoint.

It sends a small, fixed, reproducible plan (:mod:`skewwatch.probe.plan`, shipped as
``prompts.yaml``) to ``--endpoint`` for ``--model`` — vLLM, SGLang, TGI, TensorRT-LLM and NIM
all serve one — through a real async client (:mod:`skewwatch.probe.client`: no retries,
timeouts on every request), one closed-loop level per ``--concurrency`` value
(:mod:`skewwatch.probe.stats`), and judges the numbers against thresholds
(:mod:`skewwatch.probe.report`) and a workload's performance baseline on a collector
(:mod:`skewwatch.probe.baseline`), where it also stores the result (:mod:`skewwatch.probe.remote`).
Exit 0 pass, 1 fail, 2 could not run or inconclusive.

The package sits above the agent and the collector: it imports no agent code, and of the
collector only the client commands' HTTP client and the baseline model's load rule (neither
imports the probe: import-linter); ``register(sub)`` adds the command to the ``skewwatch`` entry
point. The measurement modules and aiohttp are imported
when the command runs, so registering it costs the CLI's start-up nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

DESCRIPTION = """\
``skewwatch probe --endpoint URL --model NAME`` sends the shipped plan (or --plan FILE,
YAML or JSON, any of its fields) to an OpenAI-compatible server and reports, per concurrency
level, requests/s, output tokens/s, TTFT, inter-token and end-to-end latency p50/p95/p99 and
errors by kind. Each level is a closed loop: N workers, each sending its next request when the
previous one ends. Warm-up requests are excluded. Requests are never retried.

Thresholds, judged at every level: --max-ttft-ms (TTFT p95), --max-itl-p99-ms,
--max-e2e-p99-ms, --min-tokens-per-s, --max-error-rate. Exit 0 pass, 1 a threshold (or a
baseline metric) failed, 2 could not run (unreachable, bad usage, every request failed, the
collector refused) or inconclusive (the client was saturated where a limit failed, --timeout
stopped the plan, no level at the baseline's load).

With --baseline NAMESPACE/NAME (and --collector URL): the workload's performance baseline, at
the level whose requests/s is closest to the baseline's load (comparable within the collector's
load rule: +-30 % or +-0.5 requests/s); TTFT p95, end-to-end p95/p99 and output tokens/s each
fail past --baseline-tolerance (0.25). No comparable level: inconclusive (2). The result is
stored with the workload (--record NAMESPACE/NAME stores without comparing; --no-store compares
only); a failure to store exits 2.

The API key: --api-key-file FILE (or $SKEWWATCH_PROBE_API_KEY_FILE), else
$SKEWWATCH_PROBE_API_KEY, else $OPENAI_API_KEY; never printed, never in the output.
"""

if TYPE_CHECKING:  # the measurement modules import aiohttp: only when the command runs
    from skewwatch.probe.stats import Hook


def _positive(kind: type[int] | type[float], hi: float) -> Callable[[str], float]:
    def parse(value: str) -> float:
        try:
            out = kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
        if not 0 < out <= hi:
            raise argparse.ArgumentTypeError(f"must be more than 0 and at most {hi:g}, got {value}")
        return out

    return parse


def _levels(value: str) -> list[int]:
    try:
        levels = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of integers: {value!r} (e.g. 1,4,8)") from None
    if not levels or any(not 1 <= n <= 1024 for n in levels):
        raise argparse.ArgumentTypeError(f"each level must be from 1 to 1024, got {value!r}")
    return levels


def _rate(value: str) -> float:
    try:
        out = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not 0 <= out <= 1:
        raise argparse.ArgumentTypeError(f"a fraction from 0 to 1, got {value}")
    return out


def _fraction(value: str) -> float:
    out = _rate(value)
    if out == 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return out


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "probe",
        help="pre-rollout performance sanity test of an OpenAI-compatible endpoint (tokens/s, latency)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--endpoint", required=True, metavar="URL", help="server base URL, e.g. http://HOST:8000")
    p.add_argument("--model", required=True, metavar="NAME", help="the served model name")
    p.add_argument(
        "--plan", type=Path, metavar="FILE", help="YAML/JSON overriding the shipped plan (prompts, levels…)"
    )
    p.add_argument("--api", choices=("chat", "completions"), help="chat or completions (plan default)")
    p.add_argument(
        "--stream", action=argparse.BooleanOptionalAction, default=None,
        help="stream (TTFT and ITL need it; plan default: stream)",
    )  # fmt: skip
    p.add_argument("--concurrency", type=_levels, metavar="N[,N...]", help="concurrency levels, e.g. 1,4,8")
    p.add_argument(
        "--requests", type=_positive(int, 100_000), metavar="N", help="measured requests per level"
    )
    p.add_argument("--warmup", type=int, metavar="N", help="warm-up requests per level (excluded)")
    p.add_argument("--max-tokens", type=_positive(int, 131_072), metavar="N", help="max tokens per request")
    p.add_argument(
        "--max-connections", type=_positive(int, 4096), metavar="N",
        help="connection pool size (default: the highest level, so no request waits for one)",
    )  # fmt: skip
    p.add_argument("--timeout", type=_positive(float, 86_400), default=600.0, metavar="SECONDS",
                   help="bound on the whole probe (default 600)")  # fmt: skip
    p.add_argument("--request-timeout", type=_positive(float, 3600), default=300.0, metavar="SECONDS",
                   help="bound on one request (default 300)")  # fmt: skip
    p.add_argument("--connect-timeout", type=_positive(float, 600), default=5.0, metavar="SECONDS",
                   help="bound on connecting (default 5)")  # fmt: skip
    p.add_argument("--read-timeout", type=_positive(float, 3600), default=60.0, metavar="SECONDS",
                   help="bound on the wait between two reads of an answer (default 60)")  # fmt: skip
    p.add_argument("--api-key-file", type=Path, metavar="FILE", help="file holding the API key")
    p.add_argument("--max-ttft-ms", type=_positive(float, 3.6e6), metavar="MS", help="TTFT p95 limit")
    p.add_argument("--max-itl-p99-ms", type=_positive(float, 3.6e6), metavar="MS", help="ITL p99 limit")
    p.add_argument(
        "--max-e2e-p99-ms", type=_positive(float, 3.6e6), metavar="MS", help="end-to-end p99 limit"
    )
    p.add_argument(
        "--min-tokens-per-s", type=_positive(float, 1e9), metavar="N", help="output tokens/s floor"
    )
    p.add_argument("--max-error-rate", type=_rate, metavar="FRACTION", help="failed/measured limit (0-1)")
    collector = p.add_argument_group(
        "collector",
        "compare with a workload's performance baseline and store the result with the workload",
    )
    ref = collector.add_mutually_exclusive_group()
    ref.add_argument(
        "--baseline", metavar="NAMESPACE/NAME",
        help="compare with this workload's baseline at a comparable load, and store the result with it",
    )  # fmt: skip
    ref.add_argument(
        "--record", metavar="NAMESPACE/NAME", help="store the result with this workload, without comparing"
    )
    collector.add_argument(
        "--collector", metavar="URL",
        help="collector HTTP API base URL (default: $SKEWWATCH_COLLECTOR_URL, else http://127.0.0.1:8080)",
    )  # fmt: skip
    collector.add_argument(
        "--baseline-tolerance", type=_fraction, default=0.25, metavar="FRACTION",
        help="how much worse than the baseline fails (default 0.25: latency x1.25, tokens/s x0.75)",
    )  # fmt: skip
    collector.add_argument(
        "--no-store", action="store_true", help="with --baseline: compare only, store nothing"
    )
    collector.add_argument(
        "--token-file", type=Path, metavar="FILE",
        help="the collector's bearer token (default: $SKEWWATCH_TOKEN_FILE, else $SKEWWATCH_TOKEN)",
    )  # fmt: skip
    collector.add_argument(
        "--ca-file",
        type=Path,
        metavar="FILE",
        help="CA of an https:// collector (default: $SKEWWATCH_CA_FILE)",
    )
    collector.add_argument(
        "--collector-timeout", type=_positive(float, 3600), default=10.0, metavar="SECONDS",
        help="bound on each call to the collector (default 10)",
    )  # fmt: skip
    p.add_argument(
        "-o", "--output", choices=("table", "json"), default="table", help="table (default) or json"
    )
    p.set_defaults(func=cmd_probe)


def build_parser() -> argparse.ArgumentParser:
    """A parser with only ``probe``, for tests and callers without the whole CLI."""
    parser = argparse.ArgumentParser(prog="skewwatch")
    register(parser.add_subparsers(dest="command", required=True))
    return parser


def main(
    argv: Sequence[str],
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    env: Mapping[str, str] | None = None,
    hook: Hook | None = None,
) -> int:
    """``skewwatch probe ARGV`` in this process; ``hook`` runs inside the event loop during each
    level (tests use it to saturate the client)."""
    from skewwatch.probe.report import run  # aiohttp and the measurement: only when the command runs

    args = build_parser().parse_args(["probe", *argv])
    return run(args, stdout or sys.stdout, stderr or sys.stderr, os.environ if env is None else env, hook)


def cmd_probe(args: argparse.Namespace) -> int:
    from skewwatch.probe.report import run

    return run(args, sys.stdout, sys.stderr, os.environ, None)
