"""Metric-name drift as a fact: ``runtime.metrics.missing`` on real captures and synthetic pages.

The real inputs: the DataDog integrations-core captures (vLLM V0 ~0.5, Ray Serve vLLM, SGLang
v0.5.10.post1, TGI), and the family list of the real vLLM 0.32.0 CPU build recorded by
tests/e2e/test_real_vllm.py (tests/golden/real-vllm/0.32.0-cpu/metrics-families.json).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from aiohttp import web

from agent.engines import ENGINES
from agent.engines.effective import release
from agent.engines.links import inputs_for, link_inputs
from agent.engines.sglang import SGLANG
from agent.engines.tgi import TGI
from agent.engines.vllm import VLLM
from agent.promtext import MetricFamily, parse_metrics_text
from agent.settings import AgentSettings
from agent.sources.base import CollectContext, ProcessInfo
from agent.sources.runtime_metrics import (
    MISSING_KEY,
    RuntimeMetricsSource,
    expected_for,
    interpret_families,
    missing_families,
)
from collector.drift.causes import roots_by_key
from skewwatch.core.facts import make_fact

VLLM_V0 = "vllm-v0__datadog__opt-125m__e99474c.txt"
RAY = "ray-serve-vllm__datadog__llama-3.1-70b-fp8__ray_vllm-prefix.txt"
SGL = "sglang__datadog__v0.5.10.post1__opt-125m.txt"
TGI_CAPTURE = "tgi__datadog-hugging_face_tgi__payload.txt"
REAL_0_32 = Path(__file__).parents[1] / "golden" / "real-vllm" / "0.32.0-cpu" / "metrics-families.json"


def _capture(real_fixtures: Path, name: str) -> list[MetricFamily]:
    return parse_metrics_text((real_fixtures / "metrics" / name).read_text(encoding="utf-8"))


def _without(families: Sequence[MetricFamily], *names: str) -> list[MetricFamily]:
    return [f for f in families if f.name not in names]


def _real_0_32() -> list[MetricFamily]:
    """The real 0.32.0 page's families, as TYPE lines (what presence is decided on)."""
    types: dict[str, str] = json.loads(REAL_0_32.read_text(encoding="utf-8"))
    text = "".join(f"# TYPE {name} {kind}\n" for name, kind in types.items() if not name.endswith("_created"))
    return parse_metrics_text(text)


def _missing(families: Sequence[MetricFamily], version: str | None) -> object:
    facts = {f.key: f.value for f in interpret_families(families, version=version).facts.facts}
    return facts.get(MISSING_KEY)


# --- real captures: a release that has a family does not report it missing ---------------------


@pytest.mark.parametrize("version", [None, "0.5.4", "0.6.3.post1", "0.7.3"])
def test_v0_capture_misses_nothing_its_release_exports(real_fixtures: Path, version: str | None) -> None:
    assert _missing(_capture(real_fixtures, VLLM_V0), version) is None


@pytest.mark.parametrize("version", [None, "0.32.0", "0.12.0"])
def test_real_0_32_build_misses_nothing(version: str | None) -> None:
    families = _real_0_32()
    assert interpret_families(families).engine is VLLM
    assert _missing(families, version) is None


def test_sglang_capture_at_its_own_version_misses_nothing(real_fixtures: Path) -> None:
    families = _capture(real_fixtures, SGL)
    for version in (None, "0.5.10.post1", "v0.5.10"):
        assert _missing(families, version) is None


def test_tgi_capture_misses_nothing(real_fixtures: Path) -> None:
    families = _capture(real_fixtures, TGI_CAPTURE)
    for version in (None, "2.2.0", "3.3.4"):
        assert _missing(families, version) is None


def test_ray_prefix_is_kept_in_the_names(real_fixtures: Path) -> None:
    families = _without(_capture(real_fixtures, RAY), "ray_vllm:num_requests_waiting")
    assert _missing(families, None) == ["ray_vllm:num_requests_waiting"]


# --- what a release should hold -----------------------------------------------------------------


def test_the_0_32_page_read_as_0_10_lacks_the_names_0_10_still_exported() -> None:
    names, messages, _ = missing_families(VLLM, "vllm:", _real_0_32(), "0.10.2")
    assert names == ["vllm:gpu_cache_usage_perc", "vllm:time_per_output_token_seconds"]
    assert (
        "vllm 0.10.2 no longer exports vllm:gpu_cache_usage_perc; vllm:kv_cache_usage_perc replaces it"
        in (messages)
    )
    assert (
        "vllm 0.10.2 no longer exports vllm:time_per_output_token_seconds;"
        " vllm:inter_token_latency_seconds replaces it" in messages
    )


def test_a_v0_page_reported_as_0_11_lacks_the_v1_families(real_fixtures: Path) -> None:
    families = _capture(real_fixtures, VLLM_V0)
    names, messages, _ = missing_families(VLLM, "vllm:", families, "0.11.0")
    assert names == [
        "vllm:inter_token_latency_seconds",
        "vllm:kv_cache_usage_perc",
        "vllm:prefix_cache_hits_total",
        "vllm:prefix_cache_queries_total",
    ]
    assert messages[0] == f"vllm 0.11.0 does not export 4 expected families: {', '.join(names)}"
    assert (
        "vllm 0.11.0 does not export vllm:kv_cache_usage_perc, which replaces vllm:gpu_cache_usage_perc"
        " (still exported)" in messages
    )


