"""The HTTP API under hostile input: every request gets a quick, declared, JSON answer.

Each test is one attack of the hardening issue against a real collector on a real port: bodies
that are not UTF-8 or name a bogus charset, JSON and YAML nested past any sane depth, a
100,000-digit integer, a Content-Length the client never honours (408 quickly) or that is
absurd (413 at once), TRACE and other undeclared methods (405 JSON with Allow), and eight
concurrent 200 kB intent uploads while /healthz must stay fast (the parse runs off the loop).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from collector.api import body as api_body
from collector.api.app import create_app
from collector.errors import OverloadedError, ProcessingTimeoutError
from collector.main import Collector
from collector.service.pods import Pods
from collector.store.sqlite import SqliteStore
from tests.support.collector import Running, settings_for, started, wait_until
from tests.support.openapi import DOC, conforms

TIMEOUT = aiohttp.ClientTimeout(total=20)
READ_TIMEOUT_S = 1.0
QUICK_S = 3.0  # "quick": well inside any client's patience, far from a hang

# Every route that reads a body, with a valid-looking JSON body for it.
JSON_BODY_ROUTES = [
    ("POST", "/api/v1/findings/1/ack"),
    ("POST", "/api/v1/findings/1/silence"),
    ("POST", "/api/v1/baselines/ml/llm"),
]
INTENT_ROUTES = [("POST", "/api/v1/intents"), ("PUT", "/api/v1/intents/SkewPolicy/p")]
BODY_ROUTES = JSON_BODY_ROUTES + INTENT_ROUTES


@dataclass
class Raw:
    status: int
    headers: dict[str, str]
    body: bytes
    elapsed: float

    def json(self) -> Any:
        return json.loads(self.body)


async def raw_request(port: int, data: bytes, *, wait_s: float = 15.0, half_close: bool = False) -> Raw:
    """Send ``data`` as is on a fresh connection; read one response (or time out: a hang)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    start = time.monotonic()
    try:
        writer.write(data)
        await writer.drain()
        if half_close:
            writer.write_eof()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), wait_s)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
        length = int(headers.get("content-length", "0"))
        payload = await asyncio.wait_for(reader.readexactly(length), wait_s) if length else b""
        return Raw(status, headers, payload, time.monotonic() - start)
    finally:
        writer.close()


def request_bytes(method: str, path: str, body: bytes = b"", **headers: str | int) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    if "Content_Length" not in headers and (body or method in ("POST", "PUT")):
        headers["Content_Length"] = len(body)
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def assert_error(r: Raw, *statuses: int) -> dict[str, Any]:
    assert r.status in statuses, (r.status, r.body[:300])
    assert r.headers["content-type"].startswith("application/json")
    doc = r.json()
    conforms(
        doc, {"$ref": "#/components/schemas/" + ("IntentError" if "issues" in doc["error"] else "Error")}
    )
    return doc["error"]  # type: ignore[no-any-return]


def big_policy(name: str, size: int = 200_000) -> bytes:
    """A valid SkewPolicy of about ``size`` bytes: thousands of pinned model files."""
    head = (
        "apiVersion: skewwatch.io/v1alpha1\nkind: SkewPolicy\n"
        f"metadata:\n  name: {name}\nspec:\n  pins:\n    model:\n      files:\n"
    )
    lines: list[str] = []
    total = len(head)
    while total < size:
        line = f"        shard-{len(lines):05d}.safetensors: sha256:{len(lines):064x}\n"
        lines.append(line)
        total += len(line)
    return (head + "".join(lines)).encode()


@pytest.fixture
async def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Running]:
    """A real collector (drift routes included) whose body read timeout is short."""
    monkeypatch.setattr(
        api_body, "DEFAULT_LIMITS", replace(api_body.ApiLimits(), read_timeout_s=READ_TIMEOUT_S)
    )
    async with started(settings_for(tmp_path, shutdown_grace_s=0.5), tmp_path) as r:
        yield r


# -- bodies that are not text -----------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), BODY_ROUTES)
@pytest.mark.parametrize("raw", [b"\xff\xfe\x00\x01", b'{"reason": "caf\xe9"}', b"\xc3\x28", b"\xed\xa0\x80"])
async def test_non_utf8_body_is_400_naming_the_byte(api: Running, method: str, path: str, raw: bytes) -> None:
    r = await raw_request(api.http_port, request_bytes(method, path, raw, Content_Type="application/json"))
    err = assert_error(r, 400)
    assert "not valid UTF-8" in err["message"] and "offset" in err["message"]


