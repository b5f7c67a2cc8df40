"""The runtime-metrics source: what the serving engine reports about itself, and how it performs.

Reading (HTTP GETs under a timeout and a size cap) is kept apart from interpreting: ``/metrics``
is parsed by ``agent.promtext`` and turned into facts by the pure ``interpret_families``; info
endpoints (vLLM ``/version``, ``/v1/models`` and, in its dev mode, ``/server_info``; TGI ``/info``;
SGLang ``/server_info`` and ``/model_info``) by the pure ``interpret_info``, which copies only the
fields of the endpoint's table (SGLang's server info holds its ``api_key``: never a fact). What
each engine calls a concept is data in ``agent.engines`` (metric prefixes and V0/V1 aliases, info
metrics, info endpoints, expected families), so a new engine or a renamed metric is a table edit,
not a new branch.

Facts are runtime-reported, the highest precedence: ``runtime.engine`` (from the metric prefix),
the labels of every ``*_config_info`` metric (vLLM's ``cache_config_info`` onto canonical keys),
gauges whose value is resolved configuration (SGLang's KV capacity), ``runtime.served_model_name``
and the info endpoints' fields. Observations (rates, latency percentiles, gauge means) need a
window: the source keeps the previous scrape (``agent.observations``) and reports nothing for the
first one. One failing endpoint never loses the others: a 404 on ``/metrics`` (SGLang without
``--enable-metrics``) still asks the info endpoints of the engine the process source found.

Info routes are remembered per engine process (URL, engine, pid): an endpoint's current route is
asked first and its deprecated ones (``fallbacks``) only on a 404; the route that answered is the
one refreshed every ``INFO_REFRESH_S``, and an endpoint no route serves is not asked again until
the process changes. Metric-name drift is a fact: ``runtime.metrics.missing`` lists the families
the engine's release should export (``MetricsSpec.expected``) that the scrape lacks.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from agent.bounds import (
    MAX_FACTS_PER_SOURCE,
    MAX_INFO_LABELS,
    MAX_LABEL_VALUE_CHARS,
    BoundsError,
    JsonProblem,
    Unrepresentable,
    bounded_int,
    check_fact_value,
    join_notes,
    load_json,
    short_repr,
)
from agent.engines import ENGINES, EngineSpec, engine_named
from agent.engines.base import ExpectedFamily, InfoEndpoint, MetricsSpec, ValueType
from agent.engines.effective import in_range, release
from agent.engines.parse import ValueProblem, convert_typed
from agent.errors import SourceFailed
from agent.observations import ObservationWindow, extract
from agent.promtext import MetricFamily, MetricsParseError, decode_metrics_body, parse_metrics_text
from agent.sources.base import CollectContext, FactBuilder, SourceResult
from skewwatch.core.errors import FactError
from skewwatch.core.facts import Fact, FactValue, Observation, SourceState

NAME = "runtime_metrics"
METHOD = "runtime-reported"

DEFAULT_TIMEOUT_S = 5.0
# Info endpoints describe the server process, which does not change while it runs: asked again
# after this long, or at once when the engine process (its pid) or the URL changes.
INFO_REFRESH_S = 300.0
DEFAULT_MAX_BYTES = 8 * 1024 * 1024
MAX_INFO_BYTES = 1024 * 1024
_CHUNK_BYTES = 64 * 1024
_INFO_SUFFIX = "_info"
# Values an info endpoint reports for what was asked rather than what runs.
_UNRESOLVED: tuple[FactValue, ...] = (None, "auto", "")


class MetricsFetchError(SourceFailed):
    """The metrics endpoint answered, but not with a usable page; the message names the URL."""


class MetricsUnreachable(SourceFailed):
    """Nothing is listening (yet) at the metrics URL, or it answers 404 / 401 / 403."""


class NotServed(MetricsUnreachable):
    """The server answers, but not this route (HTTP 404): an engine release without it."""


class NotListening(MetricsUnreachable):
    """Nothing is listening (yet): an engine still loading its weights. Never a cached answer."""


@dataclass
class Interpretation:
    facts: FactBuilder
    notes: list[str]
    engine: EngineSpec | None
    prefix: str = ""
    families: Sequence[MetricFamily] = ()


def detect_engine(families: Iterable[MetricFamily]) -> tuple[EngineSpec, str] | None:
    """The engine whose prefix most families carry, with that prefix; None when none does."""
    counts: dict[tuple[int, str], int] = {}
    for fam in families:
        for i, spec in enumerate(ENGINES):
            for prefix in spec.metrics.prefixes:
                if fam.name.startswith(prefix):
                    counts[(i, prefix)] = counts.get((i, prefix), 0) + 1
    if not counts:
        return None
    (i, prefix), _ = max(counts.items(), key=lambda kv: kv[1])
    return ENGINES[i], prefix


_INT_RE = re.compile(r"^[+-]?\d+$")


def typed_label_value(raw: str) -> FactValue:
    """A label value as its natural type: ints, finite floats, True/False, None; else the string.

    An integer beyond int64 (what the wire carries) raises BoundsError: that label's fact is lost.
    """
    if raw in ("True", "true"):
        return True
    if raw in ("False", "false"):
        return False
    if raw == "None":
        return None
    if _INT_RE.match(raw):
        value = bounded_int(raw)
        if value is None:
            raise BoundsError(f"integer of {len(raw.lstrip('+-'))} digits is out of the int64 range")
        return value
    try:
        number = float(raw)
    except ValueError:
        return raw
    return number if math.isfinite(number) else raw


def _coerce(raw: str, want: ValueType) -> FactValue:
    """``raw`` as ``want``; a value that does not fit keeps its natural type rather than vanish."""
    natural = typed_label_value(raw)
    if natural is None:
        return None
    if want == "str":
        return raw
    if want == "float" and isinstance(natural, int) and not isinstance(natural, bool):
        # "1" means 1.0 for a fraction; keep the type stable across values (int64: no overflow)
        return float(natural)
    return natural


def _label_key(label: str) -> str:
    return label.lower()


def _add(builder: FactBuilder, notes: list[str], key: str, value: object, detail: str) -> None:
    """Add one fact; a value the wire cannot carry loses this fact alone, with a note naming it."""
    try:
        builder.add(key, check_fact_value(key, value), METHOD, detail)
    except FactError as e:
        notes.append(f"{detail}: {e}")


def _info_labels(
    metric: str, labels: Mapping[str, str], label_map: Mapping[str, object], skip: frozenset[str] | set[str]
) -> tuple[list[str], list[str]]:
    """The labels of ``metric`` to report, canonical (mapped) ones first, within the bounds; notes."""
    notes: list[str] = []
    names = sorted((n for n in labels if n not in skip), key=lambda n: (n not in label_map, n))
    too_long = [n for n in names if len(labels[n]) > MAX_LABEL_VALUE_CHARS]
    if too_long:
        shown = ", ".join(n[:64] for n in too_long[:5]) + (", …" if len(too_long) > 5 else "")
        notes.append(
            f"{metric}: dropped {len(too_long)} label(s) with values over {MAX_LABEL_VALUE_CHARS}"
            f" characters: {shown}"
        )
        names = [n for n in names if len(labels[n]) <= MAX_LABEL_VALUE_CHARS]
    if len(names) > MAX_INFO_LABELS:
        extra = names[MAX_INFO_LABELS:]
        shown = ", ".join(n[:64] for n in extra[:5]) + (", …" if len(extra) > 5 else "")
        notes.append(
            f"{metric}: dropped {len(extra)} of {len(names)} labels, over the {MAX_INFO_LABELS}-label"
            f" cap (kept the engine's known labels, then the first by name): {shown}"
        )
        names = names[:MAX_INFO_LABELS]
    return names, notes


def _unprefixed(families: Sequence[MetricFamily], spec: EngineSpec | None) -> bool:
    """True when ``spec`` (the engine the process source found) serves its families without a
    prefix in some releases and the page holds one of the families its observations read."""
    if spec is None or not spec.metrics.unprefixed:
        return False
    names = {m for obs in spec.metrics.observations for m in obs.metrics}
    return any(fam.name in names for fam in families)


def interpret_families(
    families: Sequence[MetricFamily],
    source: str = NAME,
    version: FactValue = None,
    process_engine: EngineSpec | None = None,
) -> Interpretation:
    """Facts from parsed families (observations need two scrapes: see ``agent.observations``).

    ``version`` is the engine's reported ``runtime.version`` (its info endpoints), which says the
    families the scrape should hold. ``process_engine``, the engine the process source found,
    reads a page without prefixes where that engine serves one (TensorRT-LLM 1.1). Pure: no I/O,
    no clock.
    """
    builder = FactBuilder(source)
    notes: list[str] = []
    found = detect_engine(families)
    if found is None and _unprefixed(families, process_engine):
        assert process_engine is not None
        found = (process_engine, "")
    if found is None:
        names = ", ".join(s.name for s in ENGINES if s is engine_named(s.name))
        notes.append(f"no metrics of a known engine ({names}) on the page")
        return Interpretation(builder, notes, None, "", families)
    spec, prefix = found
    by_name: dict[str, list[MetricFamily]] = {}
    for fam in families:
        by_name.setdefault(fam.name, []).append(fam)
    how = f"metric prefix {prefix!r}" if prefix else f"{spec.name}'s families without a prefix"
    builder.add("runtime.engine", spec.name, METHOD, how)
    _info_facts(spec.metrics, prefix, by_name, builder, notes)
    _value_facts(spec.metrics, prefix, by_name, builder, notes)
    _served_names(spec.metrics, prefix, families, builder, notes)
    _missing_fact(spec, prefix, families, version, builder=builder, notes=notes)
    return Interpretation(builder, notes, spec, prefix, families)


MISSING_KEY = "runtime.metrics.missing"


def expected_for(
    expected: Sequence[ExpectedFamily], version: tuple[int, int, int] | None
) -> list[ExpectedFamily]:
    """The rows that hold for ``version``, compared as the engines' auto rules are
    (``agent.engines.effective.in_range``). With no version known, only the rows without a range:
    a family every release exports. A row open towards new releases (``since`` only) is not
    enough then, unlike an auto rule's: an old release lacks the family it names (vLLM's V0 has
    no ``kv_cache_usage_perc``), and "missing" would be false."""
    if version is None:
        return [e for e in expected if e.since is None and e.until is None]
    return [e for e in expected if in_range(version, e.since, e.until)]


def _present(families: Sequence[MetricFamily]) -> set[str]:
    """Every name the scrape holds: families, their samples, and counters with ``_total`` (a
    labelled counter with no series yet has a TYPE line and no sample)."""
    names: set[str] = set()
    for fam in families:
        names.add(fam.name)
        if fam.type == "counter":
            names.add(fam.name + "_total")
        names.update(s.name for s in fam.samples)
    return names


def missing_families(
    spec: EngineSpec, prefix: str, families: Sequence[MetricFamily], version: FactValue
) -> tuple[list[str], list[str], int]:
    """(the expected families the scrape lacks, with ``prefix``, sorted; messages: one for the
    renamed ones each, naming the family that replaces it, one for the rest; how many families
    were expected). Pure."""
    parsed = release(version)
    rows = expected_for(spec.metrics.expected, parsed)
    present = _present(families)
    said = f"{spec.name} {version}" if parsed is not None else f"{spec.name} (version unknown)"
    missing: set[str] = set()
    renamed: list[str] = []
    for row in rows:
        name = prefix + row.name
        if name in present or name in missing:
            continue
        missing.add(name)
        if row.replaced_by is not None and prefix + row.replaced_by in present:
            renamed.append(f"{said} no longer exports {name}; {prefix}{row.replaced_by} replaces it")
            continue
        # A successor missing while the family it replaces is still there: say which.
        for old in spec.metrics.expected:
            if old.replaced_by == row.name and prefix + old.name in present:
                renamed.append(
                    f"{said} does not export {name}, which replaces {prefix}{old.name} (still exported)"
                )
    names = sorted(missing)
    if not names:
        return [], [], len(rows)
    plural = "family" if len(names) == 1 else "families"
    messages = [f"{said} does not export {len(names)} expected {plural}: {', '.join(names)}", *renamed]
    return names, messages, len(rows)


def _missing_fact(
    spec: EngineSpec,
    prefix: str,
    families: Sequence[MetricFamily],
    version: FactValue,
    *,
    builder: FactBuilder,
    notes: list[str],
) -> None:
    """``runtime.metrics.missing`` where expected families are absent; no fact when none is (a
    replica whose page is complete carries no extra key, and the first missing family shows as
    the key appearing)."""
    if not spec.metrics.expected:
        return
    names, messages, checked = missing_families(spec, prefix, families, version)
    if not names:
        return
    notes.extend(messages)
    known = f"{spec.name} {version}" if release(version) is not None else "version unknown: every release"
    detail = f"{checked} expected {prefix}* families ({known}) absent from the scrape"
    _add(builder, notes, MISSING_KEY, list(names), detail)


def _info_tables(
    metrics: MetricsSpec, prefix: str, by_name: Mapping[str, list[MetricFamily]]
) -> list[tuple[str, tuple[Mapping[str, tuple[str, ValueType]], str]]]:
    """The engine's info metrics, then any other ``<prefix>*_config_info`` under its own name."""
    tables = {prefix + im.metric: (im.labels, im.extra_prefix) for im in metrics.info_metrics}
    for name in sorted(by_name):
        if name.startswith(prefix) and name.endswith("_config" + _INFO_SUFFIX) and name not in tables:
            stem = name[len(prefix) : -len(_INFO_SUFFIX)]
            tables[name] = ({}, f"runtime.{_label_key(stem)}")
    return list(tables.items())


