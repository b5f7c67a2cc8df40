"""Every limit, exceeded through its real surface, is a clear error naming it and is counted.

Each case drives a real collector (real gRPC streams, real HTTP requests on loopback) past one
limit of docs/collector-limits.md and checks the answer (status code, a message naming the limit
and the value) and that ``skewwatch_limits_exceeded_total{limit=...}`` on ``GET /metrics`` went
up by exactly one, and no other limit's count moved: each refusal is counted once, in one place.
The webhook, which may run without the collector's telemetry, keeps its own count.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from collector.api import body as api_body
from collector.intent.model import parse_documents
from collector.main import Collector
from collector.store.sqlite import SqliteStore
from proto.skewwatch.v1 import skewwatch_pb2 as pb
from skewwatch.core.facts import MAX_KEY_LENGTH, MAX_STRING_LENGTH, MAX_VALUE_DEPTH, MAX_VALUE_ITEMS
from skewwatch.webhook.config import WebhookConfig
from skewwatch.webhook.server import MAX_BODY_BYTES, make_app
from skewwatch.wire import MAX_FACTS, MAX_OBSERVATIONS, MAX_SOURCES, MAX_TEXT, snapshot_to_proto, timestamp
from tests.support.collector import (
    AgentStream,
    Running,
    hello_msg,
    make_snapshot,
    settings_for,
    snapshot_msg,
    started,
    wait_until,
)

COUNTER = "skewwatch_limits_exceeded_total"
TIMEOUT = aiohttp.ClientTimeout(total=30)


async def counts(running: Running) -> dict[str, float]:
    """The limits counter by limit, as Prometheus scrapes it from the collector's /metrics."""
    async with aiohttp.ClientSession(timeout=TIMEOUT) as http, http.get(f"{running.http}/metrics") as r:
        assert r.status == 200
        text = await r.text()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == COUNTER:
                out[s.labels["limit"]] = float(s.value)
    return out


async def counted_once(running: Running, limit: str, action: Callable[[], Awaitable[None]]) -> None:
    before = await counts(running)
    await action()
    after = await counts(running)
    moved = {k: after.get(k, 0) - before.get(k, 0) for k in set(after) | set(before)}
    assert {k: v for k, v in moved.items() if v} == {limit: 1.0}, f"counted: {moved}"


# -- ingest: one bad message after a good Hello ----------------------------------------------------


def _snapshot(mutate: Callable[[pb.Snapshot], None]) -> pb.AgentMessage:
    snap = snapshot_to_proto(make_snapshot())
    mutate(snap)
    return pb.AgentMessage(sequence=2, snapshot=snap)


def _fact(key: str = "runtime.extra", value: pb.Value | None = None, **prov: Any) -> pb.Fact:
    return pb.Fact(
        key=key,
        value=value if value is not None else pb.Value(string_value="x"),
        provenance=pb.Provenance(source="test", method="derived", **prov),
    )


def _nested(depth: int) -> pb.Value:
    v = pb.Value(int_value=1)
    for _ in range(depth):
        outer = pb.Value()
        outer.list_value.items.append(v)
        v = outer
    return v


def _many_facts(s: pb.Snapshot) -> None:
    s.facts.extend(_fact(f"runtime.k{i}") for i in range(MAX_FACTS + 1 - len(s.facts)))


def _many_sources(s: pb.Snapshot) -> None:
    more = MAX_SOURCES + 1 - len(s.sources)
    s.sources.extend(pb.SourceStatus(name=f"s{i}", state=pb.SOURCE_STATE_OK) for i in range(more))


def _long_list(s: pb.Snapshot) -> None:
    v = pb.Value()
    v.list_value.items.extend(pb.Value(int_value=i) for i in range(MAX_VALUE_ITEMS + 1))
    s.facts.append(_fact(value=v))


def _observations(n: int, name_len: int = 8) -> pb.AgentMessage:
    items = [pb.Observation(name=f"m{i}".ljust(name_len, "x"), value=1.0) for i in range(n)]
    return pb.AgentMessage(
        sequence=2, observations=pb.Observations(at=timestamp(1.8e9), window_seconds=15.0, items=items)
    )


