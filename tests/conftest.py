"""Shared test fixtures: where the real-world captures live, and free loopback ports."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# The real captures live beside the checkout (../shared/fixtures/real); never copied into the repo.
REAL_FIXTURES = Path(os.environ.get("SKEWWATCH_REAL_FIXTURES", REPO.parent / "shared" / "fixtures" / "real"))


@pytest.fixture
def real_fixtures() -> Path:
    if not REAL_FIXTURES.is_dir():
        pytest.skip(f"real captures not found at {REAL_FIXTURES} (set SKEWWATCH_REAL_FIXTURES)")
    return REAL_FIXTURES


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def port() -> int:
    return free_port()
