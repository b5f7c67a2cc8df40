"""Every ``skewwatch`` command builds the whole parser first; building it must not import what
only collecting or checking needs (the agent's sources with aiohttp and pynvml, the drift engine):
a query command would pay for them on every call (2.2 s against 0.8 s on the project's machine)."""

from __future__ import annotations

import subprocess
import sys

from tests.support.paths import REPO

HEAVY = (
    "agent.runtime",
    "agent.sources.nvml",
    "agent.k8s",
    "skewwatch.check.rules",
    "collector.drift.engine",
)


def test_building_the_parser_imports_no_source_and_no_drift_engine() -> None:
    code = (
        "import sys\n"
        "from skewwatch.cli import build_parser\n"
        "build_parser()\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", out.stdout
