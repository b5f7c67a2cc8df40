"""Fixtures of the agent tests (helpers in tests/support)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.fake_processes import Engines
from tests.support.nvml import build_stub


@pytest.fixture(scope="module")
def stub_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stub libnvidia-ml.so.1, compiled once per test module."""
    return build_stub(tmp_path_factory.mktemp("nvml-stub"))


@pytest.fixture
def engines(tmp_path: Path) -> Iterator[Engines]:
    """Real engine-shaped processes started in ``tmp_path`` (with ``models/tiny``), all killed after."""
    (tmp_path / "models" / "tiny").mkdir(parents=True)
    e = Engines(tmp_path)
    try:
        yield e
    finally:
        e.close()
