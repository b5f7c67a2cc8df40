"""Runs every benchmark under tests/bench and prints one JSON line per figure.

Each figure is ``{"name", "value", "unit", "reference", "reference_value", "ratio"}``: the
reference is measured in the same run on the same machine, so the ratio is what to compare
across machines and commits. ``python -m tests.bench [NAME …]`` runs the named ones only.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import sys
from pathlib import Path

import tests.bench as pkg


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench")
    p.add_argument("names", nargs="*", help="benchmark modules to run (default: all bench_*)")
    args = p.parse_args(argv)
    modules = sorted(m.name for m in pkgutil.iter_modules([str(Path(pkg.__file__).parent)]))
    selected = [m for m in modules if m.startswith("bench_") and (not args.names or m in args.names)]
    if not selected:
        print(f"no benchmark matched {args.names}; have {[m for m in modules if m.startswith('bench_')]}",
              file=sys.stderr)  # fmt: skip
        return 2
    for name in selected:
        module = importlib.import_module(f"tests.bench.{name}")
        for figure in module.run():
            print(json.dumps(figure.as_dict()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
