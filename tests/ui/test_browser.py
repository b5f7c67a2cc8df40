"""The web view (collector/ui, docs/ui.md) in a real browser: Debian's headless Chromium, driven by
Playwright, loads each page from a real collector fed by real agents through a drift scenario
(tests/ui/conftest.py: prod/llama's third replica restarted with --max-model-len 4096 against a
ModelSpec and two peers at 2048) and checks what a person would see: visible text, never only the
presence of an element, so that no test passes on a blank page. Every page is screenshotted into
the artifacts directory printed at the end of the run; SKEWWATCH_WRITE_SCREENSHOTS=1 also rewrites
the README's pictures (docs/images/ui-workload.png, ui-diff.png).

The DOM hooks are those of the UI contract (docs/ui.md): ``main#main[data-page][data-state]``,
``table#workloads``, ``table#intent``, ``table#replicas``, ``section[data-category]``,
``table#facts``, ``form#login``…
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.ui.scenario import (
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

pytestmark = pytest.mark.e2e

TIMEOUT_MS = 15_000
DRIFTING = f"{NS_DRIFT}/Deployment/llama"
STAGING = f"{NS_OK}/Deployment/llama"
TOKEN_KEY = "skewwatch.token"


class Pages:
    """New browser pages with their JavaScript errors and dialogs recorded, all closed at the end."""

    def __init__(self, browser: Any, artifacts: Path, test: str) -> None:
        self.browser = browser
        self.artifacts = artifacts
        self.test = test
        self.contexts: list[Any] = []
        self.errors: list[str] = []
        self.dialogs: list[str] = []

    def new(self, color_scheme: str = "light") -> Any:
        ctx = self.browser.new_context(color_scheme=color_scheme, viewport={"width": 1280, "height": 900})
        ctx.set_default_timeout(TIMEOUT_MS)
        self.contexts.append(ctx)
        page = ctx.new_page()
        page.on("pageerror", lambda e: self.errors.append(str(e)))

        def dialog(d: Any) -> None:
            self.dialogs.append(f"{d.type}: {d.message}")
            d.dismiss()

        page.on("dialog", dialog)
        return page

    def shot(self, page: Any, name: str) -> Path:
        path = self.artifacts / f"{self.test}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    def close(self) -> None:
        for ctx in self.contexts:
            ctx.close()


@pytest.fixture
def pages(browser: Any, artifacts: Path, request: pytest.FixtureRequest) -> Iterator[Pages]:
    p = Pages(browser, artifacts, request.node.name.removeprefix("test_"))
    try:
        yield p
        assert p.errors == [], f"JavaScript errors on the page: {p.errors}"
        assert p.dialogs == [], f"the page opened dialogs: {p.dialogs}"
    finally:
        p.close()


def settled(page: Any, want: str = "ready") -> Any:
    """Wait until main#main leaves "loading"; it must then be ``want`` and show some text."""
    main = page.locator("main#main")
    page.wait_for_selector('main#main:not([data-state="loading"])', state="attached", timeout=TIMEOUT_MS)
    state = main.get_attribute("data-state")
    if state != want:
        error = page.locator("#error")
        shown = error.inner_text() if error.count() else ""
        pytest.fail(f"{page.url}: data-state={state!r}, expected {want!r}; #error: {shown!r}")
    text = main.inner_text().strip()
    assert len(text) > 20, f"{page.url}: main#main shows almost nothing: {text!r}"
    return main


def visible_text(locator: Any) -> str:
    """The text of one element that is visible (not merely in the DOM)."""
    assert locator.count() == 1, f"{locator} matches {locator.count()} elements"
    assert locator.is_visible(), f"{locator} is not visible"
    return str(locator.inner_text()).strip()


def row_hidden(row: Any) -> Callable[[], bool]:
    return lambda: row.count() == 0 or not row.is_visible()


def until(page: Any, check: Callable[[], bool], what: str) -> None:
    for _ in range(50):
        if check():
            return
        page.wait_for_timeout(100)
    pytest.fail(f"{page.url}: {what}")


