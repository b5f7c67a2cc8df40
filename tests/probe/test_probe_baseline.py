"""``skewwatch probe --baseline NAMESPACE/NAME`` against a collector: the comparable level chosen
and judged, no comparable level, the result stored with the workload (and no API key with it), a
missing baseline, the collector's token and timeout.

The baselines are what a real collector answers (``record_answers`` feeds one observation
windows over gRPC and records them); the stand-in collector serves those answers and takes the
POSTs. The stand-in engine answers in 0.2 s to the first token and 0.3 s in all (6 tokens), so
at concurrency 1 it sustains about 3.3 requests/s and 20 tokens/s: the recorded ``ml/llm``
baseline. A 0.4 s first token halves the rate at concurrency 1 and needs concurrency 2 for it.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from skewwatch import probe as probe_command
from tests.probe.standin_collector import StandinCollector, record_answers, serve_collector, window
from tests.probe.standin_server import MODEL, Behaviour, serve
from tests.support.collector import (
    hello_msg,
    make_snapshot,
    observations_msg,
    settings_for,
    snapshot_msg,
    started,
)

PERF = {
    "ttft_seconds_p95": 0.2,
    "e2e_latency_seconds_p95": 0.3,
    "e2e_latency_seconds_p99": 0.32,
    "generation_tokens_per_s": 20.0,
}
API_KEY = "sk-probe-engine-key-0123456789"
TOKEN = "collector-token-abcdef0123456789"


@pytest.fixture(scope="module")
def answers() -> dict[str, Any]:
    return record_answers({"llm": window(3.3, 1.0, PERF), "busy": window(50.0, 16.0, PERF)})


def standin(answers: dict[str, Any], **kw: Any) -> StandinCollector:
    return StandinCollector({k: v for k, v in answers.items() if k != "404"}, answers["404"], **kw)


def engine(first_token_s: float = 0.2) -> Behaviour:
    return Behaviour(first_token_delay=first_token_s, token_delay=0.02, tokens=6, api_key=API_KEY)


def probe(
    endpoint: str, collector: str, *extra: str, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    argv = [
        "--endpoint", endpoint, "--model", MODEL, "--concurrency", "1,2", "--requests", "6", "--warmup", "1",
        "--collector", collector, *extra,
    ]  # fmt: skip
    out, err = io.StringIO(), io.StringIO()
    code = probe_command.main(
        argv, stdout=out, stderr=err, env={"SKEWWATCH_PROBE_API_KEY": API_KEY, **(env or {})}
    )
    return code, out.getvalue(), err.getvalue()


def tokenfile(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    return path


def test_the_recorded_baseline_is_the_real_collectors_answer(answers: dict[str, Any]) -> None:
    b = answers["ml/llm"]["baseline"]
    assert answers["ml/llm"]["workload"] == "ml/Deployment/llm"
    assert b["load"] == {"requests_per_s": 3.3, "requests_running": 1.0}
    assert b["performance"] == PERF


def test_a_matching_server_passes_at_the_comparable_level_and_the_result_is_stored_without_the_key(
    answers: dict[str, Any], tmp_path: Path
) -> None:
    coll = standin(answers, token=TOKEN)
    with serve(engine()) as (url, server), serve_collector(coll) as collector:
        token = str(tokenfile(tmp_path))
        code, out, err = probe(url, collector, "--baseline", "ml/llm", "--token-file", token, "-o", "json")
    doc = json.loads(out)
    assert code == 0 and doc["verdict"] == "pass", doc["reasons"]
    b = doc["baseline"]
    assert b["comparable"] and b["concurrency"] == 1 and b["id"] == answers["ml/llm"]["baseline"]["id"]
    assert b["workload"] == "ml/Deployment/llm" and doc["workload"] == "ml/llm"
    assert 3.3 - 1.0 <= b["measured_requests_per_s"] <= 3.3 + 1.0
    assert {m["metric"]: m["ok"] for m in b["metrics"]} == dict.fromkeys(PERF, True)
    ttft = next(m for m in b["metrics"] if m["metric"] == "ttft_seconds_p95")
    assert ttft["baseline"] == 0.2 and 1.0 <= ttft["ratio"] <= 1.2 and ttft["limit_ratio"] == 1.25
    assert "server-side" in b["caveat"] and "client-side" in b["caveat"]
    assert server.counts.authorization[-1] == f"Bearer {API_KEY}"  # the engine got its key
    (post,) = coll.posts
    assert post.path == "/api/v1/workloads/ml/llm/probes"
    assert post.headers["Authorization"] == f"Bearer {TOKEN}"  # the collector's token, not the API key
    assert post.doc == doc  # the document printed is the document stored
    assert API_KEY.encode() not in post.raw and API_KEY not in json.dumps(post.headers)
    assert post.doc["target"]["api_key"] == "$SKEWWATCH_PROBE_API_KEY"
    assert (
        "stored: probe 1 of workload ml/Deployment/llm on " + collector in err
    )  # json: stdout is the document


def test_a_slower_server_fails_the_baseline_naming_the_metric(answers: dict[str, Any]) -> None:
    with serve(engine(first_token_s=0.4)) as (url, _), serve_collector(standin(answers)) as collector:
        code, out, _ = probe(url, collector, "--baseline", "ml/llm")
    assert code == 1, out
    # At concurrency 1 it does 2 requests/s: outside 3.3 +-1; concurrency 2 does 4.
    assert "compared at concurrency 2" in out
    assert "FAIL baseline ttft_seconds_p95 at concurrency 2: probe ttft_ms.p95 0.4" in out
    assert "vs baseline 0.2 s, x2.0" in out and "(needs <= x1.25)" in out
    assert "FAIL baseline e2e_latency_seconds_p95" in out
    assert "PASS baseline generation_tokens_per_s" in out  # two in flight make up the tokens/s
    assert "verdict: FAIL (exit 1)" in out and "stored: probe 1 of workload ml/Deployment/llm" in out


def test_no_comparable_level_is_inconclusive_unless_a_threshold_fails(answers: dict[str, Any]) -> None:
    coll = standin(answers)
    with serve(engine()) as (url, _), serve_collector(coll) as collector:
        code, out, _ = probe(url, collector, "--baseline", "ml/busy", "-o", "json")
        failing = probe(url, collector, "--baseline", "ml/busy", "--max-ttft-ms", "100", "-o", "json")
    doc = json.loads(out)
    assert code == 2 and doc["verdict"] == "inconclusive"
    assert doc["baseline"]["comparable"] is False and doc["baseline"]["metrics"] == []
    why = doc["baseline"]["why_not"]
    assert why.startswith("no level ran at a comparable load: the closest, concurrency 2")
    assert "the baseline at 50" in why and "±30% or ±0.5" in why and "try --concurrency near it" in why
    assert doc["reasons"][-1] == f"baseline ml/Deployment/busy: not comparable: {why}"
    assert failing[0] == 1 and json.loads(failing[1])["verdict"] == "fail"
    assert len(coll.posts) == 2  # an inconclusive or failed gate is recorded too


def test_a_missing_baseline_exits_two_naming_it_before_any_request(answers: dict[str, Any]) -> None:
    coll = standin(answers)
    with serve(engine()) as (url, server), serve_collector(coll) as collector:
        code, out, err = probe(url, collector, "--baseline", "ml/absent")
    assert (code, out) == (2, "")
    assert err.strip() == (
        "skewwatch probe: error: --baseline ml/absent: workload ml/absent is not known to this collector "
        "(HTTP 404)"
    )
    assert server.counts.requests == 0 and coll.posts == []


def test_record_stores_without_comparing(answers: dict[str, Any]) -> None:
    coll = standin(answers)
    with serve(engine()) as (url, _), serve_collector(coll) as collector:
        code, out, _ = probe(url, collector, "--record", "ml/new", "--concurrency", "1")
    assert code == 0 and coll.gets == []
    (post,) = coll.posts
    assert post.path == "/api/v1/workloads/ml/new/probes"
    assert post.doc["workload"] == "ml/new" and post.doc["baseline"] is None
    assert "stored: probe 1 of workload ml/Deployment/new" in out


def test_no_store_compares_only(answers: dict[str, Any]) -> None:
    coll = standin(answers)
    with serve(engine()) as (url, _), serve_collector(coll) as collector:
        code, out, _ = probe(url, collector, "--baseline", "ml/llm", "--no-store", "--concurrency", "1")
    assert code == 0 and coll.posts == [] and "stored:" not in out


def test_the_collectors_token_is_asked_for_and_taken_from_the_environment(
    answers: dict[str, Any], tmp_path: Path
) -> None:
    coll = standin(answers, token=TOKEN)
    with serve(engine()) as (url, server), serve_collector(coll) as collector:
        missing = probe(url, collector, "--baseline", "ml/llm")
        from_env = probe(url, collector, "--baseline", "ml/llm", "--concurrency", "1",
                         env={"SKEWWATCH_TOKEN_FILE": str(tokenfile(tmp_path))})  # fmt: skip
    assert missing[0] == 2 and "a bearer token is required" in missing[2]
    assert "give one: --token-file FILE, $SKEWWATCH_TOKEN_FILE or $SKEWWATCH_TOKEN" in missing[2]
    assert from_env[0] == 0, from_env
    assert [p.headers["Authorization"] for p in coll.posts] == [f"Bearer {TOKEN}"]
    assert TOKEN not in "".join(missing[1:] + from_env[1:]) and server.counts.requests == 7  # one level, once


def test_a_collector_that_does_not_answer_in_time_exits_two(answers: dict[str, Any]) -> None:
    coll = standin(answers, delay_s=2.0)
    with serve(engine()) as (url, server), serve_collector(coll) as collector:
        started = time.perf_counter()
        code, _, err = probe(url, collector, "--baseline", "ml/llm", "--collector-timeout", "0.3")
        took = time.perf_counter() - started
    assert code == 2 and f"--baseline ml/llm: cannot reach collector at {collector}: timed out" in err
    assert took < 1.5 and server.counts.requests == 0


def test_a_result_the_collector_refuses_is_reported_and_exits_two(answers: dict[str, Any]) -> None:
    coll = standin(answers, post_status=500)
    with serve(engine()) as (url, _), serve_collector(coll) as collector:
        code, out, err = probe(url, collector, "--baseline", "ml/llm", "--concurrency", "1")
    assert code == 2
    assert "verdict: PASS (exit 0)" in out  # the verdict is still shown
    assert (
        "skewwatch probe: error: result not stored with ml/llm: the store is not writable (HTTP 500)" in err
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "--collector needs --baseline NAMESPACE/NAME or --record NAMESPACE/NAME"),
        (["--baseline", "ml"], "--baseline: expected NAMESPACE/NAME"),
        (["--baseline", "ml/Deployment/llm"], "--baseline: expected NAMESPACE/NAME"),
        (["--record", "ml/llm", "--no-store"], "--record stores the result; --no-store contradicts it"),
        (["--baseline", "ml/llm", "--collector", "ftp://x"], "--collector: must be an http(s) URL"),
        (
            ["--baseline", "ml/llm", "--token-file", "/nonexistent/token"],
            "token file /nonexistent/token: cannot read",
        ),
    ],
)
def test_bad_collector_usage_exits_two(extra: list[str], message: str) -> None:
    code, out, err = probe("http://127.0.0.1:9", "http://127.0.0.1:9", *extra)
    assert (code, out) == (2, "") and message in err


async def test_against_a_real_collector_the_result_is_stored_and_listed_with_the_workload(
    tmp_path: Path,
) -> None:
    async with started(settings_for(tmp_path, baseline_stable_s=0), tmp_path) as running:
        s = running.stream()
        await s.exchange(hello_msg(1))
        await s.exchange(snapshot_msg(2, make_snapshot()))
        for seq in range(3, 8):
            await s.exchange(observations_msg(seq, window(3.3, 1.0, PERF)))
        async with aiohttp.ClientSession(running.http, timeout=aiohttp.ClientTimeout(total=10)) as http:
            async with http.post("/api/v1/baselines/ml/llm") as r:
                assert r.status == 201, await r.text()
            with serve(engine()) as (url, _):
                # The probe runs its own event loop: in a thread, beside the collector's.
                code, out, err = await asyncio.to_thread(
                    probe, url, running.http, "--baseline", "ml/llm", "--concurrency", "1", "-o", "json"
                )
            assert code == 0, (out, err)
            async with http.get("/api/v1/workloads/ml/llm/probes") as r:
                assert r.status == 200, await r.text()
                listed = await r.json()
                raw = json.dumps(listed)
    (brief,) = listed["probes"]
    assert f"stored: probe {brief['id']} of workload ml/Deployment/llm" in err
    assert brief["verdict"] == "pass" and API_KEY not in raw


def test_the_collector_url_defaults_to_the_client_commands_variable(answers: dict[str, Any]) -> None:
    coll = standin(answers)
    with serve(engine()) as (url, _), serve_collector(coll) as collector:
        out, err = io.StringIO(), io.StringIO()
        argv = [
            "--endpoint",
            url,
            "--model",
            MODEL,
            "--concurrency",
            "1",
            "--requests",
            "3",
            "--baseline",
            "ml/llm",
        ]
        env = {"SKEWWATCH_PROBE_API_KEY": API_KEY, "SKEWWATCH_COLLECTOR_URL": collector}
        code = probe_command.main(argv, stdout=out, stderr=err, env=env)
    assert code == 0 and coll.gets == ["/api/v1/baselines/ml/llm"] and len(coll.posts) == 1, err.getvalue()
