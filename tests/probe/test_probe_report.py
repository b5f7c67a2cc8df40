"""The probe's verdict (pure): thresholds per level, what the client's saturation excuses and what it
does not, unmeasured metrics, the document's shape, progress only on a terminal."""

from __future__ import annotations

import io

from skewwatch.probe.client import RequestResult
from skewwatch.probe.report import ProgressLine, decide, document, judge, render_json, render_table
from skewwatch.probe.stats import LevelStats, level_stats


def level(
    concurrency: int, *, ttft: float = 0.2, errors: int = 0, pool_wait: float = 0.0, ok: int = 4
) -> LevelStats:
    results = []
    for i in range(ok + errors):
        r = RequestResult(
            i,
            False,
            "p",
            start=float(i),
            end=float(i) + 1.0,
            ttft=ttft,
            itl=[0.02] * 3,
            completion_tokens=4,
            token_source="usage",
            pool_wait=pool_wait,
        )
        if i >= ok:
            r.error, r.detail, r.token_source, r.completion_tokens = "http_5xx", "HTTP 503", "none", 0
        results.append(r)
    return level_stats(concurrency, ok + errors, results, [])


def test_each_threshold_is_judged_at_each_level() -> None:
    levels = [level(1, ttft=0.1), level(4, ttft=0.4)]
    judged = judge(levels, {"max_ttft_ms": 300, "min_tokens_per_s": 1})
    assert [(j.check.flag, j.concurrency, j.passed) for j in judged] == [
        ("--max-ttft-ms", 1, True),
        ("--max-ttft-ms", 4, False),
        ("--min-tokens-per-s", 1, True),
        ("--min-tokens-per-s", 4, True),
    ]
    outcome = decide(levels, judged, None)
    assert outcome.verdict == "fail" and outcome.exit_code == 1
    assert outcome.reasons == (
        "FAIL --max-ttft-ms 300: ttft_ms.p95 at concurrency 4 = 400 ms (needs <= 300 ms)",
    )


def test_a_latency_failure_where_the_client_was_saturated_is_inconclusive() -> None:
    levels = [level(1, ttft=0.1), level(8, ttft=0.9, pool_wait=0.5)]
    assert levels[1].client.saturated and not levels[0].client.saturated
    outcome = decide(levels, judge(levels, {"max_ttft_ms": 300}), None)
    assert outcome.verdict == "inconclusive" and outcome.exit_code == 2
    assert "client was saturated" in outcome.reasons[0]


def test_an_error_rate_failure_is_blamed_even_on_a_saturated_level() -> None:
    levels = [level(8, errors=2, pool_wait=0.5)]
    outcome = decide(levels, judge(levels, {"max_error_rate": 0.1}), None)
    assert outcome.verdict == "fail"
    assert "error_rate at concurrency 8 = 0.3333" in outcome.reasons[0]


def test_a_metric_not_measured_fails_its_threshold() -> None:
    # Non-streamed answers without usage: no token count, so no tokens/s to compare.
    unknown = [RequestResult(i, False, "p", start=float(i), end=i + 1.0) for i in range(3)]
    levels = [level(1), level_stats(2, 3, unknown, [])]
    assert levels[1].output_tokens_per_s is None
    judged = judge(levels, {"min_tokens_per_s": 1})
    assert [j.passed for j in judged] == [True, False]
    assert "output_tokens_per_s at concurrency 2 = not measured" in judged[1].line()
    assert decide(levels, judged, None).verdict == "fail"


def test_a_pass_on_a_saturated_level_says_the_server_did_at_least_this_well() -> None:
    levels = [level(8, pool_wait=0.5)]
    outcome = decide(levels, judge(levels, {"max_ttft_ms": 300}), None)
    assert outcome.verdict == "pass" and "at least this well" in outcome.reasons[0]


def test_no_success_anywhere_is_an_error_and_a_cut_plan_is_inconclusive() -> None:
    failed = [level(1, ok=0, errors=3)]
    assert decide(failed, [], None).verdict == "error"
    assert "every request failed (http_5xx 3): HTTP 503" in decide(failed, [], None).reasons[0]
    cut = decide([level(1)], [], "--timeout 5 s reached at concurrency 1 after 3 of 9 requests")
    assert cut.verdict == "inconclusive" and cut.reasons[-1].startswith("--timeout 5 s")
    assert decide([], [], "--timeout 1 s reached before concurrency 1").verdict == "error"


def test_the_document_and_the_table_carry_levels_load_and_thresholds() -> None:
    levels = [level(1), level(4, ttft=0.4)]
    judged = judge(levels, {"max_ttft_ms": 300})
    doc = document(
        outcome=decide(levels, judged, None),
        target={"endpoint": "http://e:8000", "model": "m", "api_key": "$OPENAI_API_KEY"},
        plan={
            "name": "w",
            "version": 1,
            "digest": "sha256:" + "0" * 64,
            "api": "chat",
            "stream": True,
            "max_tokens": 8,
        },
        load={"shape": "closed-loop", "description": "closed loop", "levels": [1, 4]},
        levels=levels,
        judgements=judged,
        started_at="2026-01-01T00:00:00+00:00",
        duration_s=1.0,
    )
    assert doc["schema"] == "skewwatch.probe/v1" and doc["verdict"] == "fail"
    assert [lv["concurrency"] for lv in doc["levels"]] == [1, 4]
    assert set(doc["levels"][0]) >= {
        "requests_per_s",
        "output_tokens_per_s",
        "ttft_ms",
        "itl_ms",
        "e2e_ms",
        "errors",
        "error_rate",
        "client",
        "token_source",
    }
    assert doc["thresholds"][1] == {
        "flag": "--max-ttft-ms",
        "metric": "ttft_ms.p95",
        "direction": "max",
        "limit": 300,
        "unit": "ms",
        "concurrency": 4,
        "measured": 400.0,
        "passed": False,
        "client_saturated": False,
    }
    assert '"verdict": "fail"' in render_json(doc)
    table = render_table(doc)
    assert "FAIL --max-ttft-ms 300: ttft_ms.p95 at concurrency 4 = 400 ms" in table
    assert table.rstrip().endswith("verdict: FAIL (exit 1)")


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_shown_on_a_terminal_only() -> None:
    piped, tty = io.StringIO(), _Tty()
    for stream in (piped, tty):
        line = ProgressLine(stream)
        line(4, 1, 2, 0)
        line(4, 2, 2, 1)
        line.close()
    assert piped.getvalue() == ""
    assert tty.getvalue() == (
        "\rprobe: concurrency 4: 1/2 requests, 0 failed \rprobe: concurrency 4: 2/2 requests, 1 failed \n"
    )
