"""The runtime-metrics source: what the serving engine reports about itself on ``/metrics``.

Reading (an HTTP GET under a timeout and a size cap) is kept apart from interpreting: the text is
parsed by ``agent.promtext`` and turned into facts and observations by the pure
``interpret_families``. What each engine calls a concept is data (``ENGINE_METRICS``), so a new
engine or a renamed metric is a table edit, not a new branch.

Facts are runtime-reported, the highest precedence: ``runtime.engine`` (from the metric prefix),
every label of vLLM's ``cache_config_info`` and ``runtime.served_model_name``. Observations are
instantaneous gauges only for now (requests running and waiting, KV-cache usage); rates and
latency percentiles from histogram deltas need two scrapes and come later.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import aiohttp

from agent.errors import SourceFailed
from agent.promtext import MetricFamily, MetricsParseError, decode_metrics_body, parse_metrics_text
from agent.sources.base import CollectContext, FactBuilder, SourceResult
from skewwatch.core.facts import FactValue, Observation, SourceState

NAME = "runtime_metrics"
METHOD = "runtime-reported"

DEFAULT_TIMEOUT_S = 5.0
DEFAULT_MAX_BYTES = 8 * 1024 * 1024
_CHUNK_BYTES = 64 * 1024


@dataclass(frozen=True)
class ObservationAlias:
    """One observation and the engine's metric names for it, most preferred first."""

    name: str
    unit: str
    metrics: tuple[str, ...]
    # How several series of one metric (tp ranks, models, workers) combine into one value.
    combine: Callable[[Sequence[float]], float]


@dataclass(frozen=True)
class EngineMetrics:
    """What one engine calls things on ``/metrics``; names are without the prefix."""

    engine: str  # the runtime.engine value: vllm | sglang | tgi
    prefixes: tuple[str, ...]
    # info metric (without prefix) → {label → (fact key, type)}; other labels go under ``extra``.
    info_metrics: dict[str, tuple[dict[str, tuple[str, type]], str]] = field(default_factory=dict)
    model_name_label: str | None = None
    observations: tuple[ObservationAlias, ...] = ()
    # Labels of info metrics that say which process or replica reported, not how it is configured.
    identity_labels: frozenset[str] = frozenset()


def _sum(values: Sequence[float]) -> float:
    return float(sum(values))


def _max(values: Sequence[float]) -> float:
    return float(max(values))


_VLLM_CACHE_CONFIG: dict[str, tuple[str, type]] = {
    "block_size": ("runtime.block_size", int),
    # Kept raw ("auto" included): resolving auto to the model dtype is a derivation for later.
    "cache_dtype": ("runtime.kv_cache_dtype", str),
    "gpu_memory_utilization": ("runtime.gpu_memory_utilization", float),
    "num_gpu_blocks": ("runtime.num_gpu_blocks", int),
    "enable_prefix_caching": ("runtime.enable_prefix_caching", bool),
}

_VLLM = EngineMetrics(
    engine="vllm",
    # ray_vllm: is vLLM under Ray Serve, which re-exports the same families with its own prefix.
    prefixes=("vllm:", "ray_vllm:"),
    info_metrics={"cache_config_info": (_VLLM_CACHE_CONFIG, "runtime.cache_config")},
    model_name_label="model_name",
    # engine: the V1 engine-core index; the rest are Ray Serve's per-worker labels.
    identity_labels=frozenset({"engine", "Component", "NodeAddress", "SessionName", "Version", "WorkerId"}),
    observations=(
        ObservationAlias("requests_running", "{request}", ("num_requests_running",), _sum),
        ObservationAlias("requests_waiting", "{request}", ("num_requests_waiting",), _sum),
        # V1 renamed gpu_cache_usage_perc; both are ratios in [0, 1] despite "perc".
        ObservationAlias("kv_cache_usage_ratio", "1", ("kv_cache_usage_perc", "gpu_cache_usage_perc"), _max),
    ),
)

