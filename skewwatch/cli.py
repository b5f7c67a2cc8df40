"""The ``skewwatch`` command: one entry point, subcommands contributed by agent and collector.

Bad arguments give one line on stderr and exit code 2; an unexpected failure gives one line and
exit code 1 (``SKEWWATCH_DEBUG=1`` shows the traceback).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn, cast

from skewwatch import __version__
from skewwatch.core.errors import SkewwatchError


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line: ``skewwatch facts: error: …``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    from agent.cli import register as register_agent
    from collector.cli import register as register_collector

    parser = OneLineParser(prog="skewwatch", description="Catch training-serving skew in LLM inference.")
    parser.add_argument("--version", action="version", version=f"skewwatch {__version__}")
    parser.add_argument(
        "--log-level",
        default=os.environ.get("SKEWWATCH_LOG_LEVEL", "INFO"),
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log level (SKEWWATCH_LOG_LEVEL; default INFO)",
    )
    sub = cast(
        "argparse._SubParsersAction[argparse.ArgumentParser]",
        parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser),
    )
    sub.required = True
    register_agent(sub)
    register_collector(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    except SkewwatchError as e:
        print(f"skewwatch {args.command}: error: {e}", file=sys.stderr)
        return 2 if isinstance(e, ValueError) else 1
    except Exception as e:
        if os.environ.get("SKEWWATCH_DEBUG"):
            raise
        print(f"skewwatch {args.command}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
