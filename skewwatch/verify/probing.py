"""``skewwatch verify --probe``: the probe's own flags on verify's parser, and the probe run in-process.

The flags are the probe's, copied from its parser (``skewwatch.probe.build_parser``) so that their
types, limits and help have one home: ``--endpoint``, ``--model``, the plan flags and the
thresholds. Two kinds are not copied as they are:

- what verify itself decides: ``-o`` (the probe's result is always read as its JSON document);
  the collector and its credentials (``--collector``, ``--token-file``, ``--ca-file``,
  ``--collector-timeout``: verify's own); and the workload (``--baseline``, ``--record``,
  ``--no-store``): the probe compares with the verified workload's baseline when it has one
  (``--baseline NAMESPACE/NAME``), else judges its thresholds only and stores the result with it
  (``--record NAMESPACE/NAME``); either way the probe itself stores its result (``POST …/probes``);
- a probe flag whose name verify already uses gets ``--probe-`` in front: ``--timeout`` (the
  whole probe's bound) is ``--probe-timeout``, since verify's ``--timeout`` is the collector call's.

Each copied flag lands under ``probe_<dest>`` and, absent from the command line, keeps the probe's
own default: :func:`probe_args` parses the probe's defaults and lays the given values over them.
The probe then runs through its run API (``skewwatch.probe.report.run``), its JSON document read
from what it prints.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TextIO

from skewwatch.probe import build_parser as probe_parser
from skewwatch.verify.errors import VerifyUsageError

PREFIX = "probe_"
# Probe flags verify fills itself (probe_args), from its own flags and the verified workload.
MANAGED = frozenset(
    {"output", "collector", "token_file", "ca_file", "collector_timeout", "baseline", "record", "no_store"}
)
REQUIRED = ("endpoint", "model")


def _probe_command() -> argparse.ArgumentParser:
    parser = probe_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            sub: argparse.ArgumentParser = action.choices["probe"]
            return sub
    raise RuntimeError("skewwatch.probe.build_parser() has no probe command")  # a programming error


def _copied(action: argparse.Action) -> bool:
    return (
        bool(action.option_strings)
        and action.dest not in MANAGED
        and not isinstance(action, argparse._HelpAction)
    )


def add_probe_flags(p: argparse.ArgumentParser) -> None:
    """``--probe`` and the probe's flags, in a group of their own on verify's parser ``p``."""
    g = p.add_argument_group("probe (with --probe: run skewwatch probe against the fixed endpoint)")
    g.add_argument(
        "--probe",
        action="store_true",
        help="run the probe (needs --endpoint and --model); its verdict counts: fail is not closable",
    )
    taken = set(p._option_string_actions)
    for action in _probe_command()._actions:
        if not _copied(action):
            continue
        new = copy.copy(action)
        new.dest = PREFIX + action.dest
        new.required = False  # --endpoint and --model: checked by probe_args, only with --probe
        new.default = None  # None: not given; the probe's own default applies
        new.option_strings = ["--probe-" + s.lstrip("-") if s in taken else s for s in action.option_strings]
        g._add_action(new)


def given(args: argparse.Namespace) -> list[str]:
    """The probe flags given on the command line (by their dest, without the prefix)."""
    return [k[len(PREFIX) :] for k, v in vars(args).items() if k.startswith(PREFIX) and v is not None]


def probe_args(args: argparse.Namespace, workload: str, has_baseline: bool) -> argparse.Namespace:
    """The probe's own Namespace: its defaults, the given probe flags over them, JSON output, and
    the workload: ``--baseline`` when ``has_baseline``, else ``--record``.

    VerifyUsageError when ``--probe`` lacks ``--endpoint`` or ``--model``."""
    check_probe_flags(args)
    parser = probe_parser()
    base = parser.parse_args(["probe", "--endpoint", args.probe_endpoint, "--model", args.probe_model])
    for name in given(args):
        setattr(base, name, getattr(args, PREFIX + name))
    base.output = "json"
    # The probe's routes take NAMESPACE/NAME: a NAMESPACE/KIND/NAME is the same workload's.
    parts = workload.split("/")
    ref = f"{parts[0]}/{parts[-1]}"
    base.baseline, base.record = (ref, None) if has_baseline else (None, ref)
    base.no_store = False
    base.collector = args.collector
    base.token_file = args.token_file
    base.ca_file = args.ca_file
    base.collector_timeout = args.timeout
    return base


def check_probe_flags(args: argparse.Namespace) -> None:
    """VerifyUsageError when ``--probe`` lacks ``--endpoint`` or ``--model``, or probe flags come
    without ``--probe``."""
    if not args.probe:
        extra = given(args)
        if extra:
            flags = ", ".join("--" + name.replace("_", "-") for name in extra)
            raise VerifyUsageError(f"{flags}: probe flags need --probe")
        return
    missing = [f"--{name}" for name in REQUIRED if getattr(args, PREFIX + name, None) is None]
    if missing:
        raise VerifyUsageError(f"--probe needs {' and '.join(missing)}")


@dataclass(frozen=True)
class ProbeRun:
    """The probe's exit code and its result document (None: it stopped before one, e.g. bad usage)."""

    exit_code: int
    document: dict[str, Any] | None


def run_probe(args: argparse.Namespace, err: TextIO, env: Mapping[str, str]) -> ProbeRun:
    """Run the probe in this process (progress and its own error lines on ``err``)."""
    from skewwatch.probe.report import run  # aiohttp and the measurement: only when a probe runs

    out = io.StringIO()
    code = run(args, out, err, env, None)
    text = out.getvalue().strip()
    if not text:
        return ProbeRun(code, None)
    try:
        doc = json.loads(text)
    except ValueError:
        return ProbeRun(code, None)
    return ProbeRun(code, doc if isinstance(doc, dict) else None)
