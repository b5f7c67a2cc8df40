"""Nothing the engine serves kills or floods the agent: hostile /metrics, info endpoints,
config.json, safetensors headers and process env lose only their own fact, with a message
naming it, and the snapshot stays within what the collector accepts."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from agent.bounds import (
    COLLECTOR_MAX_MESSAGE_BYTES,
    MAX_FACTS_PER_SOURCE,
    MAX_INFO_LABELS,
    MAX_MESSAGE_CHARS,
    SNAPSHOT_BYTE_BUDGET,
    BoundsError,
    Unrepresentable,
    bound_snapshot,
    check_value,
)
from agent.hashing import DigestCache, Hasher
from agent.observations import ObservationWindow, extract
from agent.promtext import MetricsParseError, parse_metrics_text
from agent.settings import AgentSettings
from agent.snapshot import collect_snapshot
from agent.sources.base import AgentPaths, CollectContext, ProcessInfo, Source, SourceResult
from agent.sources.model_files import ModelFilesSource, parse_model_config
from agent.sources.process import ProcessSource
from agent.sources.runtime_metrics import RuntimeMetricsSource, interpret_families, typed_label_value
from agent.stream import AgentStream, Backoff, LatestSnapshot
from collector.settings import CollectorSettings
from proto.skewwatch.v1 import skewwatch_pb2 as pb
from skewwatch.core.facts import Fact, Provenance, SourceState, SourceStatus
from skewwatch.core.identity import PodIdentity
from skewwatch.wire import MAX_TEXT, snapshot_from_proto, snapshot_to_proto
from tests.support.fake_processes import fake_process

HUNDRED_DIGITS = "1" * 100
PAGE = """\
# TYPE vllm:cache_config_info gauge
vllm:cache_config_info{block_size="16",cache_dtype="auto",gpu_memory_utilization="0.9",\
num_gpu_blocks="1024"} 1.0
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="m"} 1.0
"""


def flood_page(labels: int, length: int) -> str:
    extra = ",".join(f'l{i:05d}="{"x" * length}"' for i in range(labels))
    return f'# TYPE vllm:cache_config_info gauge\nvllm:cache_config_info{{block_size="16",{extra}}} 1.0\n'


def on_the_wire(facts: list[Fact], message: str = "", name: str = "runtime_metrics") -> pb.Snapshot:
    """The facts of one source through the agent's bounds, encoded, then decoded as the collector does."""
    kept, statuses = bound_snapshot(
        {f.key: f for f in facts}, {name: SourceStatus(name, SourceState.OK, message)}
    )
    from skewwatch.core.facts import Snapshot
    from skewwatch.core.fingerprint import fingerprint_facts

    snap = Snapshot(kept, statuses, fingerprint_facts(kept.values()), 1.0)
    msg = snapshot_to_proto(snap)
    assert msg.ByteSize() <= SNAPSHOT_BYTE_BUDGET
    snapshot_from_proto(pb.Snapshot.FromString(msg.SerializeToString()))  # the collector's checks
    return msg


# --- the bounds ----------------------------------------------------------------------------------


def test_the_budget_is_under_the_collectors_default_limit() -> None:
    assert CollectorSettings().max_message_bytes == COLLECTOR_MAX_MESSAGE_BYTES
    assert SNAPSHOT_BYTE_BUDGET <= COLLECTOR_MAX_MESSAGE_BYTES // 2


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (10**100, "int64"),
        (-(2**63) - 1, "int64"),
        (math.inf, "not finite"),
        ("\ud800", "UTF-8"),
        ({"a": [[[[[[[[[[1]]]]]]]]]]}, "nested"),
        (Unrepresentable("integer of 100 digits is out of the int64 range"), "100 digits"),
    ],
)
def test_values_the_wire_cannot_carry_are_bounds_errors(value: object, match: str) -> None:
    with pytest.raises(BoundsError, match=match):
        check_value(value, "runtime.x")


def _fact(key: str, value: object, source: str = "runtime_metrics", detail: str = "") -> Fact:
    return Fact(key, value, Provenance(source, "runtime-reported", detail))  # type: ignore[arg-type]


