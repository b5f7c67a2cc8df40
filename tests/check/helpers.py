"""Running ``skewwatch check`` in-process with captured stdin, stdout and stderr."""

from __future__ import annotations

import io
import sys

from skewwatch.check import main


def run(args: list[str], stdin: str = "") -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``skewwatch check ARGS``."""
    out, err = io.StringIO(), io.StringIO()
    old = sys.stderr
    sys.stderr = err
    try:
        code = main(args, stdin=io.StringIO(stdin), stdout=out)
    finally:
        sys.stderr = old
    return code, out.getvalue(), err.getvalue()
