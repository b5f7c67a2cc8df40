"""A recorded baseline: a workload's last-known-good configuration and its performance at a load.

How one is recorded and compared lives in ``collector.baseline``; this is the record itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from skewwatch.core.facts import FactValue, Provenance


@dataclass(frozen=True)
class Baseline:
    workload: str
    recorded_at: float
    origin: str  # manual | auto
    fingerprint: str
    facts: Mapping[str, FactValue]
    provenance: Mapping[str, Provenance]
    sources: Mapping[str, str]  # source -> state at recording
    performance: Mapping[str, float]
    load: Mapping[str, float]
    pods: tuple[str, ...]
    samples: int
    id: int = 0
    note: str = ""
    # metric -> (lower, upper): where the recorded value of a latency quantile can lie (the
    # medians of its windows' bucket bounds); absent for exact metrics and older baselines.
    bounds: Mapping[str, tuple[float, float]] = field(default_factory=dict)

    def as_dict(self, *, facts: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "workload": self.workload,
            "recorded_at": self.recorded_at,
            "origin": self.origin,
            "fingerprint": self.fingerprint,
            "pods": list(self.pods),
            "performance": dict(self.performance),
            "performance_bounds": {k: list(v) for k, v in sorted(self.bounds.items())},
            "load": dict(self.load),
            "samples": self.samples,
            "note": self.note,
        }
        if facts:
            out["facts"] = {k: self.facts[k] for k in sorted(self.facts)}
            out["provenance"] = {k: self.provenance[k].as_dict() for k in sorted(self.provenance)}
        return out


class BaselineError(ValueError):
    """A baseline cannot be recorded (no replica with a snapshot); the message says why."""
