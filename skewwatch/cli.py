"""The ``skewwatch`` command: one entry point, subcommands contributed by agent and collector.

Bad arguments give one line on stderr and exit code 2; an unexpected failure gives one line and
exit code 1 (``SKEWWATCH_DEBUG=1`` shows the traceback). ``--log-level`` is taken before or after
the subcommand; ``skewwatch completion bash|zsh`` prints a completion script made from this parser.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn, cast

import shtab

from skewwatch import __version__
from skewwatch.core.errors import SkewwatchError


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line: ``skewwatch facts: error: …``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    from agent.cli import register as register_agent
    from collector.cli import register as register_collector
    from skewwatch.check import register as register_check
    from skewwatch.probe import register as register_probe
    from skewwatch.verify import register as register_verify
    from skewwatch.webhook import attach as attach_webhook
    from skewwatch.webhook import register as register_webhook

    parser = OneLineParser(prog="skewwatch", description="Catch training-serving skew in LLM inference.")
    parser.add_argument("--version", action="version", version=f"skewwatch {__version__}")
    _add_log_level(parser, os.environ.get("SKEWWATCH_LOG_LEVEL", "INFO"))
    sub = cast(
        "argparse._SubParsersAction[argparse.ArgumentParser]",
        parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser),
    )
    sub.required = True
    register_agent(sub)
    register_collector(sub)
    register_check(sub)
    register_probe(sub)
    register_verify(sub)
    register_webhook(sub)
    attach_webhook(sub.choices["collector"])  # collector --webhook HOST:PORT --tls-cert --tls-key
    c = sub.add_parser("completion", help="print a shell completion script: bash or zsh")
    c.add_argument("shell", choices=("bash", "zsh"))
    c.set_defaults(func=lambda a: _print_completion(parser, a.shell))
    for p in _subcommand_parsers(parser):
        _add_log_level(p, argparse.SUPPRESS)  # after the subcommand it overrides the one before
    return parser


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _add_log_level(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument(
        "--log-level",
        default=default,
        choices=LOG_LEVELS,
        help="log level (SKEWWATCH_LOG_LEVEL; default INFO)",
    )


def _subcommand_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """Every parser below ``parser``, at any depth (``pods delete``, ``intent validate``)."""
    out: list[argparse.ArgumentParser] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):  # aliases map to one parser
                out.append(child)
                out.extend(_subcommand_parsers(child))
    return out


def _print_completion(parser: argparse.ArgumentParser, shell: str) -> int:
    print(shtab.complete(parser, shell=shell), end="")
    return 0


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