def _info_facts(
    metrics: MetricsSpec,
    prefix: str,
    by_name: Mapping[str, list[MetricFamily]],
    builder: FactBuilder,
    notes: list[str],
) -> None:
    """The labels of ``*_info`` metrics as configuration facts, up to the per-source cap."""
    table_items = _info_tables(metrics, prefix, by_name)
    for index, (metric, (label_map, extra_prefix)) in enumerate(table_items):
        samples = [s for fam in by_name.get(metric, []) for s in fam.samples]
        if not samples:
            continue
        if len(builder.facts) >= MAX_FACTS_PER_SOURCE:
            # The engine's own tables come first; a flood of made-up *_config_info stops here.
            left = [m for m, _ in table_items[index:] if by_name.get(m)]
            notes.append(
                f"stopped at {len(builder.facts)} facts, the per-source cap: {len(left)} *_config_info"
                f" metric(s) not read, from {metric}"
            )
            break
        labels = samples[0].labels
        if any(s.labels != labels for s in samples[1:]):
            notes.append(f"{metric}: {len(samples)} series disagree; using the first")
        names, label_notes = _info_labels(metric, labels, label_map, set(metrics.identity_labels))
        notes.extend(label_notes)
        for label in names:
            _label_fact(
                metric,
                label,
                labels[label],
                label_map=label_map,
                extra_prefix=extra_prefix,
                builder=builder,
                notes=notes,
            )


