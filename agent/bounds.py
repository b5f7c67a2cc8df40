"""What the agent collects stays inside what the collector accepts: one set of limits, shared.

Pure: no I/O, no clock. The engine, its files and its environment are untrusted input; a value
the wire cannot carry (an integer beyond sint64, a non-finite float, a string that is not UTF-8,
a value nested or sized past the fact contract) or a page that would make the snapshot too big
must lose only its own fact, with a message, and never the stream. The limits come from the
wire's own validation (``skewwatch.wire`` and ``skewwatch.core.facts``: the collector decodes
with the same constants), and the snapshot's size budget sits well under the collector's
default ``max_message_bytes``.

- :func:`check_value` is the wire's rules for one value (plus sint64 and UTF-8), with the size
  it will take on the wire (an upper bound);
- :func:`load_json` parses untrusted JSON without an exception other than :class:`JsonProblem`:
  an integer or float that is out of range becomes an :class:`Unrepresentable` marker in place,
  so only the field holding it is lost;
- :func:`bound_snapshot` is the last line, after the merge: drops whatever breaks a rule, caps
  facts per source and the snapshot's bytes (canonical keys kept first, then sorted keys), and
  says in each source's status how many facts it dropped and why.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from skewwatch.core.errors import FactError
from skewwatch.core.facts import (
    MAX_INPUTS,
    MAX_KEY_LENGTH,
    MAX_STRING_LENGTH,
    MAX_VALUE_DEPTH,
    MAX_VALUE_ITEMS,
    Fact,
    FactValue,
    SourceStatus,
)
from skewwatch.wire import MAX_FACTS, MAX_TEXT, value_to_proto

# sint64 on the wire (proto Value.int_value).
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
_MAX_INT_DIGITS = 19  # len(str(INT64_MAX)); a longer digit string is out of range whatever it is

# The collector's default max_message_bytes (collector.settings.CollectorSettings, pinned by a
# test); a snapshot is budgeted at half of it: the estimate is an upper bound, and the other half
# is headroom for a collector run with a lower limit and for the message's envelope.
COLLECTOR_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
SNAPSHOT_BYTE_BUDGET = COLLECTOR_MAX_MESSAGE_BYTES // 2
MAX_SNAPSHOT_FACTS = MAX_FACTS
# A vLLM command line and env give a few hundred facts, a model repo one per file; this many from
# one source is a hostile or broken input, and five sources at the cap still fit MAX_FACTS.
MAX_FACTS_PER_SOURCE = 4_000
# One fact's value on the wire; a config block or file manifest entry is a few KiB at most.
MAX_FACT_BYTES = 128 * 1024
# ``*_config_info`` metrics: vLLM's cache_config_info has about 15 labels.
MAX_INFO_LABELS = 128
MAX_LABEL_VALUE_CHARS = 1024
# Provenance details and source messages are text for people; the wire takes MAX_TEXT.
MAX_DETAIL_CHARS = 1024
MAX_MESSAGE_CHARS = MAX_TEXT
MAX_EXAMPLES = 5  # dropped keys named in a message
# Per-element overhead of the wire encoding (tags, lengths, nested Value messages): generous.
_OVERHEAD = 16
_FACT_OVERHEAD = 64

# The wire encodes an empty map as a Value with no kind set, which the collector refuses (and
# with it the whole snapshot): such a value loses its fact until the wire carries it.
_WIRE_CARRIES_EMPTY_MAPS = value_to_proto({}).WhichOneof("kind") is not None

# Families with one fact per item of an open-ended input (flags, variables, files, labels): the
# first to go when a source or the snapshot is over its cap. Everything else is canonical.
_BULK = re.compile(
    r"^(?:runtime\.(?:args|env)\.|model\.files\.|runtime\.[^.]*config\.|"
    r"orchestration\.(?:labels|annotations|node_labels|containers|node_allocatable|resources)\.)"
)


class BoundsError(FactError):
    """A value the wire cannot carry, or one over a bound; the message names it and the limit."""


class JsonProblem(ValueError):
    """Untrusted JSON that cannot be parsed at all (syntax, encoding, nesting)."""


@dataclass(frozen=True)
class Unrepresentable:
    """A JSON number the facts cannot hold, kept in place of the value so its field alone is lost."""

    reason: str

    def __repr__(self) -> str:
        return f"<{self.reason}>"


def _int_problem(text: str) -> str:
    digits = len(text.lstrip("+-"))
    return f"integer of {digits} digits is out of the int64 range"


def bounded_int(text: str) -> int | None:
    """``text`` (an optional sign and digits) as an int when it fits int64, else None.

    Never calls ``int()`` on more than 20 characters, so a page of a million digits costs nothing.
    """
    digits = text.lstrip("+-")
    if len(digits) > _MAX_INT_DIGITS + 1 or len(text) - len(digits) > 1:
        return None
    value = int(text)
    return value if INT64_MIN <= value <= INT64_MAX else None


def _parse_int(text: str) -> int | Unrepresentable:
    value = bounded_int(text)
    return Unrepresentable(_int_problem(text)) if value is None else value


def _parse_float(text: str) -> float | Unrepresentable:
    value = float(text)
    if not math.isfinite(value):
        return Unrepresentable(f"number {text[:40]}{'…' if len(text) > 40 else ''} is out of the float range")
    return value


def _parse_constant(name: str) -> Unrepresentable:
    return Unrepresentable(f"non-finite number {name}")


def load_json(data: bytes | str, *, constants: bool = True) -> object:
    """Untrusted JSON; out-of-range numbers become :class:`Unrepresentable`. Raises only JsonProblem.

    ``constants=False`` makes ``NaN`` / ``Infinity`` a JsonProblem (the document's error) rather
    than a marker.
    """

    def reject(name: str) -> object:
        raise JsonProblem(f"non-finite number {name} is not valid JSON")

    try:
        return json.loads(
            data,
            parse_int=_parse_int,
            parse_float=_parse_float,
            parse_constant=_parse_constant if constants else reject,
        )
    except JsonProblem:
        raise
    except json.JSONDecodeError as e:
        raise JsonProblem(f"line {e.lineno} column {e.colno}: {e.msg}") from e
    except UnicodeDecodeError as e:
        raise JsonProblem(f"invalid UTF-8 at byte {e.start}") from e
    except RecursionError as e:
        raise JsonProblem("nested too deeply to parse") from e
    except (ValueError, TypeError, OverflowError, MemoryError) as e:
        raise JsonProblem(str(e) or type(e).__name__) from e


def _utf8_len(text: str, where: str) -> int:
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError as e:
        raise BoundsError(f"{where}: not valid UTF-8 (character {e.start})") from e


def check_value(value: object, where: str, _depth: int = 0) -> int:
    """Raise BoundsError unless the wire can carry ``value``; else its encoded size (upper bound)."""
    if isinstance(value, Unrepresentable):
        raise BoundsError(f"{where}: {value.reason}")
    if _depth > MAX_VALUE_DEPTH:
        raise BoundsError(f"{where}: value nested deeper than {MAX_VALUE_DEPTH} levels")
    if value is None or isinstance(value, bool | int | float | str):
        return _check_scalar(value, where)
    if isinstance(value, list | tuple):
        if len(value) > MAX_VALUE_ITEMS:
            raise BoundsError(f"{where}: list of {len(value)} items, over {MAX_VALUE_ITEMS}")
        return _OVERHEAD + sum(check_value(v, f"{where}[{i}]", _depth + 1) for i, v in enumerate(value))
    if isinstance(value, dict):
        return _check_map(value, where, _depth)
    raise BoundsError(f"{where}: unsupported value type {type(value).__name__}")


def _check_scalar(value: bool | int | float | str | None, where: str) -> int:
    if value is None or isinstance(value, bool):
        return _OVERHEAD
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise BoundsError(f"{where}: integer of {value.bit_length()} bits is out of the int64 range")
        return _OVERHEAD
    if isinstance(value, float):
        if not math.isfinite(value):
            raise BoundsError(f"{where}: float value {value!r} is not finite")
        return _OVERHEAD
    if len(value) > MAX_STRING_LENGTH:
        raise BoundsError(f"{where}: string of {len(value)} characters, over {MAX_STRING_LENGTH}")
    return _utf8_len(value, where) + _OVERHEAD


def _check_map(value: dict[object, object], where: str, depth: int) -> int:
    if len(value) > MAX_VALUE_ITEMS:
        raise BoundsError(f"{where}: map of {len(value)} entries, over {MAX_VALUE_ITEMS}")
    if not value and not _WIRE_CARRIES_EMPTY_MAPS:
        raise BoundsError(f"{where}: an empty map, which the wire cannot carry (it encodes no kind)")
    size = _OVERHEAD
    for k, v in value.items():
        if not isinstance(k, str):
            raise BoundsError(f"{where}: map key {k!r} is not a string")
        size += _OVERHEAD + _utf8_len(k, f"{where} key {k[:64]!r}")
        size += check_value(v, f"{where}.{k[:64]}", depth + 1)
    return size


def check_fact_value(key: str, value: object) -> FactValue:
    """``value`` when one fact may hold it (the wire's rules, and MAX_FACT_BYTES), else BoundsError."""
    size = check_value(value, key)
    if size > MAX_FACT_BYTES:
        raise BoundsError(f"{key}: value of about {size} bytes, over the {MAX_FACT_BYTES}-byte cap per fact")
    return value  # type: ignore[return-value]  # checked above


def clean_text(text: str, limit: int) -> str:
    """``text`` as UTF-8-safe text of at most ``limit`` characters, saying how much was cut."""
    if len(text) > limit:
        tail = f"… ({len(text) - limit} more characters)"
        text = text[: max(limit - len(tail), 0)] + tail
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def short_repr(value: object, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters (for details and messages about hostile values)."""
    if isinstance(value, str) and len(value) > limit:
        return repr(value[:limit]) + f"… ({len(value)} characters)"
    text = (
        repr(value)
        if not isinstance(value, int) or value.bit_length() < 256
        else f"<{value.bit_length()}-bit int>"
    )
    return text if len(text) <= limit else text[:limit] + "…"


def join_notes(notes: Iterable[str], limit: int = 10) -> str:
    """At most ``limit`` notes joined, then how many more there were."""
    items = list(notes)
    if len(items) <= limit:
        return "; ".join(items)
    return "; ".join(items[:limit]) + f"; and {len(items) - limit} more"


def is_canonical(key: str) -> bool:
    """False for keys of open-ended families (flags, env, files, labels), which go first."""
    return _BULK.match(key) is None


def priority(key: str) -> tuple[bool, str]:
    """Sort key of what to keep: canonical keys first, then sorted keys."""
    return (not is_canonical(key), key)


def _fact_problem(fact: Fact) -> tuple[str | None, Fact, int]:
    """(why the fact cannot go, or None; the fact with its text made safe; its size)."""
    key = fact.key
    if len(key) > MAX_KEY_LENGTH:
        return f"key of {len(key)} characters, over {MAX_KEY_LENGTH}", fact, 0
    try:
        size = _FACT_OVERHEAD + _utf8_len(key, "key") + check_value(fact.value, "value")
    except BoundsError as e:
        return str(e), fact, 0
    if size > MAX_FACT_BYTES:
        return f"value of about {size} bytes, over the {MAX_FACT_BYTES}-byte cap per fact", fact, 0
    prov = fact.provenance
    detail = clean_text(prov.detail, MAX_DETAIL_CHARS)
    source = clean_text(prov.source, MAX_TEXT)
    inputs = tuple(i for i in prov.inputs[:MAX_INPUTS] if 0 < len(i) <= MAX_KEY_LENGTH)
    if (detail, source, inputs) != (prov.detail, prov.source, prov.inputs):
        fact = replace(fact, provenance=replace(prov, detail=detail, source=source, inputs=inputs))
    size += len(fact.provenance.detail.encode()) + len(source.encode()) + len(prov.method)
    size += sum(len(i.encode("utf-8", "replace")) + _OVERHEAD for i in inputs)
    return None, fact, size


@dataclass
class _Dropped:
    count: int = 0
    reasons: dict[str, int] | None = None
    examples: list[str] | None = None

    def add(self, key: str, reason: str) -> None:
        self.count += 1
        self.reasons = self.reasons or {}
        self.reasons[reason] = self.reasons.get(reason, 0) + 1
        self.examples = self.examples or []
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(key if len(key) <= 80 else key[:80] + "…")

    def message(self) -> str:
        reasons = self.reasons or {}
        why = "; ".join(f"{n} {r}" for r, n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])))
        shown = ", ".join(self.examples or [])
        more = ", …" if self.count > len(self.examples or []) else ""
        return f"bounds: dropped {self.count} fact(s) ({why}): {shown}{more}"


def bound_snapshot(
    facts: Mapping[str, Fact],
    statuses: Mapping[str, SourceStatus],
    *,
    per_source: int = MAX_FACTS_PER_SOURCE,
    byte_budget: int = SNAPSHOT_BYTE_BUDGET,
    max_facts: int = MAX_SNAPSHOT_FACTS,
) -> tuple[dict[str, Fact], dict[str, SourceStatus]]:
    """The facts and statuses of one snapshot within every bound, and what was dropped said. Pure.

    A fact the wire cannot carry is dropped; then each source keeps at most ``per_source``
    facts and the snapshot at most ``max_facts`` in ``byte_budget`` bytes, canonical keys first,
    then in key order, so the same input always keeps the same facts. Each source whose facts
    were dropped says how many and why in its status message; every message fits the wire.
    """
    dropped: dict[str, _Dropped] = {}

    def drop(fact: Fact, reason: str) -> None:
        dropped.setdefault(fact.provenance.source, _Dropped()).add(fact.key, reason)

    ordered = sorted(facts.values(), key=lambda f: priority(f.key))
    sized: list[tuple[Fact, int]] = []
    per: dict[str, int] = {}
    for fact in ordered:
        problem, safe, size = _fact_problem(fact)
        if problem is not None:
            drop(fact, problem)
            continue
        n = per.get(safe.provenance.source, 0)
        if n >= per_source:
            drop(safe, f"over the {per_source}-facts-per-source cap")
            continue
        per[safe.provenance.source] = n + 1
        sized.append((safe, size))

    # Every status message may grow to the wire's limit (4 bytes a character at worst): reserve it.
    budget = byte_budget - len(statuses) * (4 * (MAX_MESSAGE_CHARS + MAX_TEXT) + 64) - 1024
    kept: dict[str, Fact] = {}
    used = 0
    for fact, size in sized:
        if len(kept) >= max_facts:
            drop(fact, f"over the {max_facts}-facts-per-snapshot cap")
        elif used + size > budget:
            drop(fact, f"over the snapshot's {byte_budget}-byte budget")
        else:
            kept[fact.key] = fact
            used += size

    out: dict[str, SourceStatus] = {}
    for name, status in statuses.items():
        message = status.message
        if name in dropped:
            note = dropped[name].message()
            message = f"{message}; {note}" if message else note
        safe_message = clean_text(message, MAX_MESSAGE_CHARS)
        safe_name = clean_text(name, MAX_TEXT)
        out[name] = (
            status
            if (safe_message, safe_name) == (status.message, status.name)
            else replace(status, name=safe_name, message=safe_message)
        )
    return kept, out
