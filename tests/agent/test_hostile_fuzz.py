"""Property-based hostility: whatever /metrics text, info JSON, config.json or safetensors header
the engine serves, parsing and interpreting it raises only the typed errors (or loses single
facts with a message), in bounded time (hypothesis' deadline) and memory (tracemalloc peak)."""

from __future__ import annotations

import json
import tracemalloc
from collections import Counter
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.bounds import SNAPSHOT_BYTE_BUDGET, JsonProblem, bound_snapshot, check_value, load_json
from agent.engines import engine_named
from agent.observations import ObservationWindow, extract
from agent.promtext import MetricsParseError, parse_metrics_text
from agent.safetensors import SafetensorsError, parse_header
from agent.sources.base import FactBuilder
from agent.sources.model_files import ModelConfigError, parse_model_config
from agent.sources.runtime_metrics import interpret_families, interpret_info
from skewwatch.core.errors import FactError
from skewwatch.core.facts import Snapshot, SourceState, SourceStatus
from skewwatch.core.fingerprint import fingerprint_facts
from skewwatch.wire import snapshot_from_proto, snapshot_to_proto

CASES: Counter[str] = Counter()
PEAK_BYTES = 64 * 1024 * 1024
FUZZ = settings(
    max_examples=120,
    deadline=2000,  # ms per case
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)


def bounded_memory(fn: Callable[[], None]) -> None:
    tracemalloc.start()
    try:
        fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < PEAK_BYTES, f"peak {peak} bytes"


def wire_ok(builder: FactBuilder, message: str = "") -> None:
    """The facts through the bounds encode, fit the budget and pass the collector's checks."""
    kept, statuses = bound_snapshot(
        {f.key: f for f in builder.facts}, {"s": SourceStatus("s", SourceState.OK, message)}
    )
    msg = snapshot_to_proto(Snapshot(kept, statuses, fingerprint_facts(kept.values()), 1.0))
    assert msg.ByteSize() <= SNAPSHOT_BYTE_BUDGET
    snapshot_from_proto(msg)


# --- /metrics text ----------------------------------------------------------------------------------

_NUMBERS = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["NaN", "+Inf", "-Inf", "1e308", "1.7e308", "9" * 400, "1e999", "0x10", "", "True"]),
)
_SAMPLE_VALUES = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["NaN", "+Inf", "1e308", "1.7e308", "9" * 400]),
)
_LABEL_VALUES = st.one_of(
    _NUMBERS,
    st.text(st.characters(blacklist_characters='"\\\n', blacklist_categories=["Cs"]), max_size=40),
    st.sampled_from(["True", "None", "auto", "x" * 2000, "\\", '\\"']),
)
_NAMES = st.sampled_from(
    ["vllm:cache_config_info", "vllm:model_config_info", "vllm:prompt_tokens_total",
     "vllm:num_requests_running", "vllm:time_to_first_token_seconds_bucket",
     "vllm:time_to_first_token_seconds_count", "sglang:max_total_num_tokens",
     "tgi_request_duration_bucket", "vllm:x_config_info", "a"]
)  # fmt: skip
_LABEL_NAMES = st.sampled_from(["block_size", "cache_dtype", "le", "model_name", "engine", "l1", "l2", "x"])


@st.composite
def metrics_pages(draw: st.DrawFn) -> str:
    lines = []
    for _ in range(draw(st.integers(0, 30))):
        kind = draw(st.integers(0, 12))
        name = draw(_NAMES)
        if kind == 0:
            lines.append(
                f"# TYPE {name} {draw(st.sampled_from(['counter', 'gauge', 'histogram', 'summary', 'x']))}"
            )
        elif kind == 1:
            lines.append(draw(st.text(max_size=60)))  # anything at all
        else:
            labels = draw(st.dictionaries(_LABEL_NAMES, _LABEL_VALUES, max_size=6))
            body = ",".join(f'{k}="{v}"' for k, v in labels.items())
            value = draw(_NUMBERS if kind == 2 else _SAMPLE_VALUES)  # mostly valid samples
            lines.append(f"{name}{{{body}}} {value}")
    return "\n".join(lines)


def _metrics_case(text: str) -> None:
    try:
        families = parse_metrics_text(text)
    except MetricsParseError:
        CASES["metrics: typed parse error"] += 1
        return
    result = interpret_families(families)
    wire_ok(result.facts, "; ".join(result.notes))
    if result.engine is not None:
        window = ObservationWindow()
        spec = result.engine.metrics
        window.update(("k",), extract(families, result.prefix, spec, 0.0), spec)
        obs, _ = window.update(("k",), extract(families, result.prefix, spec, 1.0), spec)
        assert all(o.value == o.value and abs(o.value) != float("inf") for o in obs)
    CASES["metrics: interpreted"] += 1


@FUZZ
@given(metrics_pages())
def test_metrics_text(text: str) -> None:
    bounded_memory(lambda: _metrics_case(text))


@FUZZ
@given(st.text(max_size=400))
def test_metrics_text_of_any_characters(text: str) -> None:
    bounded_memory(lambda: _metrics_case(text))


# --- info endpoints' JSON ------------------------------------------------------------------------------

