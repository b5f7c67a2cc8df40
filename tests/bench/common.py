"""What benchmarks share: the figure record and CPU-time measurement."""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from dataclasses import dataclass


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


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def per_call_cpu(fn: Callable[[], object], n: int) -> float:
    fn()  # warm-up: imports, caches, connections
    start = cpu_seconds()
    for _ in range(n):
        fn()
    return (cpu_seconds() - start) / n


def per_call_wall(fn: Callable[[], object], n: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n
