"""The web view's load time in headless Chromium, against the API calls it makes, 1,000 workloads stored.

Set-up: the store of ``tests.bench.store_fleet`` (1,000 workloads x 8 replicas, 60 facts each,
written directly after the collector's migrations), with replica 0 of every tenth workload on
another ``runtime.dtype`` so that a hundred workloads have an open peers finding; a real collector
process on it, past its initial evaluation. Debian's ``/usr/bin/chromium`` driven by Playwright
(never a downloaded browser), one browser and one tab for the whole run: a warm browser, its HTTP
cache and compiled scripts kept between loads, as a user who comes back to the page has them.

Per page (fleet ``/ui/``; workload ``/ui/workloads/bench/llm0``; diff of two of its replicas,
``/ui/diff?workload=bench/llm0&pods=llm0-0,llm0-1``), after ``WARMUP`` loads not counted, ``LOADS``
loads each timed in the page itself: an init script (run before the page's own) watches
``main#main`` and takes ``performance.now()`` (milliseconds since navigation start) when its
``data-state`` becomes ``ready`` — the contract's hook that the browser tests wait for, set once
the page has put its data into the DOM — and again after the next animation frame and task, when
that DOM has been laid out and painted. The same page's API calls are read from its requests
(Playwright's ``request`` event, each ``/api/`` URL) and, right after each load, fetched again from
Python with urllib, one after another, each on a new connection as urllib makes it: the reference,
so that machine and store speed cancel out and the ratio is the page's own cost (HTML, scripts,
fetch, JSON parsing, DOM building). The workload page's two calls are made one after the other
(the replica whose history it plots comes from the workload's answer), as the reference makes
them; the pod page, whose two calls run in parallel, would get a reference longer than its
critical path, and is not measured.

Figures per page P (``ui.P.…[scale]``):
- ``ready_p50``, ``ready_p95`` (s): navigation start to ``data-state="ready"``; reference: the same
  percentile of the page's API calls from urllib.
- ``rendered_p50`` (s): to the first frame after ready; reference: as ``ready_p50``.
- where the ready time goes, from Resource Timing (reference: as ``ready_p50``):
  ``before_api_p50`` (s), navigation start to the first API fetch's start (HTML, scripts);
  ``api_in_page_p50`` (s), the first fetch's start to the last one's response end (its ratio is
  the browser's fetch overhead over urllib's); ``after_api_p50`` (s), that end to ready (JSON
  parsing and DOM building).
- ``api_bytes`` (By): the API answers' bodies; reference: the page's HTML and static assets
  (decoded body sizes, Resource Timing), what the page costs apart from its data.
- ``js_heap_used`` (By): V8's used heap after a forced GC, after the last load (CDP
  ``Performance.getMetrics``); reference: the same tab's on ``about:blank`` at the start, the
  floor of an empty renderer, so the ratio is what the page and its data hold beyond it.
- fleet only, ``dom_elements``: elements in the document after the last load; reference: the
  workloads in the API answer (elements per workload row).

Skipped, with a message on stderr and no figure, when ``/usr/bin/chromium`` or Playwright is
missing; a page the collector does not serve (404) is skipped likewise, so that the benchmark runs
while the web view is being built. A page that ends in ``data-state="error"`` or ``"auth"`` fails
the run with its ``#error`` text.
"""

from __future__ import annotations

import importlib
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.bench.common import Figure
from tests.bench.store_fleet import REPLICAS, WORKLOADS, populate, stored_collector
from tests.ui.scenario import CHROMIUM, CHROMIUM_ARGS  # launched as the browser tests launch it

WARMUP = 3
LOADS = 30
READY_TIMEOUT_MS = 60_000
PAGES = (
    ("fleet", "/ui/"),
    ("workload", "/ui/workloads/bench/llm0"),
    ("diff", "/ui/diff?workload=bench/llm0&pods=llm0-0,llm0-1"),
)