_SGLANG = EngineMetrics(
    engine="sglang",
    prefixes=("sglang:",),
    model_name_label="model_name",
    observations=(
        ObservationAlias("requests_running", "{request}", ("num_running_reqs",), _sum),
        ObservationAlias("requests_waiting", "{request}", ("num_queue_reqs",), _sum),
        ObservationAlias("kv_cache_usage_ratio", "1", ("token_usage",), _max),
    ),
)

_TGI = EngineMetrics(
    engine="tgi",
    prefixes=("tgi_",),
    observations=(
        # TGI batches continuously; the current batch is the set of requests being decoded.
        ObservationAlias("requests_running", "{request}", ("batch_current_size",), _sum),
        ObservationAlias("requests_waiting", "{request}", ("queue_size",), _sum),
    ),
)

ENGINE_METRICS: tuple[EngineMetrics, ...] = (_VLLM, _SGLANG, _TGI)


class MetricsFetchError(SourceFailed):
    """The metrics endpoint answered, but not with a usable page; the message names the URL."""


class MetricsUnreachable(SourceFailed):
    """Nothing is listening (yet) at the metrics URL."""


@dataclass
class Interpretation:
    facts: FactBuilder
    observations: list[Observation]
    notes: list[str]
    engine: EngineMetrics | None


def detect_engine(families: Iterable[MetricFamily]) -> tuple[EngineMetrics, str] | None:
    """The engine whose prefix most families carry, with that prefix; None when none does."""
    counts: dict[tuple[int, str], int] = {}
    for fam in families:
        for i, spec in enumerate(ENGINE_METRICS):
            for prefix in spec.prefixes:
                if fam.name.startswith(prefix):
                    counts[(i, prefix)] = counts.get((i, prefix), 0) + 1
    if not counts:
        return None
    (i, prefix), _ = max(counts.items(), key=lambda kv: kv[1])
    return ENGINE_METRICS[i], prefix


_INT_RE = re.compile(r"^[+-]?\d+$")


def typed_label_value(raw: str) -> FactValue:
    """A label value as its natural type: ints, finite floats, True/False, None; else the string."""
    if raw in ("True", "true"):
        return True
    if raw in ("False", "false"):
        return False
    if raw == "None":
        return None
    if _INT_RE.match(raw):
        return int(raw)
    try:
        number = float(raw)
    except ValueError:
        return raw
    return number if math.isfinite(number) else raw


def _coerce(raw: str, want: type) -> FactValue:
    """``raw`` as ``want``; a value that does not fit keeps its natural type rather than vanish."""
    natural = typed_label_value(raw)
    if natural is None:
        return None
    if want is str:
        return raw
    if want is float and isinstance(natural, int) and not isinstance(natural, bool):
        return float(natural)  # "1" means 1.0 for a fraction; keep the type stable across values
    return natural


def _label_key(label: str) -> str:
    return label.lower()


def interpret_families(families: Sequence[MetricFamily], source: str = NAME) -> Interpretation:
    """Facts and observations from parsed families. Pure: no I/O, no clock."""
    builder = FactBuilder(source)
    observations: list[Observation] = []
    notes: list[str] = []
    found = detect_engine(families)
    if found is None:
        notes.append("no vLLM, SGLang or TGI metrics on the page")
        return Interpretation(builder, observations, notes, None)
    spec, prefix = found
    by_name: dict[str, list[MetricFamily]] = {}
    for fam in families:
        by_name.setdefault(fam.name, []).append(fam)
    builder.add("runtime.engine", spec.engine, METHOD, f"metric prefix {prefix!r}")

    for info_name, (label_map, extra_prefix) in spec.info_metrics.items():
        metric = prefix + info_name
        samples = [s for fam in by_name.get(metric, []) for s in fam.samples]
        if not samples:
            continue
        labels = samples[0].labels
        if any(s.labels != labels for s in samples[1:]):
            notes.append(f"{metric}: {len(samples)} series disagree; using the first")
        for label in sorted(labels):
            if label in spec.identity_labels:
                continue
            raw = labels[label]
            if label in label_map:
                key, want = label_map[label]
                value = _coerce(raw, want)
            else:
                key, value = f"{extra_prefix}.{_label_key(label)}", typed_label_value(raw)
            builder.add(key, value, METHOD, f"{metric} label {label}={raw!r}")

    if spec.model_name_label is not None:
        names = sorted(
            {
                s.labels[spec.model_name_label]
                for fam in families
                if fam.name.startswith(prefix)
                for s in fam.samples
                if s.labels.get(spec.model_name_label)
            }
        )
        if names:
            served: FactValue = names[0] if len(names) == 1 else list(names)
            builder.add(
                "runtime.served_model_name", served, METHOD, f"label {spec.model_name_label} of {prefix}*"
            )

    for alias in spec.observations:
        for metric_name in alias.metrics:
            fams = by_name.get(prefix + metric_name, [])
            values = [s.value for fam in fams for s in fam.samples if math.isfinite(s.value)]
            if values:
                observations.append(Observation(alias.name, alias.combine(values), alias.unit))
                break
    return Interpretation(builder, observations, notes, spec)


