"""Real engine answers through the agent's own parsers: what a user relies on from each.

The captures are in ``tests/fixtures/real-world/engines`` (their sources in the SOURCES.md beside
them): a `/metrics` page goes through ``parse_metrics_text`` and ``interpret_families``, and the
window between it and the same page with every cumulative value doubled (10 s later, as the
golden test does) gives the observations; an info endpoint's JSON goes through ``interpret_info``
with the endpoint the engine's own table declares for that route.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from agent.engines import engine_named
from agent.engines.base import InfoEndpoint
from agent.observations import ObservationWindow, extract
from agent.promtext import MetricFamily, parse_metrics_text
from agent.sources.base import FactBuilder
from agent.sources.runtime_metrics import Interpretation, interpret_families, interpret_info
from skewwatch.core.facts import Fact
from tests.support.metrics import doubled

REAL_WORLD = Path(__file__).resolve().parent.parent / "fixtures" / "real-world"
ENGINES = REAL_WORLD / "engines"

TRTLLM_FROM_SOURCE = "trtllm__prometheus-metrics__050f80d__from-source.txt"
TRTLLM_UNPREFIXED = "trtllm__prometheus-metrics__v1.1-unprefixed__aibrix-issue-2004__excerpt.txt"
SGLANG_SERVER_INFO = "sglang__get_server_info__v0.5.9__deepseek-r1-pd-prefill.json"
VLLM_MODELS = "vllm__v1-models__vllm-openai-latest-2025-11-09__tinyllama.json"
VLLM_VERSION = "vllm__version__0.4.3__datadog.json"
MISSING = "runtime.metrics.missing"


def _interpret(name: str) -> Interpretation:
    return interpret_families(parse_metrics_text((ENGINES / name).read_text(encoding="utf-8")))


def _facts(result: Interpretation) -> dict[str, Fact]:
    return {f.key: f for f in result.facts.facts}


def _window(name: str) -> dict[str, tuple[float, str]]:
    """Observations from the capture to the capture with its cumulative values doubled, 10 s on."""
    families = parse_metrics_text((ENGINES / name).read_text(encoding="utf-8"))
    result = interpret_families(families)
    assert result.engine is not None
    metrics = result.engine.metrics
    window = ObservationWindow()
    first, _ = window.update(("e", "p"), extract(families, result.prefix, metrics, 0.0), metrics)
    assert first == []  # one scrape is no window
    obs, notes = window.update(("e", "p"), extract(doubled(families), result.prefix, metrics, 10.0), metrics)
    assert notes == []
    return {o.name: (o.value, o.unit) for o in obs}


def _endpoint(engine: str, route: str) -> InfoEndpoint:
    """The engine's info endpoint that asks ``route``, as its current path or a deprecated one."""
    spec = engine_named(engine)
    assert spec is not None
    for ep in spec.metrics.info_endpoints:
        if route in (ep.path.split("?")[0], *(f.split("?")[0] for f in ep.fallbacks)):
            return ep
    raise AssertionError(f"{engine} declares no info endpoint for {route}")


def _info(engine: str, route: str, name: str) -> tuple[dict[str, Fact], list[str]]:
    endpoint = _endpoint(engine, route)
    builder = FactBuilder("runtime_metrics")
    problems = interpret_info(
        endpoint, json.loads((ENGINES / name).read_text(encoding="utf-8")), builder, route
    )
    return {f.key: f for f in builder.facts}, problems


# --- TensorRT-LLM ----------------------------------------------------------------------------


def test_trtllm_page_is_told_by_its_prefix_and_reports_its_kv_cache_sizing() -> None:
    result = _interpret(TRTLLM_FROM_SOURCE)
    facts = _facts(result)
    assert result.engine is not None and result.engine.name == "trtllm"
    assert result.prefix == "trtllm_"
    assert facts["runtime.engine"].value == "trtllm"
    # The iteration stats' KV-cache gauges are the engine's own sizing, as reported.
    assert facts["runtime.num_gpu_blocks"].value == 106502
    assert facts["runtime.block_size"].value == 32
    assert facts["runtime.max_num_seqs"].value == 2048
    for key in ("runtime.num_gpu_blocks", "runtime.block_size", "runtime.max_num_seqs"):
        assert facts[key].provenance.method == "runtime-reported"
    assert facts["runtime.num_gpu_blocks"].provenance.detail == "value of trtllm_kv_cache_max_blocks"
    assert result.notes == []