def test_fleet_page_states_and_filters(drift: UiScenario, pages: Pages) -> None:
    page = pages.new()
    page.goto(f"{drift.api}/ui/")
    main = settled(page)
    assert main.get_attribute("data-page") == "fleet"
    rows = page.locator("table#workloads tr[data-workload]")
    assert rows.count() == 3
    bad = page.locator(f'table#workloads tr[data-workload="{DRIFTING}"]')
    good = page.locator(f'table#workloads tr[data-workload="{STAGING}"]')
    assert visible_text(bad.locator("td[data-col=state]")) == "drifting"
    assert visible_text(good.locator("td[data-col=state]")) == "in intent"
    other = page.locator(f'table#workloads tr[data-workload="{NS_HTML}/Deployment/llama"]')
    assert visible_text(other.locator("td[data-col=state]")) == "no baseline"
    assert f"{NS_DRIFT}/llama" in visible_text(bad.locator("td[data-col=name]"))
    assert re.search(r"\d", visible_text(bad.locator("td[data-col=findings]")))  # its open finding
    assert "3" in visible_text(bad.locator("td[data-col=replicas]"))
    assert re.search(r"drifting\D{0,20}1", visible_text(page.locator("#summary")))
    pages.shot(page, "fleet")

    page.fill("input#filter", NS_OK)
    until(page, row_hidden(bad), "the filter by namespace leaves prod/llama shown")
    assert good.is_visible()
    pages.shot(page, "fleet-filtered")
    page.fill("input#filter", "")
    until(page, bad.is_visible, "clearing the filter does not bring prod/llama back")
    page.select_option("select#state-filter", label="drifting")
    until(page, row_hidden(good), "the state filter 'drifting' leaves staging/llama shown")
    assert visible_text(bad.locator("td[data-col=state]")) == "drifting"
    page.select_option("select#state-filter", label="in intent")
    until(page, row_hidden(bad), "the state filter 'in intent' leaves prod/llama shown")
    assert good.is_visible()
    assert not other.is_visible()
    page.select_option("select#state-filter", label="no baseline")
    until(page, row_hidden(good), "the state filter 'no baseline' leaves staging/llama shown")
    assert other.is_visible() and not bad.is_visible()


def open_workload(page: Any, api: str) -> Any:
    """From the fleet page, follow prod/llama's link (as a person would), to its workload page."""
    page.goto(f"{api}/ui/")
    settled(page)
    link = page.locator(
        f'table#workloads tr[data-workload="{DRIFTING}"] td[data-col=name] a[href^="/ui/workloads/"]'
    )
    link.click()
    page.wait_for_url(re.compile(rf"/ui/workloads/{NS_DRIFT}/llama(\?|$)"))
    main = settled(page)
    assert main.get_attribute("data-page") == "workload"
    return main


def test_workload_page_shows_the_drift(drift: UiScenario, pages: Pages, publish: Any) -> None:
    page = pages.new()
    open_workload(page, drift.api)
    heading = visible_text(page.locator("h1"))
    assert NS_DRIFT in heading and "llama" in heading
    row = page.locator(f'table#intent tr[data-key="{DRIFT_KEY}"]')
    assert DRIFT_KEY in visible_text(row)
    assert "2048" in visible_text(row.locator("td.expected"))
    assert "4096" in visible_text(row.locator("td.actual"))
    assert visible_text(row.locator("td.status")) == "drift"
    # The replicas: all three named, the odd one out of the majority on the drifting key.
    for pod in [*PRIMARY, ODD]:
        replica = page.locator(f'table#replicas tr[data-pod="{pod}"]')
        assert pod in visible_text(replica)
        assert replica.get_attribute("data-majority") == ("false" if pod == ODD else "true")
    assert DRIFT_KEY in visible_text(page.locator(f'table#replicas tr[data-pod="{ODD}"] td.disagree'))
    for pod in PRIMARY:
        assert DRIFT_KEY not in page.locator(f'table#replicas tr[data-pod="{pod}"] td.disagree').inner_text()
    finding = page.locator("ol#findings li[data-finding]", has_text=DRIFT_KEY)
    assert finding.count() >= 1 and finding.first.is_visible()
    # Performance: a row per metric, each with its small plot drawn from the pods' history.
    metrics = page.locator("section#performance tr[data-metric]")
    assert metrics.count() >= 1 and metrics.first.is_visible()
    sparks = page.locator("section#performance svg.spark")
    assert sparks.count() >= 1 and sparks.first.is_visible()
    assert sparks.first.locator("path, polyline, line, circle, rect").count() >= 1, "an empty plot"
    assert page.locator("a.diff-link").count() >= 1
    pages.shot(page, "workload-light")
    publish(page, "ui-workload.png", "table#replicas")

    dark = pages.new(color_scheme="dark")
    open_workload(dark, drift.api)
    assert "4096" in visible_text(dark.locator(f'table#intent tr[data-key="{DRIFT_KEY}"] td.actual'))
    background = dark.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background != page.evaluate("getComputedStyle(document.body).backgroundColor"), (
        "the dark colour scheme paints the same background as the light one"
    )
    pages.shot(dark, "workload-dark")


