"""Shared test fixtures: where the real-world captures live, free loopback ports, golden files."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable
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


# --- golden files ---------------------------------------------------------------------------------

GOLDEN = REPO / "tests" / "golden"


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