def _label_fact(
    metric: str,
    label: str,
    raw: str,
    *,
    label_map: Mapping[str, tuple[str, ValueType]],
    extra_prefix: str,
    builder: FactBuilder,
    notes: list[str],
) -> None:
    detail = f"{metric} label {label}={short_repr(raw, 200)}"
    try:
        if label in label_map:
            key, want = label_map[label]
            value = _coerce(raw, want)
        else:
            key, value = f"{extra_prefix}.{_label_key(label)}", typed_label_value(raw)
    except FactError as e:
        notes.append(f"{detail}: {e}")
        return
    _add(builder, notes, key, value, detail)


def _value_facts(
    metrics: MetricsSpec,
    prefix: str,
    by_name: Mapping[str, list[MetricFamily]],
    builder: FactBuilder,
    notes: list[str],
) -> None:
    """Gauges whose value is configuration the runtime resolved (the largest finite sample)."""
    for metric_name, (key, want) in metrics.value_facts.items():
        values = [
            s.value
            for fam in by_name.get(prefix + metric_name, [])
            for s in fam.samples
            if math.isfinite(s.value)
        ]
        if not values:
            continue
        try:
            value = convert_typed(want, max(values) if want != "bool" else bool(max(values)))
        except (ValueProblem, ValueError, OverflowError) as e:
            notes.append(f"{prefix}{metric_name}: {e}")
            continue
        _add(builder, notes, key, value, f"value of {prefix}{metric_name}")


