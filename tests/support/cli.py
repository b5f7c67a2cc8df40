"""The ``skewwatch`` command's subcommands, parsed by the real entry point's parser and run in this
process (the collector under test shares its event loop), or run as a process of their own."""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys

from skewwatch.cli import build_parser
from tests.support.paths import REPO


def parser() -> argparse.ArgumentParser:
    return build_parser()


async def run(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    # The clients block (urllib); the collector under test shares this event loop.
    code: int = await asyncio.to_thread(args.func, args)
    return code


def run_process(*argv: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    """``skewwatch ARGV`` as its own process, without the caller's SKEWWATCH_* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKEWWATCH_")}
    return subprocess.run(
        [sys.executable, "-m", "skewwatch.cli", *argv],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