def test_bound_snapshot_drops_only_the_bad_facts_and_says_so() -> None:
    facts = {
        "runtime.max_model_len": _fact("runtime.max_model_len", 10**100),
        "runtime.version": _fact("runtime.version", "\udcff"),
        "runtime.block_size": _fact("runtime.block_size", 16, detail="d" * 10_000),
        "runtime.\udcffx": _fact("runtime.\udcffx", 1),
    }
    statuses = {"runtime_metrics": SourceStatus("runtime_metrics", SourceState.OK, "m" * 10_000)}
    kept, out = bound_snapshot(facts, statuses)
    assert set(kept) == {"runtime.block_size"}
    assert len(kept["runtime.block_size"].provenance.detail) <= 1024
    message = out["runtime_metrics"].message
    assert len(message) <= MAX_MESSAGE_CHARS <= MAX_TEXT
    assert "dropped 3 fact(s)" in message or "more characters" in message
    _, short = bound_snapshot(facts, {"runtime_metrics": SourceStatus("runtime_metrics", SourceState.OK, "")})
    assert "bounds: dropped 3 fact(s)" in short["runtime_metrics"].message
    assert (
        "int64" in short["runtime_metrics"].message
        and "runtime.max_model_len" in short["runtime_metrics"].message
    )


def test_bound_snapshot_caps_facts_per_source_keeping_canonical_keys_first() -> None:
    facts = {
        f"runtime.cache_config.l{i:05d}": _fact(f"runtime.cache_config.l{i:05d}", i) for i in range(6000)
    }
    facts["runtime.block_size"] = _fact("runtime.block_size", 16)
    facts["runtime.zzz"] = _fact("runtime.zzz", 1)
    statuses = {"runtime_metrics": SourceStatus("runtime_metrics", SourceState.OK, "")}
    kept, out = bound_snapshot(facts, statuses)
    again, _ = bound_snapshot(dict(reversed(list(facts.items()))), statuses)
    assert list(kept) == list(again)  # deterministic whatever the input order
    assert len(kept) == MAX_FACTS_PER_SOURCE
    assert "runtime.block_size" in kept and "runtime.zzz" in kept
    assert "runtime.cache_config.l00000" in kept and "runtime.cache_config.l05999" not in kept
    assert f"dropped {6002 - MAX_FACTS_PER_SOURCE} fact(s)" in out["runtime_metrics"].message
    assert "per-source cap" in out["runtime_metrics"].message


def test_bound_snapshot_keeps_the_snapshot_within_its_byte_budget() -> None:
    big = "y" * 60_000
    facts = [_fact(f"runtime.cache_config.k{i:04d}", big, source=f"s{i % 3}") for i in range(100)]
    facts.append(_fact("runtime.dtype", "float16", source="s0"))
    msg = on_the_wire(facts, name="s0")
    keys = [f.key for f in msg.facts]
    assert "runtime.dtype" in keys and len(keys) < 100
    status = next(s for s in msg.sources if s.name == "s0")
    assert "byte budget" in status.message


# --- /metrics and info endpoints, parsed ---------------------------------------------------------


def test_huge_integer_label_loses_only_its_fact() -> None:
    with pytest.raises(BoundsError, match="int64"):
        typed_label_value("9" * 1_000_000)  # past Python's int digit limit: never int()-ed
    text = PAGE.replace('block_size="16"', f'block_size="{"9" * 500}"').replace(
        'num_gpu_blocks="1024"', f'num_gpu_blocks="1024",swap="{"7" * 30}"'
    )
    result = interpret_families(parse_metrics_text(text))
    facts = {f.key: f.value for f in result.facts.facts}
    assert "runtime.block_size" not in facts and "runtime.cache_config.swap" not in facts
    assert facts["runtime.num_gpu_blocks"] == 1024 and facts["runtime.kv_cache_dtype"] == "auto"
    assert any("label block_size" in n and "int64" in n for n in result.notes)
    assert any("label swap" in n for n in result.notes)


def test_config_info_with_thousands_of_long_labels_is_capped_at_the_source() -> None:
    result = interpret_families(parse_metrics_text(flood_page(5000, 200)))
    facts = {f.key: f.value for f in result.facts.facts}
    assert facts["runtime.block_size"] == 16  # the engine's known label comes first
    assert len([k for k in facts if k.startswith("runtime.cache_config.")]) == MAX_INFO_LABELS - 1
    assert any(f"over the {MAX_INFO_LABELS}-label cap" in n for n in result.notes)
    long = interpret_families(parse_metrics_text(flood_page(3, 5000)))
    assert any("dropped 3 label(s) with values over" in n for n in long.notes)
    on_the_wire(result.facts.facts, "; ".join(result.notes))


def test_a_flood_of_lines_is_a_typed_error() -> None:
    with pytest.raises(MetricsParseError, match="lines"):
        parse_metrics_text("a 1\n" * 200_000)


