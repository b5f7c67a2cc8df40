"""``skewwatch probe`` end to end against the stand-in: the numbers, the verdict and the exit code
through the real entry point (:func:`skewwatch.cli.main`, and ``python -m skewwatch.cli`` as its
own process), the API key never shown, a saturated client reported instead of blamed on the server.

Tolerances as in test_probe_client: a measured latency may be late by scheduling on this shared
2-core machine, never early: -5 ms / +30 ms around the stand-in's delays.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from pathlib import Path
from typing import Any

import pytest

from skewwatch import cli
from skewwatch import probe as probe_command
from tests.probe.standin_server import MODEL, Behaviour, serve
from tests.support.cli import run_process

EARLY_MS = 5.0
LATE_MS = 30.0
FIRST_S = 0.2
GAP_S = 0.02
TOKENS = 6


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(["probe", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def base(url: str, *extra: str) -> list[str]:
    return ["--endpoint", url, "--model", MODEL, "--warmup", "1", *extra]


def steady() -> Behaviour:
    return Behaviour(first_token_delay=FIRST_S, token_delay=GAP_S, tokens=TOKENS)


def near(value: float | None, expected_ms: float) -> bool:
    return value is not None and expected_ms - EARLY_MS <= value <= expected_ms + LATE_MS


def test_measured_numbers_match_the_standins_latencies_and_pass(capsys: pytest.CaptureFixture[str]) -> None:
    with serve(steady()) as (url, server):
        code, out, err = run(
            base(
                url,
                "--concurrency",
                "1,3",
                "--requests",
                "6",
                "--max-ttft-ms",
                "300",
                "--min-tokens-per-s",
                "5",
                "-o",
                "json",
            ),
            capsys,
        )
    doc = json.loads(out)
    assert code == 0 and doc["verdict"] == "pass" and doc["exit_code"] == 0, doc["reasons"]
    assert err == ""  # no terminal: no progress
    e2e_s = FIRST_S + (TOKENS - 1) * GAP_S
    for level in doc["levels"]:
        n = level["concurrency"]
        assert near(level["ttft_ms"]["p50"], FIRST_S * 1000), level["ttft_ms"]
        assert near(level["itl_ms"]["p50"], GAP_S * 1000), level["itl_ms"]
        assert near(level["e2e_ms"]["p50"], e2e_s * 1000), level["e2e_ms"]
        assert level["token_source"] == {"usage": 6} and level["output_tokens"] == 6 * TOKENS
        assert level["prompt_tokens"]["min"] >= 23  # the stand-in counts words: the shipped prompts
        # A closed loop of n: about n requests every e2e; the gaps between requests cost a little.
        assert 0.75 * n * TOKENS / e2e_s <= level["output_tokens_per_s"] <= 1.02 * n * TOKENS / e2e_s
        assert level["requests"]["warmup"] == {"sent": 1, "failed": 0, "excluded": True}
    assert doc["load"]["shape"] == "closed-loop" and doc["load"]["retries"] == 0
    assert doc["load"]["levels_run"] == [1, 3]
    assert server.counts.requests == 2 * 7 and server.counts.max_in_flight == 3
    assert [t["passed"] for t in doc["thresholds"]] == [True] * 4


def test_a_failed_threshold_exits_one_naming_measured_and_limit(capsys: pytest.CaptureFixture[str]) -> None:
    with serve(steady()) as (url, _):
        code, out, _err = run(
            base(
                url,
                "--concurrency",
                "1",
                "--requests",
                "3",
                "--max-ttft-ms",
                "100",
                "--max-e2e-p99-ms",
                "5000",
            ),
            capsys,
        )
    assert code == 1
    assert "FAIL --max-ttft-ms 100: ttft_ms.p95 at concurrency 1 = 2" in out
    assert "(needs <= 100 ms)" in out
    assert "PASS --max-e2e-p99-ms 5000" in out
    assert "verdict: FAIL (exit 1)" in out


def test_warmup_requests_are_excluded_from_the_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    slow_start = Behaviour(
        first_token_delay=FIRST_S, token_delay=GAP_S, tokens=3, slow_first=2, slow_first_delay=0.6
    )
    with serve(slow_start) as (url, _):
        code, out, _ = run(
            [
                "--endpoint",
                url,
                "--model",
                MODEL,
                "--warmup",
                "2",
                "--concurrency",
                "1",
                "--requests",
                "4",
                "-o",
                "json",
            ],
            capsys,
        )
    level = json.loads(out)["levels"][0]
    assert code == 0
    assert level["requests"]["warmup"]["sent"] == 2 and level["ttft_ms"]["n"] == 4
    assert level["ttft_ms"]["max"] < FIRST_S * 1000 + LATE_MS  # the 800 ms warm-up TTFTs are not there


def test_every_request_refused_with_429_exits_two_and_nothing_is_retried(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with serve(Behaviour(status=429, retry_after="30")) as (url, server):
        code, out, _ = run(base(url, "--concurrency", "1,2", "--requests", "5", "-o", "json"), capsys)
    doc = json.loads(out)
    assert code == 2 and doc["verdict"] == "error"
    assert "every request failed (http_429 10)" in doc["reasons"][0]
    assert server.counts.requests == 2 * (1 + 5)  # each planned request sent exactly once
    assert doc["levels"][0]["retry_after"] == ["30"]


def test_an_unreachable_endpoint_exits_two_from_the_command_line(tmp_path: Path) -> None:
    with serve(steady()) as (url, _):
        pass  # the port is free again: nothing listens there
    proc = run_process("probe", "--endpoint", url, "--model", MODEL, "--connect-timeout", "2", timeout_s=60)
    assert proc.returncode == 2, proc.stderr
    assert "verdict: ERROR (exit 2)" in proc.stdout and "endpoint unreachable" in proc.stdout


def test_bad_usage_exits_two_with_the_file_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "w.yaml"
    bad.write_text("concurrency: [1, -4]\n")
    code, out, err = run(["--endpoint", "http://127.0.0.1:9", "--model", MODEL, "--plan", str(bad)], capsys)
    assert (code, out) == (2, "")
    assert (
        err.strip()
        == f"skewwatch probe: error: {bad}: concurrency[1]: must be an integer from 1 to 1024, got -4"
    )
    code, _, err = run(
        ["--endpoint", "http://127.0.0.1:9", "--model", MODEL, "--no-stream", "--max-ttft-ms", "5"], capsys
    )
    assert code == 2 and "--max-ttft-ms need a stream" in err
    code, _, err = run(["--endpoint", "ftp://x", "--model", MODEL], capsys)
    assert code == 2 and "--endpoint must be an http(s) URL" in err
    proc = run_process("probe", "--endpoint", "http://127.0.0.1:9", "--model", MODEL, "--concurrency", "0")
    assert proc.returncode == 2 and "--concurrency: each level must be from 1 to 1024" in proc.stderr


def test_the_api_key_never_shows_in_stdout_stderr_or_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "sk-probe-secret-0123456789"
    wrong = "sk-wrong-secret-9876543210"
    keyfile = tmp_path / "key"
    keyfile.write_text(key + "\n")
    fast = {"first_token_delay": 0.0, "token_delay": 0.0, "tokens": 2, "api_key": key}
    with serve(Behaviour(**fast)) as (url, server):  # type: ignore[arg-type]
        good = run(
            base(url, "--concurrency", "1", "--requests", "2", "--api-key-file", str(keyfile), "-o", "json"),
            capsys,
        )
        monkeypatch.setenv("OPENAI_API_KEY", wrong)
        refused_json = run(base(url, "--concurrency", "1", "--requests", "2", "-o", "json"), capsys)
        refused_table = run(base(url, "--concurrency", "1", "--requests", "2"), capsys)
    assert good[0] == 0 and server.counts.authorization[0] == f"Bearer {key}"
    assert json.loads(good[1])["target"]["api_key"] == f"API key file {keyfile}"
    assert refused_json[0] == 2 and "HTTP 401" in refused_json[1]
    assert "<redacted>" in refused_json[1] and "<redacted>" in refused_table[1]  # the server echoed it
    assert json.loads(refused_json[1])["target"]["api_key"] == "$OPENAI_API_KEY"
    for _code, out, err in (good, refused_json, refused_table):
        assert key not in out + err and wrong not in out + err


def _saturated(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["levels"][0]["client"]  # type: ignore[no-any-return]


def test_a_pool_smaller_than_the_load_is_reported_as_client_saturation(
    capsys: pytest.CaptureFixture[str],
) -> None:
    fast = Behaviour(first_token_delay=0.05, token_delay=0.0, tokens=2)
    with serve(fast) as (url, server):
        code, out, _ = run(
            base(
                url,
                "--concurrency",
                "4",
                "--requests",
                "8",
                "--max-connections",
                "1",
                "--max-e2e-p99-ms",
                "60",
                "-o",
                "json",
            ),
            capsys,
        )
    doc = json.loads(out)
    client = _saturated(doc)
    assert server.counts.max_in_flight == 1  # the pool, not the server, held the others back
    assert client["saturated"] and "connection-pool wait p99" in client["reasons"][0]
    assert client["pool_wait_ms"]["p99"] > 100
    # The end-to-end p99 includes the queueing: the threshold fails, but not on the server.
    assert code == 2 and doc["verdict"] == "inconclusive"
    assert doc["thresholds"][0]["passed"] is False and doc["thresholds"][0]["client_saturated"] is True
    assert "client was saturated" in doc["reasons"][0]


def test_a_blocked_event_loop_is_reported_and_latency_not_blamed_on_the_server() -> None:
    async def busy_client() -> None:
        while True:  # parsing, logging, a slow callback: the loop cannot run the requests' reads
            time.sleep(0.04)  # noqa: ASYNC251 (blocking on purpose)
            await asyncio.sleep(0.005)

    with serve(Behaviour(first_token_delay=0.05, token_delay=0.01, tokens=4)) as (url, _):
        argv = f"--endpoint {url} --model {MODEL} --warmup 0 --concurrency 2 --requests 4 --max-ttft-ms 45"
        out, err = io.StringIO(), io.StringIO()
        code = probe_command.main(
            [*argv.split(), "-o", "json"], stdout=out, stderr=err, env={}, hook=busy_client
        )
    doc = json.loads(out.getvalue())
    client = _saturated(doc)
    assert client["saturated"] and "event-loop lag p99" in client["reasons"][0]
    assert client["loop_lag_ms"]["p99"] > 25
    # The stand-in's TTFT is 50 ms, so a 45 ms limit fails; the client was saturated: not judged.
    assert doc["thresholds"][0]["passed"] is False and doc["thresholds"][0]["client_saturated"] is True
    assert code == 2 and doc["verdict"] == "inconclusive"


def test_timeout_bounds_the_whole_probe(capsys: pytest.CaptureFixture[str]) -> None:
    with serve(Behaviour(first_token_delay=0.3, token_delay=0.0, tokens=2)) as (url, server):
        started = time.perf_counter()
        code, out, _ = run(
            base(url, "--concurrency", "1,2", "--requests", "50", "--timeout", "1", "-o", "json"), capsys
        )
        took = time.perf_counter() - started
    doc = json.loads(out)
    assert took < 3.0
    assert code == 2 and doc["verdict"] == "inconclusive" and doc["load"]["stopped_by_timeout"] is True
    assert "--timeout 1 s reached at concurrency 1" in doc["reasons"][-1]
    assert doc["load"]["levels_run"] == [1] and server.counts.requests <= 5


def test_a_stream_that_fails_mid_way_is_a_stream_error_in_the_table(
    capsys: pytest.CaptureFixture[str],
) -> None:
    broken = Behaviour(first_token_delay=0.01, token_delay=0.0, tokens=6, error_after=2)
    with serve(broken) as (url, _):
        code, out, _ = run(base(url, "--concurrency", "1", "--requests", "2"), capsys)
    assert code == 2
    assert "errors at 1: stream_error x2: error event after 2 content chunk(s)" in out


def test_a_fault_of_the_probe_itself_exits_two_not_fail(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 1 means the server failed the test; a crash of the probe must never read as that."""
    from skewwatch.probe import report

    key = "sk-probe-secret-0123456789"

    async def broken(*_: object) -> dict[str, Any]:
        raise RuntimeError(f"bad state (Authorization: Bearer {key})")

    monkeypatch.setattr(report, "execute", broken)
    monkeypatch.setenv("SKEWWATCH_PROBE_API_KEY", key)
    code, out, err = run(["--endpoint", "http://127.0.0.1:9", "--model", MODEL], capsys)
    assert code == 2 and out == ""
    assert "the probe could not run: RuntimeError: bad state" in err and key not in err