def test_trtllm_placeholder_model_name_is_no_served_model_name() -> None:
    # trtllm-serve labels every family model_name="undefined" (openai_server.py @ 0005772, and the
    # real 1.1 page of aibrix #2004): a placeholder, not the model it serves.
    pages = [
        _interpret(TRTLLM_FROM_SOURCE),
        interpret_families(_unprefixed_families(), process_engine=engine_named("trtllm")),
    ]
    for result in pages:
        assert result.engine is not None and result.engine.name == "trtllm"
        assert "runtime.served_model_name" not in _facts(result)


def test_trtllm_window_gives_rates_latency_and_load_from_two_scrapes() -> None:
    obs = _window(TRTLLM_FROM_SOURCE)
    # Two finished requests, 14 prompt and 50 generated tokens, in the 10 s window.
    assert obs["requests_per_s"] == pytest.approx((0.2, "{request}/s"))
    assert obs["prompt_tokens_per_s"] == pytest.approx((1.4, "{token}/s"))
    assert obs["generation_tokens_per_s"] == pytest.approx((5.0, "{token}/s"))
    # TTFT 0.0148 s and 0.0395 s: one in (0.01, 0.02], one in (0.02, 0.04]; the median is the
    # bound between them, as histogram_quantile interpolates.
    assert obs["ttft_seconds_p50"] == pytest.approx((0.02, "s"))
    assert obs["ttft_seconds_count"][0] == 2
    # E2E 0.2011 s and 0.2713 s, both in the first bucket (0, 0.3].
    assert obs["e2e_latency_seconds_p50"] == pytest.approx((0.15, "s"))
    # TRT-LLM's time per output token is the inter-token latency.
    assert obs["itl_seconds_p99"] == pytest.approx((0.0099, "s"))
    assert obs["kv_cache_usage_ratio"] == (0.0, "1")
    assert obs["requests_running"] == (0.0, "{request}")
    assert obs["requests_waiting"] == (0.0, "{request}")


def _unprefixed_families() -> list[MetricFamily]:
    return parse_metrics_text((ENGINES / TRTLLM_UNPREFIXED).read_text(encoding="utf-8"))


def test_trtllm_page_before_the_prefix_is_no_engine_from_the_page_alone() -> None:
    # TensorRT-LLM 1.1 served e2e_request_latency_seconds with no prefix at all (aibrix #2004):
    # generic names, so neither the page alone nor another engine's process makes it anyone's.
    families = _unprefixed_families()
    assert [f.name for f in families] == ["e2e_request_latency_seconds"]
    for process_engine in (None, engine_named("vllm"), engine_named("sglang")):
        result = interpret_families(families, process_engine=process_engine)
        assert result.engine is None, process_engine
        assert result.facts.facts == []


def test_trtllm_page_before_the_prefix_is_trtllm_when_its_process_is() -> None:
    result = interpret_families(
        _unprefixed_families(), version="1.1.0", process_engine=engine_named("trtllm")
    )
    assert result.engine is not None and result.engine.name == "trtllm"
    assert result.prefix == ""
    facts = _facts(result)
    assert facts["runtime.engine"].value == "trtllm"
    assert "without a prefix" in facts["runtime.engine"].provenance.detail
    # 1.1 is not held to the prefixed release's families.
    assert MISSING not in facts
    assert result.notes == []


# --- SGLang ----------------------------------------------------------------------------------


def test_sglang_0_5_9_server_info_reports_the_resolved_server_args() -> None:
    facts, problems = _info("sglang", "/get_server_info", SGLANG_SERVER_INFO)
    assert problems == []
    values = {k: f.value for k, f in facts.items()}
    assert values["runtime.version"] == "0.5.9"
    assert values["runtime.tensor_parallel_size"] == 16
    assert values["runtime.pipeline_parallel_size"] == 1
    assert values["runtime.data_parallel_size"] == 1
    assert values["runtime.gpu_memory_utilization"] == 0.8
    assert values["runtime.block_size"] == 1  # page_size
    assert values["runtime.chunked_prefill_size"] == 8192
    # 0.5.9 keeps the KV pool's size at the top level, not in internal_states[0] (9133c7b).
    assert values["runtime.max_total_tokens"] == 326223
    for fact in facts.values():
        assert fact.provenance.method == "runtime-reported"
        assert fact.provenance.detail.startswith("/get_server_info field ")