def test_values_past_the_float_range_lose_only_their_observation() -> None:
    text = "# TYPE vllm:prompt_tokens_total counter\n" + "".join(
        f'vllm:prompt_tokens_total{{engine="{i}"}} 1.7e308\n' for i in range(3)
    )
    text += "# TYPE vllm:generation_tokens_total counter\nvllm:generation_tokens_total 10\n"
    families = parse_metrics_text(text)
    spec = interpret_families(families).engine
    assert spec is not None
    window = ObservationWindow()
    window.update(("k",), extract(families, "vllm:", spec.metrics, 0.0), spec.metrics)
    later = parse_metrics_text(text.replace("total 10", "total 30"))
    obs, notes = window.update(("k",), extract(later, "vllm:", spec.metrics, 10.0), spec.metrics)
    assert {o.name: o.value for o in obs} == {"generation_tokens_per_s": 2.0}
    assert any("prompt_tokens_per_s" in n and "not finite" in n for n in notes)


# --- over real HTTP --------------------------------------------------------------------------------

Routes = Mapping[str, Callable[[web.Request], Awaitable[web.StreamResponse]]]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Routes], Awaitable[str]]]:
    runners: list[web.AppRunner] = []

    async def start(routes: Routes) -> str:
        app = web.Application()
        for path, handler in routes.items():
            app.router.add_get(path, handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        return f"http://127.0.0.1:{runner.addresses[0][1]}/metrics"

    yield start
    for runner in runners:
        await runner.cleanup()


def body(
    data: str | bytes, content_type: str = "text/plain"
) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(_: web.Request) -> web.Response:
        raw = data.encode() if isinstance(data, str) else data
        return web.Response(body=raw, content_type=content_type)

    return handler


def _ctx(url: str) -> CollectContext:
    process = ProcessInfo(pid=1, engine="vllm", argv=(), env={}, metrics_url=url)
    return CollectContext(settings=AgentSettings(metrics_url=url, source_timeout_s=10.0), process=process)


async def _snapshot(source: Source, ctx: CollectContext) -> pb.Snapshot:
    snap = await collect_snapshot([source], ctx, 10.0)
    msg = snapshot_to_proto(snap)  # raised ValueError (int out of range) before: the agent died
    assert msg.ByteSize() <= SNAPSHOT_BYTE_BUDGET
    snapshot_from_proto(pb.Snapshot.FromString(msg.SerializeToString()))
    return msg


def _values(msg: pb.Snapshot) -> dict[str, Any]:
    from skewwatch.wire import value_from_proto

    return {f.key: value_from_proto(f.value, f.key) for f in msg.facts}


async def test_hundred_digit_max_model_len_loses_only_that_fact(
    serve: Callable[[Routes], Awaitable[str]],
) -> None:
    models = '{"data": [{"id": "m", "max_model_len": ' + HUNDRED_DIGITS + "}]}"
    url = await serve(
        {
            "/metrics": body(PAGE),
            "/v1/models": body(models, "application/json"),
            "/version": body('{"version": "0.9.1"}', "application/json"),
        }
    )
    source = RuntimeMetricsSource()
    result = await source.collect(_ctx(url))
    facts = {f.key: f.value for f in result.facts}
    assert "runtime.max_model_len" not in facts
    assert facts["runtime.version"] == "0.9.1" and facts["runtime.block_size"] == 16
    assert (
        "/v1/models field data.0.max_model_len: integer of 100 digits is out of the int64 range"
        in result.message
    )
    msg = await _snapshot(RuntimeMetricsSource(), _ctx(url))
    assert _values(msg)["runtime.version"] == "0.9.1"


@pytest.mark.parametrize(
    ("models", "version", "lost", "said"),
    [
        (
            '{"data": [{"max_model_len": %s}]}' % ("9" * 100_000),
            '{"version": "1"}',
            "max_model_len",
            "100000 digits",
        ),
        ('{"data": [{"max_model_len": NaN}]}', '{"version": "1"}', "max_model_len", "non-finite number NaN"),
        ('{"data": [{"max_model_len": 1e999}]}', '{"version": "1"}', "max_model_len", "float range"),
        ('{"data": [{"max_model_len": "x"}]}', '{"version": "1"}', "max_model_len", "expected an integer"),
        (
            '{"data": [{"max_model_len": 4096}]}',
            "[" * 100_000 + "]" * 100_000,
            "version",
            "nested too deeply",
        ),
        ('{"data": [{"max_model_len": 4096}]}', b'{"version": "\xff"}', "version", "invalid UTF-8"),
        ('{"data": [{"max_model_len": 4096}]}', '{"version": "\\ud800"}', "version", "not valid UTF-8"),
        ('{"data": [{"max_model_len": 4096}]}', '{"version": "%s"}' % ("v" * 5000), "version", "over 1024"),
    ],
)
async def test_hostile_info_fields_lose_only_their_fact(
    serve: Callable[[Routes], Awaitable[str]], models: str, version: str | bytes, lost: str, said: str
) -> None:
    url = await serve(
        {
            "/metrics": body(PAGE),
            "/v1/models": body(models, "application/json"),
            "/version": body(version, "application/json"),
        }
    )
    result = await RuntimeMetricsSource().collect(_ctx(url))
    facts = {f.key: f.value for f in result.facts}
    assert f"runtime.{lost}" not in facts
    assert facts["runtime.block_size"] == 16
    assert ("runtime.version" in facts) == (lost != "version")
    assert ("runtime.max_model_len" in facts) == (lost != "max_model_len")
    assert said in result.message
    await _snapshot(RuntimeMetricsSource(), _ctx(url))


async def test_thousands_of_long_labels_over_http_stay_within_bounds(
    serve: Callable[[Routes], Awaitable[str]],
) -> None:
    url = await serve({"/metrics": body(flood_page(4000, 2000))})  # 8 MB: the 10 MB snapshot before
    msg = await _snapshot(RuntimeMetricsSource(), _ctx(url))
    values = _values(msg)
    assert values["runtime.block_size"] == 16
    status = next(s for s in msg.sources if s.name == "runtime_metrics")
    assert "dropped 4000 label(s) with values over 1024 characters" in status.message
    assert len(status.message) <= MAX_TEXT


# --- config.json and safetensors headers through the real model_files source ------------------------


def _header(entries: dict[str, object]) -> bytes:
    text = json.dumps(entries).encode()
    return len(text).to_bytes(8, "little") + text


async def _model_files(root: Path) -> SourceResult:
    source = ModelFilesSource(Hasher(cache=DigestCache(None)), wait_s=30)
    try:
        return await source.collect(CollectContext(settings=AgentSettings(model_dir=root)))
    finally:
        source.close()


async def test_hostile_config_fields_lose_only_their_fact(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(
        '{"vocab_size": ' + "9" * 10_000 + ', "max_position_embeddings": 4096, "torch_dtype": "bfloat16",'
        ' "rope_scaling": {"factor": 1e999}, "model_type": "\\udcff",'
        ' "architectures": ' + json.dumps(["A" * 70_000]) + "}"
    )
    (tmp_path / "model.safetensors").write_bytes(
        _header({"w": {"dtype": "F16", "shape": [2], "data_offsets": [0, 4]}}) + b"\0" * 4
    )
    result = await _model_files(tmp_path)
    facts = {f.key: f.value for f in result.facts}
    assert facts["model.config.max_position_embeddings"] == 4096
    assert facts["model.config.torch_dtype"] == "bfloat16"
    assert facts["model.params"] == 2
    for lost in ("vocab_size", "rope_scaling", "model_type", "architectures"):
        assert f"model.config.{lost}" not in facts
        assert f"config.json field {lost}:" in result.message
    assert "10000 digits" in result.message and "float range" in result.message


def test_parse_model_config_keeps_hostile_numbers_in_place() -> None:
    config = parse_model_config(b'{"vocab_size": %s, "model_type": "llama"}' % (b"1" * 100))
    assert isinstance(config["vocab_size"], Unrepresentable) and config["model_type"] == "llama"


async def test_unparseable_config_and_headers_are_named_and_the_rest_stands(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("[" * 50_000 + "]" * 50_000)
    (tmp_path / "a.safetensors").write_bytes(
        _header({"w": {"dtype": "F16", "shape": [2**70, 2], "data_offsets": [0, 4]}}) + b"\0" * 4
    )
    (tmp_path / "b.safetensors").write_bytes(
        _header({"w": {"dtype": "X9", "shape": [2**62] * 4, "data_offsets": [0, 4]}}) + b"\0" * 4
    )
    (tmp_path / "c.safetensors").write_bytes(len(b"[" * 60_000).to_bytes(8, "little") + b"[" * 60_000)
    (tmp_path / "d.safetensors").write_bytes(
        _header({"w": {"dtype": "F16", "shape": [2], "data_offsets": [0, 4]}}) + b"\0" * 4
    )
    result = await _model_files(tmp_path)
    facts = {f.key: f.value for f in result.facts}
    assert result.state is SourceState.ERROR
    assert "nested too deeply" in result.message
    integrity = facts["model.integrity"]
    assert isinstance(integrity, dict)
    assert "int64" in str(integrity["a.safetensors"]) and "more elements" in str(integrity["b.safetensors"])
    assert "nested too deeply" in str(integrity["c.safetensors"])
    assert "d.safetensors" not in integrity and facts["model.params"] == 2
    assert "model.files.d.safetensors" in facts


# --- the process's command line and environment ---------------------------------------------------------


async def test_hostile_command_line_and_env_lose_only_their_facts(tmp_path: Path) -> None:
    procfs = tmp_path / "proc"
    argv = ["vllm", "serve", "m", "--dtype", "half", "--max-model-len", HUNDRED_DIGITS,
            "--max-num-batched-tokens", "7" * 5000 + "k", "--max-num-seqs", "8" * 5000]  # fmt: skip
    fake_process(procfs, 40, argv, env={"VLLM_USE_V1": "1", "VLLM_OK": "yes"})
    environ = procfs / "40" / "environ"
    environ.write_bytes(environ.read_bytes() + b"VLLM_BAD=\xff\xfe\0VLLM_\xff=1\0")
    ctx = CollectContext(
        settings=AgentSettings(pid=40).validate(), paths=AgentPaths(procfs=procfs, podinfo=tmp_path / "none")
    )
    result = await ProcessSource().collect(ctx)
    facts = {f.key: f.value for f in result.facts}
    assert facts["runtime.dtype"] == "float16" and facts["runtime.env.VLLM_OK"] == "yes"
    for lost in ("runtime.max_model_len", "runtime.max_num_batched_tokens", "runtime.max_num_seqs",
                 "runtime.env.VLLM_BAD"):  # fmt: skip
        assert lost not in facts
    assert not any("\udcff" in k for k in facts)
    assert "--max-model-len" in result.message and "int64" in result.message
    msg = await _snapshot(ProcessSource(), ctx)
    assert _values(msg)["runtime.dtype"] == "float16"


# --- the stream's backoff --------------------------------------------------------------------------------


class _FakeCall:
    def __init__(self, acks: list[int]) -> None:
        self.acks = acks

    async def read(self) -> object:
        import grpc

        if not self.acks:
            return grpc.aio.EOF
        return pb.CollectorMessage(ack=pb.Ack(sequence=self.acks.pop(0)))


async def test_the_hellos_ack_alone_does_not_reset_the_backoff() -> None:
    import asyncio

    identity = PodIdentity("ns", "pod", "node", "w", "env", agent_id="a")
    stream = AgentStream("127.0.0.1:1", lambda _: identity, LatestSnapshot(), 1.0)
    for _ in range(4):
        stream.rejected_backoff.next_delay()
        stream.backoff.next_delay()
    await stream._read(_FakeCall([1]), asyncio.Event())  # type: ignore[arg-type]  # the Hello's ack
    assert stream.backoff.attempt == 4 and stream.rejected_backoff.attempt == 4
    assert not stream.connected.is_set()
    stream._first_data_sequence = 2
    await stream._read(_FakeCall([2]), asyncio.Event())  # type: ignore[arg-type]  # a snapshot's ack
    assert stream.backoff.attempt == 0 and stream.rejected_backoff.attempt == 0
    assert stream.connected.is_set()


def test_rejected_backoff_grows_to_a_minute_with_a_floor() -> None:
    import random

    b = Backoff(1.0, 60.0, random.Random(1), floor=0.5)
    delays = [b.next_delay() for _ in range(10)]
    assert delays[0] >= 0.5 and all(30.0 <= d <= 60.0 for d in delays[6:])
    assert sum(delays[:4]) >= 7.5  # four rejections take at least 7.5 s: no hot loop


def test_the_same_refusal_with_other_sizes_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    """A snapshot refused as too big varies in size per attempt; the warning must not repeat."""
    identity = PodIdentity("ns", "pod", "node", "w", "env", agent_id="a")
    stream = AgentStream("127.0.0.1:1", lambda _: identity, LatestSnapshot(), 1.0)
    with caplog.at_level("DEBUG", logger="agent.stream"):
        for size in (1931, 1940, 2077):
            stream._failure(
                f"collector 127.0.0.1:1: INVALID_ARGUMENT: agent_message: {size} bytes, over 1024"
            )
        stream._failure("collector 127.0.0.1:1 unreachable: connection refused")
        # Alternating with another reason does not make the first one new again.
        stream._failure("collector 127.0.0.1:1: INVALID_ARGUMENT: agent_message: 1999 bytes, over 1024")
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 2, warnings
    assert "1931 bytes" in warnings[0] and "unreachable" in warnings[1]