def _served_names(
    metrics: MetricsSpec,
    prefix: str,
    families: Sequence[MetricFamily],
    builder: FactBuilder,
    notes: list[str],
) -> None:
    """``runtime.served_model_name`` from the model-name label of the engine's metrics."""
    if metrics.model_name_label is None:
        return
    label = metrics.model_name_label
    names = sorted(
        {
            s.labels[label]
            for fam in families
            if fam.name.startswith(prefix)
            for s in fam.samples
            if s.labels.get(label) and s.labels[label] not in metrics.model_name_placeholders
        }
    )
    if names:
        served: FactValue = names[0] if len(names) == 1 else list(names)
        _add(builder, notes, "runtime.served_model_name", served, f"label {label} of {prefix}*")


def json_path(doc: object, path: str) -> object:
    """The value at a dotted path (``data.0.max_model_len``); None when any step is missing."""
    node = doc
    for step in path.split("."):
        if isinstance(node, dict):
            node = node.get(step)
        elif isinstance(node, list) and step.isdigit() and int(step) < len(node):
            node = node[int(step)]
        else:
            return None
    return node


def interpret_info(endpoint: InfoEndpoint, doc: object, builder: FactBuilder, where: str) -> list[str]:
    """Facts from one info endpoint's JSON document; problems are returned, naming the field. Pure."""
    problems: list[str] = []
    if not isinstance(doc, dict):
        return [f"{where}: expected a JSON object, got {type(doc).__name__}"]
    for path, (key, want) in endpoint.fields.items():
        raw = json_path(doc, path)
        if isinstance(raw, Unrepresentable):
            problems.append(f"{where} field {path}: {raw.reason}")
            continue
        if isinstance(raw, str) and len(raw) > MAX_LABEL_VALUE_CHARS:
            problems.append(
                f"{where} field {path}: string of {len(raw)} characters, over {MAX_LABEL_VALUE_CHARS}"
            )
            continue
        if raw in _UNRESOLVED or isinstance(raw, dict | list):
            continue
        try:
            value = convert_typed(want, raw)
        except (ValueProblem, ValueError, OverflowError, TypeError) as e:
            problems.append(f"{where} field {path}: {e}")
            continue
        _add(builder, problems, key, value, f"{where} field {path}")
    return problems