def check_diff_row(page: Any) -> None:
    section = page.locator('section[data-category="runtime"]')
    assert section.count() == 1 and section.is_visible()
    row = section.locator(f'tr[data-key="{DRIFT_KEY}"][data-change="changed"]')
    assert DRIFT_KEY in visible_text(row)
    left, right = row.locator("td.left"), row.locator("td.right")
    assert {visible_text(left), visible_text(right)} == {"2048", "4096"}
    for cell in (left, right):
        assert (cell.get_attribute("title") or "").strip(), "a value cell without its provenance title"
    assert visible_text(page.locator("#left-name")) and visible_text(page.locator("#right-name"))
    assert page.locator("#diff-empty").count() == 0 or not page.locator("#diff-empty").is_visible()


def test_diff_page_from_the_workload_page(drift: UiScenario, pages: Pages, publish: Any) -> None:
    page = pages.new()
    open_workload(page, drift.api)
    page.locator('a.diff-link[href*="intent=1"]').click()
    page.wait_for_url(re.compile(r"/ui/diff\?"))
    assert settled(page).get_attribute("data-page") == "diff"
    check_diff_row(page)
    row = page.locator(f'tr[data-key="{DRIFT_KEY}"]')
    assert visible_text(row.locator("td.left")) == "2048" and visible_text(row.locator("td.right")) == "4096"
    pages.shot(page, "diff-intent")
    publish(page, "ui-diff.png", "main#main")

    # Two pods, by a shared URL: the majority's and the odd one's, in that order.
    page.goto(f"{drift.api}/ui/diff?workload={NS_DRIFT}/llama&pods={PRIMARY[0]},{ODD}")
    settled(page)
    check_diff_row(page)
    names = visible_text(page.locator("#left-name")) + " " + visible_text(page.locator("#right-name"))
    assert PRIMARY[0] in names and ODD in names
    assert visible_text(row.locator("td.right")) == "4096"
    pages.shot(page, "diff-pods")


def test_pod_page_from_the_replicas_table(drift: UiScenario, pages: Pages) -> None:
    page = pages.new()
    open_workload(page, drift.api)
    page.locator(f'table#replicas tr[data-pod="{ODD}"] a[href^="/ui/pods/"]').first.click()
    page.wait_for_url(re.compile(rf"/ui/pods/{NS_DRIFT}/{ODD}$"))
    assert settled(page).get_attribute("data-page") == "pod"
    fact = page.locator(f'table#facts tr[data-key="{DRIFT_KEY}"]')
    assert visible_text(fact.locator("td.value")) == "4096"
    assert visible_text(fact.locator("td.provenance"))  # where the agent read it
    dtype = page.locator('table#facts tr[data-key="runtime.dtype"] td.value')
    assert visible_text(dtype) == "float16"
    sources = page.locator("table#sources tr[data-source]")
    assert sources.count() >= 2
    assert visible_text(sources.first.locator("td.state"))
    # Restarted with another context length: at least two configurations in its history, each
    # linked to a diff of two snapshots.
    history = page.locator("table#history tr[data-snapshot]")
    assert history.count() >= 2 and history.first.is_visible()
    link = page.locator('table#history a[href*="revisions="]').first
    href = urllib.parse.urlsplit(link.get_attribute("href") or "")
    query = urllib.parse.parse_qs(href.query)
    assert href.path == "/ui/diff" and query["workload"][0].startswith(f"{NS_DRIFT}/")
    assert len(query["revisions"][0].split(",")) == 2
    pages.shot(page, "pod")
    link.click()
    page.wait_for_url(re.compile(r"/ui/diff\?.*revisions="))
    settled(page)
    pages.shot(page, "diff-revisions")