# Installed before any script of the page runs (Page.addScriptToEvaluateOnNewDocument, which the
# page's Content-Security-Policy does not govern). It records when main#main first says ready,
# error or auth, then when the frame after it is done, and the page's API fetches then.
PROBE = """
(() => {
  const out = (window.__skewwatchBench = {});
  const settle = () => {
    out.renderedAt = performance.now();
    const api = performance.getEntriesByType('resource')
      .filter(e => new URL(e.name).pathname.startsWith('/api/'));
    out.apiCached = api.filter(e => e.transferSize === 0).map(e => e.name);
    out.apiStart = api.length ? Math.min(...api.map(e => e.startTime)) : null;
    out.apiEnd = api.length ? Math.max(...api.map(e => e.responseEnd)) : null;
    out.assetBytes = performance.getEntriesByType('navigation').concat(
      performance.getEntriesByType('resource').filter(e => !new URL(e.name).pathname.startsWith('/api/')))
      .reduce((n, e) => n + (e.decodedBodySize || 0), 0);
    out.elements = document.getElementsByTagName('*').length;
    out.done = true;
  };
  const check = () => {
    const main = document.querySelector('main#main');
    const state = main && main.dataset.state;
    if (out.state || !['ready', 'error', 'auth'].includes(state)) return;
    out.state = state;
    out.readyAt = performance.now();
    const err = document.querySelector('#error');
    out.error = err ? err.textContent : '';
    observer.disconnect();
    requestAnimationFrame(() => setTimeout(settle, 0));
  };
  const observer = new MutationObserver(check);
  observer.observe(document, {subtree: true, childList: true, attributes: true,
                              attributeFilter: ['data-state']});
  document.addEventListener('DOMContentLoaded', check);
})();
"""


@dataclass
class PageRun:
    ready: list[float] = field(default_factory=list)
    rendered: list[float] = field(default_factory=list)
    before_api: list[float] = field(default_factory=list)
    api_in_page: list[float] = field(default_factory=list)
    after_api: list[float] = field(default_factory=list)
    reference: list[float] = field(default_factory=list)
    api_urls: list[str] = field(default_factory=list)
    api_bytes: int = 0
    asset_bytes: int = 0
    elements: int = 0
    heap_used: float = 0.0
    workloads: int = 0


def _heap_used(cdp: Any) -> float:
    """V8's used JS heap of the tab, after a forced garbage collection."""
    cdp.send("HeapProfiler.collectGarbage")
    metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
    return float(metrics["JSHeapUsedSize"])


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _fetch_all(urls: list[str]) -> tuple[float, list[bytes]]:
    """Seconds to fetch every URL in turn (status 200 each), and the bodies."""
    bodies = []
    start = time.perf_counter()
    for url in urls:
        with urllib.request.urlopen(url, timeout=60) as r:
            bodies.append(r.read())
    return time.perf_counter() - start, bodies


def _served(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=30).close()
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return False
        raise
    return True


def _load(page: Any, url: str) -> tuple[dict[str, Any], list[str]]:
    """One navigation to ``url``: the probe's record and the API URLs the page requested."""
    requested: list[str] = []

    def on_request(request: Any) -> None:
        if urlsplit(request.url).path.startswith("/api/"):
            requested.append(request.url)

    page.on("request", on_request)
    try:
        page.goto(url, wait_until="commit")
        try:
            page.wait_for_function("() => window.__skewwatchBench && window.__skewwatchBench.done === true",
                                   timeout=READY_TIMEOUT_MS)  # fmt: skip
        except Exception as e:  # Playwright's TimeoutError, whose module is imported at run time
            state = page.evaluate("() => document.querySelector('main#main')?.dataset.state ?? null")
            waited = f"{READY_TIMEOUT_MS / 1000:.0f} s"
            raise RuntimeError(f"{url}: not ready after {waited} (data-state={state!r})") from e
        record: dict[str, Any] = page.evaluate("() => window.__skewwatchBench")
    finally:
        page.remove_listener("request", on_request)
    if record["state"] != "ready":
        raise RuntimeError(f"{url}: data-state={record['state']!r}: {record['error'][:500]!r}")
    if record["apiCached"]:  # the load would not be the API's: the ratio would mean nothing
        raise RuntimeError(f"{url}: API answers came from the browser's cache: {record['apiCached']}")
    return record, requested


