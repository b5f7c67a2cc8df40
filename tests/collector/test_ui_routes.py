"""The web view's routes (collector/ui) at the HTTP level, against a real collector on loopback.

Every page path answers the shipped index.html with the contract's headers (CSP, nosniff,
no-referrer, not cached); the assets answer with their content types, an ETag and a 304 on it;
``/ui`` redirects to ``/ui/``; none needs a token while ``/api/v1`` still does; no request path
reaches the file system (traversal in every spelling is a 404, as is an unknown asset). The API
fields the pages read and that were added for them (docs/ui.md) are checked against a real
collector and the OpenAPI document. The pages' JavaScript is checked for the one rule that keeps
an attacker's fact value from being markup: no HTML parsing sink anywhere in app.js (the
browser-level proof, a hostile value rendered as text, belongs to tests/ui/).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yarl

from collector import ui
from collector.api import auth
from collector.api.app import create_app
from collector.service.queries import drift_state
from tests.support.collector import (
    BASE_FACTS,
    Running,
    feed,
    hello_msg,
    make_snapshot,
    observations_msg,
    settings_for,
    snapshot_msg,
    started,
)
from tests.support.openapi import DOC, conforms, response_schema
from tests.support.paths import REPO

STATIC = REPO / "collector" / "ui" / "static"
READ_TOKEN = "ui-read-token-" + "r" * 24
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'"
)
PAGES = (
    "/ui/",
    "/ui/workloads/ml/llm",
    "/ui/workloads/ml/llm?kind=Deployment",
    "/ui/diff?workload=ml/llm&last_good=1",
    "/ui/diff?workload=ml/Deployment/llm&revisions=1,2",
    "/ui/pods/ml/llm-0",
)
ASSETS = {
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
POLICY = """
apiVersion: skewwatch.io/v1alpha1
kind: SkewPolicy
metadata:
  name: ml-pods
spec:
  bindings:
    - namespaces: [ml]
