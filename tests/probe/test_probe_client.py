"""The probe's client: SSE framing and the engines' chunk shapes (pure), then real requests to the
stand-in with latencies it controls, measured within stated tolerances.

Tolerances: the stand-in sleeps on its own event loop in a thread beside the client's, on a
2-core machine shared with other work, so a measured delay may run late by scheduling, never
early; each timing assertion allows -5 ms (clock granularity) and +30 ms.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from skewwatch.probe.client import (
    REDACTED,
    ApiKey,
    BadChunk,
    ProbeClient,
    SseParser,
    Timeouts,
    endpoint_url,
    interpret,
    plaintext_warning,
    read_api_key,
)
from skewwatch.probe.plan import PlannedRequest, ProbeUsageError, Prompt
from tests.probe.standin_server import MODEL, Behaviour, serve

EARLY_S = 0.005
LATE_S = 0.030
PROMPT = Prompt("p", "one two three four five", 5)


def request(index: int = 0) -> PlannedRequest:
    return PlannedRequest(index, False, PROMPT, 7 + index)


def client(
    url: str,
    *,
    api: str = "chat",
    stream: bool = True,
    key: ApiKey | None = None,
    timeouts: Timeouts | None = None,
    max_tokens: int = 8,
) -> ProbeClient:
    return ProbeClient(
        url,
        MODEL,
        "chat" if api == "chat" else "completions",
        stream=stream,
        max_tokens=max_tokens,
        temperature=0.0,
        ignore_eos=True,
        key=key,
        timeouts=timeouts or Timeouts(),
        max_connections=4,
    )


def within(measured: float | None, expected: float) -> bool:
    return measured is not None and expected - EARLY_S <= measured <= expected + LATE_S


# --- SSE framing and chunk shapes (pure) ----------------------------------------------------------


def test_sse_events_split_across_reads_and_crlf_come_out_whole() -> None:
    p = SseParser()
    assert p.feed(b'data: {"a"') == []
    assert p.feed(b": 1}\r\n\r\n: a comment\n\nevent: x\ndata: [DO") == ['{"a": 1}']
    assert p.feed(b"NE]\n\n") == ["[DONE]"]
    assert p.feed(b"data: one\ndata: two\n\n") == ["one\ntwo"]
    assert p.feed(b"data:nospace\n\n") == ["nospace"]


def test_an_sse_event_over_the_limit_is_refused() -> None:
    p = SseParser(max_event_bytes=64)
    with pytest.raises(BadChunk, match="over 64 bytes"):
        p.feed(b"data: " + b"x" * 100)


def test_vllm_role_chunk_is_no_token_and_its_usage_chunk_is_read() -> None:
    role = {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
    assert interpret(json.dumps(role), "chat").text == ""
    usage = {"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 40, "total_tokens": 52}}
    chunk = interpret(json.dumps(usage), "chat")
    assert (chunk.text, chunk.completion_tokens, chunk.prompt_tokens) == ("", 40, 12)


def test_content_reasoning_and_completion_text_are_generated_text() -> None:
    assert interpret('{"choices": [{"delta": {"content": " hi"}}]}', "chat").text == " hi"
    assert interpret('{"choices": [{"delta": {"reasoning_content": "hm"}}]}', "chat").text == "hm"
    assert interpret('{"choices": [{"text": " yes", "index": 0}]}', "completions").text == " yes"
    continuous = '{"choices": [{"delta": {"content": "a"}}], "usage": {"completion_tokens": 3}}'
    assert interpret(continuous, "chat").completion_tokens == 3  # vLLM continuous_usage_stats


def test_error_events_of_vllm_sglang_and_tgi_are_errors() -> None:
    vllm = '{"error": {"message": "boom", "type": "InternalServerError", "code": 500}}'
    tgi = '{"error": "Request failed during generation", "error_type": "generation"}'
    assert interpret(vllm, "chat").error == "InternalServerError: 500: boom"
    assert interpret(tgi, "chat").error == "generation: Request failed during generation"
    assert interpret('{"object": "error", "message": "old vllm"}', "chat").error == "old vllm"


@pytest.mark.parametrize("data", ["not json", "[1, 2]", '{"id": "x"}'])
def test_a_chunk_that_is_not_an_openai_chunk_is_a_bad_chunk(data: str) -> None:
    with pytest.raises(BadChunk):
        interpret(data, "chat")


# --- the API key ----------------------------------------------------------------------------------


def test_the_key_comes_from_the_file_then_the_probe_variable_then_openai(tmp_path: Path) -> None:
    f = tmp_path / "key"
    f.write_text("sk-file-123\n")
    env = {"SKEWWATCH_PROBE_API_KEY": "sk-probe", "OPENAI_API_KEY": "sk-openai"}
    assert read_api_key(f, env) == ApiKey("sk-file-123", f"API key file {f}")
    assert read_api_key(None, {**env, "SKEWWATCH_PROBE_API_KEY_FILE": str(f)}).value == "sk-file-123"  # type: ignore[union-attr]
    assert read_api_key(None, env) == ApiKey("sk-probe", "$SKEWWATCH_PROBE_API_KEY")
    assert read_api_key(None, {"OPENAI_API_KEY": "sk-openai"}) == ApiKey("sk-openai", "$OPENAI_API_KEY")
    assert read_api_key(None, {}) is None
    assert "sk-" not in repr(read_api_key(None, env))


def test_a_bad_key_file_is_named_without_the_key(tmp_path: Path) -> None:
    f = tmp_path / "key"
    f.write_text("two words\n")
    with pytest.raises(ProbeUsageError) as e:
        read_api_key(f, {})
    assert str(f) in str(e.value) and "two" not in str(e.value)
    with pytest.raises(ProbeUsageError, match="cannot read"):
        read_api_key(tmp_path / "absent", {})


def test_the_endpoint_is_a_base_url_without_credentials() -> None:
    assert endpoint_url("http://vllm:8000/v1/") == "http://vllm:8000"
    assert endpoint_url("https://gw.example/llm") == "https://gw.example/llm"
    with pytest.raises(ProbeUsageError, match="must not carry credentials"):
        endpoint_url("http://user:sk-secret@vllm:8000")
    with pytest.raises(ProbeUsageError, match="http"):
        endpoint_url("vllm:8000")


def test_a_key_over_plain_http_off_loopback_is_warned_about_without_the_key() -> None:
    key = ApiKey("sk-abc", "$OPENAI_API_KEY")
    warning = plaintext_warning("http://vllm.ns.svc:8000", key)
    assert warning is not None and "vllm.ns.svc" in warning and "sk-abc" not in warning
    assert plaintext_warning("http://127.0.0.1:8000", key) is None
    assert plaintext_warning("https://vllm:8000", key) is None
    assert plaintext_warning("http://vllm:8000", None) is None


# --- real requests to the stand-in ----------------------------------------------------------------


async def test_ttft_and_inter_token_latency_match_the_servers_delays() -> None:
    with serve(Behaviour(first_token_delay=0.2, token_delay=0.03, tokens=6)) as (url, _):
        async with client(url) as c:
            r = await c.send(request())
    assert r.ok, r.detail
    assert within(r.ttft, 0.2), r.ttft
    assert len(r.itl) == 5 and all(within(gap, 0.03) for gap in r.itl), r.itl
    assert within(r.e2e, 0.2 + 5 * 0.03), r.e2e
    assert (r.completion_tokens, r.token_source, r.content_chunks, r.prompt_tokens) == (6, "usage", 6, 5)


async def test_tokens_come_from_usage_when_sent_and_are_counted_chunks_otherwise() -> None:
    fast = {"first_token_delay": 0.01, "token_delay": 0.0, "tokens": 9, "chunk_tokens": 3}
    with serve(Behaviour(**fast)) as (url, server):  # type: ignore[arg-type]
        async with client(url) as c:
            with_usage = await c.send(request())
    with serve(Behaviour(**fast, usage=False)) as (url, _):  # type: ignore[arg-type]
        async with client(url) as c:
            counted = await c.send(request())
    # Three tokens a chunk: usage says 9, counting chunks can only say 3, and the result says which.
    assert (with_usage.completion_tokens, with_usage.token_source, with_usage.content_chunks) == (
        9,
        "usage",
        3,
    )
    assert (counted.completion_tokens, counted.token_source, counted.content_chunks) == (3, "chunks", 3)
    assert server.counts.bodies[0]["stream_options"] == {"include_usage": True}


async def test_completions_api_and_non_streamed_answers_are_measured() -> None:
    with serve(Behaviour(first_token_delay=0.05, token_delay=0.01, tokens=4)) as (url, server):
        async with client(url, api="completions") as c:
            streamed = await c.send(request())
        async with client(url, stream=False) as c:
            whole = await c.send(request(1))
    assert streamed.ok and within(streamed.ttft, 0.05) and streamed.completion_tokens == 4
    assert whole.ok and whole.ttft is None and whole.itl == []
    assert (whole.completion_tokens, whole.token_source) == (4, "usage")
    assert within(whole.e2e, 0.05 + 3 * 0.01)
    assert server.counts.by_path == {"/v1/completions": 1, "/v1/chat/completions": 1}
    assert "stream_options" not in server.counts.bodies[1] and server.counts.bodies[1]["seed"] == 8


@pytest.mark.parametrize("style", ["vllm", "tgi"])
async def test_an_error_event_mid_stream_is_a_stream_error(style: str) -> None:
    with serve(
        Behaviour(first_token_delay=0.01, token_delay=0.0, tokens=8, error_after=3, error_style=style)
    ) as (url, _):
        async with client(url) as c:
            r = await c.send(request())
    assert r.error == "stream_error"
    assert "after 3 content chunk(s)" in r.detail
    assert ("engine died" if style == "vllm" else "out of memory") in r.detail


async def test_a_stream_cut_before_done_is_a_stream_error() -> None:
    with serve(Behaviour(first_token_delay=0.01, token_delay=0.0, tokens=8, cut_after=2)) as (url, server):
        async with client(url) as c:
            r = await c.send(request())
    assert r.error == "stream_error", (r.error, r.detail)
    assert r.content_chunks == 2 and server.counts.requests == 1  # not resent on the dropped connection


async def test_a_429_is_counted_with_its_retry_after_and_never_retried() -> None:
    with serve(Behaviour(status=429, retry_after="7")) as (url, server):
        async with client(url) as c:
            results = [await c.send(request(i)) for i in range(3)]
    assert [r.error for r in results] == ["http_429"] * 3
    assert results[0].retry_after == "7" and "HTTP 429" in results[0].detail
    assert server.counts.requests == 3  # one request each: nothing resent


async def test_5xx_4xx_connect_and_timeout_are_their_own_kinds() -> None:
    with serve(Behaviour(status=503)) as (url, _):
        async with client(url) as c:
            assert (await c.send(request())).error == "http_5xx"
    with serve(Behaviour()) as (url, _):
        async with ProbeClient(
            url,
            "no-such-model",
            "chat",
            stream=True,
            max_tokens=4,
            temperature=0,
            ignore_eos=False,
            key=None,
            timeouts=Timeouts(),
            max_connections=1,
        ) as c:
            missing = await c.send(request())
    assert missing.error == "http_4xx" and "does not exist" in missing.detail
    with serve(Behaviour(first_token_delay=1.0)) as (url, _):
        async with client(url, timeouts=Timeouts(connect_s=1, read_s=0.2, request_s=5)) as c:
            slow = await c.send(request())
    assert slow.error == "timeout"
    assert 0.2 - EARLY_S <= slow.e2e <= 0.2 + 0.2  # the read timeout, not the server's 1 s
    async with client(url) as c:  # that server is gone: nothing listens on its port now
        refused = await c.send(request())
        assert await c.reachable(5.0) is not None
    assert refused.error == "connect"


async def test_the_key_is_sent_as_a_bearer_and_redacted_from_what_comes_back() -> None:
    with serve(Behaviour(api_key="sk-right-one", tokens=2, first_token_delay=0.0)) as (url, server):
        async with client(url, key=ApiKey("sk-right-one", "test")) as c:
            good = await c.send(request())
        async with client(url, key=ApiKey("sk-wrong-key-42", "test")) as c:
            bad = await c.send(request())
    assert good.ok and server.counts.authorization[0] == "Bearer sk-right-one"
    assert bad.error == "http_4xx" and "HTTP 401" in bad.detail
    assert "sk-wrong-key-42" not in bad.detail and REDACTED in bad.detail  # the server echoed it


async def test_pool_waits_are_measured_when_requests_outnumber_connections() -> None:
    import asyncio

    with serve(Behaviour(first_token_delay=0.1, token_delay=0.0, tokens=2)) as (url, _):
        c = ProbeClient(
            url,
            MODEL,
            "chat",
            stream=True,
            max_tokens=2,
            temperature=0,
            ignore_eos=True,
            key=None,
            timeouts=Timeouts(),
            max_connections=1,
        )
        async with c:
            results = await asyncio.gather(*(c.send(request(i)) for i in range(3)))
    waits = sorted(r.pool_wait for r in results)
    assert all(r.ok for r in results)
    assert waits[0] < 0.01  # the first got the one connection at once
    assert within(waits[1], 0.1) and within(waits[2], 0.2), waits  # the others queued for it
    assert sum(r.connect is not None for r in results) == 1  # one connection, reused