def test_login_asks_for_the_token_and_keeps_it_in_the_session(guarded: UiScenario, pages: Pages) -> None:
    page = pages.new()
    page.goto(f"{guarded.api}/ui/")
    settled(page, "auth")
    form = page.locator("form#login")
    assert form.is_visible() and page.locator("input#token").get_attribute("type") == "password"
    assert page.locator("table#workloads tr[data-workload]").count() == 0
    pages.shot(page, "login")

    # A wrong token is refused: the API answers 401 and the page asks again, showing no data.
    with page.expect_response(lambda r: "/api/v1/" in r.url and r.status == 401):
        page.fill("input#token", "not-the-token-0123456789")
        form.locator("[type=submit], button").first.click()
    settled(page, "auth")
    assert page.locator("form#login").is_visible()
    assert page.locator("table#workloads tr[data-workload]").count() == 0

    with page.expect_response(lambda r: "/api/v1/" in r.url and r.status == 200):
        page.fill("input#token", READ_TOKEN)
        page.locator("form#login [type=submit], form#login button").first.click()
    settled(page)
    row = page.locator(f'table#workloads tr[data-workload="{STAGING}"]')
    assert visible_text(row.locator("td[data-col=state]")) in {
        "in intent",
        "drifting",
        "no intent",
        "no baseline",
    }
    pages.shot(page, "fleet-signed-in")

    # Kept for the browser session only: sessionStorage, never localStorage, a cookie or the URL.
    # (Booleans only in the assertions: a failure must not print the token.)
    kept = page.evaluate(f"sessionStorage.getItem({TOKEN_KEY!r})") == READ_TOKEN
    assert kept, f"sessionStorage[{TOKEN_KEY!r}] does not hold the token"
    in_local = READ_TOKEN in page.evaluate("JSON.stringify(Object.entries(localStorage))")
    assert not in_local, "the token is in localStorage"
    assert page.context.cookies() == [] and page.evaluate("document.cookie") == ""
    in_url = READ_TOKEN in page.url
    assert not in_url, "the token is in the URL"
    # A reload in the same tab keeps it; following a link sends it (the workload page loads).
    page.reload()
    settled(page)
    row.locator("td[data-col=name] a").click()
    assert settled(page).get_attribute("data-page") == "workload"
    assert STAGING_POD in visible_text(page.locator(f'table#replicas tr[data-pod="{STAGING_POD}"]'))

    # Another browser session asks again; signing out forgets the token.
    other = pages.new()
    other.goto(f"{guarded.api}/ui/")
    settled(other, "auth")
    page.locator("#logout").click()
    until(
        page,
        lambda: page.evaluate(f"sessionStorage.getItem({TOKEN_KEY!r})") is None,
        "#logout keeps the token",
    )
    page.reload()
    settled(page, "auth")


def test_html_in_a_fact_is_shown_as_text(drift: UiScenario, pages: Pages) -> None:
    """The agent reports the engine's served model name as given: an HTML payload in it must be
    text on every page that shows it, never markup (no <img> created, no handler run)."""
    page = pages.new()
    page.goto(f"{drift.api}/ui/pods/{NS_HTML}/{HTML_POD}")
    settled(page)
    cell = page.locator('table#facts tr[data-key="runtime.served_model_name"] td.value')
    assert visible_text(cell) == HTML_PAYLOAD
    # The engine's key: its redacted digest, as the API gives it, and never the key itself.
    digests = page.locator("table#facts td.value", has_text="redacted:sha256:")
    assert digests.count() >= 1 and digests.first.is_visible()
    assert ENGINE_KEY not in page.content()
    pages.shot(page, "pod-html-payload")
    for url in (f"/ui/pods/{NS_HTML}/{HTML_POD}", f"/ui/workloads/{NS_HTML}/llama", "/ui/"):
        page.goto(drift.api + url)
        settled(page)
        created = page.evaluate("document.querySelectorAll('img[src=\"x\"], [onerror]').length")
        assert created == 0, f"{url}: the payload became an element"
    # pages' teardown: no dialog was opened and no script error raised.


def test_keyboard_reaches_and_follows_a_workload_link(drift: UiScenario, pages: Pages) -> None:
    page = pages.new()
    page.goto(f"{drift.api}/ui/")
    settled(page)
    reached = None
    for _ in range(40):
        page.keyboard.press("Tab")
        href = page.evaluate("document.activeElement && document.activeElement.getAttribute('href')")
        if href and href.startswith("/ui/workloads/"):
            reached = href
            break
    assert reached is not None, "Tab never reached a workload link"
    outline = page.evaluate(
        "(() => { const s = getComputedStyle(document.activeElement);"
        " return [s.outlineStyle, s.outlineWidth, s.boxShadow]; })()"
    )
    assert (outline[0] != "none" and outline[1] != "0px") or outline[2] != "none", (
        f"the focused link has no visible focus indicator: {outline}"
    )
    pages.shot(page, "fleet-keyboard-focus")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(re.escape(reached.split("?")[0])))
    assert settled(page).get_attribute("data-page") == "workload"
    assert visible_text(page.locator("h1"))
