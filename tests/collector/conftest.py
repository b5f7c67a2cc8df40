"""Fixtures of the collector tests: a real collector on loopback (helpers in tests/support/collector),
and the store URL of each backend over one real PostgreSQL server (tests/support/postgres)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.support.collector import Running, settings_for, started
from tests.support.postgres import PostgresServer

_databases = itertools.count(1)


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    settings = settings_for(tmp_path, max_message_bytes=64 * 1024, shutdown_grace_s=0.5)
    async with started(settings, tmp_path) as r:
        yield r


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session; each test takes a fresh database of it."""
    with PostgresServer(tmp_path_factory.mktemp("postgres")) as pg:
        yield pg


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A ``--store`` URL of a fresh, empty store, once per backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/s.db"
    pg: PostgresServer = request.getfixturevalue("postgres_server")
    return pg.create_database(f"test_{next(_databases)}")
