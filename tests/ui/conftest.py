"""Fixtures of the browser tests: real collectors fed by real agents, and headless Chromium.

- ``drift``: one collector (open API) with a ModelSpec intent; prod/llama runs 3 stand-in vLLM
  replicas, one restarted with another --max-model-len so that it drifts from the intent and from
  its peers; staging/llama runs one conforming replica; team-a/llama's one replica carries an
  HTML payload in its --served-model-name, which the pages must show as text. Built once per
  module (each process start costs seconds), stopped whatever happens.
- ``guarded``: a collector with --api-tokens and one replica, for the login form.
- ``browser``: Debian's /usr/bin/chromium launched by Playwright (never a downloaded browser).
- ``artifacts``: where every page's screenshot goes ($SKEWWATCH_UI_ARTIFACTS, else a temporary
  directory), printed at the end of the run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.scenario import MODELSPEC, PORTS_POLICY
from tests.ui.scenario import (
    CHROMIUM,
    CHROMIUM_ARGS,
    DRIFT_KEY,
    ENGINE_KEY,
    HTML_PAYLOAD,
    HTML_POD,
    NS_DRIFT,
    NS_HTML,
    NS_OK,
    ODD,
    PRIMARY,
    READ_TOKEN,
    STAGING_POD,
    UiScenario,
)


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    where = os.environ.get("SKEWWATCH_UI_ARTIFACTS")
    path = Path(where) if where else tmp_path_factory.mktemp("ui-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    request.config.stash[ARTIFACTS] = path
    return path


ARTIFACTS = pytest.StashKey[Path]()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    path = config.stash.get(ARTIFACTS, None)
    if path is not None:
        terminalreporter.write_line(f"browser test screenshots: {path}")


# Module scope, not session: Playwright's sync API keeps an event loop running in the main thread
# while it is open, and every later test calling asyncio.run() (tests/verify, tests/webhook, …)
# would fail with "cannot be called from a running event loop" if it stayed open until the end.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    # Skipped on a machine without them; under CI (which installs both) their absence fails, so
    # that the web view is never "tested" by skipping (as tests/support/postgres.py does).
    missing = None
    if not os.access(CHROMIUM, os.X_OK):
        missing = f"{CHROMIUM} not found: install Debian's chromium (.ci/run does)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            missing = "playwright is not installed (the dev extra has it)"
    if missing is not None:
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)
    import playwright.sync_api as sync_api

    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def drift(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiScenario]:
    sc = UiScenario(tmp_path_factory.mktemp("ui-drift"))
    try:
        (sc.intents / "llama.yaml").write_text(MODELSPEC)
        (sc.intents / "ports.yaml").write_text(PORTS_POLICY)
        sc.start_collector()
        sc.start_replica(STAGING_POD, NS_OK)
        for pod in [*PRIMARY, ODD]:
            sc.start_replica(pod, NS_DRIFT)
        sc.start_replica(HTML_POD, NS_HTML, "--served-model-name", HTML_PAYLOAD, "--api-key", ENGINE_KEY)
        # The odd replica is restarted with another context length: it drifts from the ModelSpec
        # (2048) and from the two others.
        sc.wait("4 prod/staging replicas at 2048", lambda: all(
            (sc.pod(ns, p) or {"facts": {}})["facts"].get("runtime.max_model_len") == 2048
            for ns, p in [(NS_OK, STAGING_POD), *((NS_DRIFT, p) for p in [*PRIMARY, ODD])]))  # fmt: skip
        # Baselines recorded while all agree: staging/llama is then in intent, and prod/llama's
        # workload page has a baseline to compare with (team-a/llama has none: "no baseline").
        for ns in (NS_OK, NS_DRIFT):
            sc.cli("baseline", f"{ns}/llama", "--record")
        sc.restart_replica(ODD, NS_DRIFT, "--max-model-len", "4096")
        sc.wait(
            "prod/llama's max_model_len finding",
            lambda: any(
                f["key"] == DRIFT_KEY and f["pods"] == [ODD] for f in sc.open_findings(f"{NS_DRIFT}/llama")
            ),
            timeout_s=60,
        )
        sc.wait(
            "the HTML payload reported",
            lambda: sc.pod(NS_HTML, HTML_POD)["facts"].get("runtime.served_model_name") == HTML_PAYLOAD,
        )
        yield sc
    finally:
        sc.stop_all()


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiScenario]:
    tmp = tmp_path_factory.mktemp("ui-guarded")
    tokens = tmp / "api-tokens"
    tokens.write_text(f"read {READ_TOKEN}\n")
    tokens.chmod(0o600)
    sc = UiScenario(tmp, token=READ_TOKEN)
    try:
        (sc.intents / "llama.yaml").write_text(MODELSPEC)
        (sc.intents / "ports.yaml").write_text(PORTS_POLICY)
        sc.start_collector("--api-tokens", str(tokens))
        sc.start_replica(STAGING_POD, NS_OK)
        sc.wait("staging/llama reported", lambda: any(w["namespace"] == NS_OK for w in sc.workloads()))
        yield sc
    finally:
        sc.stop_all()


def docs_images() -> Path | None:
    """docs/images when SKEWWATCH_WRITE_SCREENSHOTS=1 (the README's pictures), else None."""
    if os.environ.get("SKEWWATCH_WRITE_SCREENSHOTS") != "1":
        return None
    path = Path(__file__).resolve().parents[2] / "docs" / "images"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def publish() -> Any:
    """``publish(page, name, last)``: when asked to, the README's picture docs/images/NAME: the page
    at its viewport's width from the top down to the element ``last`` (a whole long page reads
    badly at README size)."""

    def shoot(page: Any, name: str, last: str) -> None:
        target = docs_images()
        if target is not None:
            box = page.locator(last).bounding_box()
            width = int(page.viewport_size["width"])
            clip = {"x": 0, "y": 0, "width": width, "height": int(box["y"] + box["height"]) + 16}
            page.screenshot(path=str(target / name), full_page=True, clip=clip)

    return shoot
