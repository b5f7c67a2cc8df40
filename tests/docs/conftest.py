"""Fixtures of the docs tests: a real collector on loopback, as the collector tests'
``running`` (tests/collector/conftest.py) but with the drift ticker out of the way.

The ticker re-evaluates workloads with findings now and then (the "gone" check): each time a
finding's ``seen`` count and ``last_seen`` move, so what the examples print would depend on how
long the run took. With a tick of an hour, evaluations happen only when a snapshot arrives or a
command asks for one, and the state the examples query is the same on every run.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.collector import Running, settings_for, started


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    settings = settings_for(tmp_path, shutdown_grace_s=0.5, drift_tick_s=3600.0)
    async with started(settings, tmp_path) as r:
        yield r
