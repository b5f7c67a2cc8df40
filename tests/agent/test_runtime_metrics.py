"""The runtime-metrics source: parsing real scrapes, engine tables, and fetching over real HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web

from agent.observations import ObservationWindow, extract
from agent.promtext import MetricsParseError, decode_metrics_body, parse_metrics_text
from agent.settings import AgentSettings
from agent.sources.base import CollectContext, ProcessInfo
from agent.sources.runtime_metrics import (
    RuntimeMetricsSource,
    interpret_families,
    typed_label_value,
)
from skewwatch.core.facts import SourceState
from tests.support.metrics import doubled

VLLM_V0 = "vllm-v0__datadog__opt-125m__e99474c.txt"

VLLM_LITERAL = """\
# HELP vllm:cache_config_info information of cache_config
# TYPE vllm:cache_config_info gauge
vllm:cache_config_info{block_size="32",cache_dtype="fp8_e5m2",enable_prefix_caching="True",\
gpu_memory_utilization="0.85",num_gpu_blocks="1024",sliding_window="None",swap_space_bytes="4294967296"} 1.0
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="meta-llama/Llama-3.1-8B-Instruct",engine="0"} 3.0
vllm:num_requests_running{model_name="meta-llama/Llama-3.1-8B-Instruct",engine="1"} 2.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="meta-llama/Llama-3.1-8B-Instruct",engine="0"} 7.0
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{model_name="meta-llama/Llama-3.1-8B-Instruct",engine="0"} 0.42
"""


def _facts(text: str) -> dict[str, object]:
    result = interpret_families(parse_metrics_text(text))
    return {f.key: f.value for f in result.facts.facts}


def _observations(text: str) -> dict[str, tuple[float, str]]:
    """Observations over a 10 s window from a scrape of ``text`` to one where every cumulative
    value (counter, histogram bucket, count, sum) doubled: the window's traffic is the page's."""
    families = parse_metrics_text(text)
    result = interpret_families(families)
    assert result.engine is not None
    window = ObservationWindow()
    first, _ = window.update(
        ("e", "p"), extract(families, result.prefix, result.engine.metrics, 0.0), result.engine.metrics
    )
    assert first == []  # one scrape is no window
    later = extract(doubled(families), result.prefix, result.engine.metrics, 10.0)
    obs, _ = window.update(("e", "p"), later, result.engine.metrics)
    return {o.name: (o.value, o.unit) for o in obs}


# --- parsing ---------------------------------------------------------------------------------


def test_every_real_capture_parses(real_fixtures: Path) -> None:
    captures = sorted((real_fixtures / "metrics").glob("*.txt"))
    assert captures
    for path in captures:
        families = parse_metrics_text(path.read_text(encoding="utf-8"), str(path))
        assert families, path.name
        interpret_families(families)  # must not raise on any engine's page


def test_malformed_line_is_named_by_number() -> None:
    text = '# TYPE a gauge\na 1\nb{x="1"} not-a-number\n'
    with pytest.raises(MetricsParseError) as info:
        parse_metrics_text(text, "http://x/metrics")
    assert info.value.line == 3
    assert "http://x/metrics: line 3" in str(info.value)
    assert "not-a-number" in str(info.value)


def test_unterminated_label_value_is_a_typed_error() -> None:
    with pytest.raises(MetricsParseError, match="line 1"):
        parse_metrics_text('vllm:num_requests_running{model_name="x} 1\n')


def test_invalid_utf8_names_line_and_byte() -> None:
    with pytest.raises(MetricsParseError, match=r"line 2: invalid UTF-8 at byte 4"):
        decode_metrics_body(b"a 1\n\xff\xfe 2\n", "u")


# --- interpretation ----------------------------------------------------------------------------


def test_vllm_v0_capture_yields_cache_config_facts(real_fixtures: Path) -> None:
    facts = _facts((real_fixtures / "metrics" / VLLM_V0).read_text(encoding="utf-8"))
    assert facts["runtime.engine"] == "vllm"
    assert facts["runtime.block_size"] == 16
    assert facts["runtime.kv_cache_dtype"] == "auto"
    assert facts["runtime.gpu_memory_utilization"] == 0.9
    assert facts["runtime.num_gpu_blocks"] == 7281
    assert facts["runtime.enable_prefix_caching"] is False
    assert facts["runtime.cache_config.swap_space_bytes"] == 4294967296
    assert facts["runtime.cache_config.num_gpu_blocks_override"] is None
    assert facts["runtime.cache_config.sliding_window"] is None
    assert facts["runtime.served_model_name"] == "facebook/opt-125m"


def test_vllm_v0_capture_observations_over_a_window(real_fixtures: Path) -> None:
    obs = _observations((real_fixtures / "metrics" / VLLM_V0).read_text(encoding="utf-8"))
    assert obs["prompt_tokens_per_s"] == (0.5, "{token}/s")  # 5 prompt tokens in 10 s
    assert obs["requests_per_s"] == (0.1, "{request}/s")
    assert obs["preemptions_per_s"] == (0.0, "{preemption}/s")
    # One request with TTFT in (0.25, 0.5]: interpolated inside that bucket, as histogram_quantile does.
    assert obs["ttft_seconds_p50"] == pytest.approx((0.375, "s"))
    assert obs["ttft_seconds_p99"] == pytest.approx((0.4975, "s"))
    assert {"e2e_latency_seconds_p95", "itl_seconds_p95"} <= set(obs)  # V0 ITL: time_per_output_token
    assert obs["kv_cache_usage_ratio"][1] == "1"
    assert obs["requests_running"][1] == "{request}"
    assert "batch_size_p95" in obs


def test_ray_prefix_is_vllm_and_every_model_name_is_kept(real_fixtures: Path) -> None:
    path = real_fixtures / "metrics" / "ray-serve-vllm__datadog__llama-3.1-70b-fp8__ray_vllm-prefix.txt"
    result = interpret_families(parse_metrics_text(path.read_text(encoding="utf-8")))
    facts = {f.key: f for f in result.facts.facts}
    assert facts["runtime.engine"].value == "vllm"
    assert "ray_vllm:" in facts["runtime.engine"].provenance.detail
    assert facts["runtime.block_size"].value == 16
    # The capture's tail is a second model appended by its maintainers: both names are reported.
    assert facts["runtime.served_model_name"].value == [
        "facebook/opt-125m",
        "neuralmagic/Meta-Llama-3.1-70B-Instruct-FP8",
    ]


def test_sglang_capture(real_fixtures: Path) -> None:
    text = (real_fixtures / "metrics" / "sglang__datadog__v0.5.10.post1__opt-125m.txt").read_text(
        encoding="utf-8"
    )
    facts = _facts(text)
    assert facts["runtime.engine"] == "sglang"
    assert facts["runtime.served_model_name"] == "facebook/opt-125m"
    assert isinstance(facts["runtime.max_total_tokens"], int)  # value of sglang:max_total_num_tokens
    assert isinstance(facts["runtime.cuda_graph"], bool)
    obs = _observations(text)
    assert obs["kv_cache_usage_ratio"] == (0.25, "1")
    assert obs["requests_running"] == (0.0, "{request}")
    assert obs["requests_waiting"] == (0.0, "{request}")
    assert obs["prompt_tokens_per_s"] == (0.5, "{token}/s")
    assert obs["requests_per_s"] == (0.1, "{request}/s")
    assert obs["ttft_seconds_p50"] == pytest.approx((0.05, "s"))  # the one request in (0, 0.1]


def test_tgi_capture(real_fixtures: Path) -> None:
    text = (real_fixtures / "metrics" / "tgi__datadog-hugging_face_tgi__payload.txt").read_text(
        encoding="utf-8"
    )
    assert _facts(text) == {"runtime.engine": "tgi"}
    obs = _observations(text)
    fams = {f.name: f for f in parse_metrics_text(text)}
    input_sum = next(s.value for s in fams["tgi_request_input_length"].samples if s.name.endswith("_sum"))
    assert obs["prompt_tokens_per_s"] == pytest.approx((input_sum / 10, "{token}/s"))  # histogram _sum
    assert obs["requests_per_s"] == pytest.approx((10.9, "{request}/s"))  # 109 successes in 10 s
    assert {"e2e_latency_seconds_p50", "itl_seconds_p99", "batch_size_p95", "generation_tokens_per_s"} <= set(
        obs
    )
    assert not [n for n in obs if n.startswith("ttft")]  # TGI exports no time-to-first-token histogram


def test_page_without_engine_metrics_gives_no_engine_fact(real_fixtures: Path) -> None:
    text = (real_fixtures / "metrics" / "dcgm-exporter__datadog__tesla-t4.txt").read_text(encoding="utf-8")
    result = interpret_families(parse_metrics_text(text))
    # "unknown" from the runtime would outrank the process source's engine; say nothing instead.
    assert result.facts.facts == []
    assert result.notes


def test_v1_kv_cache_name_preferred_over_v0(real_fixtures: Path) -> None:
    text = (real_fixtures / "metrics" / "vllm-v0-plus-v1-families__datadog__opt-125m__5b8d70d.txt").read_text(
        encoding="utf-8"
    )
    obs = _observations(text)
    fams = {f.name: f for f in parse_metrics_text(text)}
    assert obs["kv_cache_usage_ratio"][0] == max(s.value for s in fams["vllm:kv_cache_usage_perc"].samples)
    assert "itl_seconds_p50" in obs  # from V1's inter_token_latency_seconds


def test_literal_cache_config_types_and_summed_requests() -> None:
    facts = _facts(VLLM_LITERAL)
    assert facts["runtime.block_size"] == 32
    assert facts["runtime.kv_cache_dtype"] == "fp8_e5m2"
    assert facts["runtime.enable_prefix_caching"] is True
    assert facts["runtime.gpu_memory_utilization"] == 0.85
    assert facts["runtime.num_gpu_blocks"] == 1024
    assert facts["runtime.served_model_name"] == "meta-llama/Llama-3.1-8B-Instruct"
    obs = _observations(VLLM_LITERAL)  # gauges: the mean of the window's two equal samples
    assert obs["requests_running"] == (5.0, "{request}")  # two engines' series add up
    assert obs["requests_waiting"] == (7.0, "{request}")
    assert obs["kv_cache_usage_ratio"] == (0.42, "1")


def test_gpu_memory_utilization_stays_float_when_written_as_integer() -> None:
    facts = _facts('vllm:cache_config_info{gpu_memory_utilization="1"} 1\n')
    assert facts["runtime.gpu_memory_utilization"] == 1.0
    assert isinstance(facts["runtime.gpu_memory_utilization"], float)


def test_every_fact_is_runtime_reported_and_names_its_metric() -> None:
    result = interpret_families(parse_metrics_text(VLLM_LITERAL))
    for fact in result.facts.facts:
        assert fact.provenance.method == "runtime-reported"
        assert fact.provenance.source == "runtime_metrics"
        assert fact.provenance.detail
    (bs,) = [f for f in result.facts.facts if f.key == "runtime.block_size"]
    assert "vllm:cache_config_info" in bs.provenance.detail


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("16", 16),
        ("0.9", 0.9),
        ("True", True),
        ("False", False),
        ("None", None),
        ("auto", "auto"),
        ("nan", "nan"),
        ("-3", -3),
        ("1e3", 1000.0),
    ],
)
def test_typed_label_value(raw: str, expected: object) -> None:
    value = typed_label_value(raw)
    assert value == expected
    assert type(value) is type(expected)


# --- the source over real HTTP -----------------------------------------------------------------


def _ctx(url: str | None = None, process_url: str | None = None, timeout: float = 10.0) -> CollectContext:
    process = None
    if process_url is not None:
        process = ProcessInfo(pid=1, engine="vllm", argv=(), env={}, metrics_url=process_url)
    return CollectContext(settings=AgentSettings(metrics_url=url, source_timeout_s=timeout), process=process)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    runners: list[web.AppRunner] = []

    async def start(handler: Handler) -> str:
        app = web.Application()
        app.router.add_get("/metrics", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        return f"http://127.0.0.1:{port}/metrics"

    yield start
    for runner in runners:
        await runner.cleanup()


async def test_no_url_is_unavailable() -> None:
    result = await RuntimeMetricsSource().collect(_ctx())
    assert result.state is SourceState.UNAVAILABLE
    assert "no metrics URL" in result.message


async def test_connection_refused_is_unavailable(port: int) -> None:
    url = f"http://127.0.0.1:{port}/metrics"
    result = await RuntimeMetricsSource().collect(_ctx(url))
    assert result.state is SourceState.UNAVAILABLE
    assert url in result.message
    assert "not up" in result.message


async def test_scrape_from_process_url(serve: Callable[[Handler], Awaitable[str]]) -> None:
    async def handler(_: web.Request) -> web.Response:
        return web.Response(text=VLLM_LITERAL, content_type="text/plain")

    url = await serve(handler)
    result = await RuntimeMetricsSource().collect(_ctx(process_url=url))
    assert result.state is SourceState.OK
    facts = {f.key: f.value for f in result.facts}
    assert facts["runtime.engine"] == "vllm"
    assert facts["runtime.block_size"] == 32
    assert result.observations == []  # one scrape is no window
    assert "first scrape" in result.message


async def test_settings_url_wins_over_process_url(
    serve: Callable[[Handler], Awaitable[str]], port: int
) -> None:
    async def handler(_: web.Request) -> web.Response:
        return web.Response(text=VLLM_LITERAL)

    url = await serve(handler)
    result = await RuntimeMetricsSource().collect(_ctx(url, process_url=f"http://127.0.0.1:{port}/metrics"))
    assert result.state is SourceState.OK


async def test_oversized_streamed_body_is_an_error_naming_url_and_cap(
    serve: Callable[[Handler], Awaitable[str]],
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()  # chunked: no Content-Length to reject up front
        await resp.prepare(request)
        for _ in range(64):
            await resp.write(b"# " + b"x" * 1022 + b"\n")
        await resp.write_eof()
        return resp

    url = await serve(handler)
    result = await RuntimeMetricsSource(max_bytes=16 * 1024).collect(_ctx(url))
    assert result.state is SourceState.ERROR
    assert url in result.message
    assert "16384-byte cap" in result.message


async def test_http_error_status_is_an_error(serve: Callable[[Handler], Awaitable[str]]) -> None:
    async def handler(_: web.Request) -> web.Response:
        return web.Response(status=500, text="boom")

    url = await serve(handler)
    result = await RuntimeMetricsSource().collect(_ctx(url))
    assert result.state is SourceState.ERROR
    assert "HTTP 500" in result.message


async def test_404_means_metrics_not_enabled(serve: Callable[[Handler], Awaitable[str]]) -> None:
    async def handler(_: web.Request) -> web.Response:
        raise web.HTTPNotFound()

    url = await serve(handler)
    result = await RuntimeMetricsSource().collect(_ctx(url))
    assert result.state is SourceState.UNAVAILABLE
    assert "404" in result.message


async def test_slow_server_hits_the_fetch_timeout(serve: Callable[[Handler], Awaitable[str]]) -> None:
    async def handler(_: web.Request) -> web.Response:
        await asyncio.sleep(1)
        return web.Response(text="")

    url = await serve(handler)
    result = await RuntimeMetricsSource(timeout_s=0.2).collect(_ctx(url))
    assert result.state is SourceState.ERROR
    assert "within 0.2 s" in result.message


async def test_malformed_page_is_an_error_naming_the_line(serve: Callable[[Handler], Awaitable[str]]) -> None:
    async def handler(_: web.Request) -> web.Response:
        return web.Response(text="vllm:num_requests_running 1\nvllm:num_requests_waiting oops\n")

    url = await serve(handler)
    result = await RuntimeMetricsSource().collect(_ctx(url))
    assert result.state is SourceState.ERROR
    assert f"{url}: line 2" in result.message


def test_info_labels_naming_the_reporting_process_are_not_configuration() -> None:
    text = (
        "# TYPE ray_vllm:cache_config_info gauge\n"
        'ray_vllm:cache_config_info{block_size="32",engine="0",NodeAddress="10.0.0.7",WorkerId="ab12",'
        'Component="core",SessionName="s",Version="2.32.0"} 1.0\n'
    )
    facts = _facts(text)
    assert facts["runtime.block_size"] == 32
    assert not [k for k in facts if k.startswith("runtime.cache_config.")]


# --- info endpoints and windows over real HTTP ---------------------------------------------------


async def _app(routes: dict[str, Handler]) -> tuple[web.AppRunner, str]:
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_get(path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


def _json(doc: object, status: int = 200) -> Handler:
    async def handler(_: web.Request) -> web.Response:
        return web.json_response(doc, status=status)

    return handler


async def test_second_collection_reports_rates_over_the_window_between_scrapes() -> None:
    tokens = [100.0]

    async def metrics(_: web.Request) -> web.Response:
        tokens[0] += 50.0
        return web.Response(
            text=f"# TYPE vllm:generation_tokens_total counter\nvllm:generation_tokens_total {tokens[0]}\n"
        )

    runner, base = await _app({"/metrics": metrics})
    now = [0.0]
    source = RuntimeMetricsSource(clock=lambda: now[0])
    try:
        first = await source.collect(_ctx(f"{base}/metrics"))
        now[0] = 10.0
        second = await source.collect(_ctx(f"{base}/metrics"))
    finally:
        await runner.cleanup()
    assert first.observations == []
    assert {o.name: o.value for o in second.observations} == {"generation_tokens_per_s": 5.0}


async def test_vllm_info_endpoints_report_version_and_max_model_len() -> None:
    runner, base = await _app(
        {
            "/metrics": _text(VLLM_LITERAL),
            "/version": _json({"version": "0.10.1.1"}),
            "/v1/models": _json(
                {"object": "list", "data": [{"id": "m", "max_model_len": 8192, "root": "/m"}]}
            ),
        }
    )
    try:
        result = await RuntimeMetricsSource().collect(_ctx(f"{base}/metrics"))
    finally:
        await runner.cleanup()
    facts = {f.key: f for f in result.facts}
    assert result.state is SourceState.OK
    assert facts["runtime.version"].value == "0.10.1.1"
    assert facts["runtime.max_model_len"].value == 8192
    assert facts["runtime.max_model_len"].provenance.method == "runtime-reported"
    assert facts["runtime.max_model_len"].provenance.detail == "/v1/models field data.0.max_model_len"


async def test_info_endpoint_behind_an_api_key_loses_only_its_own_facts() -> None:
    runner, base = await _app(
        {
            "/metrics": _text(VLLM_LITERAL),
            "/version": _json({"version": "0.9.2"}),
            "/v1/models": _json({"error": "Unauthorized"}, status=401),
        }
    )
    try:
        result = await RuntimeMetricsSource().collect(_ctx(f"{base}/metrics"))
    finally:
        await runner.cleanup()
    facts = {f.key: f.value for f in result.facts}
    assert result.state is SourceState.OK
    assert facts["runtime.version"] == "0.9.2" and facts["runtime.block_size"] == 32
    assert "runtime.max_model_len" not in facts
    assert "401" in result.message and "API key" in result.message


async def test_tgi_info_reports_resolved_limits_and_model_commit() -> None:
    info = {
        "model_id": "bigscience/bloom-560m",
        "model_sha": "4f42c91d806a19ae1a46af6c3fb5f4990d884cd6",
        "model_dtype": "torch.float16",
        "max_concurrent_requests": 128,
        "max_input_tokens": 1024,
        "max_total_tokens": 2048,
        "version": "2.2.0",
        "sha": "db7e043ded45e14ed24188d5a963911c96049618",
    }
    runner, base = await _app({"/metrics": _text("tgi_queue_size 0\n"), "/info": _json(info)})
    try:
        result = await RuntimeMetricsSource().collect(_ctx(f"{base}/metrics"))
    finally:
        await runner.cleanup()
    facts = {f.key: f.value for f in result.facts}
    assert facts["runtime.engine"] == "tgi"
    assert facts["model.revision"] == "4f42c91d806a19ae1a46af6c3fb5f4990d884cd6"
    assert facts["runtime.dtype"] == "float16"
    assert facts["runtime.max_model_len"] == 2048
    assert facts["runtime.max_input_tokens"] == 1024
    assert facts["serving.max_concurrency"] == 128
    assert facts["runtime.version"] == "2.2.0"


async def test_sglang_without_metrics_still_reports_its_server_info() -> None:
    server_info = {
        "model_path": "/models/llama",
        "dtype": "auto",  # what was asked, not what runs: not reported
        "tp_size": 2,
        "mem_fraction_static": 0.871,  # chosen by SGLang when not given
        "context_length": None,
        "page_size": 1,
        "internal_states": [{"max_total_num_tokens": 412345}],
        "version": "0.5.10.post1",
    }
    runner, base = await _app({"/get_server_info": _json(server_info)})
    try:
        ctx = _ctx(f"{base}/metrics")
        ctx.process = ProcessInfo(pid=1, engine="sglang", argv=(), env={})
        result = await RuntimeMetricsSource().collect(ctx)
    finally:
        await runner.cleanup()
    facts = {f.key: f.value for f in result.facts}
    assert result.state is SourceState.OK
    assert "--enable-metrics" in result.message
    assert facts["runtime.tensor_parallel_size"] == 2
    assert facts["runtime.gpu_memory_utilization"] == 0.871
    assert facts["runtime.max_total_tokens"] == 412345
    assert "runtime.dtype" not in facts and "runtime.max_model_len" not in facts


async def test_info_field_of_the_wrong_type_is_an_error_naming_the_field() -> None:
    runner, base = await _app(
        {"/metrics": _text(VLLM_LITERAL), "/v1/models": _json({"data": [{"max_model_len": "lots"}]})}
    )
    try:
        result = await RuntimeMetricsSource().collect(_ctx(f"{base}/metrics"))
    finally:
        await runner.cleanup()
    assert result.state is SourceState.ERROR
    assert "/v1/models field data.0.max_model_len" in result.message
    assert {f.key for f in result.facts} >= {"runtime.engine", "runtime.block_size"}  # the rest still counts


def _text(body: str) -> Handler:
    async def handler(_: web.Request) -> web.Response:
        return web.Response(text=body)

    return handler


async def test_info_endpoints_are_asked_again_only_when_stale_or_the_engine_restarted() -> None:
    asked: list[str] = []

    async def version(request: web.Request) -> web.Response:
        asked.append(request.path)
        return web.json_response({"version": "0.10.0"})

    runner, base = await _app({"/metrics": _text(VLLM_LITERAL), "/version": version, "/v1/models": version})
    now = [0.0]
    source = RuntimeMetricsSource(clock=lambda: now[0], info_refresh_s=60)
    ctx = _ctx(f"{base}/metrics")
    try:
        first = await source.collect(ctx)
        now[0] = 30.0
        cached = await source.collect(ctx)
        ctx.process = ProcessInfo(pid=4242, engine="vllm", argv=(), env={})  # another engine process
        restarted = await source.collect(ctx)
    finally:
        await runner.cleanup()
    assert len(asked) == 4  # two endpoints, asked at the first collection and after the restart
    for result in (first, cached, restarted):
        assert {f.key: f.value for f in result.facts}["runtime.version"] == "0.10.0"
