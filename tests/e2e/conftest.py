"""Fixtures of the end-to-end tests: a Scenario of real processes, stopped whatever happens."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.scenario import Scenario


@pytest.fixture
def sc(tmp_path: Path) -> Iterator[Scenario]:
    s = Scenario(tmp_path)
    try:
        yield s
    finally:
        s.procs.stop_all()
