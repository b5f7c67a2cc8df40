"""Probe results stored with their workload. The store on both backends (a SQLite file, a
PostgreSQL server; the PostgreSQL runs skip where no server can be started, as every store test
does); then the routes over real HTTP on a real collector fed over gRPC, each answer checked
against the served OpenAPI document: round trip, listing and its limits, malformed documents
(400 naming the field), the cap of 50 per workload, roles (a read token cannot POST), redaction
of secret-shaped strings in the stored document, and the latest result in the workload view,
``skewwatch status`` and the evidence bundle (JSON and Markdown).

The document posted is what the probe really writes: ``skewwatch probe -o json`` run once per
module against the stand-in engine of tests/probe (SSE, usage chunk, latencies it controls)."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from collector.store import parse_store_url
from collector.store.base import FullStore
from collector.store.schema import MIGRATIONS
from skewwatch import cli
from tests.collector.test_api_auth import ADMIN_TOKEN, READ_TOKEN, token_file
from tests.probe.standin_server import MODEL, Behaviour, serve
from tests.support.cli import run
from tests.support.cli_state import pod, settle
from tests.support.collector import Running, settings_for, started
from tests.support.openapi import DOC, conforms

WORKLOAD = "ml/Deployment/llm"
OTHER = "ml/Deployment/embed"
ROUTE = "/api/v1/workloads/{namespace}/{name}/probes"
TIMEOUT = aiohttp.ClientTimeout(total=20)
# Shaped like an OpenAI key, as an engine's 401 might echo it: it must never reach the store.
ECHOED_KEY = "sk-proj-" + "Q7x" * 12


def probe_run(*extra: str) -> dict[str, Any]:
    """``skewwatch probe -o json`` against the stand-in: its document, as the probe prints it."""
    out = io.StringIO()
    behaviour = Behaviour(first_token_delay=0.02, token_delay=0.002, tokens=8)
    with serve(behaviour) as (url, _), contextlib.redirect_stdout(out):
        code = cli.main(
            ["probe", "--endpoint", url, "--model", MODEL, "--concurrency", "1,2", "--requests", "4",
             "--warmup", "1", "-o", "json", *extra]
        )  # fmt: skip
    doc: dict[str, Any] = json.loads(out.getvalue())
    assert code == doc["exit_code"], doc
    return doc


@pytest.fixture(scope="module")
def passed() -> dict[str, Any]:
    doc = probe_run("--max-ttft-ms", "5000")
    assert doc["verdict"] == "pass", doc["reasons"]
    return doc


@pytest.fixture(scope="module")
def failed() -> dict[str, Any]:
    doc = probe_run("--max-ttft-ms", "0.001", "--min-tokens-per-s", "1")  # no TTFT is that fast
    assert doc["verdict"] == "fail", doc["reasons"]
    return doc


# -- the store, both backends ------------------------------------------------------------------------


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[FullStore]:
    s = parse_store_url(store_url)
    await s.open()
    try:
        yield s
    finally:
        await s.close()


async def test_a_probe_result_round_trips_through_the_store(store: FullStore, failed: dict[str, Any]) -> None:
    stored = await store.add_probe_result(WORKLOAD, 1_000.5, "fail", failed, keep=50)
    assert stored.id >= 1
    assert (stored.workload, stored.recorded_at, stored.verdict) == (WORKLOAD, 1_000.5, "fail")
    assert stored.document == failed
    assert await store.get_probe_result(stored.id) == stored
    assert await store.get_probe_result(stored.id + 1000) is None
    assert await store.probe_results(WORKLOAD, 10) == [stored]
    assert await store.probe_results(OTHER, 10) == []


async def test_probe_results_list_newest_first_and_keep_the_newest_per_workload(store: FullStore) -> None:
    ids = [(await store.add_probe_result(WORKLOAD, float(i), "pass", {"n": i}, keep=3)).id for i in range(5)]
    other = await store.add_probe_result(OTHER, 9.0, "error", {"n": 99}, keep=3)
    listed = await store.probe_results(WORKLOAD, 10)
    assert [r.id for r in listed] == ids[:1:-1] and [r.document["n"] for r in listed] == [4, 3, 2]
    assert [r.id for r in await store.probe_results(WORKLOAD, 2)] == ids[:2:-1]
    assert await store.get_probe_result(ids[0]) is None  # dropped: the oldest beyond keep
    assert await store.probe_results(OTHER, 10) == [other]  # another workload's are not touched
    with pytest.raises(ValueError, match="keep"):
        await store.add_probe_result(WORKLOAD, 1.0, "pass", {}, keep=0)


async def test_the_probe_results_table_is_migration_6_on_both_backends(
    store: FullStore, store_url: str, passed: dict[str, Any]
) -> None:
    # Migration 6, appended after the cluster watch's revisions.
    [found] = [m for m in MIGRATIONS if any("CREATE TABLE probe_results" in s for s in m.statements)]
    assert MIGRATIONS.index(found) + 1 == 6
    if store_url.startswith("sqlite"):
        with sqlite3.connect(store_url.removeprefix("sqlite:///")) as conn:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
            columns = [r[1] for r in conn.execute("PRAGMA table_info(probe_results)")]
        assert columns == ["id", "workload", "recorded_at", "verdict", "document"]
    stored = await store.add_probe_result(WORKLOAD, 2.0, "pass", copy.deepcopy(passed), keep=50)
    [back] = await store.probe_results(WORKLOAD, 1)
    assert back.document == stored.document == passed  # floats, nulls, nesting as they were


# -- the routes --------------------------------------------------------------------------------------


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[tuple[Running, aiohttp.ClientSession]]:
    settings = settings_for(tmp_path, shutdown_grace_s=0.5)
    async with (
        started(settings, tmp_path) as running,
        aiohttp.ClientSession(base_url=running.http, timeout=TIMEOUT) as http,
    ):
        await pod(running, "llm-0")
        await settle(running)
        yield running, http


def schema(path: str, method: str, status: int) -> dict[str, Any]:
    media = DOC["paths"][path][method]["responses"][str(status)]["content"]["application/json"]
    found: dict[str, Any] = media["schema"]
    return found


async def call(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    status: int,
    body: Any = None,
    doc_path: str = ROUTE,
    **kw: Any,
) -> Any:
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if data is not None else {}
    async with http.request(method, url, data=data, headers={**headers, **kw.pop("headers", {})}) as r:
        answer = await r.json()
        assert r.status == status, answer
    if doc_path:
        conforms(answer, schema(doc_path, method.lower(), status))
    return answer


async def test_a_posted_result_is_stored_listed_and_shown_with_its_summary(
    rig: tuple[Running, aiohttp.ClientSession], failed: dict[str, Any], passed: dict[str, Any]
) -> None:
    _, http = rig
    first = (await call(http, "POST", "/api/v1/workloads/ml/llm/probes", 201, failed))["probe"]
    assert first["workload"] == WORKLOAD and first["verdict"] == "fail" and first["document"] == failed
    summary = first["summary"]
    assert summary["verdict"] == "fail" and summary["model"] == MODEL
    assert summary["endpoint"] == failed["target"]["endpoint"]
    assert summary["failed"] == ["--max-ttft-ms"]  # failed at both levels, named once
    assert [lv["concurrency"] for lv in summary["levels"]] == [1, 2]
    for lv, raw in zip(summary["levels"], failed["levels"], strict=True):
        assert lv == {
            "concurrency": raw["concurrency"],
            "requests_per_s": raw["requests_per_s"],
            "output_tokens_per_s": raw["output_tokens_per_s"],
            "ttft_ms_p95": raw["ttft_ms"]["p95"],
            "e2e_ms_p99": raw["e2e_ms"]["p99"],
            "errors": raw["errors"],
        }
        assert lv["output_tokens_per_s"] > 0 and lv["ttft_ms_p95"] >= 15  # the stand-in's 20 ms first token
    second = (await call(http, "POST", "/api/v1/workloads/ml/llm/probes?kind=Deployment", 201, passed))[
        "probe"
    ]
    assert second["id"] > first["id"] and second["recorded_at"] >= first["recorded_at"]
    listed = await call(http, "GET", "/api/v1/workloads/ml/llm/probes", 200)
    assert listed["workload"] == WORKLOAD
    assert [p["id"] for p in listed["probes"]] == [second["id"], first["id"]]
    assert all("document" not in p for p in listed["probes"])
    assert listed["probes"][1] == {k: v for k, v in first.items() if k != "document"}
    one = await call(
        http, "GET", f"/api/v1/workloads/ml/llm/probes/{first['id']}", 200, doc_path=ROUTE + "/{id}"
    )
    assert one == {"probe": first}
    limited = await call(http, "GET", "/api/v1/workloads/ml/llm/probes?limit=1", 200)
    assert [p["id"] for p in limited["probes"]] == [second["id"]]


async def test_unknown_workloads_ids_and_limits_are_refused(
    rig: tuple[Running, aiohttp.ClientSession], passed: dict[str, Any]
) -> None:
    _, http = rig
    await call(http, "POST", "/api/v1/workloads/ml/ghost/probes", 404, passed)
    await call(http, "GET", "/api/v1/workloads/ml/ghost/probes", 404)
    stored = (await call(http, "POST", "/api/v1/workloads/ml/llm/probes", 201, passed))["probe"]
    for bad in ("0", "x", "-1"):
        answer = await call(http, "GET", f"/api/v1/workloads/ml/llm/probes/{bad}", 400, doc_path="")
        assert "probe id" in answer["error"]["message"]
    answer = await call(http, "GET", f"/api/v1/workloads/ml/llm/probes/{stored['id'] + 1}", 404, doc_path="")
    assert answer["error"]["message"] == f"probe result {stored['id'] + 1} of {WORKLOAD} is not stored"
    for limit in ("0", "51", "ten"):
        answer = await call(http, "GET", f"/api/v1/workloads/ml/llm/probes?limit={limit}", 400)
        assert "query parameter 'limit'" in answer["error"]["message"]


def _without(doc: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != key}


async def test_malformed_documents_are_refused_naming_the_field(
    rig: tuple[Running, aiohttp.ClientSession], passed: dict[str, Any]
) -> None:
    _, http = rig
    level = passed["levels"][0]

    def at(**fields: Any) -> dict[str, Any]:
        return {**passed, "levels": [{**level, **fields}]}

    cases: list[tuple[Any, str]] = [
        ([passed], "body: expected the probe's JSON document (an object), got list"),
        (_without(passed, "schema"), "body.schema: expected 'skewwatch.probe/v1', got 'None'"),
        ({**passed, "schema": "skewwatch.probe/v2"}, "body.schema: expected 'skewwatch.probe/v1'"),
        ({**passed, "verdict": "maybe"}, "body.verdict: expected one of pass, fail, inconclusive, error"),
        (_without(passed, "levels"), "body.levels: expected a list, got NoneType"),
        ({**passed, "levels": [level] * 65}, "body.levels: at most 64 levels, got 65"),
        ({**passed, "levels": [level, 3]}, "body.levels[1]: expected an object, got int"),
        (at(concurrency="4"), "body.levels[0].concurrency: expected an integer"),
        (at(concurrency=True), "body.levels[0].concurrency: expected an integer"),
        (at(concurrency=0), "body.levels[0].concurrency: 0 is not between 1"),
        (at(output_tokens_per_s="fast"), "body.levels[0].output_tokens_per_s: expected a number"),
        (at(ttft_ms={"p95": [1]}), "body.levels[0].ttft_ms.p95: expected a number"),
        (at(errors={"timeout": 1.5}), "body.levels[0].errors.timeout: expected an integer count"),
        ({**passed, "target": "http://x"}, "body.target: expected an object, got str"),
        ({**passed, "thresholds": [{"flag": "-x"}]}, "body.thresholds[0].passed: expected true or false"),
    ]
    for body, message in cases:
        answer = await call(http, "POST", "/api/v1/workloads/ml/llm/probes", 400, body)
        assert answer["error"]["message"].startswith(message), (message, answer)
    for raw, message in ((b"", "body: the probe's JSON document"), (b"{", "body is not JSON")):
        answer = await call(http, "POST", "/api/v1/workloads/ml/llm/probes", 400, raw)
        assert answer["error"]["message"].startswith(message), answer
    big = json.dumps({**passed, "padding": "x" * (256 * 1024)}).encode()
    async with http.post("/api/v1/workloads/ml/llm/probes", data=big) as r:
        assert r.status == 413
        assert "(max_probe_bytes)" in (await r.json())["error"]["message"]
    assert (await call(http, "GET", "/api/v1/workloads/ml/llm/probes", 200))["probes"] == []  # none stored


async def test_at_most_50_results_are_kept_per_workload(
    rig: tuple[Running, aiohttp.ClientSession], passed: dict[str, Any]
) -> None:
    _, http = rig
    ids = [
        (await call(http, "POST", "/api/v1/workloads/ml/llm/probes", 201, passed))["probe"]["id"]
        for _ in range(52)
    ]
    listed = await call(http, "GET", "/api/v1/workloads/ml/llm/probes?limit=50", 200)
    assert [p["id"] for p in listed["probes"]] == ids[:1:-1]  # the newest 50, newest first
    for dropped in ids[:2]:
        await call(http, "GET", f"/api/v1/workloads/ml/llm/probes/{dropped}", 404, doc_path="")


async def test_secret_shaped_strings_are_redacted_in_the_stored_document(
    rig: tuple[Running, aiohttp.ClientSession], failed: dict[str, Any]
) -> None:
    running, http = rig
    doc = copy.deepcopy(failed)
    # An engine's error echoing the key, a header in a reason: what a real 401 answer can carry.
    doc["levels"][0]["error_examples"] = {"http_401": [f"HTTP 401: Incorrect API key provided: {ECHOED_KEY}"]}
    doc["reasons"].append(f"Authorization: Bearer {ECHOED_KEY}")
    doc["target"]["note"] = {f"api_key={ECHOED_KEY}": ECHOED_KEY}
    stored = (await call(http, "POST", "/api/v1/workloads/ml/llm/probes", 201, doc))["probe"]
    text = json.dumps(stored)
    assert ECHOED_KEY not in text and "redacted:sha256:" in text
    example = stored["document"]["levels"][0]["error_examples"]["http_401"][0]
    assert example.startswith("HTTP 401: Incorrect API key provided: redacted:sha256:")
    assert stored["document"]["levels"][0]["requests"] == failed["levels"][0]["requests"]  # numbers untouched
    await running.collector.stop()  # the store's file, WAL included, holds no trace of it either
    for path in running.db.parent.glob(running.db.name + "*"):
        assert ECHOED_KEY.encode() not in path.read_bytes(), path


async def test_a_read_token_cannot_post_a_result(tmp_path: Path, passed: dict[str, Any]) -> None:
    tokens = token_file(tmp_path / "tokens", f"read {READ_TOKEN}", f"admin {ADMIN_TOKEN}")
    settings = settings_for(tmp_path, api_tokens=tokens, shutdown_grace_s=0.5)
    async with (
        started(settings, tmp_path) as running,
        aiohttp.ClientSession(base_url=running.http, timeout=TIMEOUT) as http,
    ):
        await pod(running, "llm-0")
        await settle(running)
        url = "/api/v1/workloads/ml/llm/probes"
        read = {"Authorization": f"Bearer {READ_TOKEN}"}
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        await call(http, "POST", url, 401, passed, doc_path="")
        await call(http, "POST", url, 403, passed, doc_path="", headers=read)
        stored = (await call(http, "POST", url, 201, passed, headers=admin))["probe"]
        listed = await call(http, "GET", url, 200, headers=read)
        assert [p["id"] for p in listed["probes"]] == [stored["id"]]
        await call(http, "GET", f"{url}/{stored['id']}", 200, doc_path=ROUTE + "/{id}", headers=read)
        await call(
            http, "GET", "/api/v1/workloads/ml/llm/verification", 200,
            doc_path="/api/v1/workloads/{namespace}/{name}/verification", headers=read,
        )  # fmt: skip


async def test_the_workload_view_status_and_evidence_show_the_latest_result(
    rig: tuple[Running, aiohttp.ClientSession],
    passed: dict[str, Any],
    failed: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    running, http = rig
    view = await call(
        http, "GET", "/api/v1/workloads/ml/llm", 200, doc_path="/api/v1/workloads/{namespace}/{name}"
    )
    assert view["probe"] is None
    assert await run(["status", "ml/llm", "--collector", running.http]) == 0
    assert "probe: none stored" in capsys.readouterr().out
    await call(http, "POST", "/api/v1/workloads/ml/llm/probes", 201, passed)
    latest = (await call(http, "POST", "/api/v1/workloads/ml/llm/probes", 201, failed))["probe"]
    view = await call(
        http, "GET", "/api/v1/workloads/ml/llm", 200, doc_path="/api/v1/workloads/{namespace}/{name}"
    )
    assert view["probe"] == {k: v for k, v in latest.items() if k != "document"}

    assert await run(["status", "ml/llm", "--collector", running.http]) == 0
    out = capsys.readouterr().out
    [line] = [ln for ln in out.splitlines() if ln.startswith("probe: ")]
    levels = failed["levels"]
    assert line.startswith("probe: fail 20") and f"(#{latest['id']})" in line
    for lv in levels:
        tokens = f"{lv['output_tokens_per_s']:.0f} tok/s"
        assert f"c{lv['concurrency']} {tokens} TTFT p95 {lv['ttft_ms']['p95']:.0f} ms" in line, line
    assert line.endswith("; failed --max-ttft-ms")

    evidence_path = "/api/v1/workloads/{namespace}/{name}/evidence"
    async with http.get("/api/v1/workloads/ml/llm/evidence") as r:
        bundle = await r.json()
    conforms(
        bundle,
        DOC["paths"][evidence_path]["get"]["responses"]["200"]["content"]["application/json"]["schema"],
    )
    assert bundle["probe"] == view["probe"]
    async with http.get("/api/v1/workloads/ml/llm/evidence?format=markdown") as r:
        markdown = await r.text()
    section = markdown.split("## Latest probe\n", 1)[1].split("\n## ", 1)[0]
    assert f"Verdict `fail`, probe result {latest['id']}, recorded at 20" in section
    assert f"model `{MODEL}`" in section
    assert "| concurrency | requests/s | output tokens/s | TTFT p95 ms | E2E p99 ms | errors |" in section
    for lv in levels:
        assert (
            f"| {lv['concurrency']} | {lv['requests_per_s']:.1f} | {lv['output_tokens_per_s']:.1f} |"
            in section
        )
    assert "Failed thresholds: `--max-ttft-ms`." in section