@pytest.mark.parametrize(("method", "path"), BODY_ROUTES)
@pytest.mark.parametrize("charset", ["bogus", "latin-1", "utf-16", "x" * 300, '"'])
async def test_unsupported_charset_is_400_naming_it(
    api: Running, method: str, path: str, charset: str
) -> None:
    data = request_bytes(method, path, b"{}", Content_Type=f"application/json; charset={charset}")
    err = assert_error(await raw_request(api.http_port, data), 400)
    assert "charset" in err["message"] and "UTF-8" in err["message"]


async def test_utf8_and_ascii_charsets_are_accepted(api: Running) -> None:
    for charset in ("utf-8", "UTF-8", "utf8", "us-ascii", '"utf-8"'):
        data = request_bytes(
            "POST",
            "/api/v1/findings/1/ack",
            b'{"reason": "looking"}',
            Content_Type=f"application/json; charset={charset}",
        )
        err = assert_error(await raw_request(api.http_port, data), 404)  # read fine: no finding 1
        assert "finding 1" in err["message"]


# -- nesting and numbers ----------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), BODY_ROUTES)
@pytest.mark.parametrize(
    "payload",
    [
        b"[" * 30_000 + b"]" * 30_000,
        b'{"reason": ' + b'{"a": ' * 5_000 + b"1" + b"}" * 5_001,
        b"[" * 60_000,  # unterminated as well
        b"[" * 40 + b"]" * 40,  # just past the limits
        b"a:\n" + b"".join(b"  " * i + b"b:\n" for i in range(1, 200)) + b"  " * 200 + b"c: 1\n",
    ],
)
async def test_deeply_nested_json_or_yaml_is_400(
    api: Running, method: str, path: str, payload: bytes
) -> None:
    r = await raw_request(
        api.http_port, request_bytes(method, path, payload, Content_Type="application/json")
    )
    err = assert_error(r, 400)
    assert "nested deeper" in err["message"] or "not JSON" in err["message"], err


@pytest.mark.parametrize(
    ("method", "path", "payload"),
    [
        ("POST", "/api/v1/findings/1/ack", b'{"reason": "x", "by": ' + b"9" * 5_000 + b"}"),
        ("POST", "/api/v1/findings/1/ack", b'{"reason": "x", "by": ' + b"9" * 33 + b"}"),
        ("POST", "/api/v1/findings/1/silence", b'{"reason": "x", "for": ' + b"9" * 60_000 + b"}"),
        ("POST", "/api/v1/findings/1/silence", b'{"reason": "x", "for": 1e999}'),
        ("POST", "/api/v1/findings/1/silence", b'{"reason": "x", "until": 1' + b"0" * 400 + b".0}"),
        ("POST", "/api/v1/findings/1/silence", b'{"reason": "x", "for": NaN}'),
        ("POST", "/api/v1/findings/1/silence", b'{"reason": "x", "for": -Infinity}'),
        ("POST", "/api/v1/baselines/ml/llm", b'{"note": ' + b"1" * 10_000 + b"}"),
        (
            "POST",
            "/api/v1/intents",
            b"apiVersion: skewwatch.io/v1alpha1\nkind: SkewPolicy\nmetadata: {name: p}\n"
            b"spec:\n  pins:\n    runtime:\n      tensorParallelSize: " + b"7" * 100_000 + b"\n",
        ),
        ("PUT", "/api/v1/intents/SkewPolicy/p", b'{"kind": "SkewPolicy", "n": ' + b"5" * 100_000 + b"}"),
        ("POST", "/api/v1/intents", b"a: 2024-13-45\n"),
    ],
)
async def test_huge_numbers_and_unreadable_scalars_are_400(
    api: Running, method: str, path: str, payload: bytes
) -> None:
    r = await raw_request(
        api.http_port, request_bytes(method, path, payload, Content_Type="application/json")
    )
    assert_error(r, 400)


@pytest.mark.parametrize(("method", "path"), BODY_ROUTES)
async def test_100000_digit_integer_is_400_or_413_never_500(api: Running, method: str, path: str) -> None:
    payload = b'{"reason": "x", "for": ' + b"9" * 100_000 + b"}"
    r = await raw_request(
        api.http_port, request_bytes(method, path, payload, Content_Type="application/json")
    )
    # Intent routes parse it (400); JSON notes are capped at 64 kB, so it is over their limit.
    assert_error(r, 400 if path.startswith("/api/v1/intents") else 413)


