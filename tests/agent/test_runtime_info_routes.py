"""Info endpoints over real HTTP: the current route first, deprecated ones only on 404, the route
that answered remembered per engine process, and only tabled fields ever copied.

Stand-in engines are aiohttp apps that count every request per route; the documents are shaped as
the engines' own (SGLang ``/server_info``: ServerArgs flattened, ``internal_states``, ``version``,
python/sglang/srt/entrypoints/http_server.py; vLLM ``/server_info?config_format=json``: the dumped
VllmConfig, vllm/entrypoints/serve/instrumentator/server_info.py).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.engines.sglang import SGLANG_METRICS
from agent.engines.vllm import VLLM_METRICS
from agent.settings import AgentSettings
from agent.sources.base import CollectContext, FactBuilder, ProcessInfo, SourceResult
from agent.sources.runtime_metrics import RuntimeMetricsSource, interpret_info
from skewwatch.core.facts import SourceState

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

API_KEY = "sk-live-4f9c2b7e1d0a8c3b5e6f7a9d"
ADMIN_KEY = "admin-5e1c9a7b3d2f4e6a8b0c"
HF_TOKEN = "hf_QwErTyUiOpAsDfGhJkLzXcVbNm123456"

# SGLang 0.5.x /server_info, trimmed to the fields that matter here (ServerArgs is ~300 fields).
SGLANG_SERVER_INFO: dict[str, object] = {
    "model_path": "/models/llama",
    "served_model_name": "llama",
    "api_key": API_KEY,
    "admin_api_key": ADMIN_KEY,
    "dtype": "bfloat16",
    "tp_size": 2,
    "dp_size": 1,
    "mem_fraction_static": 0.871,
    "context_length": None,
    "page_size": 1,
    "chunked_prefill_size": 8192,
    "max_total_num_tokens": 412345,
    "internal_states": [{"max_total_num_tokens": 412345, "last_gen_throughput": 0.0}],
    "version": "0.5.10.post1",
}
SGLANG_MODEL_INFO: dict[str, object] = {
    "model_path": "/models/llama",
    "tokenizer_path": "/models/llama",
    "is_generation": True,
    "preferred_sampling_params": None,
    "weight_version": "default",
}
SGLANG_METRICS_PAGE = '# TYPE sglang:num_running_reqs gauge\nsglang:num_running_reqs{tp_rank="0"} 0\n'
VLLM_PAGE = '# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{model_name="m"} 0\n'


class Engine:
    """A stand-in engine that serves ``routes`` and counts every request by path."""

    def __init__(self, routes: Mapping[str, object]) -> None:
        self.routes = dict(routes)
        self.asked: Counter[str] = Counter()
        self.base = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.asked[request.path] += 1
        body = self.routes.get(request.path)
        if body is None:
            raise web.HTTPNotFound()
        if isinstance(body, str):
            return web.Response(text=body)
        return web.json_response(body)


@asynccontextmanager
async def running(routes: Mapping[str, object]) -> AsyncIterator[Engine]:
    engine = Engine(routes)
    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", engine.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    engine.base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield engine
    finally:
        await runner.cleanup()


def _ctx(engine: Engine, name: str, pid: int = 100) -> CollectContext:
    return CollectContext(
        settings=AgentSettings(metrics_url=f"{engine.base}/metrics", source_timeout_s=10.0),
        process=ProcessInfo(pid=pid, engine=name, argv=(), env={}),
    )


async def _cycles(
    source: RuntimeMetricsSource, ctx: CollectContext, now: list[float], times: list[float]
) -> list[SourceResult]:
    out = []
    for t in times:
        now[0] = t
        out.append(await source.collect(ctx))
    return out


def _facts(result: SourceResult) -> dict[str, object]:
    return {f.key: f.value for f in result.facts}


# Ten cycles 30 s apart over a 100 s refresh period: answers are due at 0, 120 and 240.
TIMES = [30.0 * i for i in range(10)]


async def test_current_sglang_is_asked_on_its_current_routes_once_per_refresh_period() -> None:
    routes = {
        "/metrics": SGLANG_METRICS_PAGE,
        "/server_info": SGLANG_SERVER_INFO,
        "/get_server_info": SGLANG_SERVER_INFO,
        "/model_info": SGLANG_MODEL_INFO,
        "/get_model_info": SGLANG_MODEL_INFO,
    }
    now = [0.0]
    source = RuntimeMetricsSource(clock=lambda: now[0], info_refresh_s=100.0)
    async with running(routes) as engine:
        results = await _cycles(source, _ctx(engine, "sglang"), now, TIMES)
    assert engine.asked["/metrics"] == 10
    assert engine.asked["/server_info"] == 3 and engine.asked["/model_info"] == 3
    assert engine.asked["/get_server_info"] == 0 and engine.asked["/get_model_info"] == 0
    for result in results:
        assert result.state is SourceState.OK
        facts = _facts(result)
        assert facts["runtime.tensor_parallel_size"] == 2
        assert facts["runtime.max_total_tokens"] == 412345
        assert facts["runtime.weight_version"] == "default"
        assert "/server_info: /server_info answered" in result.message
        assert "deprecated" not in result.message
    detail = next(f.provenance.detail for f in results[0].facts if f.key == "runtime.version")
    assert detail == "/server_info field version"


async def test_old_sglang_is_asked_its_deprecated_route_once_per_period_and_the_404_never_again() -> None:
    # Before the rename: only /get_server_info and /get_model_info; here /get_model_info is gone too.
    routes = {"/metrics": SGLANG_METRICS_PAGE, "/get_server_info": SGLANG_SERVER_INFO}
    now = [0.0]
    source = RuntimeMetricsSource(clock=lambda: now[0], info_refresh_s=100.0)
    async with running(routes) as engine:
        ctx = _ctx(engine, "sglang")
        results = await _cycles(source, ctx, now, TIMES)
        asked_before_restart = Counter(engine.asked)
        ctx.process = ProcessInfo(pid=101, engine="sglang", argv=(), env={})  # the engine restarted
        restarted = await _cycles(source, ctx, now, [300.0, 330.0])
    # The current route's 404 is asked once, never each refresh; the deprecated route answers
    # at 0, 120 and 240 only; an endpoint no route serves is asked once for the process.
    assert asked_before_restart["/server_info"] == 1
    assert asked_before_restart["/get_server_info"] == 3
    assert asked_before_restart["/model_info"] == 1 and asked_before_restart["/get_model_info"] == 1
    # Another process may be another release: every route is tried again, once.
    assert engine.asked["/server_info"] == 2 and engine.asked["/get_server_info"] == 4
    assert engine.asked["/model_info"] == 2 and engine.asked["/get_model_info"] == 2
    for result in results + restarted:
        assert result.state is SourceState.OK
        assert _facts(result)["runtime.gpu_memory_utilization"] == 0.871
        assert "runtime.weight_version" not in _facts(result)
        assert "/server_info: /get_server_info answered (deprecated route; /server_info is not served" in (
            result.message
        )
        assert (
            "/model_info: not served by this engine (HTTP 404 on /model_info, /get_model_info);"
            " not asked again for this process" in result.message
        )
    detail = next(f.provenance.detail for f in results[-1].facts if f.key == "runtime.tensor_parallel_size")
    assert detail == "/get_server_info field tp_size"


async def test_a_fallback_answer_with_a_bad_field_is_asked_again_through_the_same_route() -> None:
    doc = {**SGLANG_SERVER_INFO, "tp_size": "two"}
    routes = {"/metrics": SGLANG_METRICS_PAGE, "/get_server_info": doc, "/model_info": SGLANG_MODEL_INFO}
    now = [0.0]
    source = RuntimeMetricsSource(clock=lambda: now[0], info_refresh_s=100.0)
    async with running(routes) as engine:
        results = await _cycles(source, _ctx(engine, "sglang"), now, [0.0, 10.0, 20.0])
    assert engine.asked["/server_info"] == 1  # the 404 is not asked again
    assert engine.asked["/get_server_info"] == 3  # an error is not kept: asked again, same route
    assert engine.asked["/model_info"] == 1  # a clean answer is kept for the period
    for result in results:
        assert result.state is SourceState.ERROR
        assert "/get_server_info field tp_size" in result.message
        assert _facts(result)["runtime.version"] == "0.5.10.post1"


async def test_vllm_without_dev_mode_is_asked_for_server_info_once_per_process() -> None:
    routes = {"/metrics": VLLM_PAGE, "/version": {"version": "0.11.0"}, "/v1/models": {"data": []}}
    now = [0.0]
    source = RuntimeMetricsSource(clock=lambda: now[0], info_refresh_s=100.0)
    async with running(routes) as engine:
        results = await _cycles(source, _ctx(engine, "vllm"), now, TIMES)
    assert engine.asked["/server_info"] == 1
    assert engine.asked["/version"] == 3 and engine.asked["/v1/models"] == 3
    assert all(_facts(r)["runtime.version"] == "0.11.0" for r in results)
    assert "/server_info?config_format=json: not served by this engine" in results[-1].message


async def test_vllm_dev_mode_server_info_reports_the_resolved_config_and_no_secret() -> None:
    # The shape of PydanticVllmConfig.dump_python(vllm_config, mode="json", fallback=str).
    server_info = {
        "vllm_config": {
            "model_config": {
                "model": "Qwen/Qwen3-0.6B",
                "dtype": "torch.bfloat16",
                "max_model_len": 40960,
                "quantization": None,
                "enforce_eager": False,
                "hf_token": HF_TOKEN,
            },
            "cache_config": {
                "block_size": 16,
                "cache_dtype": "auto",
                "gpu_memory_utilization": 0.9,
                "enable_prefix_caching": True,
            },
            "parallel_config": {
                "tensor_parallel_size": 1,
                "pipeline_parallel_size": 1,
                "data_parallel_size": 1,
            },
            "scheduler_config": {
                "max_num_seqs": 256,
                "max_num_batched_tokens": 8192,
                "enable_chunked_prefill": True,
            },
        },
        "vllm_env": {"VLLM_SERVER_DEV_MODE": "1", "VLLM_API_KEY_FILE": API_KEY},
        "system_env": {"torch_version": "2.8.0"},
    }
    routes = {"/metrics": VLLM_PAGE, "/version": {"version": "0.11.0"}, "/server_info": server_info}
    async with running(routes) as engine:
        result = await RuntimeMetricsSource().collect(_ctx(engine, "vllm"))
    facts = {f.key: f for f in result.facts}
    assert facts["runtime.dtype"].value == "bfloat16"
    assert facts["runtime.max_model_len"].value == 40960
    assert facts["runtime.max_num_batched_tokens"].value == 8192
    assert facts["runtime.enable_chunked_prefill"].value is True
    assert facts["runtime.dtype"].provenance.detail == "/server_info field vllm_config.model_config.dtype"
    assert "runtime.kv_cache_dtype" not in facts  # "auto" is what was asked, not what runs
    assert "runtime.quantization" not in facts
    _assert_no_secret(result)


async def test_the_json_config_is_asked_for_by_query() -> None:
    seen: list[str] = []

    async def info(request: web.Request) -> web.Response:
        seen.append(request.query_string)
        return web.json_response({"vllm_config": "model='m', dtype=torch.bfloat16"})  # an old release

    app = web.Application()
    app.router.add_get("/server_info", info)
    app.router.add_get("/metrics", _vllm_page)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        ctx = CollectContext(
            settings=AgentSettings(metrics_url=f"{base}/metrics", source_timeout_s=10.0),
            process=ProcessInfo(pid=1, engine="vllm", argv=(), env={}),
        )
        result = await RuntimeMetricsSource().collect(ctx)
    finally:
        await runner.cleanup()
    assert seen == ["config_format=json"]
    # The text form (a release without config_format) holds no field to read: nothing, no error.
    assert not {k for k in _facts(result) if k.startswith("runtime.max")}
    assert "vllm_config" not in result.message


async def _vllm_page(_: web.Request) -> web.Response:
    return web.Response(text=VLLM_PAGE)


async def test_sglang_server_info_api_key_reaches_no_fact_or_message() -> None:
    routes = {"/metrics": SGLANG_METRICS_PAGE, "/get_server_info": SGLANG_SERVER_INFO}
    async with running(routes) as engine:
        result = await RuntimeMetricsSource().collect(_ctx(engine, "sglang"))
    assert _facts(result)["runtime.tensor_parallel_size"] == 2
    _assert_no_secret(result)


def _assert_no_secret(
    result: SourceResult, secrets: tuple[str, ...] = (API_KEY, ADMIN_KEY, HF_TOKEN)
) -> None:
    text = repr(result.facts) + json.dumps([repr(f.value) for f in result.facts])
    for secret in secrets:
        assert secret not in text
        assert secret not in result.message


_KEYS = st.text(st.characters(min_codepoint=97, max_codepoint=122) | st.just("_"), min_size=1, max_size=20)
# Marked, so that no shrunk value is a mere substring of a fact's own text ("runtime-reported").
_SECRETS = st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=60).map(
    lambda s: "s3cr3t:" + s
)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(extra=st.dictionaries(_KEYS, _SECRETS, min_size=1, max_size=8), secret=_SECRETS)
def test_only_tabled_fields_are_ever_copied_whatever_else_the_document_holds(
    extra: dict[str, str], secret: str
) -> None:
    # Any field outside the table, secret-looking or not, at the top or nested, is never a fact or
    # a problem message; tabled fields keep their meaning.
    for endpoint in (*SGLANG_METRICS.info_endpoints, *VLLM_METRICS.info_endpoints):
        tabled = set(endpoint.fields)
        untabled = {k: v for k, v in extra.items() if k not in tabled}
        doc: dict[str, object] = {
            **untabled,
            "api_key": secret,
            "admin_api_key": secret,
            "hf_token": secret,
            "internal_states": [{"api_key": secret}],
            "vllm_env": {"VLLM_API_KEY": secret},
            "tp_size": 4,
        }
        builder = FactBuilder("runtime_metrics")
        problems = interpret_info(endpoint, doc, builder, endpoint.path)
        dumped = repr(builder.facts) + repr(problems)
        for value in (secret, *untabled.values()):
            assert value not in dumped
        assert {f.key for f in builder.facts} <= {key for key, _ in endpoint.fields.values()}
        if "tp_size" in endpoint.fields:
            assert {f.key: f.value for f in builder.facts}["runtime.tensor_parallel_size"] == 4


REAL_SGLANG_0_5_9 = (
    Path(__file__).parents[1]
    / "fixtures"
    / "real-world"
    / "engines"
    / "sglang__get_server_info__v0.5.9__deepseek-r1-pd-prefill.json"
)


async def test_real_sglang_0_5_9_document_with_keys_set_gives_its_args_and_no_key() -> None:
    # SGLang 0.5.9's own /get_server_info (331 fields, tests/fixtures/real-world/SOURCES.md), with
    # the api_key and admin_api_key that a server started with --api-key would report.
    doc = json.loads(REAL_SGLANG_0_5_9.read_text(encoding="utf-8"))
    doc.update(api_key=API_KEY, admin_api_key=ADMIN_KEY)
    routes = {"/metrics": SGLANG_METRICS_PAGE, "/get_server_info": doc, "/get_model_info": SGLANG_MODEL_INFO}
    now = [0.0]
    source = RuntimeMetricsSource(clock=lambda: now[0], info_refresh_s=100.0)
    async with running(routes) as engine:
        results = await _cycles(source, _ctx(engine, "sglang"), now, [0.0, 50.0, 150.0])
    assert engine.asked["/server_info"] == 1 and engine.asked["/model_info"] == 1
    assert engine.asked["/get_server_info"] == 2 and engine.asked["/get_model_info"] == 2
    for result in results:
        facts = _facts(result)
        assert facts["runtime.version"] == "0.5.9"
        assert facts["runtime.tensor_parallel_size"] == 16
        assert "/model_info: /get_model_info answered (deprecated route" in result.message
        _assert_no_secret(result)


async def test_a_restart_under_the_same_pid_as_a_newer_release_finds_the_current_route() -> None:
    # An engine restarted in its container's own pid namespace keeps its pid; its start time is
    # what changes. Upgraded, it serves /server_info only.
    routes: dict[str, object] = {"/metrics": SGLANG_METRICS_PAGE, "/get_server_info": SGLANG_SERVER_INFO}
    now = [0.0]
    source = RuntimeMetricsSource(clock=lambda: now[0], info_refresh_s=100.0)
    async with running(routes) as engine:
        ctx = _ctx(engine, "sglang", pid=1)
        ctx.process = ProcessInfo(pid=1, engine="sglang", argv=(), env={}, start_time=1000.0)
        await _cycles(source, ctx, now, [0.0, 30.0])
        engine.routes = {
            "/metrics": SGLANG_METRICS_PAGE,
            "/server_info": {**SGLANG_SERVER_INFO, "tp_size": 8},
        }
        ctx.process = ProcessInfo(pid=1, engine="sglang", argv=(), env={}, start_time=2000.0)
        upgraded = await _cycles(source, ctx, now, [60.0, 90.0])
    assert engine.asked["/server_info"] == 2  # the old process's 404, the new process's answer
    assert engine.asked["/get_server_info"] == 1  # the new process is not asked the old route
    assert all(_facts(r)["runtime.tensor_parallel_size"] == 8 for r in upgraded)
    assert "deprecated" not in upgraded[-1].message.split("/model_info")[0]


async def test_a_remembered_route_that_stops_being_served_falls_back_to_the_others() -> None:
    routes: dict[str, object] = {"/metrics": SGLANG_METRICS_PAGE, "/get_server_info": SGLANG_SERVER_INFO}
    now = [0.0]
    source = RuntimeMetricsSource(clock=lambda: now[0], info_refresh_s=100.0)
    async with running(routes) as engine:
        ctx = _ctx(engine, "sglang")
        await _cycles(source, ctx, now, [0.0])
        engine.routes = {"/metrics": SGLANG_METRICS_PAGE, "/server_info": SGLANG_SERVER_INFO}
        later = await _cycles(source, ctx, now, [150.0, 200.0])
    # At 150 the remembered /get_server_info 404s, so /server_info is asked, and kept.
    assert engine.asked["/get_server_info"] == 2 and engine.asked["/server_info"] == 2
    assert all(_facts(r)["runtime.tensor_parallel_size"] == 2 for r in later)


def test_real_sglang_0_5_9_document_gives_the_kv_pool_it_keeps_at_the_top_level() -> None:
    # 0.5.9 reports max_total_num_tokens beside the server args, not in internal_states[0] (where
    # older releases put it): both places are read.
    doc = json.loads(REAL_SGLANG_0_5_9.read_text(encoding="utf-8"))
    assert "max_total_num_tokens" not in doc["internal_states"][0]
    [endpoint] = [e for e in SGLANG_METRICS.info_endpoints if e.path == "/server_info"]
    builder = FactBuilder("runtime_metrics")
    assert interpret_info(endpoint, doc, builder, "/get_server_info") == []
    facts = {f.key: f for f in builder.facts}
    assert facts["runtime.max_total_tokens"].value == doc["max_total_num_tokens"] == 326223
    assert (
        facts["runtime.max_total_tokens"].provenance.detail == "/get_server_info field max_total_num_tokens"
    )
    older = {"internal_states": [{"max_total_num_tokens": 4096}]}
    builder = FactBuilder("runtime_metrics")
    interpret_info(endpoint, older, builder, "/get_server_info")
    assert {f.key: f.value for f in builder.facts} == {"runtime.max_total_tokens": 4096}
