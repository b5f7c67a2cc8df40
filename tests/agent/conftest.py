"""Fixtures of the agent tests (helpers in tests/support)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.nvml import build_stub


@pytest.fixture(scope="module")
def stub_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stub libnvidia-ml.so.1, compiled once per test module."""
    return build_stub(tmp_path_factory.mktemp("nvml-stub"))