def _measure(page: Any, cdp: Any, url: str) -> PageRun:
    run = PageRun()
    for _ in range(WARMUP):
        _, run.api_urls = _load(page, url)
    if not run.api_urls:
        raise RuntimeError(f"{url}: the page made no /api/ request")
    for _ in range(LOADS):
        record, urls = _load(page, url)
        if sorted(urls) != sorted(run.api_urls):
            raise RuntimeError(f"{url}: API calls changed between loads: {run.api_urls} then {urls}")
        run.ready.append(record["readyAt"] / 1000)
        run.rendered.append(record["renderedAt"] / 1000)
        if record["apiStart"] is not None:
            run.before_api.append(record["apiStart"] / 1000)
            run.api_in_page.append((record["apiEnd"] - record["apiStart"]) / 1000)
            run.after_api.append((record["readyAt"] - record["apiEnd"]) / 1000)
        seconds, bodies = _fetch_all(run.api_urls)
        run.reference.append(seconds)
        run.api_bytes = sum(len(b) for b in bodies)
        run.asset_bytes, run.elements = record["assetBytes"], record["elements"]
        answer = json.loads(bodies[0])
        run.workloads = len(answer.get("workloads", [])) if isinstance(answer, dict) else 0
    run.heap_used = _heap_used(cdp)
    return run


def _figures(name: str, run: PageRun, blank_heap: float, scale: str) -> list[Figure]:
    calls = ", ".join("/" + u.split("/", 3)[3] for u in run.api_urls)  # http://host:port/PATH?QUERY
    ref = f"the page's API calls ({calls}) from urllib, in turn, same run"
    out = [
        Figure(f"ui.{name}.ready_p50{scale}", statistics.median(run.ready), "s", f"{ref}, p50",
               statistics.median(run.reference)),
        Figure(f"ui.{name}.ready_p95{scale}", _percentile(run.ready, 0.95), "s", f"{ref}, p95",
               _percentile(run.reference, 0.95)),
        Figure(f"ui.{name}.rendered_p50{scale}", statistics.median(run.rendered), "s", f"{ref}, p50",
               statistics.median(run.reference)),
        Figure(f"ui.{name}.api_bytes{scale}", run.api_bytes, "By",
               "the page's HTML and static assets (decoded bodies)", run.asset_bytes),
        Figure(f"ui.{name}.js_heap_used{scale}", run.heap_used, "By",
               "the same tab's JS heap on about:blank, after GC", blank_heap),
    ]  # fmt: skip
    if run.api_in_page:  # where the ready time goes: before, during and after the page's fetches
        out[3:3] = [
            Figure(f"ui.{name}.{part}_p50{scale}", statistics.median(values), "s", f"{ref}, p50",
                   statistics.median(run.reference))
            for part, values in (("before_api", run.before_api), ("api_in_page", run.api_in_page),
                                 ("after_api", run.after_api))
        ]  # fmt: skip
    if name == "fleet":
        out.append(Figure(f"ui.fleet.dom_elements{scale}", run.elements, "1",
                          "workloads in the API answer (elements per row)", run.workloads))  # fmt: skip
    return out


def _drifting(w: int, r: int) -> str:
    return "float32" if r == 0 and w % 10 == 0 else "float16"


def _sync_playwright() -> Callable[[], Any] | None:
    """Playwright's entry point, or None (with the reason on stderr) when it or Chromium is missing."""
    if not os.access(CHROMIUM, os.X_OK):
        print(f"bench_ui skipped: {CHROMIUM} not found (apt-get install chromium)", file=sys.stderr)
        return None
    try:
        module = importlib.import_module("playwright.sync_api")
    except ImportError:
        print("bench_ui skipped: playwright is not installed (pip install playwright)", file=sys.stderr)
        return None
    entry: Callable[[], Any] = module.sync_playwright
    return entry


def run() -> list[Figure]:
    sync_playwright = _sync_playwright()
    if sync_playwright is None:
        return []
    scale = f"[{WORKLOADS} workloads x {REPLICAS} replicas, {LOADS} warm loads]"
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="bench-ui-") as tmp:
        root = Path(tmp)
        populate(root / "store.db", dtype=_drifting)
        with stored_collector(root / "store.db", root) as collector, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            try:
                page = browser.new_page()
                page.add_init_script(PROBE)
                cdp = page.context.new_cdp_session(page)
                cdp.send("Performance.enable")
                page.goto("about:blank")
                blank_heap = _heap_used(cdp)
                for name, path in PAGES:
                    url = collector.http + path
                    if not _served(url):
                        print(f"bench_ui: {path} answers 404: no {name} page figures", file=sys.stderr)
                        continue
                    figures += _figures(name, _measure(page, cdp, url), blank_heap, scale)
            finally:
                browser.close()
    return figures
