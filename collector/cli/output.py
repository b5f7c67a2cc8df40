"""How query commands print: ``-o/--output table|wide|json|yaml`` (``--format`` is an alias).

``table`` and ``wide`` are column tables (``wide`` adds columns): drawn with ``rich`` on a
terminal, plain text aligned with spaces otherwise, so scripts and tests read stable columns.
Times in tables are ages like kubectl's (``45s``, ``5m``, ``2h``, ``3d``). ``json`` and ``yaml``
print the API's answer as it is, with every epoch time field also given as RFC 3339 under
``<field>_rfc3339`` next to it (the numbers stay: they are the API's contract).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import yaml
from rich import box
from rich.console import Console
from rich.table import Table as RichTable

OUTPUTS = ("table", "wide", "json", "yaml")
# Keys whose numbers are Unix times, besides every ``*_at`` and ``*_time`` key.
TIME_KEYS = frozenset({"at", "since", "until", "time", "first_seen", "last_seen"})


def add_output_flag(p: argparse.ArgumentParser, *, inherited: bool = False) -> None:
    """``-o/--output`` (alias ``--format``); ``inherited``: absent keeps the parent command's choice."""
    p.add_argument(
        "-o",
        "--output",
        "--format",
        dest="format",
        choices=OUTPUTS,
        default=argparse.SUPPRESS if inherited else "table",
        help="table (default), wide (more columns), json or yaml (the API's answer)",
    )


@dataclass
class Column:
    header: str
    wide: bool = False  # shown with -o wide only


@dataclass
class Table:
    """Rows of cells under columns, and lines printed after it (notes, hints)."""

    columns: list[Column]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)
    empty: str = "nothing to show"

    def shown(self, wide: bool) -> list[int]:
        return [i for i, c in enumerate(self.columns) if wide or not c.wide]

    def plain(self, wide: bool = False) -> str:
        if not self.rows:
            return "\n".join([self.empty, *self.notes]) + "\n"
        keep = self.shown(wide)
        cells = [[self.columns[i].header for i in keep], *([r[i] for i in keep] for r in self.rows)]
        widths = [max(len(r[j]) for r in cells) for j in range(len(keep))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
        return "\n".join([*lines, *self.notes]) + "\n"

    def draw(self, console: Console, wide: bool = False) -> None:
        if not self.rows:
            console.print("\n".join([self.empty, *self.notes]), markup=False, highlight=False)
            return
        keep = self.shown(wide)
        t = RichTable(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
        for i in keep:
            t.add_column(self.columns[i].header, overflow="fold")
        for r in self.rows:
            t.add_row(*(r[i] for i in keep))
        console.print(t, markup=False, highlight=False)
        for note in self.notes:
            console.print(note, markup=False, highlight=False)


def emit(data: Any, fmt: str, render: Any) -> None:
    """Print ``data`` per ``fmt``; ``render(data, wide)`` gives a Table or text for table/wide."""
    if fmt == "json":
        print(json.dumps(with_rfc3339(data), indent=2, sort_keys=True, ensure_ascii=False))
        return
    if fmt == "yaml":
        print(yaml.safe_dump(with_rfc3339(data), sort_keys=True, allow_unicode=True), end="")
        return
    out = render(data, fmt == "wide")
    if isinstance(out, Table):
        if sys.stdout.isatty():
            out.draw(Console(), wide=fmt == "wide")
        else:
            print(out.plain(wide=fmt == "wide"), end="")
    else:
        print(out, end="")


def is_time_key(key: str) -> bool:
    return key in TIME_KEYS or key.endswith(("_at", "_time"))


def with_rfc3339(data: Any) -> Any:
    """A copy of ``data`` with ``<key>_rfc3339`` added beside every numeric time field."""
    if isinstance(data, list):
        return [with_rfc3339(x) for x in data]
    if not isinstance(data, dict):
        return data
    out: dict[str, Any] = {}
    for k, v in data.items():
        out[k] = with_rfc3339(v)
        if (
            isinstance(k, str)
            and is_time_key(k)
            and isinstance(v, int | float)
            and not isinstance(v, bool)
            and f"{k}_rfc3339" not in data
        ):
            try:
                out[f"{k}_rfc3339"] = rfc3339(v)
            except (OverflowError, OSError, ValueError):
                out[f"{k}_rfc3339"] = None  # no calendar time (a NaN, year 10000): the number stays
    return out


def rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def format_time(t: float | None) -> str:
    if t is None:
        return "-"
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def age(t: float | None, now: float | None = None) -> str:
    """Seconds since ``t`` as kubectl shows an age: ``45s``, ``5m``, ``2h``, ``3d``, ``2y`` (``-``: none)."""
    if t is None:
        return "-"
    s = max(0, int((time.time() if now is None else now) - t))
    if s < 120:
        return f"{s}s"
    if s < 3 * 3600:
        return f"{s // 60}m"
    if s < 2 * 86_400:
        return f"{s // 3600}h"
    if s < 730 * 86_400:
        return f"{s // 86_400}d"
    return f"{s // (365 * 86_400)}y"