_JSON_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
)
_JSON = st.recursive(
    _JSON_LEAVES,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=30,
)
_HOSTILE_LITERALS = st.sampled_from(
    ["NaN", "Infinity", "-Infinity", "1e999", "9" * 5000, '"\\ud800"', "[" * 5000 + "]" * 5000, "{", '"\\x"']
)


@st.composite
def info_documents(draw: st.DrawFn) -> bytes:
    """A JSON object shaped like the engines' info answers, some leaves replaced by hostile text."""
    fields = {
        "version": draw(_JSON),
        "data": [{"max_model_len": draw(_JSON)}],
        "max_total_tokens": draw(_JSON),
        "model_sha": draw(_JSON),
        "dtype": draw(_JSON),
        "tp_size": draw(_JSON),
        "internal_states": [{"max_total_num_tokens": draw(_JSON)}],
    }
    text = json.dumps(fields)
    for _ in range(draw(st.integers(0, 3))):
        target = draw(st.sampled_from(["null", "true", "0", '""', "[]"]))
        if target in text:
            text = text.replace(target, draw(_HOSTILE_LITERALS), 1)
    if draw(st.booleans()):
        cut = draw(st.integers(0, len(text)))
        text = text[:cut] if draw(st.booleans()) else text
    return text.encode("utf-8", "surrogatepass")


def _info_case(raw: bytes) -> None:
    try:
        doc = load_json(raw)
    except JsonProblem:
        CASES["info: typed JSON error"] += 1
        return
    for engine in ("vllm", "sglang", "tgi"):
        for endpoint in engine_named(engine).metrics.info_endpoints:
            builder = FactBuilder("runtime_metrics")
            problems = interpret_info(endpoint, doc, builder, endpoint.path)
            wire_ok(builder, "; ".join(problems))
    CASES["info: interpreted"] += 1


@FUZZ
@given(info_documents())
def test_info_json(raw: bytes) -> None:
    bounded_memory(lambda: _info_case(raw))


# --- config.json -------------------------------------------------------------------------------------------


@st.composite
def config_documents(draw: st.DrawFn) -> bytes:
    fields = draw(
        st.dictionaries(
            st.sampled_from(["architectures", "torch_dtype", "dtype", "max_position_embeddings", "model_type",
                             "vocab_size", "rope_scaling", "quantization_config", "text_config", "x"]),
            _JSON,
            max_size=8,
        )
    )  # fmt: skip
    text = json.dumps(fields)
    for _ in range(draw(st.integers(0, 3))):
        target = draw(st.sampled_from(["null", "true", "0", '""', "[]", "{}"]))
        if target in text:
            text = text.replace(target, draw(_HOSTILE_LITERALS), 1)
    return text.encode("utf-8", "surrogatepass")


def _config_case(raw: bytes) -> None:
    try:
        config = parse_model_config(raw)
    except ModelConfigError:
        CASES["config: typed error"] += 1
        return
    builder = FactBuilder("model_files")
    problems = []
    for suffix, value in config.items():
        try:
            check_value(value, suffix)
            builder.add(f"model.config.{suffix}", value, "file", "config.json field")
        except FactError as e:
            problems.append(str(e))
    wire_ok(builder, "; ".join(problems))
    CASES["config: facts"] += 1


@FUZZ
@given(config_documents())
def test_config_json(raw: bytes) -> None:
    bounded_memory(lambda: _config_case(raw))


# --- safetensors headers -----------------------------------------------------------------------------------

_DIMS = st.one_of(st.integers(0, 64), st.integers(-5, 2**70), st.just(2**63), st.text(max_size=3), st.none())


@st.composite
def headers(draw: st.DrawFn) -> bytes:
    doc: dict[str, object] = {}
    if draw(st.booleans()):
        doc["__metadata__"] = draw(st.dictionaries(st.text(max_size=5), _JSON_LEAVES, max_size=3))
    for i in range(draw(st.integers(0, 6))):
        doc[f"t{i}"] = {
            "dtype": draw(st.sampled_from(["F16", "BF16", "F32", "I64", "F4", "X", "", 3])),
            "shape": draw(st.lists(_DIMS, max_size=5)),
            "data_offsets": draw(st.lists(_DIMS, max_size=3)),
        }
    text = json.dumps(doc)
    for _ in range(draw(st.integers(0, 2))):
        target = draw(st.sampled_from(["0", "null", "[]"]))
        if target in text:
            text = text.replace(target, draw(_HOSTILE_LITERALS), 1)
    return text.encode("utf-8", "surrogatepass")


def _header_case(raw: bytes, size: int | None) -> None:
    try:
        header = parse_header(raw, size)
    except SafetensorsError:
        CASES["safetensors: typed error"] += 1
        return
    assert header.params >= 0 and header.tensors >= 0
    CASES["safetensors: parsed"] += 1


@FUZZ
@given(headers(), st.one_of(st.none(), st.integers(0, 2**40)))
def test_safetensors_headers(raw: bytes, size: int | None) -> None:
    bounded_memory(lambda: _header_case(raw, size))


def test_zz_report_case_counts(capsys: pytest.CaptureFixture[str]) -> None:
    """The number of cases each property ran (printed even under -q), so a silent skip shows."""
    total = sum(CASES.values())
    with capsys.disabled():
        print(f"\nhostile fuzz: {total} cases: " + ", ".join(f"{k} {v}" for k, v in sorted(CASES.items())))
    if total:  # run alone, this test has nothing to report
        assert total >= 500
