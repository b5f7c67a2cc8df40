"""The fact model: facts with provenance, per-source status, observations and snapshots.

A fact is one configuration truth about a running replica (``runtime.dtype = bfloat16``). Its
category is the first segment of its key. Values are typed JSON-like data; integers, floats and
booleans stay distinct so that a change of type is a change of configuration.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeAlias

from skewwatch.core.errors import FactError

FactValue: TypeAlias = "bool | int | float | str | list[FactValue] | dict[str, FactValue] | None"

CATEGORIES: tuple[str, ...] = ("model", "runtime", "hardware", "serving", "orchestration")

# How a fact came to be believed; DESIGN.md's provenance methods.
METHODS: frozenset[str] = frozenset(
    {"arg", "env", "runtime-reported", "file", "nvml", "k8s", "default", "derived"}
)

MAX_KEY_LENGTH = 512
MAX_STRING_LENGTH = 64 * 1024
MAX_VALUE_DEPTH = 8
MAX_VALUE_ITEMS = 10_000

# Lowercase dotted segments; later segments may keep case and punctuation (env names, file
# paths), but never whitespace or control characters.
_KEY_RE = re.compile(r"^(model|runtime|hardware|serving|orchestration)(\.[^\s\x00-\x1f\x7f]+)+$")


class SourceState(StrEnum):
    OK = "ok"
    UNAVAILABLE = "unavailable"
    ERROR = "error"
    PENDING = "pending"


MAX_INPUTS = 32  # fact keys (or key globs) one fact may name as what it follows from


@dataclass(frozen=True)
class Provenance:
    """Why a fact is believed: which source, how, and what it follows from.

    ``inputs`` are the fact keys (or key globs such as ``model.files.*``) whose change changes
    this fact: an argument for its effective value, the model dtype for an ``auto`` KV-cache
    dtype, the weight files for the weights digest. The collector reads them to tell a root cause
    from its consequences. ``last_seen`` is set on a fact carried over from an earlier collection
    because its source is not ready now (pending, unavailable, erroring): its value is *unknown*
    since then, not changed, and no comparison judges it.
    """

    source: str
    method: str
    detail: str = ""
    inputs: tuple[str, ...] = ()
    last_seen: float | None = None

    @property
    def carried(self) -> bool:
        return self.last_seen is not None

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"source": self.source, "method": self.method, "detail": self.detail}
        if self.inputs:
            out["inputs"] = list(self.inputs)
        if self.last_seen is not None:
            out["last_seen"] = self.last_seen
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Provenance:
        """The inverse of ``as_dict``; raises KeyError/TypeError/ValueError on a malformed map."""
        inputs = data.get("inputs", ())
        if not isinstance(inputs, list | tuple) or not all(isinstance(i, str) for i in inputs):
            raise TypeError("provenance inputs must be a list of strings")
        last_seen = data.get("last_seen")
        if last_seen is not None and (isinstance(last_seen, bool) or not isinstance(last_seen, int | float)):
            raise TypeError("provenance last_seen must be a number")
        source, method, detail = data["source"], data["method"], data.get("detail", "")
        if not isinstance(source, str) or not isinstance(method, str) or not isinstance(detail, str):
            raise TypeError("provenance source, method and detail must be strings")
        return cls(source, method, detail, tuple(inputs), None if last_seen is None else float(last_seen))


@dataclass(frozen=True)
class Fact:
    key: str
    value: FactValue
    provenance: Provenance

    @property
    def category(self) -> str:
        return self.key.split(".", 1)[0]


@dataclass(frozen=True)
class SourceStatus:
    name: str
    state: SourceState
    message: str = ""
    duration_s: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "status": self.state.value,
            "message": self.message,
            "duration_seconds": round(self.duration_s, 6),
        }


@dataclass(frozen=True)
class Observation:
    """One measurement over a window. ``lower``/``upper``: where the true value can lie when
    ``value`` is an estimate of known resolution (a quantile read from histogram buckets, which
    is interpolated inside its bucket: the true quantile is anywhere in that bucket); ``None``
    where the value is exact or a bound is not known (the open +Inf bucket has no upper one)."""

    name: str
    value: float
    unit: str = ""
    lower: float | None = None
    upper: float | None = None

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"value": self.value, "unit": self.unit}
        if self.lower is not None:
            out["lower"] = self.lower
        if self.upper is not None:
            out["upper"] = self.upper
        return out


@dataclass(frozen=True)
class Fingerprint:
    overall: str
    categories: Mapping[str, str]

    def as_dict(self) -> dict[str, str]:
        out = {"overall": self.overall}
        out.update({c: self.categories[c] for c in sorted(self.categories)})
        return out


@dataclass
class Snapshot:
    """All facts of one replica at one time, with the status of every source."""

    facts: dict[str, Fact]
    sources: dict[str, SourceStatus]
    fingerprint: Fingerprint
    collected_at: float
    observations: dict[str, Observation] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        """The JSON shape DESIGN.md fixes for ``skewwatch facts``."""
        keys = sorted(self.facts)
        return {
            "facts": {k: self.facts[k].value for k in keys},
            "provenance": {k: self.facts[k].provenance.as_dict() for k in keys},
            "observations": {n: o.as_dict() for n, o in sorted(self.observations.items())},
            "sources": {n: s.as_dict() for n, s in sorted(self.sources.items())},
            "fingerprint": self.fingerprint.as_dict(),
            "collected_at": self.collected_at,
        }


def validate_key(key: str) -> str:
    """Return ``key`` when it is a valid fact key, else raise FactError naming it."""
    if not isinstance(key, str) or not key:
        raise FactError(f"fact key must be a non-empty string, got {key!r}")
    if len(key) > MAX_KEY_LENGTH:
        raise FactError(f"fact key {key[:64]!r}… is {len(key)} characters, over {MAX_KEY_LENGTH}")
    if not _KEY_RE.match(key):
        raise FactError(
            f"fact key {key!r} must start with one of {', '.join(CATEGORIES)} followed by dotted "
            "segments without whitespace"
        )
    return key


def validate_value(value: object, where: str, _depth: int = 0) -> FactValue:
    """Check ``value`` is a well-formed, bounded fact value; ``where`` names it in errors."""
    if _depth > MAX_VALUE_DEPTH:
        raise FactError(f"{where}: value nested deeper than {MAX_VALUE_DEPTH} levels")
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise FactError(f"{where}: float value {value!r} is not finite")
        return value
    if isinstance(value, str):
        if len(value) > MAX_STRING_LENGTH:
            raise FactError(f"{where}: string of {len(value)} characters, over {MAX_STRING_LENGTH}")
        return value
    if isinstance(value, list | tuple):
        if len(value) > MAX_VALUE_ITEMS:
            raise FactError(f"{where}: list of {len(value)} items, over {MAX_VALUE_ITEMS}")
        return [validate_value(v, f"{where}[{i}]", _depth + 1) for i, v in enumerate(value)]
    if isinstance(value, dict):
        if len(value) > MAX_VALUE_ITEMS:
            raise FactError(f"{where}: map of {len(value)} entries, over {MAX_VALUE_ITEMS}")
        out: dict[str, FactValue] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise FactError(f"{where}: map key {k!r} is not a string")
            out[k] = validate_value(v, f"{where}.{k}", _depth + 1)
        return out
    raise FactError(f"{where}: unsupported value type {type(value).__name__}")


def make_fact(
    key: str, value: object, source: str, method: str, detail: str = "", *, inputs: tuple[str, ...] = ()
) -> Fact:
    """Build a validated fact."""
    validate_key(key)
    if method not in METHODS:
        raise FactError(f"fact {key!r}: provenance method {method!r} is not one of {sorted(METHODS)}")
    return Fact(key, validate_value(value, key), Provenance(source, method, detail, inputs))