def test_sglang_server_info_reports_no_value_that_only_says_what_was_asked() -> None:
    facts, _ = _info("sglang", "/get_server_info", SGLANG_SERVER_INFO)
    # context_length and max_running_requests are null, dtype and kv_cache_dtype "auto":
    # requests, not what runs.
    for key in ("runtime.max_model_len", "runtime.max_num_seqs", "runtime.dtype", "runtime.kv_cache_dtype"):
        assert key not in facts
    # The document carries api_key and admin_api_key (null here): never a fact, whatever they hold.
    assert not any("api_key" in key for key in facts)


# --- vLLM ------------------------------------------------------------------------------------


def test_vllm_models_listing_reports_the_served_context_length() -> None:
    facts, problems = _info("vllm", "/v1/models", VLLM_MODELS)
    assert problems == []
    assert facts["runtime.max_model_len"].value == 2048
    assert facts["runtime.max_model_len"].provenance.detail == "/v1/models field data.0.max_model_len"


def test_vllm_version_endpoint_reports_the_runtime_version() -> None:
    facts, problems = _info("vllm", "/version", VLLM_VERSION)
    assert problems == []
    assert facts["runtime.version"].value == "0.4.3"
    assert facts["runtime.version"].provenance.method == "runtime-reported"


# --- metric-name drift (runtime.metrics.missing) -------------------------------------------


def _missing(path: Path, version: str | None) -> tuple[Fact | None, list[str]]:
    result = interpret_families(parse_metrics_text(path.read_text(encoding="utf-8")), version=version)
    return _facts(result).get(MISSING), result.notes


def test_trtllm_page_of_a_prefixed_release_lacks_no_expected_family() -> None:
    for version in ("1.3.0", "1.2.0", None):
        fact, notes = _missing(ENGINES / TRTLLM_FROM_SOURCE, version)
        assert fact is None, (version, fact)
        assert notes == []


@pytest.mark.parametrize(
    ("capture", "version"),
    [
        ("sglang__datadog__v0.5.10.post1__opt-125m.txt", "0.5.10.post1"),  # its header's release
        ("sglang__datadog__v0.5.10.post1__opt-125m.txt", None),
        ("vllm-v0-plus-v1-families__datadog__opt-125m__5b8d70d.txt", "0.11.0"),
        ("vllm-v0-plus-v1-families__datadog__opt-125m__5b8d70d.txt", "0.12.0"),
        ("vllm-v0__datadog__opt-125m__e99474c.txt", None),
        # DataDog's /version fixture of the same check (2278d8a): a V0 release.
        ("vllm-v0__datadog__opt-125m__e99474c.txt", "0.4.3"),
    ],
)
def test_a_page_complete_for_its_release_carries_no_missing_fact(
    real_fixtures: Path, capture: str, version: str | None
) -> None:
    fact, notes = _missing(real_fixtures / "metrics" / capture, version)
    assert fact is None, fact
    assert notes == []


def test_a_v0_page_read_as_0_11_lists_the_v1_families_it_lacks(real_fixtures: Path) -> None:
    # A V0 page under a reported 0.11.0 (V0 was removed in 0.11.0): what the release must export
    # and this page does not, with the V0 names it still has beside them.
    fact, notes = _missing(real_fixtures / "metrics" / "vllm-v0__datadog__opt-125m__e99474c.txt", "0.11.0")
    assert fact is not None
    missing = fact.value
    assert isinstance(missing, list)
    assert missing == [
        "vllm:inter_token_latency_seconds",
        "vllm:kv_cache_usage_perc",
        "vllm:prefix_cache_hits_total",
        "vllm:prefix_cache_queries_total",
    ]
    assert fact.provenance.method == "runtime-reported"
    assert "vllm 0.11.0" in fact.provenance.detail
    for name in missing:
        assert isinstance(name, str)
        assert any(name in note for note in notes), name
    # gpu_cache_usage_perc is hidden from 0.11.0 on: its absence would not be drift, its presence
    # is no fault either.
    assert "vllm:gpu_cache_usage_perc" not in missing


# --- the captures themselves -----------------------------------------------------------------


def test_every_engine_capture_has_a_row_in_sources_and_every_row_a_file() -> None:
    sources = (REAL_WORLD / "SOURCES.md").read_text(encoding="utf-8")
    section = sources[sources.index("## `engines/`") :]
    rows = set(re.findall(r"^\| `([^`]+)`", section, flags=re.MULTILINE))
    assert rows == {p.name for p in ENGINES.iterdir()}
    # A file built from the engine's source, not captured, says so in its name and in its row.
    for line in section.splitlines():
        match = re.match(r"^\| `([^`]+)`", line)
        if match:
            assert ("__from-source" in match.group(1)) == ("**from source**" in line), match.group(1)