def test_a_retired_family_is_not_expected_after_its_release(real_fixtures: Path) -> None:
    # num_requests_swapped is V0's, expected before 0.8.0 only.
    families = _without(_capture(real_fixtures, VLLM_V0), "vllm:num_requests_swapped")
    assert _missing(families, "0.7.3") == ["vllm:num_requests_swapped"]
    assert _missing(families, "0.8.0") is None


def test_with_no_version_only_families_of_every_release_are_checked(real_fixtures: Path) -> None:
    families = _capture(real_fixtures, VLLM_V0)  # no kv_cache_usage_perc: a V0 page
    assert _missing(families, None) is None
    assert _missing(families, "main") is None  # a version that names no release is no version
    missing = _missing(_without(families, "vllm:num_requests_running", "vllm:cpu_cache_usage_perc"), None)
    assert missing == ["vllm:num_requests_running"]
    unknown = [e.name for e in expected_for(VLLM.metrics.expected, None)]
    assert "kv_cache_usage_perc" not in unknown and "num_requests_running" in unknown


def test_a_counter_with_no_series_yet_is_present() -> None:
    # prometheus_client prints HELP/TYPE of a labelled counter before its first series.
    text = "".join(
        f"# TYPE vllm:{e.name.removesuffix('_total')} {'counter' if e.name.endswith('_total') else 'gauge'}\n"
        for e in expected_for(VLLM.metrics.expected, release("0.32.0"))
    )
    assert _missing(parse_metrics_text(text), "0.32.0") is None


def test_every_row_names_its_source_and_a_sane_range() -> None:
    for spec in ENGINES:
        for row in spec.metrics.expected:
            assert row.source, (spec.name, row.name)
            low, high = release(row.since), release(row.until)
            assert (row.since is None or low is not None) and (row.until is None or high is not None)
            assert low is None or high is None or low < high, (spec.name, row.name)
            if row.replaced_by is not None:
                assert any(r.name == row.replaced_by for r in spec.metrics.expected), row
    assert {s.name for s in (VLLM, SGLANG, TGI)} <= {s.name for s in ENGINES if s.metrics.expected}


def test_sglang_and_tgi_report_a_family_their_page_lacks(real_fixtures: Path) -> None:
    sgl = _without(_capture(real_fixtures, SGL), "sglang:inter_token_latency_seconds")
    assert _missing(sgl, "0.5.10.post1") == ["sglang:inter_token_latency_seconds"]
    assert _missing(sgl, "0.4.6") is None  # not known to be exported before 0.5.10
    tgi = _without(_capture(real_fixtures, TGI_CAPTURE), "tgi_queue_size")
    assert _missing(tgi, None) == ["tgi_queue_size"]


# --- one cause, one finding ---------------------------------------------------------------------


def test_an_upgrade_that_renames_a_family_is_one_finding() -> None:
    assert {"runtime.version", "runtime.engine"} <= set(inputs_for(MISSING_KEY, VLLM))
    assert "runtime.args.show_hidden_metrics_for_version" in inputs_for(MISSING_KEY, VLLM)
    for spec in (SGLANG, TGI):
        assert "runtime.version" in inputs_for(MISSING_KEY, spec)
    facts = {
        "runtime.version": make_fact("runtime.version", "0.11.0", "runtime_metrics", "runtime-reported"),
        MISSING_KEY: make_fact(
            MISSING_KEY, ["vllm:gpu_cache_usage_perc"], "runtime_metrics", "runtime-reported"
        ),
        "orchestration.image": make_fact("orchestration.image", "vllm/vllm-openai:v0.11.0", "pod", "k8s"),
    }
    linked = link_inputs(facts, VLLM)
    links = {k: set(f.provenance.inputs) for k, f in linked.items() if f.provenance.inputs}
    roots = roots_by_key({"orchestration.image", "runtime.version", MISSING_KEY}, links)
    assert roots[MISSING_KEY] == {"orchestration.image"}
    # The same list changing under the same version is a finding of its own.
    assert roots_by_key({MISSING_KEY}, links)[MISSING_KEY] == {MISSING_KEY}


# --- from the source, over real HTTP ------------------------------------------------------------


async def test_source_reports_missing_families_for_the_version_its_info_endpoint_reports(
    real_fixtures: Path,
) -> None:
    page = (real_fixtures / "metrics" / VLLM_V0).read_text(encoding="utf-8")

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(text=page)

    async def version(_: web.Request) -> web.Response:
        return web.json_response({"version": "0.11.0"})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/version", version)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    ctx = CollectContext(
        settings=AgentSettings(metrics_url=f"{base}/metrics", source_timeout_s=10.0),
        process=ProcessInfo(pid=7, engine="vllm", argv=(), env={}),
    )
    try:
        result = await RuntimeMetricsSource().collect(ctx)
    finally:
        await runner.cleanup()
    fact = next(f for f in result.facts if f.key == MISSING_KEY)
    assert fact.value == [
        "vllm:inter_token_latency_seconds",
        "vllm:kv_cache_usage_perc",
        "vllm:prefix_cache_hits_total",
        "vllm:prefix_cache_queries_total",
    ]
    assert fact.provenance.method == "runtime-reported"
    assert "vllm 0.11.0" in fact.provenance.detail
    assert "vllm 0.11.0 does not export 4 expected families" in result.message