def metrics_url(ctx: CollectContext) -> str | None:
    if ctx.settings.metrics_url:
        return ctx.settings.metrics_url
    if ctx.process is not None and ctx.process.metrics_url:
        return ctx.process.metrics_url
    return None


def endpoint_url(metrics: str, path: str) -> str:
    """``path`` (and its query, if any) on the server that serves ``metrics`` (same scheme, host
    and port)."""
    parts = urlsplit(metrics)
    route, _, query = path.partition("?")
    return urlunsplit((parts.scheme, parts.netloc, route, query, ""))


async def fetch(
    session: aiohttp.ClientSession, url: str, timeout_s: float, max_bytes: int, accept: str = "text/plain"
) -> bytes:
    """GET ``url`` and return at most ``max_bytes`` of body, streamed, under ``timeout_s``."""
    try:
        async with session.get(
            url, headers={"Accept": accept}, timeout=aiohttp.ClientTimeout(total=timeout_s)
        ) as resp:
            if resp.status == 404:
                raise NotServed(f"{url}: HTTP 404")
            if resp.status in (401, 403):
                raise MetricsUnreachable(f"{url}: HTTP {resp.status} (the server requires an API key)")
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
        raise NotListening(f"{url}: cannot connect (server not up yet?): {e.os_error}") from e
    except TimeoutError as e:
        raise MetricsFetchError(f"{url}: no complete response within {timeout_s:g} s") from e
    except aiohttp.ClientError as e:
        raise MetricsFetchError(f"{url}: {type(e).__name__}: {e}") from e


@dataclass
class RouteMemory:
    """What one info endpoint answered the engine process, and through which route.

    ``route`` is the route that answered (the current one or a deprecated fallback), refreshed
    through that same route once ``expires`` passes; None when no route is served (every one
    404): not asked again for this process at all. ``facts`` and ``notes`` are that answer's.
    """

    route: str | None
    expires: float
    facts: list[Fact] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class InfoAnswer:
    """One endpoint's answer in one cycle: facts, notes and errors, and what to remember."""

    facts: list[Fact] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    remember: RouteMemory | None = None


