"""Conversion between the core fact model and the skewwatch.v1 wire messages.

Decoding is strict: the collector calls ``snapshot_from_proto`` on untrusted input, so every
limit and type rule of the fact contract is checked here and a violation raises a ``WireError``
naming the field at fault.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from google.protobuf.timestamp_pb2 import Timestamp

from proto.skewwatch.v1 import skewwatch_pb2 as pb
from skewwatch.core.errors import FactError, SkewwatchError
from skewwatch.core.facts import (
    CATEGORIES,
    MAX_INPUTS,
    MAX_KEY_LENGTH,
    MAX_STRING_LENGTH,
    MAX_VALUE_DEPTH,
    MAX_VALUE_ITEMS,
    METHODS,
    Fact,
    FactValue,
    Observation,
    Provenance,
    Snapshot,
    SourceState,
    SourceStatus,
    validate_key,
    validate_value,
)
from skewwatch.core.fingerprint import fact_line, fingerprint_lines
from skewwatch.core.identity import PodIdentity
from skewwatch.core.lru import BoundedLRU

MAX_FACTS = 20_000
MAX_SOURCES = 64
MAX_OBSERVATIONS = 2_000
MAX_TEXT = 4_096

_STATE_TO_PB = {
    SourceState.OK: pb.SOURCE_STATE_OK,
    SourceState.UNAVAILABLE: pb.SOURCE_STATE_UNAVAILABLE,
    SourceState.ERROR: pb.SOURCE_STATE_ERROR,
    SourceState.PENDING: pb.SOURCE_STATE_PENDING,
}
_PB_TO_STATE = {v: k for k, v in _STATE_TO_PB.items()}


class WireError(SkewwatchError, ValueError):
    """A wire message breaks the contract; the message names the field. ``limit`` names the
    limit it went over when that is the cause (docs/collector-limits.md: ``max_facts``,
    ``max_key_length``…), else None."""

    def __init__(self, message: str, *, limit: str | None = None) -> None:
        super().__init__(message)
        self.limit = limit


# The limit names a WireError carries (docs/collector-limits.md).
LIMIT_FACTS = "max_facts"
LIMIT_SOURCES = "max_sources"
LIMIT_OBSERVATIONS = "max_observations"
LIMIT_OBSERVATION_NAME = "max_observation_name"
LIMIT_TEXT = "max_text"
LIMIT_INPUTS = "max_inputs"
LIMIT_KEY_LENGTH = "max_key_length"
LIMIT_VALUE_LENGTH = "max_value_length"
LIMIT_VALUE_ITEMS = "max_value_items"
LIMIT_VALUE_DEPTH = "max_value_depth"
MAX_OBSERVATION_NAME = 256


def timestamp(seconds: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def seconds(ts: Timestamp) -> float:
    return float(ts.ToNanoseconds()) / 1e9


def value_to_proto(value: FactValue) -> pb.Value:
    v = pb.Value()
    if value is None:
        v.null_value = True
    elif isinstance(value, bool):
        v.bool_value = value
    elif isinstance(value, int):
        v.int_value = value
    elif isinstance(value, float):
        v.float_value = value
    elif isinstance(value, str):
        v.string_value = value
    elif isinstance(value, list):
        v.list_value.SetInParent()  # an empty list is a list, not a value without a kind
        v.list_value.items.extend(value_to_proto(x) for x in value)
    else:
        v.map_value.SetInParent()  # likewise an empty map ("rope_scaling": {})
        for k, x in value.items():
            v.map_value.entries[k].CopyFrom(value_to_proto(x))
    return v


def value_from_proto(v: pb.Value, where: str, _depth: int = 0) -> FactValue:
    if _depth > MAX_VALUE_DEPTH:
        raise WireError(
            f"{where}: value nested deeper than {MAX_VALUE_DEPTH} levels", limit=LIMIT_VALUE_DEPTH
        )
    kind = v.WhichOneof("kind")
    if kind is None:
        raise WireError(f"{where}: value has no kind set")
    if kind == "null_value":
        return None
    if kind == "bool_value":
        return v.bool_value
    if kind == "int_value":
        return v.int_value
    if kind == "float_value":
        if not math.isfinite(v.float_value):
            raise WireError(f"{where}: float value {v.float_value!r} is not finite")
        return v.float_value
    if kind == "string_value":
        if len(v.string_value) > MAX_STRING_LENGTH:
            raise WireError(
                f"{where}: string of {len(v.string_value)} characters, over {MAX_STRING_LENGTH}",
                limit=LIMIT_VALUE_LENGTH,
            )
        return v.string_value
    if kind == "list_value":
        if len(v.list_value.items) > MAX_VALUE_ITEMS:
            raise WireError(
                f"{where}: list of {len(v.list_value.items)} items, over {MAX_VALUE_ITEMS}",
                limit=LIMIT_VALUE_ITEMS,
            )
        return [value_from_proto(x, f"{where}[{i}]", _depth + 1) for i, x in enumerate(v.list_value.items)]
    entries = v.map_value.entries
    if len(entries) > MAX_VALUE_ITEMS:
        raise WireError(
            f"{where}: map of {len(entries)} entries, over {MAX_VALUE_ITEMS}", limit=LIMIT_VALUE_ITEMS
        )
    return {k: value_from_proto(entries[k], f"{where}.{k}", _depth + 1) for k in sorted(entries)}


def snapshot_to_proto(snap: Snapshot) -> pb.Snapshot:
    msg = pb.Snapshot(collected_at=timestamp(snap.collected_at))
    for key in sorted(snap.facts):
        f = snap.facts[key]
        msg.facts.append(
            pb.Fact(
                key=f.key,
                value=value_to_proto(f.value),
                provenance=pb.Provenance(
                    source=f.provenance.source,
                    method=f.provenance.method,
                    detail=f.provenance.detail,
                    inputs=list(f.provenance.inputs),
                    last_seen=f.provenance.last_seen or 0.0,
                ),
            )
        )
    for name in sorted(snap.sources):
        s = snap.sources[name]
        msg.sources.append(
            pb.SourceStatus(
                name=s.name, state=_STATE_TO_PB[s.state], message=s.message, duration_seconds=s.duration_s
            )
        )
    msg.fingerprint.overall = snap.fingerprint.overall
    for c, d in snap.fingerprint.categories.items():
        msg.fingerprint.categories[c] = d
    return msg


def _text(value: str, where: str) -> str:
    if len(value) > MAX_TEXT:
        raise WireError(f"{where}: {len(value)} characters, over {MAX_TEXT}", limit=LIMIT_TEXT)
    return value


def _inputs(values: Sequence[str], where: str) -> tuple[str, ...]:
    if len(values) > MAX_INPUTS:
        raise WireError(f"{where}: {len(values)} inputs, over {MAX_INPUTS}", limit=LIMIT_INPUTS)
    for i, v in enumerate(values):
        if not v or len(v) > MAX_KEY_LENGTH or v.split(".", 1)[0] not in CATEGORIES:
            raise WireError(f"{where}[{i}]: {v[:64]!r} is not a fact key or key glob")
    return tuple(values)


def _last_seen(value: float, where: str) -> float | None:
    if value == 0.0:
        return None
    if not math.isfinite(value) or value < 0:
        raise WireError(f"{where}: {value!r} is not a time")
    return value


class FactCache(BoundedLRU[bytes, tuple[Fact, str | None]]):
    """Facts already decoded, validated and given their fingerprint line, by their wire bytes.

    The replicas of a workload send the same facts (all but the few identity ones), and a pod
    sends most of its facts unchanged in each new snapshot: a fact whose exact bytes were seen
    before skips its decoding, validation and canonical encoding, the bulk of decoding a
    snapshot. Bounded by an estimate of the memory its entries hold (LRU); a fact bigger than
    ``max_entry_bytes`` is never kept. The cached value is shared by every snapshot decoded from
    those bytes: values are immutable by contract. Thread-safe (large snapshots decode on a
    worker thread)."""

    # Decoded values and lines take a few times their wire size.
    OVERHEAD = 4

    def __init__(self, max_bytes: int = 64 * 1024 * 1024, max_entry_bytes: int = 64 * 1024) -> None:
        super().__init__(
            max_bytes,
            cost=lambda raw: len(raw) * self.OVERHEAD,
            max_entry_cost=max_entry_bytes * self.OVERHEAD,
        )


def _fact_from_proto(f: pb.Fact, where: str) -> Fact:
    if len(f.key) > MAX_KEY_LENGTH:  # validate_key's own check, with the limit named
        raise WireError(
            f"{where}: fact key {f.key[:64]!r}… is {len(f.key)} characters, over {MAX_KEY_LENGTH}",
            limit=LIMIT_KEY_LENGTH,
        )
    try:
        key = validate_key(f.key)
        value = validate_value(value_from_proto(f.value, f"{where}.value"), f"{where}.value")
    except FactError as e:
        raise WireError(f"{where}: {e}") from e
    if f.provenance.method not in METHODS:
        raise WireError(f"{where}.provenance.method: {f.provenance.method!r} is not one of {sorted(METHODS)}")
    prov = Provenance(
        _text(f.provenance.source, f"{where}.provenance.source"),
        f.provenance.method,
        _text(f.provenance.detail, f"{where}.provenance.detail"),
        _inputs(f.provenance.inputs, f"{where}.provenance.inputs"),
        _last_seen(f.provenance.last_seen, f"{where}.provenance.last_seen"),
    )
    return Fact(key, value, prov)


def snapshot_from_proto(msg: pb.Snapshot, cache: FactCache | None = None) -> Snapshot:
    """Decode and validate an untrusted snapshot; its fingerprint must match its facts. With a
    ``cache``, facts whose exact bytes were decoded before are taken from it."""
    if len(msg.facts) > MAX_FACTS:
        raise WireError(f"snapshot.facts: {len(msg.facts)} facts, over {MAX_FACTS}", limit=LIMIT_FACTS)
    if len(msg.sources) > MAX_SOURCES:
        raise WireError(
            f"snapshot.sources: {len(msg.sources)} sources, over {MAX_SOURCES}", limit=LIMIT_SOURCES
        )
    facts: dict[str, Fact] = {}
    lines: dict[str, str | None] = {}
    for i, f in enumerate(msg.facts):
        raw = f.SerializeToString(deterministic=True) if cache is not None else b""
        entry = cache.get(raw) if cache is not None else None
        if entry is None:
            fact = _fact_from_proto(f, f"snapshot.facts[{i}]")
            try:
                line = fact_line(fact.key, fact.value)
            except FactError as e:
                raise WireError(f"snapshot.facts[{i}].value: {e}") from e
            if cache is not None:
                cache.put(raw, (fact, line))
        else:
            fact, line = entry
        if fact.key in facts:
            raise WireError(f"snapshot.facts[{i}]: duplicate fact key {fact.key!r}")
        facts[fact.key] = fact
        lines[fact.key] = line
    sources: dict[str, SourceStatus] = {}
    for i, s in enumerate(msg.sources):
        where = f"snapshot.sources[{i}]"
        if s.state not in _PB_TO_STATE:
            raise WireError(f"{where}.state: unknown source state {s.state}")
        name = _text(s.name, f"{where}.name")
        if not name:
            raise WireError(f"{where}.name: empty source name")
        sources[name] = SourceStatus(
            name, _PB_TO_STATE[s.state], _text(s.message, f"{where}.message"), s.duration_seconds
        )
    fp = fingerprint_lines(lines)
    if msg.fingerprint.overall != fp.overall:
        raise WireError(
            f"snapshot.fingerprint.overall: {msg.fingerprint.overall[:16]!r} does not match the facts "
            f"sent (computed {fp.overall[:16]!r})"
        )
    return Snapshot(facts=facts, sources=sources, fingerprint=fp, collected_at=seconds(msg.collected_at))


def observations_to_proto(obs: dict[str, Observation], at: float, window_s: float) -> pb.Observations:
    msg = pb.Observations(at=timestamp(at), window_seconds=window_s)
    for name in sorted(obs):
        o = obs[name]
        item = pb.Observation(name=o.name, value=o.value, unit=o.unit, lower=o.lower, upper=o.upper)
        msg.items.append(item)
    return msg


def observations_from_proto(msg: pb.Observations) -> list[Observation]:
    if len(msg.items) > MAX_OBSERVATIONS:
        raise WireError(
            f"observations.items: {len(msg.items)} items, over {MAX_OBSERVATIONS}", limit=LIMIT_OBSERVATIONS
        )
    out = []
    for i, o in enumerate(msg.items):
        if not o.name:
            raise WireError(f"observations.items[{i}].name: must be 1..{MAX_OBSERVATION_NAME} characters")
        if len(o.name) > MAX_OBSERVATION_NAME:
            raise WireError(
                f"observations.items[{i}].name: must be 1..{MAX_OBSERVATION_NAME} characters "
                f"({len(o.name)} sent)",
                limit=LIMIT_OBSERVATION_NAME,
            )
        if not math.isfinite(o.value):
            raise WireError(f"observations.items[{i}].value: {o.value!r} is not finite")
        lower = o.lower if o.HasField("lower") else None
        upper = o.upper if o.HasField("upper") else None
        for field, bound in (("lower", lower), ("upper", upper)):
            if bound is not None and not math.isfinite(bound):
                raise WireError(f"observations.items[{i}].{field}: {bound!r} is not finite")
        if (lower is not None and lower > o.value) or (upper is not None and upper < o.value):
            raise WireError(
                f"observations.items[{i}]: value {o.value!r} is outside its bounds [{lower!r}, {upper!r}]"
            )
        unit = _text(o.unit, f"observations.items[{i}].unit")
        out.append(Observation(o.name, o.value, unit, lower, upper))
    return out


def hello_to_proto(identity: PodIdentity, protocol_version: int, instance_id: str) -> pb.Hello:
    """The Hello an agent opens its stream with: who it speaks for."""
    return pb.Hello(
        agent_id=identity.agent_id,
        pod=pb.PodIdentity(
            namespace=identity.namespace,
            pod=identity.pod,
            node=identity.node,
            workload=identity.workload,
            workload_source=identity.workload_source,
        ),
        agent_version=identity.agent_version,
        protocol_version=protocol_version,
        instance_id=instance_id,
    )


def identity_from_hello(hello: pb.Hello) -> PodIdentity:
    """The identity a Hello claims, as sent (the collector validates it)."""
    p = hello.pod
    return PodIdentity(
        namespace=p.namespace,
        pod=p.pod,
        node=p.node,
        workload=p.workload,
        workload_source=p.workload_source,
        agent_id=hello.agent_id,
        agent_version=hello.agent_version,
    )


# Where each identity field travels in a Hello, for errors that name it.
IDENTITY_FIELDS = {
    "namespace": "hello.pod.namespace",
    "pod": "hello.pod.pod",
    "node": "hello.pod.node",
    "workload": "hello.pod.workload",
    "workload_source": "hello.pod.workload_source",
    "agent_id": "hello.agent_id",
    "agent_version": "hello.agent_version",
}