"""


@pytest.fixture
async def secured(tmp_path: Path) -> AsyncIterator[Running]:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"read {READ_TOKEN}\n")
    async with started(settings_for(tmp_path, api_tokens=tokens, shutdown_grace_s=0.5), tmp_path) as running:
        await feed(running)
        yield running


async def fetch(url: str | yarl.URL, headers: dict[str, str] | None = None, method: str = "GET") -> Any:
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, url, headers=headers, allow_redirects=False) as r,
    ):
        return r.status, r.headers, await r.read()


def assert_secure_headers(headers: Any) -> None:
    assert headers["Content-Security-Policy"] == CSP
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"


def test_the_ui_role_table_names_exactly_the_routes_collector_ui_registers() -> None:
    class NoPods:  # create_app only stores it: no route is called here
        pass

    def routes(**kw: Any) -> set[tuple[str, str]]:
        app = create_app(NoPods(), **kw)  # type: ignore[arg-type]
        return {
            (r.method, r.resource.canonical)
            for r in app.router.routes()
            if r.resource is not None and r.method != "HEAD"
        }

    added = routes(ui=True) - routes()
    assert added == set(auth.UI_ROUTE_ROLES)
    assert not set(auth.UI_ROUTE_ROLES) & set(auth.ROUTE_ROLES)
    for (method, pattern), role in auth.UI_ROUTE_ROLES.items():
        assert role == auth.OPEN and method == "GET" and pattern.startswith(ui.PREFIX)
        assert auth.route_role(method, pattern) == auth.OPEN
        assert auth.route_role("HEAD", pattern) == auth.OPEN
        assert auth.route_role("POST", pattern) == auth.ADMIN  # no write: fails closed
    # The UI is no part of the API's document, as /metrics is not.
    assert not [p for p in DOC["paths"] if p.startswith(ui.PREFIX)]


async def test_every_page_path_answers_the_index_without_a_token_and_the_api_still_needs_one(
    secured: Running,
) -> None:
    base = f"http://127.0.0.1:{secured.http_port}"
    index = (STATIC / "index.html").read_bytes()
    for page in PAGES:
        status, headers, body = await fetch(base + page)
        assert status == 200, (page, status, body[:200])
        assert headers["Content-Type"] == "text/html; charset=utf-8"
        assert headers["Cache-Control"] == "no-store"
        assert_secure_headers(headers)
        assert body == index
    # HEAD too, and an If-None-Match never makes the HTML a 304 (it is not cached).
    status, headers, _ = await fetch(base + "/ui/", method="HEAD")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    etag = headers["ETag"]
    assert (await fetch(base + "/ui/", {"If-None-Match": etag}))[0] == 200
    # /ui redirects to /ui/, keeping the query.
    status, headers, _ = await fetch(base + "/ui")
    assert status == 301 and headers["Location"] == "/ui/"
    status, headers, _ = await fetch(base + "/ui?x=1")
    assert status == 301 and headers["Location"] == "/ui/?x=1"
    # The pages' data still needs the token, and answers with it.
    for path in ("/api/v1/workloads", "/api/v1/pods/ml/llm-0", "/api/v1/pods/ml/llm-0/history"):
        status, headers, _ = await fetch(base + path)
        assert status == 401 and headers["WWW-Authenticate"] == 'Bearer realm="skewwatch"'
        status, _, _ = await fetch(base + path, {"Authorization": f"Bearer {READ_TOKEN}"})
        assert status == 200, path
    # Writes are no route of the UI: 405, whatever the token.
    assert (await fetch(base + "/ui/", method="POST"))[0] == 405


async def test_assets_have_their_content_types_an_etag_and_a_304(secured: Running) -> None:
    base = f"http://127.0.0.1:{secured.http_port}"
    for name, content_type in ASSETS.items():
        status, headers, body = await fetch(f"{base}/ui/static/{name}")
        assert status == 200, name
        assert headers["Content-Type"] == content_type
        assert headers["Cache-Control"].startswith("public, max-age=")
        assert_secure_headers(headers)
        assert body == (STATIC / name).read_bytes()
        status, headers, body = await fetch(f"{base}/ui/static/{name}", {"If-None-Match": headers["ETag"]})
        assert status == 304 and body == b""
        assert (await fetch(f"{base}/ui/static/{name}", {"If-None-Match": '"other"'}))[0] == 200
    # The index references exactly these assets, by absolute path (the pages are nested).
    html = (STATIC / "index.html").read_text()
    assert set(re.findall(r'(?:src|href)="/ui/static/([^"]+)"', html)) == set(ASSETS)


@pytest.mark.parametrize(
    "raw",
    [
        "/ui/static/../__init__.py",
        "/ui/static/%2e%2e/__init__.py",
        "/ui/static/..%2F__init__.py",
        "/ui/static/..%2f..%2fapi%2fauth.py",
        "/ui/static/%2e%2e%2f%2e%2e%2fapi%2fauth.py",
        "/ui/static/....//__init__.py",
        "/ui/static/.%2e/.%2e/api/auth.py",
        "/ui/static/%5c..%5c__init__.py",
        "/ui/static/nope.js",
        "/ui/static/",
        "/ui/static/index.html",  # the index is served at the page paths only
        "/ui/static/app.js/",
        "/ui/workloads/ml",
        "/ui/pods/ml/llm-0/extra",
        "/ui/nothing",
    ],
)
async def test_no_request_path_reaches_the_file_system(secured: Running, raw: str) -> None:
    url = yarl.URL(f"http://127.0.0.1:{secured.http_port}{raw}", encoded=True)
    status, headers, body = await fetch(url)
    assert status == 404, (raw, status, body[:200])
    assert b"import" not in body and b"def " not in body  # no Python source, whatever was asked
    assert headers["Content-Type"].startswith("application/json")  # the API's own JSON 404


async def test_the_api_fields_the_fleet_workload_diff_and_pod_pages_read(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, drift_tick_s=0.1, shutdown_grace_s=0.5)
    async with started(settings, tmp_path) as running, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{running.http_port}"

        async def get(path: str) -> Any:
            async with http.get(base + path) as r:
                assert r.status == 200, (path, await r.text())
                return await r.json()

        async def row() -> dict[str, Any]:
            listed = await get("/api/v1/workloads")
            conforms(listed, response_schema("/api/v1/workloads", 200))
            (only,) = listed["workloads"]
            return dict(only)

        await feed(running)
        w = await row()
        assert (w["drift_state"], w["intent_bound"], w["silent_pods"]) == ("no_intent", False, 0)
        assert w["open_findings_by_category"] == {}
        async with http.post(f"{base}/api/v1/intents", data=POLICY) as r:
            assert r.status in (200, 201), await r.text()
        w = await row()
        assert (w["drift_state"], w["intent_bound"]) == ("no_baseline", True)
        async with http.post(f"{base}/api/v1/baselines/ml/llm", json={}) as r:
            assert r.status == 201, await r.text()
        assert (await row())["drift_state"] == "in_intent"

        # A second replica on another dtype: the peers see it, the row turns drifting, its open
        # finding counted by category and severity as the findings route lists it.
        s = running.stream()
        await s.exchange(hello_msg(1, pod="llm-1"))
        other = {**BASE_FACTS, "runtime.args.dtype": "bfloat16", "runtime.dtype": "bfloat16"}
        await s.exchange(snapshot_msg(2, make_snapshot(other)))
        deadline = time.monotonic() + 20
        while (w := await row())["drift_state"] != "drifting":
            assert time.monotonic() < deadline, w
            await asyncio.sleep(0.2)
        findings = (await get("/api/v1/findings?status=open"))["findings"]
        expected: dict[str, dict[str, int]] = {}
        for f in findings:
            sev = expected.setdefault(f["category"], {})
            sev[f["severity"]] = sev.get(f["severity"], 0) + 1
        assert w["open_findings_by_category"] == expected and expected
        assert sum(w["open_findings"].values()) == len(findings)

        # The workload page: which keys each replica differs on from the majority.
        detail = await get("/api/v1/workloads/ml/llm")
        conforms(detail, response_schema("/api/v1/workloads/{namespace}/{name}", 200))
        differs = {r["pod"]: r["differs"] for r in detail["replicas"]}
        assert set(differs) == {"llm-0", "llm-1"}
        minority = [p for p, keys in differs.items() if keys]
        assert len(minority) == 1 and "runtime.dtype" in differs[minority[0]]
        assert set(differs[minority[0]]) <= set(detail["divergent_keys"])

        # The diff page: each side's provenance of each changed key.
        d = await get("/api/v1/diff?workload=ml/llm&pods=llm-0,llm-1")
        conforms(d, response_schema("/api/v1/diff", 200))
        changed = {c["key"] for c in d["changes"]}
        assert "runtime.dtype" in changed
        for side in ("from", "to"):
            assert set(d["provenance"][side]) <= changed
            assert d["provenance"][side]["runtime.dtype"]["source"]

        # The sparklines: the pod's stored observation windows, newest first.
        await s.exchange(observations_msg(3, {"tokens_per_s": 99.5}))
        hist = await get("/api/v1/pods/ml/llm-1/history?limit=1&observations=5")
        conforms(hist, response_schema("/api/v1/pods/{namespace}/{pod}/history", 200))
        assert hist["observations"][0]["values"] == {"tokens_per_s": 99.5}
        assert "observations" not in await get("/api/v1/pods/ml/llm-1/history")
        async with http.get(f"{base}/api/v1/pods/ml/llm-1/history?observations=0") as r:
            assert r.status == 400


def test_drift_state_takes_the_first_that_holds() -> None:
    assert drift_state(1, intent_bound=False, baseline=False) == "drifting"
    assert drift_state(0, intent_bound=False, baseline=True) == "no_intent"
    assert drift_state(0, intent_bound=True, baseline=False) == "no_baseline"
    assert drift_state(0, intent_bound=True, baseline=True) == "in_intent"


# Every way a string becomes markup in a browser; app.js must use none (text nodes only).
HTML_SINKS = re.compile(
    r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|DOMParser|createContextualFragment"
    r"|srcdoc|\beval\s*\(|new\s+Function|setTimeout\(\s*['\"`]|javascript:"
)


def test_app_js_never_parses_a_string_as_html() -> None:
    js = (STATIC / "app.js").read_text()
    code = "\n".join(line for line in js.splitlines() if not line.lstrip().startswith("//"))
    assert not HTML_SINKS.findall(code)
    # Its one element builder turns every child string into a text node and every attribute
    # into setAttribute (a value, never markup): a fact like <img src=x onerror=alert(1)> stays text.
    builder = code[code.index("function append(") : code.index("const SVG")]
    assert "document.createTextNode(String(child))" in builder
    assert "el.setAttribute(name" in code
    # Links are built from path segments the page encodes, never from a raw API string.
    for href in re.findall(r"href: ([^,}]+)", code):
        assert href.strip().startswith(("workloadHref(", "podHref(", "diffHref(", "`/ui/", '"/ui/')), href
    # The token lives in sessionStorage only.
    assert "localStorage." not in code and "document.cookie" not in code
    assert 'const TOKEN_KEY = "skewwatch.token"' in code