# (limit, the message after the Hello, what the error says)
MESSAGES: list[tuple[str, pb.AgentMessage, str]] = [
    ("max_facts", _snapshot(_many_facts), f"{MAX_FACTS + 1} facts, over {MAX_FACTS}"),
    ("max_sources", _snapshot(_many_sources), f"{MAX_SOURCES + 1} sources, over {MAX_SOURCES}"),
    (
        "max_key_length",
        _snapshot(lambda s: s.facts.append(_fact("runtime." + "k" * MAX_KEY_LENGTH))),
        f"over {MAX_KEY_LENGTH}",
    ),
    (
        "max_value_length",
        _snapshot(
            lambda s: s.facts.append(_fact(value=pb.Value(string_value="v" * (MAX_STRING_LENGTH + 1))))
        ),
        f"string of {MAX_STRING_LENGTH + 1} characters, over {MAX_STRING_LENGTH}",
    ),
    (
        "max_value_items",
        _snapshot(_long_list),
        f"list of {MAX_VALUE_ITEMS + 1} items, over {MAX_VALUE_ITEMS}",
    ),
    (
        "max_value_depth",
        _snapshot(lambda s: s.facts.append(_fact(value=_nested(MAX_VALUE_DEPTH + 2)))),
        f"nested deeper than {MAX_VALUE_DEPTH} levels",
    ),
    (
        "max_text",
        _snapshot(lambda s: s.facts.append(_fact(detail="d" * (MAX_TEXT + 1)))),
        f"provenance.detail: {MAX_TEXT + 1} characters, over {MAX_TEXT}",
    ),
    (
        "max_inputs",
        _snapshot(lambda s: s.facts.append(_fact(inputs=[f"runtime.i{i}" for i in range(33)]))),
        "33 inputs, over 32",
    ),
    ("max_observations", _observations(MAX_OBSERVATIONS + 1), f"over {MAX_OBSERVATIONS}"),
    ("max_observation_name", _observations(1, name_len=257), "must be 1..256 characters (257 sent)"),
]


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    async with started(settings_for(tmp_path, max_message_bytes=2 * 1024 * 1024), tmp_path) as r:
        yield r


@pytest.mark.parametrize(("limit", "message", "says"), MESSAGES, ids=[m[0] for m in MESSAGES])
async def test_a_message_over_a_wire_limit_is_invalid_argument_and_counted(
    running: Running, limit: str, message: pb.AgentMessage, says: str
) -> None:
    async def send() -> None:
        s = running.stream()
        assert (await s.exchange(hello_msg(1))).WhichOneof("body") == "ack"
        await s.send(message)
        code, details = await s.status()
        assert code == grpc.StatusCode.INVALID_ARGUMENT, details
        assert says in details, details

    await counted_once(running, limit, send)


async def test_a_hello_with_an_identity_field_too_long_is_counted(running: Running) -> None:
    async def send() -> None:
        s = running.stream()
        await s.send(hello_msg(1, node="n" * 513))
        code, details = await s.status()
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert details == "hello.pod.node: 513 characters, over 512"

    await counted_once(running, "max_identity_text", send)


async def test_a_message_over_max_message_bytes_is_counted(tmp_path: Path) -> None:
    async with started(settings_for(tmp_path, max_message_bytes=64 * 1024), tmp_path) as running:

        async def send() -> None:
            s = running.stream()
            await s.exchange(hello_msg(1))
            big = _snapshot(lambda s: s.facts.append(_fact(value=pb.Value(string_value="v" * 60_000))))
            big.snapshot.facts.append(_fact("runtime.more", pb.Value(string_value="w" * 20_000)))
            size = big.ByteSize()
            await s.send(big)
            code, details = await s.status()
            assert code == grpc.StatusCode.INVALID_ARGUMENT
            assert details == (
                f"agent_message: {size} bytes, over the collector's limit of 65536 (max_message_bytes)"
            )

        await counted_once(running, "max_message_bytes", send)


async def _refused(s: AgentStream) -> tuple[grpc.StatusCode, str]:
    with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
        await s.send(hello_msg(1, pod="refused"))
    return await s.status()


@pytest.mark.parametrize(
    ("limit", "kw", "says"),
    [
        ("max_streams", {"max_streams": 2}, "collector at its limit of 2 concurrent agent streams"),
        (
            "max_streams_per_address",
            {"max_streams_per_address": 2},
            "client address 127.0.0.1 already holds 2",
        ),
    ],
)
async def test_a_stream_over_a_stream_limit_is_refused_and_counted(
    tmp_path: Path, limit: str, kw: dict[str, int], says: str
) -> None:
    async with started(settings_for(tmp_path, **kw), tmp_path) as running:
        held = [running.stream(), running.stream()]
        for i, s in enumerate(held):
            await s.exchange(hello_msg(1, pod=f"llm-{i}"))

        async def third() -> None:
            code, details = await _refused(running.stream())
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert says in details and details.endswith("retry after 15 s"), details

        await counted_once(running, limit, third)
        for s in held:
            s.call.cancel()


