"""What every query command shares: its flags, argument types, and ``show`` (call, print, exit code).

A workload is ``NAMESPACE/NAME`` or ``NAMESPACE/KIND/NAME``; ``show`` prints one error line and
returns 1 when the collector fails, and lets ``--exit-code`` commands say whether they found drift.
"""

from __future__ import annotations

import argparse
import sys
import urllib.parse
from collections.abc import Callable
from typing import Any

from collector.cli.client import add_client_flags, credentials, get_json
from collector.cli.output import Table, add_output_flag, emit
from collector.errors import ClientError

Render = Callable[[Any, bool], "Table | str"]


def add_query_flags(p: argparse.ArgumentParser, *, inherited: bool = False) -> None:
    """``--collector``, ``--timeout``, ``--token-file``, ``--ca-file`` and ``-o/--output``."""
    add_client_flags(p, inherited=inherited)
    add_output_flag(p, inherited=inherited)


def add_exit_code_flag(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--exit-code",
        action="store_true",
        help=f"exit 1 when {what}, 0 when none (like git diff --exit-code)",
    )


def workload(value: str) -> str:
    parts = value.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise argparse.ArgumentTypeError(f"must be NAMESPACE/NAME or NAMESPACE/KIND/NAME, got {value!r}")
    return value


def limit(value: str) -> int:
    try:
        out = int(value, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {value!r}") from None
    if not 1 <= out <= 1000:
        raise argparse.ArgumentTypeError(f"must be between 1 and 1000, got {out}")
    return out


def quote(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def workload_path(name: str) -> str:
    """``ns/name`` for a route, ``?kind=`` appended for ``ns/kind/name``."""
    parts = name.split("/")
    if len(parts) == 3:
        ns, kind, wl = parts
        return f"{quote(ns)}/{quote(wl)}?kind={urllib.parse.quote(kind)}"
    return "/".join(quote(p) for p in parts)


def usage_error(command: str, message: str) -> int:
    print(f"skewwatch {command}: error: {message}", file=sys.stderr)
    return 2


def call(
    command: str, args: argparse.Namespace, path: str, method: str = "GET", body: bytes | None = None
) -> Any:
    """The collector's answer, or None after printing the error line (the caller returns 1)."""
    try:
        return get_json(args.collector, path, args.timeout, method, body, auth=credentials(args))
    except ClientError as e:
        print(f"skewwatch {command}: error: {e}", file=sys.stderr)
        return None


def show(
    command: str,
    args: argparse.Namespace,
    path: str,
    render: Render,
    *,
    method: str = "GET",
    body: bytes | None = None,
    keep: Callable[[Any], Any] | None = None,
    found: Callable[[Any], bool] | None = None,
    more: Callable[[Any], str | None] | None = None,
) -> int:
    """Call ``path``, narrow the answer with ``keep``, print it per ``-o``.

    ``found(data)``: whether there is something to report, for ``--exit-code`` (exit 1).
    ``more(data)``: a hint printed on stderr when a limit cut the list.
    """
    try:
        data = get_json(args.collector, path, args.timeout, method, body, auth=credentials(args))
    except ClientError as e:
        print(f"skewwatch {command}: error: {e}", file=sys.stderr)
        return 1
    if keep is not None:
        data = keep(data)
    emit(data, args.format, render)
    hint = more(data) if more is not None else None
    if hint:
        print(f"skewwatch {command}: {hint}", file=sys.stderr)
    if found is not None and getattr(args, "exit_code", False) and found(data):
        return 1
    return 0