async def test_unicode_digits_in_ids_are_400_not_500(api: Running) -> None:
    for url in ("/api/v1/findings/%C2%B2", "/api/v1/findings/%D9%A3/ack", "/api/v1/findings/0"):
        method = "DELETE" if url.endswith("ack") else "GET"
        assert_error(await raw_request(api.http_port, request_bytes(method, url)), 400)
    ack = request_bytes("POST", "/api/v1/findings/1/silence", '{"reason": "x", "for": "²h"}'.encode())
    assert_error(await raw_request(api.http_port, ack), 400)


async def test_null_or_empty_intent_documents_are_400(api: Running) -> None:
    for payload in (b"null", b"---\n---\n", b"~", b"   \n"):
        r = await raw_request(api.http_port, request_bytes("POST", "/api/v1/intents", payload))
        assert "document" in assert_error(r, 400)["message"]


# -- bodies that do not arrive ----------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), BODY_ROUTES)
async def test_content_length_larger_than_sent_is_a_quick_408(api: Running, method: str, path: str) -> None:
    data = request_bytes(method, path, b'{"reason"', Content_Length=10_000)
    r = await raw_request(api.http_port, data)
    err = assert_error(r, 408)
    assert r.elapsed < READ_TIMEOUT_S + QUICK_S and "10000 announced" in err["message"]
    assert r.headers.get("connection", "").lower() == "close"


async def test_body_cut_short_by_the_client_is_a_quick_400_or_close(api: Running) -> None:
    data = request_bytes("POST", "/api/v1/intents", b"apiVersion: x\n", Content_Length=5000)
    try:
        r = await raw_request(api.http_port, data, half_close=True, wait_s=QUICK_S + READ_TIMEOUT_S)
    except (asyncio.IncompleteReadError, ConnectionError):
        return  # the server dropped the connection it cannot answer on: fine, no hang
    assert_error(r, 400, 408)


@pytest.mark.parametrize(("method", "path"), BODY_ROUTES)
@pytest.mark.parametrize("length", [256 * 1024 + 1, 10**9, 10**15, 2**63 - 1])
async def test_absurd_content_length_is_413_at_once(
    api: Running, method: str, path: str, length: int
) -> None:
    r = await raw_request(api.http_port, request_bytes(method, path, b"{}", Content_Length=length))
    err = assert_error(r, 413)
    assert r.elapsed < 1.0 and str(length) in err["message"]


async def test_content_length_past_64_bits_is_a_quick_400(api: Running) -> None:
    data = request_bytes("POST", "/api/v1/intents", b"{}", Content_Length="9" * 30)
    r = await raw_request(api.http_port, data)  # the HTTP parser's own answer (text), before routing
    assert r.status == 400 and r.elapsed < 1.0


async def test_streamed_body_over_the_limit_is_413(api: Running) -> None:
    chunk = b"x" * 65536
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(5)) + b"0\r\n\r\n"
    data = request_bytes("POST", "/api/v1/intents", chunked, Transfer_Encoding="chunked", Content_Length=0)
    data = data.replace(b"Content-Length: 0\r\n", b"")
    err = assert_error(await raw_request(api.http_port, data), 413)
    assert "limit" in err["message"]
    big = request_bytes("POST", "/api/v1/findings/1/ack", b"[" + b" " * 70_000 + b"]")
    assert_error(await raw_request(api.http_port, big), 413)  # JSON notes have a smaller limit


# -- methods and paths ------------------------------------------------------------------------


def _concrete(path: str) -> str:
    return (
        path.replace("{namespace}", "ml")
        .replace("{pod}", "p")
        .replace("{name}", "n")
        .replace("{id}", "1")
        .replace("{kind}", "SkewPolicy")
    )


@pytest.mark.parametrize("path", sorted(DOC["paths"]))
async def test_trace_and_undeclared_methods_are_405_json_with_allow(api: Running, path: str) -> None:
    declared = {m.upper() for m in DOC["paths"][path]}
    for method in sorted({"TRACE", "PATCH", "POST", "PUT", "DELETE", "OPTIONS", "PROPFIND"} - declared):
        r = await raw_request(api.http_port, request_bytes(method, _concrete(path)))
        err = assert_error(r, 405)
        assert err["code"] == "method_not_allowed"
        assert set(r.headers["allow"].split(",")) >= declared, (method, path, r.headers)


