"""The metric catalogue (``catalogue.yaml``, shipped as package data): name, type, unit,
attributes, meaning and cardinality bound of every metric the collector exports."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml

KINDS = ("counter", "gauge", "histogram")


@dataclass(frozen=True)
class MetricSpec:
    name: str
    kind: str
    unit: str
    attributes: tuple[str, ...]
    meaning: str
    cardinality: int


def _spec(entry: dict[str, Any]) -> MetricSpec:
    spec = MetricSpec(
        name=str(entry["name"]),
        kind=str(entry["type"]),
        unit=str(entry["unit"]),
        attributes=tuple(str(a) for a in entry.get("attributes") or ()),
        meaning=str(entry["meaning"]),
        cardinality=int(entry["cardinality"]),
    )
    if spec.kind not in KINDS or not spec.name.startswith("skewwatch.") or spec.cardinality < 1:
        raise ValueError(f"catalogue entry {spec.name!r} is malformed")
    return spec


@cache
def catalogue() -> dict[str, MetricSpec]:
    """The catalogue, by metric name."""
    text = resources.files(__package__).joinpath("catalogue.yaml").read_text(encoding="utf-8")
    return {s.name: s for s in (_spec(e) for e in yaml.safe_load(text)["metrics"])}


def spec(name: str) -> MetricSpec:
    return catalogue()[name]