class RuntimeMetricsSource:
    """Scrapes the engine's Prometheus endpoint and info endpoints once per collection.

    Keeps the previous scrape between collections (the agent reuses its sources), so each
    collection after the first reports observations over the window since the one before.
    """

    name = NAME
    needs: tuple[str, ...] = ("process",)  # the engine and its metrics URL

    def __init__(
        self,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_bytes: int = DEFAULT_MAX_BYTES,
        clock: Callable[[], float] = time.monotonic,
        info_refresh_s: float = INFO_REFRESH_S,
    ) -> None:
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes
        self.clock = clock
        self.info_refresh_s = info_refresh_s
        self.window = ObservationWindow()
        # Per engine process (url, engine, pid): each info endpoint's route and last clean answer.
        self._info_owner: tuple[str, str, int | None, float | None] | None = None
        self._routes: dict[str, RouteMemory] = {}

    async def collect(self, ctx: CollectContext) -> SourceResult:
        url = metrics_url(ctx)
        if url is None:
            return SourceResult.unavailable(
                "no metrics URL: pass --metrics-url, or run the engine with a --port the agent can find"
            )
        # Stay inside the runner's own timeout so our message, not a generic one, is reported.
        timeout_s = min(self.timeout_s, max(ctx.settings.source_timeout_s * 0.8, 0.01))
        async with aiohttp.ClientSession() as session:
            return await self._collect(session, url, timeout_s, ctx)

    async def _collect(
        self, session: aiohttp.ClientSession, url: str, timeout_s: float, ctx: CollectContext
    ) -> SourceResult:
        notes: list[str] = []
        errors: list[str] = []
        builder = FactBuilder(self.name)
        observations: list[Observation] = []
        families: list[MetricFamily] | None = None
        at = 0.0
        try:
            body = await fetch(session, url, timeout_s, self.max_bytes)
            at = self.clock()
            families = await asyncio.to_thread(_parse, body, url)
        except NotListening as e:
            # Nothing listens on the engine's port: it is loading, or shutting down. What it
            # said before (remembered info answers included) is not what it says now.
            return SourceResult.unavailable(str(e))
        except NotServed as e:
            notes.append(f"{e} (metrics not enabled? SGLang needs --enable-metrics)")
        except MetricsUnreachable as e:
            notes.append(str(e))
        except (MetricsFetchError, MetricsParseError) as e:
            errors.append(str(e))

        found = detect_engine(families) if families is not None else None
        spec = found[0] if found is not None else None
        if spec is None and ctx.process is not None and ctx.process.engine != "unknown":
            spec = engine_named(ctx.process.engine)  # /metrics said nothing: trust the process
        info = await self._info_all(session, url, spec, timeout_s, ctx) if spec is not None else InfoAnswer()
        if families is not None:
            # The info endpoints' version says which families this release should export.
            version = next((f.value for f in info.facts if f.key == "runtime.version"), None)
            interpretation = interpret_families(families, self.name, version, process_engine=spec)
            builder.facts.extend(interpretation.facts.facts)
            notes.extend(interpretation.notes)
            if interpretation.engine is not None:
                observations.extend(self._observe(interpretation, families, at, ctx, notes))
        builder.facts.extend(info.facts)
        notes.extend(info.notes)
        errors.extend(info.errors)

        message = join_notes(errors + notes)
        if errors:
            return SourceResult.error(message, builder.facts, observations)
        if families is None and not builder.facts:
            return SourceResult.unavailable(message)
        return SourceResult(SourceState.OK, message, builder.facts, observations)

    def _observe(
        self,
        interpretation: Interpretation,
        families: Sequence[MetricFamily],
        at: float,
        ctx: CollectContext,
        notes: list[str],
    ) -> list[Observation]:
        assert interpretation.engine is not None
        metrics = interpretation.engine.metrics
        scrape = extract(families, interpretation.prefix, metrics, at)
        # A window never spans two processes: rates across a restart are the downtime's.
        proc = ctx.process
        owner = f"{proc.pid}@{proc.start_time}" if proc is not None else ""
        obs, obs_notes = self.window.update(
            (interpretation.engine.name, interpretation.prefix, owner), scrape, metrics
        )
        notes.extend(obs_notes)
        return obs

    async def _info_all(
        self,
        session: aiohttp.ClientSession,
        url: str,
        spec: EngineSpec,
        timeout_s: float,
        ctx: CollectContext,
    ) -> InfoAnswer:
        """Every info endpoint of ``spec``: remembered answers where fresh, else asked (at once)."""
        # The process's start time too: an engine restarted under the same pid (a container's own
        # pid namespace) may be another release, with other routes.
        proc = ctx.process
        owner = (url, spec.name, proc.pid if proc else None, proc.start_time if proc else None)
        if owner != self._info_owner:
            # Another engine process (or URL): its routes may differ, and nothing it said is known.
            self._info_owner, self._routes = owner, {}
        now = self.clock()
        answers = await asyncio.gather(
            *(self._endpoint(session, url, ep, timeout_s, now) for ep in spec.metrics.info_endpoints)
        )
        out = InfoAnswer()
        for endpoint, answer in zip(spec.metrics.info_endpoints, answers, strict=True):
            # Nothing to remember (nothing listening yet, a failed fetch): the memory stands, and
            # the endpoint is asked again next cycle through the route it names, if any.
            if answer.remember is not None:
                self._routes[endpoint.path] = answer.remember
            out.facts.extend(answer.facts)
            out.notes.extend(answer.notes)
            out.errors.extend(answer.errors)
        return out

    async def _endpoint(
        self,
        session: aiohttp.ClientSession,
        metrics: str,
        endpoint: InfoEndpoint,
        timeout_s: float,
        now: float,
    ) -> InfoAnswer:
        """One endpoint: its remembered answer while fresh; else its remembered route, or its
        current route and then, on 404 only, each deprecated one in order."""
        memory = self._routes.get(endpoint.path)
        if memory is not None and (memory.route is None or now < memory.expires):
            return InfoAnswer(list(memory.facts), list(memory.notes))
        chain = (endpoint.path, *endpoint.fallbacks)
        # The remembered route alone, unless it stops being served: then the others, current first.
        remembered = memory.route if memory is not None else None
        routes = (remembered, *(r for r in chain if r != remembered)) if remembered else chain
        not_served: list[str] = []
        for route in routes:
            answer = await self._ask(session, metrics, endpoint, route, timeout_s=timeout_s, now=now)
            if answer is not None:
                return answer
            not_served.append(route)
        shown = ", ".join(not_served)
        note = (
            f"{endpoint.path}: not served by this engine (HTTP 404 on {shown});"
            " not asked again for this process"
        )
        return InfoAnswer(notes=[note], remember=RouteMemory(None, math.inf, [], [note]))

    async def _ask(
        self,
        session: aiohttp.ClientSession,
        metrics: str,
        endpoint: InfoEndpoint,
        route: str,
        *,
        timeout_s: float,
        now: float,
    ) -> InfoAnswer | None:
        """``route``'s answer; None when it is not served (404: the caller tries the next)."""
        url = endpoint_url(metrics, route)
        expires = now + self.info_refresh_s
        via = _via(endpoint, route)
        try:
            body = await fetch(session, url, timeout_s, MAX_INFO_BYTES, accept="application/json")
        except NotServed:
            return None
        except NotListening as e:
            return InfoAnswer(notes=[str(e)])  # not up yet: asked again next cycle, never kept
        except MetricsUnreachable as e:
            # Served, behind an API key: kept (the key will not appear by itself), refreshed later.
            notes = [f"{e}{via}"]
            return InfoAnswer(notes=notes, remember=RouteMemory(route, expires, [], notes))
        except MetricsFetchError as e:
            return InfoAnswer(errors=[str(e)])
        try:
            doc = load_json(body)
        except JsonProblem as e:
            return InfoAnswer(errors=[f"{url}: not JSON: {e}"])
        builder = FactBuilder(self.name)
        problems = interpret_info(endpoint, doc, builder, route.partition("?")[0])
        # Where an endpoint has older routes, the message says which one answered.
        notes = (
            [f"{endpoint.path.partition('?')[0]}: {route.partition('?')[0]} answered{via}"]
            if endpoint.fallbacks
            else []
        )
        if problems:
            # Only a clean answer is kept; an error is asked again next cycle, through this route.
            return InfoAnswer(builder.facts, notes, problems, RouteMemory(route, now, [], []))
        return InfoAnswer(builder.facts, notes, [], RouteMemory(route, expires, builder.facts, notes))


def _via(endpoint: InfoEndpoint, route: str) -> str:
    """How a route stands to its endpoint, for messages: nothing for the current route."""
    if route == endpoint.path:
        return ""
    return f" (deprecated route; {endpoint.path.partition('?')[0]} is not served by this engine release)"


def _parse(body: bytes, url: str) -> list[MetricFamily]:
    return parse_metrics_text(decode_metrics_body(body, url), url)