def metrics_url(ctx: CollectContext) -> str | None:
    if ctx.settings.metrics_url:
        return ctx.settings.metrics_url
    if ctx.process is not None and ctx.process.metrics_url:
        return ctx.process.metrics_url
    return None


async def fetch_metrics(url: str, timeout_s: float, max_bytes: int) -> bytes:
    """GET ``url`` and return at most ``max_bytes`` of body, streamed, under ``timeout_s``."""
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url, headers={"Accept": "text/plain"}) as resp,
        ):
            if resp.status == 404:
                raise MetricsUnreachable(
                    f"{url}: HTTP 404 (metrics not enabled? SGLang needs --enable-metrics)"
                )
            if resp.status != 200:
                raise MetricsFetchError(f"{url}: HTTP {resp.status} {resp.reason or ''}".rstrip())
            if resp.content_length is not None and resp.content_length > max_bytes:
                raise MetricsFetchError(
                    f"{url}: response of {resp.content_length} bytes is over the {max_bytes}-byte cap"
                )
            body = bytearray()
            async for chunk in resp.content.iter_chunked(_CHUNK_BYTES):
                body.extend(chunk)
                if len(body) > max_bytes:
                    raise MetricsFetchError(f"{url}: response is over the {max_bytes}-byte cap")
            return bytes(body)
    except aiohttp.ClientConnectorError as e:
        raise MetricsUnreachable(f"{url}: cannot connect (server not up yet?): {e.os_error}") from e
    except TimeoutError as e:
        raise MetricsFetchError(f"{url}: no complete response within {timeout_s:g} s") from e
    except aiohttp.ClientError as e:
        raise MetricsFetchError(f"{url}: {type(e).__name__}: {e}") from e


class RuntimeMetricsSource:
    """Scrapes the engine's Prometheus endpoint once per collection."""

    name = NAME

    def __init__(self, timeout_s: float = DEFAULT_TIMEOUT_S, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes

    async def collect(self, ctx: CollectContext) -> SourceResult:
        url = metrics_url(ctx)
        if url is None:
            return SourceResult.unavailable(
                "no metrics URL: pass --metrics-url, or run the engine with a --port the agent can find"
            )
        # Stay inside the runner's own timeout so our message, not a generic one, is reported.
        timeout_s = min(self.timeout_s, max(ctx.settings.source_timeout_s * 0.8, 0.01))
        try:
            body = await fetch_metrics(url, timeout_s, self.max_bytes)
        except MetricsUnreachable as e:
            return SourceResult.unavailable(str(e))
        except MetricsFetchError as e:
            return SourceResult.error(str(e))
        try:
            families = await asyncio.to_thread(_parse, body, url)
        except MetricsParseError as e:
            return SourceResult.error(str(e))
        result = interpret_families(families, self.name)
        return SourceResult(SourceState.OK, "; ".join(result.notes), result.facts.facts, result.observations)


def _parse(body: bytes, url: str) -> list[MetricFamily]:
    return parse_metrics_text(decode_metrics_body(body, url), url)
