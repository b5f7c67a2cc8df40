"""Shared test fixtures: the real-world captures, a free loopback port, golden files.

Fixtures only: the helpers behind them live in tests/support (and demo/), which tests import.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from demo.harness import Processes, free_port
from tests.support.paths import GOLDEN, REAL_FIXTURES


@pytest.fixture
def real_fixtures() -> Path:
    if not REAL_FIXTURES.is_dir():
        pytest.skip(f"real captures not found at {REAL_FIXTURES} (set SKEWWATCH_REAL_FIXTURES)")
    return REAL_FIXTURES


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Processes]:
    """Every process a test starts, each in its own session, logged under tmp_path; all stopped
    at the end, whatever happens."""
    p = Processes(tmp_path)
    try:
        yield p
    finally:
        p.stop_all()


# --- golden files ---------------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-goldens",
        action="store_true",
        default=False,
        help="rewrite tests/golden/** from what the code produces now (review the diff before committing)",
    )


@pytest.fixture
def golden(request: pytest.FixtureRequest) -> Callable[[str, object], None]:
    """``golden(relative_path, data)``: compare canonical JSON with tests/golden/<path>, or rewrite it.

    Callers normalise timestamps and other run-dependent values before handing data in.
    """
    update = bool(request.config.getoption("--update-goldens"))

    def check(relative: str, data: object) -> None:
        path = GOLDEN / relative
        text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        if update:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            return
        if not path.is_file():
            pytest.fail(f"no golden file {path}: run pytest --update-goldens and review it")
        assert json.loads(text) == json.loads(path.read_text(encoding="utf-8")), (
            f"{path} differs: run pytest --update-goldens and review the diff"
        )

    return check