# -- the HTTP API ----------------------------------------------------------------------------------


async def _request(
    running: Running,
    method: str,
    path: str,
    data: bytes | None = None,
    content_type: str = "application/json",
) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": content_type} if data is not None else {}
    async with (
        aiohttp.ClientSession(timeout=TIMEOUT) as http,
        http.request(method, f"{running.http}{path}", data=data, headers=headers) as r,
    ):
        return r.status, json.loads(await r.read())


def _nested_json(depth: int) -> bytes:
    return b'{"reason": ' + b"[" * depth + b"1" + b"]" * depth + b"}"


API_CASES: list[tuple[str, str, str, bytes | None, int, str]] = [
    # (limit, method, path, body, status, what the message says)
    (
        "max_json_bytes",
        "POST",
        "/api/v1/findings/1/ack",
        b'{"reason": "' + b"r" * (64 * 1024) + b'"}',
        413,
        f"body: Content-Length {64 * 1024 + 14} is over this route's limit of 65536 bytes (max_json_bytes)",
    ),
    (
        "max_intent_bytes",
        "POST",
        "/api/v1/intents",
        b"kind: SkewPolicy\n# " + b"x" * (256 * 1024),
        413,
        "is over this route's limit of 262144 bytes (max_intent_bytes)",
    ),
    (
        "max_json_depth",
        "POST",
        "/api/v1/findings/1/ack",
        _nested_json(40),
        400,
        "nested deeper than 32 levels",
    ),
    (
        "max_int_digits",
        "POST",
        "/api/v1/findings/1/silence",
        b'{"reason": "r", "for": ' + b"9" * 40 + b"}",
        400,
        "an integer with more than 32 digits",
    ),
    (
        "query_limit",
        "GET",
        "/api/v1/findings?limit=1001",
        None,
        400,
        "query parameter 'limit': 1001 is not between 1 and 1000 (the most one page returns, query_limit)",
    ),
    (
        "query_limit",
        "GET",
        "/api/v1/pods/ml/llm-0/history?limit=100000",
        None,
        400,
        "query parameter 'limit': 100000 is not between 1 and",
    ),
    (
        "max_intent_documents",
        "POST",
        "/api/v1/intents",
        b"".join(b"--- {}\n" for _ in range(257)),
        400,
        "more than 256 documents",
    ),
    (
        "max_intent_depth",
        "POST",
        "/api/v1/intents",
        b"kind: SkewPolicy\nspec: " + b"[" * 40 + b"]" * 40 + b"\n",
        400,
        "nested deeper than 32 levels",
    ),
]


@pytest.mark.parametrize(
    ("limit", "method", "path", "data", "status", "says"),
    API_CASES,
    ids=[f"{c[0]}-{c[2].split('?')[0].rsplit('/', 1)[-1]}" for c in API_CASES],
)
async def test_an_api_request_over_a_limit_is_refused_and_counted(
    running: Running, limit: str, method: str, path: str, data: bytes | None, status: int, says: str
) -> None:
    async def send() -> None:
        got, answer = await _request(running, method, path, data)
        assert got == status, answer
        assert says in answer["error"]["message"], answer

    await counted_once(running, limit, send)


async def test_a_list_over_max_list_items_is_cut_says_so_and_is_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api_body, "DEFAULT_LIMITS", replace(api_body.DEFAULT_LIMITS, max_list_items=2))
    async with started(settings_for(tmp_path), tmp_path) as running:
        streams = []
        for i in range(3):
            s = running.stream()
            await s.exchange(hello_msg(1, pod=f"llm-{i}"))
            await s.exchange(snapshot_msg(2, make_snapshot({"orchestration.pod": f"llm-{i}"})))
            streams.append(s)

        async def listed() -> None:
            status, answer = await _request(running, "GET", "/api/v1/pods")
            assert status == 200
            assert len(answer["pods"]) == 2
            assert answer["truncated"] == {"limit": 2, "total": 3}

        await counted_once(running, "max_list_items", listed)
        # Under the limit the answer is as before: no "truncated".
        status, answer = await _request(running, "GET", "/api/v1/workloads")
        assert status == 200 and "truncated" not in answer and len(answer["workloads"]) == 1
        for s in streams:
            s.call.cancel()


