"""Helpers of the translation of Kubernetes objects into cluster facts (``collector.cluster.objects``).
Pure: tolerant accessors (a wrong type reads as absent, never raises), Kubernetes quantities and
durations, the provenance detail of an object field, and the bounded fact sink every derived fact
goes through.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from collector.domain.cluster import CLUSTER_METHOD, CLUSTER_SOURCE
from skewwatch.core.errors import FactError
from skewwatch.core.facts import FactValue, Provenance, validate_key, validate_value

# Facts per workload: the cluster's facts are merged into every replica's snapshot beside the
# agent's (whose sources keep 4,000 each, 20,000 in all: skewwatch.wire.MAX_FACTS), so one workload
# with a hostile template (thousands of env vars) must not crowd them out.
MAX_FACTS_PER_WORKLOAD = 2_000
# A fact's string value (a shell script in a container's command is the longest honest one); far
# below skewwatch.core.facts.MAX_STRING_LENGTH, which bounds one value of a snapshot.
MAX_TEXT = 8 * 1024
MAX_LIST = 256  # items of a list fact (args, tolerations, routes)
MAX_DETAIL = 1_024  # a provenance detail, as the agent cuts them
MAX_PROBLEMS = 20  # problems named in one status message
MAX_MESSAGE = 4_096


def mapping(value: object) -> Mapping[str, Any]:
    """``value`` when it is a map, else an empty one: a wrong type reads as absent."""
    return value if isinstance(value, Mapping) else {}


def seq(value: object) -> list[Any]:
    """``value`` when it is a list, else an empty one."""
    return value if isinstance(value, list) else []


def text(value: object) -> str | None:
    """A string value, or None (numbers are not names)."""
    return value if isinstance(value, str) else None


def str_map(value: object) -> dict[str, str]:
    """A label map: string keys to string values, anything else dropped."""
    return {k: v for k, v in mapping(value).items() if isinstance(k, str) and isinstance(v, str)}


def integer(value: object) -> int | None:
    """An integer (``3`` or ``"3"``), never a bool; None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if abs(value) < 2**63 else None
    if isinstance(value, str) and re.fullmatch(r"[+-]?\d{1,18}", value.strip()):
        return int(value)
    return None


# Kubernetes resource.Quantity: decimal and binary suffixes, or a decimal exponent.
_QUANTITY = re.compile(
    r"^([+-]?(?:\d+(?:\.\d*)?|\.\d+))(?:(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)|[eE]([+-]?\d{1,3}))?$"
)
_SUFFIX = {
    "n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
    "Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40, "Pi": 2.0**50, "Ei": 2.0**60,
}  # fmt: skip


def quantity(value: object) -> float | int | None:
    """A Kubernetes quantity (``500m``, ``80``, ``1Gi``, ``1e3``) as a number: an int when whole."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str) and len(value) <= 64:
        m = _QUANTITY.match(value.strip())
        if not m:
            return None
        scale = _SUFFIX[m.group(2)] if m.group(2) else 10.0 ** int(m.group(3)) if m.group(3) else 1.0
        number = float(m.group(1)) * scale
    else:
        return None
    if not math.isfinite(number):
        return None
    return int(number) if number.is_integer() and abs(number) < 2**63 else number


# Go's time.Duration text and Gateway API's GEP-2257 durations (``1h30m``, ``500ms``, ``1.5s``).
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(h|ms|us|µs|ns|m|s)")
_DURATION_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def duration_seconds(value: object) -> float | None:
    """A duration string (``30s``, ``1m30s``, ``250ms``) in seconds; None when it is not one."""
    if not isinstance(value, str) or not value or len(value) > 64:
        return None
    pos, total = 0, 0.0
    for m in _DURATION_PART.finditer(value):
        if m.start() != pos:
            return None
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    return total if pos == len(value) and math.isfinite(total) else None


def seconds(value: object) -> float | None:
    """Seconds given as a number or a numeric string (``"3600"``), or as a duration (``60s``)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) and value >= 0 else None
    if isinstance(value, str) and re.fullmatch(r"\d{1,12}(?:\.\d{1,9})?", value.strip()):
        return float(value)
    return duration_seconds(value)


_NGINX_SIZE = re.compile(r"^(\d{1,15})([kKmMgG]?)$")


def nginx_size(value: object) -> int | None:
    """An nginx size (``8m``, ``512k``, ``1g``, ``1024``: bytes; k/m/g are binary, per nginx's
    "Syntax" section) as bytes."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value if value >= 0 else None
    if not isinstance(value, str):
        return None
    m = _NGINX_SIZE.match(value.strip())
    if not m:
        return None
    return int(m.group(1)) * {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}[m.group(2).lower()]


def on_off(value: object) -> bool | None:
    """``on``/``off``, ``true``/``false`` (nginx and Kubernetes spellings) as a bool."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return {"on": True, "true": True, "off": False, "false": False}.get(value.strip().lower())
    return None


def meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return mapping(obj.get("metadata"))


@dataclass(frozen=True)
class Src:
    """An object as a provenance detail names it: ``Kind/namespace/name@resourceVersion``."""

    kind: str
    namespace: str
    name: str
    resource_version: str = ""

    @classmethod
    def of(cls, kind: str, namespace: str, name: str, obj: Mapping[str, Any]) -> Src:
        rv = text(meta(obj).get("resourceVersion")) or ""
        return cls(kind, namespace, name, rv[:64])

    def __str__(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}" + (
            f"@{self.resource_version}" if self.resource_version else ""
        )

    def at(self, path: str) -> str:
        """The provenance detail of one field of this object."""
        return f"{self}: {path}"[:MAX_DETAIL]


def cut(value: str, limit: int = MAX_TEXT) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"


@dataclass
class FactSink:
    """The facts of one workload (or one revision), bounded: at most ``limit`` keys, each key and
    value valid for the wire; the first value given for a key stays (callers add the preferred
    source first). What does not fit, or is not valid, is counted and named in ``problems``."""

    limit: int = MAX_FACTS_PER_WORKLOAD
    facts: dict[str, FactValue] = field(default_factory=dict)
    provenance: dict[str, Provenance] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    dropped: int = 0

    def add(self, key: str, value: FactValue, detail: str, inputs: tuple[str, ...] = ()) -> bool:
        if key in self.facts:
            return False
        if len(self.facts) >= self.limit:
            self.dropped += 1
            return False
        try:
            validate_key(key)
            checked = validate_value(value, key)
        except FactError as e:
            self.problem(str(e))
            return False
        self.facts[key] = checked
        self.provenance[key] = Provenance(CLUSTER_SOURCE, CLUSTER_METHOD, detail[:MAX_DETAIL], inputs)
        return True

    def problem(self, message: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:  # past that they are only not named
            self.problems.append(message[:300])

    def messages(self) -> list[str]:
        out = list(self.problems)
        if self.dropped:
            out.append(f"{self.dropped} facts over the {self.limit}-facts-per-workload cap left out")
        return out
