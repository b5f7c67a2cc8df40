"""hypothesis against the HTTP API over raw sockets: query strings, bodies, charsets and
Content-Length mismatches for each route family. Every answer must be a status the served
document declares for that operation (never a 500), as JSON, within a bounded time.

The collector runs on its own event loop in a thread, so the properties are plain synchronous
hypothesis tests; its body read timeout is short so that bodies shorter than announced are
answered 408 quickly.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from collector.api import body as api_body
from collector.api.openapi import document
from collector.main import Collector
from tests.support.collector import settings_for

DOC = document("fuzz")
READ_TIMEOUT_S = 0.3
MAX_LINE = 8190  # aiohttp's request line limit: the parser answers 400 (text) past it
CASE_S = 5.0  # the most one case may take: a hang fails the property
FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)
COUNTS: dict[str, int] = {}

# One concrete URL per operation: (method, url, document path).
OPERATIONS = [
    ("GET", "/api/v1/pods", "/api/v1/pods"),
    ("GET", "/api/v1/pods/ml/llm-0", "/api/v1/pods/{namespace}/{pod}"),
    ("DELETE", "/api/v1/pods/ml/nobody", "/api/v1/pods/{namespace}/{pod}"),
    ("GET", "/api/v1/pods/ml/llm-0/history", "/api/v1/pods/{namespace}/{pod}/history"),
    ("GET", "/api/v1/workloads", "/api/v1/workloads"),
    ("GET", "/api/v1/workloads/ml/llm", "/api/v1/workloads/{namespace}/{name}"),
    ("GET", "/api/v1/workloads/ml/llm/evidence", "/api/v1/workloads/{namespace}/{name}/evidence"),
    ("GET", "/api/v1/findings", "/api/v1/findings"),
    ("GET", "/api/v1/findings/1", "/api/v1/findings/{id}"),
    ("DELETE", "/api/v1/findings/1/ack", "/api/v1/findings/{id}/ack"),
    ("GET", "/api/v1/diff", "/api/v1/diff"),
    ("GET", "/api/v1/baselines", "/api/v1/baselines"),
    ("GET", "/api/v1/baselines/ml/llm", "/api/v1/baselines/{namespace}/{name}"),
    ("DELETE", "/api/v1/baselines/ml/nobody", "/api/v1/baselines/{namespace}/{name}"),
    ("GET", "/api/v1/intents", "/api/v1/intents"),
    ("GET", "/api/v1/intents/SkewPolicy/p", "/api/v1/intents/{kind}/{name}"),
]
BODY_OPERATIONS = [
    ("POST", "/api/v1/findings/1/ack", "/api/v1/findings/{id}/ack"),
    ("POST", "/api/v1/findings/1/silence", "/api/v1/findings/{id}/silence"),
    ("POST", "/api/v1/baselines/ml/llm", "/api/v1/baselines/{namespace}/{name}"),
    ("POST", "/api/v1/intents", "/api/v1/intents"),
    ("PUT", "/api/v1/intents/SkewPolicy/p", "/api/v1/intents/{kind}/{name}"),
]
PARAMS = sorted(
    {p["name"] for ops in DOC["paths"].values() for op in ops.values() for p in op.get("parameters", [])}
)


def declared(method: str, doc_path: str) -> set[int]:
    return {int(s) for s in DOC["paths"][doc_path][method.lower()]["responses"]}


class Server:
    """A real collector on a loop of its own, in a thread."""

    def __init__(self, tmp: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.collector = Collector(settings_for(tmp, shutdown_grace_s=0.2))
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self.collector.start(), self.loop).result(30).http

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.collector.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    saved = api_body.DEFAULT_LIMITS
    api_body.DEFAULT_LIMITS = replace(saved, read_timeout_s=READ_TIMEOUT_S)
    try:
        srv = Server(tmp_path_factory.mktemp("fuzz"))
    finally:
        api_body.DEFAULT_LIMITS = saved
    yield srv
    srv.close()
    print(f"\nhypothesis cases: {COUNTS}, total {sum(COUNTS.values())}")


def exchange(port: int, data: bytes) -> tuple[int, dict[str, str], bytes, float]:
    """One request on a fresh connection; the status, headers, body and seconds it took."""
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=CASE_S) as sock:
        sock.sendall(data)
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed without a response: {buf[:200]!r}"
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
        length = int(headers.get("content-length", "0"))
        while len(rest) < length:
            chunk = sock.recv(65536)
            assert chunk, "connection closed mid-response"
            rest += chunk
    elapsed = time.monotonic() - start
    assert elapsed < CASE_S
    return int(lines[0].split(" ")[1]), headers, rest[:length], elapsed


def check(port: int, data: bytes, allowed: set[int], family: str) -> int:
    COUNTS[family] = COUNTS.get(family, 0) + 1
    status, headers, payload, _ = exchange(port, data)
    assert status != 500 and status in allowed, (status, payload[:300], data[:300])
    assert headers["content-type"].startswith("application/json"), headers
    doc = json.loads(payload)
    if status >= 400:
        assert isinstance(doc["error"]["code"], str) and isinstance(doc["error"]["message"], str)
    return status


def request(
    method: str, target: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    hdrs = dict(headers or {})
    if body is not None and "Content-Length" not in hdrs:
        hdrs["Content-Length"] = str(len(body))
    lines += [f"{k}: {v}" for k, v in hdrs.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


huge_ints = st.integers(min_value=1, max_value=12_000).map(lambda n: "9" * n)
values = st.one_of(st.text(max_size=40), huge_ints, st.sampled_from(["", "0", "-1", "true", "²", "a/b", "%"]))
queries = st.dictionaries(st.one_of(st.sampled_from(PARAMS), st.text(max_size=8)), values, max_size=5)


@FUZZ
@given(op=st.sampled_from(OPERATIONS), query=queries)
def test_query_strings_get_only_declared_statuses(
    server: Server, op: tuple[str, str, str], query: dict[str, str]
) -> None:
    method, url, doc_path = op
    target = url + ("?" + urllib.parse.urlencode(query) if query else "")
    # Longer request lines are refused by aiohttp's HTTP parser itself (below).
    assume(len(target) < MAX_LINE - 100)
    check(server.port, request(method, target), declared(method, doc_path), "query")


def test_request_line_over_the_parser_limit_is_a_quick_400(server: Server) -> None:
    target = "/api/v1/findings?limit=" + "9" * MAX_LINE
    status, _, _, elapsed = exchange(server.port, request("GET", target))
    assert status == 400 and elapsed < 1.0


def nested(depth: int, leaf: str = "1") -> str:
    return "[" * depth + leaf + "]" * depth


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
bodies = st.one_of(
    st.binary(max_size=2000),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {"reason": st.text(max_size=20)},
        optional={"by": json_values, "for": json_values, "until": json_values, "note": json_values},
    ).map(lambda v: json.dumps(v).encode()),
    st.integers(min_value=1, max_value=60_000).map(lambda d: nested(d).encode()),
    huge_ints.map(lambda n: f'{{"reason": "x", "for": {n}, "note": {n}}}'.encode()),
    st.text(max_size=500).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.sampled_from([b"null", b"~", b"---\n---", b"a: !!binary x", b"a: 2020-99-99", b"a: *b", b"[1, 2"]),
)
content_types = st.sampled_from(
    [
        None,
        "application/json",
        "application/yaml",
        "text/plain",
        "application/json; charset=utf-8",
        "application/json; charset=latin-1",
        "application/json; charset=bogus",
        "application/yaml; charset=utf-16",
        "multipart/form-data; boundary=x",
        "application/x-www-form-urlencoded",
    ]
)


@FUZZ
@given(op=st.sampled_from(BODY_OPERATIONS), payload=bodies, content_type=content_types)
def test_bodies_get_only_declared_statuses(
    server: Server, op: tuple[str, str, str], payload: bytes, content_type: str | None
) -> None:
    method, url, doc_path = op
    headers = {"Content-Type": content_type} if content_type else {}
    check(server.port, request(method, url, payload, headers), declared(method, doc_path), "body")


@settings(FUZZ, max_examples=40)
@given(
    op=st.sampled_from(BODY_OPERATIONS),
    payload=st.binary(min_size=0, max_size=300),
    extra=st.integers(1, 10**6),
)
def test_content_length_larger_than_sent_is_408_or_413_quickly(
    server: Server, op: tuple[str, str, str], payload: bytes, extra: int
) -> None:
    method, url, doc_path = op
    data = request(method, url, payload, {"Content-Length": str(len(payload) + extra)})
    status = check(server.port, data, declared(method, doc_path), "content-length")
    assert status in (408, 413), status
