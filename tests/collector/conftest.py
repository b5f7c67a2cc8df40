"""Fixtures of the collector tests: a real collector on loopback (helpers in tests/support/collector)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.collector import Running, settings_for, started


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    settings = settings_for(tmp_path, max_message_bytes=64 * 1024, shutdown_grace_s=0.5)
    async with started(settings, tmp_path) as r:
        yield r