async def test_unknown_paths_are_404_json(api: Running) -> None:
    for url in ("/", "/api/v2/pods", "/api/v1/pods/a/b/c/d", "/%00", "/api/v1/findings/1/2/3"):
        for method in ("GET", "TRACE", "POST"):
            assert_error(await raw_request(api.http_port, request_bytes(method, url)), 404)


# -- the event loop stays responsive ----------------------------------------------------------


async def test_eight_concurrent_200kb_intent_uploads_keep_healthz_fast(tmp_path: Path) -> None:
    collector = Collector(settings_for(tmp_path, shutdown_grace_s=0.5))  # default limits
    ports = await collector.start()
    base = f"http://127.0.0.1:{ports.http}"
    latencies: list[float] = []
    try:
        async with aiohttp.ClientSession(base_url=base, timeout=TIMEOUT) as http:

            async def upload(i: int) -> int:
                headers = {"Content-Type": "application/yaml"}
                async with http.post("/api/v1/intents", data=big_policy(f"big-{i}"), headers=headers) as r:
                    await r.read()
                    return r.status

            async def probe(done: asyncio.Event) -> None:
                while not done.is_set():
                    start = time.monotonic()
                    async with http.get("/healthz") as r:
                        assert r.status == 200
                    latencies.append(time.monotonic() - start)
                    await asyncio.sleep(0.02)  # the behaviour: the probe's sampling interval

            done = asyncio.Event()
            prober = asyncio.create_task(probe(done))
            start = time.monotonic()
            statuses = await asyncio.gather(*(upload(i) for i in range(8)))
            took = time.monotonic() - start
            done.set()
            await prober
    finally:
        await collector.stop()
    assert statuses == [201] * 8
    assert len(latencies) >= 5, (latencies, took)
    # A correctness bound, not a benchmark: parsing on the loop made this ~10 s.
    assert max(latencies) < 1.0, (max(latencies), took)


async def test_parse_pool_is_bounded_and_times_out_but_holds_the_slot() -> None:
    limits = api_body.ApiLimits(parse_workers=1, parse_queue=0, parse_timeout_s=0.2, retry_after_s=3)
    pool = api_body.ParsePool(limits)
    release = threading.Event()
    try:
        first = asyncio.create_task(pool.run("test", release.wait, 10.0))
        await wait_until("the first job to hold the worker", lambda: pool.busy == 1)
        with pytest.raises(OverloadedError) as full:
            await pool.run("test", lambda: 1)
        assert full.value.status == 503 and full.value.headers == {"Retry-After": "3"}
        with pytest.raises(ProcessingTimeoutError) as slow:
            await first
        assert slow.value.status == 504
        with pytest.raises(OverloadedError):  # the timed-out job still runs: its slot is held
            await pool.run("test", lambda: 1)
        release.set()
        await wait_until("the timed-out job to give its slot back", lambda: pool.busy == 0)
        assert await pool.run("test", lambda: 42) == 42
    finally:
        release.set()
        pool.close()


async def test_intent_parse_over_its_time_limit_is_504(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api_body, "DEFAULT_LIMITS", replace(api_body.ApiLimits(), parse_timeout_s=0.01))
    collector = Collector(settings_for(tmp_path, shutdown_grace_s=0.5))
    ports = await collector.start()
    try:
        r = await raw_request(ports.http, request_bytes("POST", "/api/v1/intents", big_policy("slow")))
    finally:
        await collector.stop()
    err = assert_error(r, 504)
    assert err["code"] == "processing_timeout" and "0.01 s" in err["message"]


async def test_last_resort_middleware_answers_json_500_and_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = SqliteStore(tmp_path / "r.db")
    await store.open()
    app = create_app(Pods(store))

    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("a bug")

    app.router.add_get("/broken", broken)
    try:
        async with TestClient(TestServer(app)) as client:
            with caplog.at_level(logging.ERROR):
                r = await client.get("/broken")
                doc = await r.json()
    finally:
        await store.close()
    assert r.status == 500 and doc["error"]["code"] == "internal" and "a bug" not in doc["error"]["message"]
    conforms(doc, {"$ref": "#/components/schemas/Error"})
    assert any("unexpected error" in rec.getMessage() for rec in caplog.records)


def test_every_body_route_declares_408_and_413_and_intents_503_504() -> None:
    for path, ops in DOC["paths"].items():
        for method, op in ops.items():
            if "requestBody" in op:
                assert {"400", "408", "413"} <= set(op["responses"]), (method, path)
            if path.startswith("/api/v1/intents") and method in ("post", "put"):
                assert {"503", "504"} <= set(op["responses"]), (method, path)