async def test_an_intent_file_over_its_size_limit_is_reported_and_counted_once(tmp_path: Path) -> None:
    intents = tmp_path / "intents"
    intents.mkdir()
    async with started(settings_for(tmp_path, intents=intents, drift_tick_s=0.05), tmp_path) as running:
        before = await counts(running)
        big = intents / "big.yaml"
        big.write_bytes(b"kind: SkewPolicy\n# " + b"x" * (1024 * 1024))
        size = big.stat().st_size

        async def listing() -> dict[str, Any]:
            return (await _request(running, "GET", "/api/v1/intents"))[1]

        for _ in range(200):
            errors = (await listing())["errors"]
            if errors:
                break
            await asyncio.sleep(0.05)
        assert [e["message"] for e in errors] == [
            f"{size} bytes, over the 1048576-byte limit of an intent file (max_intent_file_bytes)"
        ]
        await asyncio.sleep(0.3)  # several polls more: the unchanged file is not counted again
        after = await counts(running)
        assert after.get("max_intent_file_bytes", 0) - before.get("max_intent_file_bytes", 0) == 1


# -- the webhook (standalone: its own count) ---------------------------------------------------------


@pytest.fixture
async def webhook() -> AsyncIterator[tuple[TestClient[Any, Any], Any]]:
    app, handlers = make_app(WebhookConfig())
    async with TestClient(TestServer(app)) as client:
        yield client, handlers


async def test_an_admission_review_over_its_size_is_413_and_counted(
    webhook: tuple[TestClient[Any, Any], Any],
) -> None:
    client, handlers = webhook
    r = await client.post("/mutate", data=b"{" + b" " * MAX_BODY_BYTES + b"}")
    assert r.status == 413
    assert (await r.json())["error"] == (
        f"request body: {MAX_BODY_BYTES + 2} bytes, more than {MAX_BODY_BYTES} (max_review_bytes)"
    )
    assert dict(handlers.limits_exceeded) == {"max_review_bytes": 1}


async def test_an_admission_review_nested_too_deep_is_400_and_counted(
    webhook: tuple[TestClient[Any, Any], Any],
) -> None:
    client, handlers = webhook
    r = await client.post("/mutate", data=b'{"request": ' + b"[" * 150 + b"]" * 150 + b"}")
    assert r.status == 400
    assert "nested deeper than 100 levels" in (await r.json())["error"]
    assert dict(handlers.limits_exceeded) == {"max_review_depth": 1}


def _policy(name: str) -> bytes:
    return (
        f"apiVersion: skewwatch.io/v1alpha1\nkind: SkewPolicy\nmetadata: {{name: {name}}}\n"
        "spec: {tolerances: {}}\n"
    ).encode()


