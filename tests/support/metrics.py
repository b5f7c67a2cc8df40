"""Metrics pages transformed in tests."""

from __future__ import annotations

from agent.promtext import MetricFamily, Sample


def doubled(families: list[MetricFamily]) -> list[MetricFamily]:
    """The page with every cumulative value doubled (gauges and info metrics unchanged)."""
    out = []
    for fam in families:
        if fam.type in ("counter", "histogram", "summary"):
            samples = tuple(
                Sample(s.name, s.labels, s.value if s.name.endswith("_created") else s.value * 2)
                for s in fam.samples
            )
            out.append(MetricFamily(fam.name, fam.type, fam.help, samples))
        else:
            out.append(fam)
    return out
