"""What benchmarks share: the figure record, CPU-time and /proc memory measurement."""

from __future__ import annotations

import resource
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Figure:
    name: str
    value: float
    unit: str
    reference: str
    reference_value: float

    @property
    def ratio(self) -> float:
        return self.value / self.reference_value if self.reference_value else float("inf")

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "value": round(self.value, 6),
            "unit": self.unit,
            "reference": self.reference,
            "reference_value": round(self.reference_value, 6),
            "ratio": round(self.ratio, 4),
        }


def cpu_seconds() -> float:
    """User + system CPU time of this process, all threads included."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def proc_status_bytes(pid: int | str, field: str) -> int:
    """A byte figure (``VmRSS``, ``VmHWM``, …) from ``/proc/<pid>/status``; pid may be "self"."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def per_call_cpu(fn: Callable[[], object], n: int) -> float:
    fn()  # warm-up: imports, caches, connections
    start = cpu_seconds()
    for _ in range(n):
        fn()
    return (cpu_seconds() - start) / n