async def test_intents_posted_past_max_api_intents_are_refused_and_counted(
    running: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    from collector.service import queries

    monkeypatch.setattr(queries, "MAX_API_INTENTS", 1)
    status, answer = await _request(running, "POST", "/api/v1/intents", _policy("p1"), "application/yaml")
    assert status == 201, answer

    async def second() -> None:
        status, answer = await _request(running, "POST", "/api/v1/intents", _policy("p2"), "application/yaml")
        assert status == 400
        assert answer["error"]["message"] == (
            "body: 1 new intent(s) would make 2 posted through the API, over the limit of 1 "
            "(max_api_intents); delete some first"
        )

    await counted_once(running, "max_api_intents", second)
    # Replacing the one there is no new intent: allowed.
    status, answer = await _request(
        running, "PUT", "/api/v1/intents/SkewPolicy/p1", _policy("p1"), "application/yaml"
    )
    assert status == 200, answer


async def test_an_intent_with_too_many_nodes_is_refused_and_counted(running: Running) -> None:
    body = b"kind: SkewPolicy\nspec: [" + b",".join(b"0" for _ in range(100_001)) + b"]\n"

    async def send() -> None:
        status, answer = await _request(running, "POST", "/api/v1/intents", body, "application/yaml")
        assert status == 400
        assert "document has more than 100000 nodes" in answer["error"]["message"]

    await counted_once(running, "max_intent_nodes", send)


async def test_the_parse_pool_full_is_503_and_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from collector.api import drift as drift_routes

    monkeypatch.setattr(
        api_body, "DEFAULT_LIMITS", replace(api_body.DEFAULT_LIMITS, parse_workers=1, parse_queue=0)
    )
    release = threading.Event()
    parse = parse_documents

    def slow(text: str, label: str) -> Any:
        release.wait(20)
        return parse(text, label)

    monkeypatch.setattr(drift_routes, "parse_documents", slow)
    async with started(settings_for(tmp_path), tmp_path) as running:
        held = asyncio.ensure_future(
            _request(running, "POST", "/api/v1/intents", _policy("held"), "application/yaml")
        )
        await wait_until("the first upload holds the one parse worker", lambda: _pool_busy(running))

        async def second() -> None:
            status, answer = await _request(
                running, "POST", "/api/v1/intents", _policy("p2"), "application/yaml"
            )
            assert status == 503
            assert answer["error"]["message"] == (
                "intent body: 1 requests are being parsed or wait for it; retry shortly"
            )

        try:
            await counted_once(running, "parse_queue", second)
        finally:
            release.set()
        assert (await held)[0] == 201


def _pool_busy(running: Running) -> bool:
    from collector.api import drift as drift_routes

    runner = running.collector._runner
    assert runner is not None
    return bool(runner.app[drift_routes.PARSER].busy >= 1)


async def test_a_write_shed_is_counted_as_commit_max_pending(tmp_path: Path) -> None:
    gate, entered = asyncio.Event(), asyncio.Event()
    gate.set()

    class GatedStore(SqliteStore):
        async def record_batch(self, writes: Any) -> Any:
            entered.set()
            await gate.wait()
            return await super().record_batch(writes)

    settings = settings_for(tmp_path, commit_max_pending=1, commit_max_wait_s=0.0)
    collector = Collector(settings, store=GatedStore(tmp_path / "collector.db"))
    ports = await collector.start()
    running = Running(collector, ports.grpc, ports.http, tmp_path / "collector.db",
                      grpc.aio.insecure_channel(f"127.0.0.1:{ports.grpc}"))  # fmt: skip
    try:
        streams = [running.stream() for _ in range(3)]
        for i, s in enumerate(streams):
            await s.exchange(hello_msg(1, pod=f"llm-{i}"))
        gate.clear()
        entered.clear()
        held = asyncio.ensure_future(streams[0].exchange(snapshot_msg(2, make_snapshot())))
        await entered.wait()
        queued = asyncio.ensure_future(streams[1].exchange(snapshot_msg(2, make_snapshot())))
        assert collector.ingest is not None
        group = collector.ingest.recorder.group
        await wait_until("a write queued behind the held batch", lambda: group.pending >= 1)

        async def shed() -> None:
            await streams[2].send(snapshot_msg(2, make_snapshot()))
            code, details = await streams[2].status()
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "collector overloaded: 1 writes wait for the store (max_pending 1)" in details

        await counted_once(running, "commit_max_pending", shed)
        gate.set()
        assert (await held).ack.sequence == 2 and (await queued).ack.sequence == 2
    finally:
        gate.set()
        await running.channel.close()
        await collector.stop()


async def test_more_intent_files_than_max_intent_files_is_counted_once(tmp_path: Path) -> None:
    intents = tmp_path / "intents"
    intents.mkdir()
    async with started(settings_for(tmp_path, intents=intents, drift_tick_s=0.05), tmp_path) as running:
        before = await counts(running)
        for i in range(1001):
            (intents / f"p{i:04d}.yaml").write_text("# nothing yet\n")
        registry = running.collector.queries.drift.registry
        await wait_until("the directory is read", lambda: registry._over_files, timeout_s=20)
        await asyncio.sleep(0.3)  # several polls more: counted once, not once per poll
        after = await counts(running)
        assert after.get("max_intent_files", 0) - before.get("max_intent_files", 0) == 1


async def test_an_admission_review_uid_too_long_is_400_and_counted(
    webhook: tuple[TestClient[Any, Any], Any],
) -> None:
    client, handlers = webhook
    review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": "u" * 129}}
    r = await client.post("/mutate", json=review)
    assert r.status == 400
    assert (await r.json())["error"] == "AdmissionReview: request.uid must be a string of 1 … 128 characters"
    assert dict(handlers.limits_exceeded) == {"max_review_uid": 1}
