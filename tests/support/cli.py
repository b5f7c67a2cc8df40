"""The collector's CLI subcommands, parsed and run in this process as the ``skewwatch`` command wires them."""

from __future__ import annotations

import argparse
import asyncio

from collector.cli import register


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="skewwatch")
    register(p.add_subparsers(dest="command", required=True))
    return p


async def run(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    # The clients block (urllib); the collector under test shares this event loop.
    code: int = await asyncio.to_thread(args.func, args)
    return code
