"""Pure parsing of the Prometheus text exposition format (what ``/metrics`` of vLLM, SGLang and TGI serve).

The grammar is the reference parser's (``prometheus_client.parser``), so every quirk of real
scrapes (summaries, repeated families, ``# TYPE`` without ``# HELP``, no trailing newline) is
handled the way Prometheus' own client handles it. This module only adds what the agent needs
around it: typed, immutable results that do not leak the third-party classes, bounded input, and
an error that names the line at fault. It does no I/O.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from dataclasses import dataclass

from prometheus_client.parser import text_fd_to_metric_families

from agent.errors import SourceFailed

# A scrape of a busy vLLM replica is a few hundred KiB; anything near this is not a metrics page.
MAX_TEXT_CHARS = 8 * 1024 * 1024
# Lines bound the samples (and the memory the parsed page takes): the largest real capture has
# about 2,000; a page of a million one-character series is not a metrics page but a flood.
MAX_LINES = 100_000
_EXCERPT_CHARS = 120


class MetricsParseError(SourceFailed):
    """The text is not valid exposition format; ``line`` is 1-based (0 when no line applies)."""

    def __init__(self, message: str, line: int = 0) -> None:
        super().__init__(message)
        self.line = line


@dataclass(frozen=True)
class Sample:
    name: str
    labels: Mapping[str, str]
    value: float


@dataclass(frozen=True)
class MetricFamily:
    """One family as the reference parser yields it (counters lose their ``_total`` suffix)."""

    name: str
    type: str
    help: str
    samples: tuple[Sample, ...]


class _CountingText(io.StringIO):
    """Text whose line iteration is counted, so a parser failure can be pinned to its line."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.line_no = 0
        self.current = ""

    def __next__(self) -> str:  # type: ignore[override]  # typeshed types _IOBase lines as bytes
        line = super().__next__()
        self.line_no += 1
        self.current = line
        return line


def parse_metrics_text(text: str, source: str = "metrics text") -> list[MetricFamily]:
    """Parse exposition text into families; raise MetricsParseError naming ``source`` and the line.

    The common shape of a scrape goes through ``fast_parse`` (several times faster: parsing was a
    third of the agent's CPU per cycle); anything outside that shape, and every error, goes
    through the reference parser, so results and errors are the reference parser's.
    """
    if len(text) > MAX_TEXT_CHARS:
        raise MetricsParseError(f"{source}: {len(text)} characters, over the {MAX_TEXT_CHARS} limit")
    lines = text.count("\n") + 1
    if lines > MAX_LINES:
        raise MetricsParseError(f"{source}: {lines} lines, over the {MAX_LINES}-line limit")
    fast = fast_parse(text)
    if fast is not None:
        return fast
    return reference_parse(text, source)


def reference_parse(text: str, source: str = "metrics text") -> list[MetricFamily]:
    """Parse with ``prometheus_client.parser`` alone (the fallback, and the oracle in tests)."""
    fd = _CountingText(text)
    families: list[MetricFamily] = []
    try:
        for fam in text_fd_to_metric_families(fd):
            families.append(
                MetricFamily(
                    name=str(fam.name),
                    type=str(fam.type),
                    help=str(fam.documentation),
                    samples=tuple(Sample(str(s.name), dict(s.labels), float(s.value)) for s in fam.samples),
                )
            )
    except Exception as e:  # hostile input: whatever the third-party parser raises is a bad page
        # The reference parser raises bare ValueErrors (sometimes without a message) from deep
        # inside its line handling, and OverflowError, RecursionError or worse on hostile pages;
        # the counting reader knows which line it was on.
        excerpt = fd.current.strip()
        if len(excerpt) > _EXCERPT_CHARS:
            excerpt = excerpt[:_EXCERPT_CHARS] + "…"
        reason = str(e)[:_EXCERPT_CHARS] or type(e).__name__
        raise MetricsParseError(
            f"{source}: line {fd.line_no}: invalid exposition format ({reason}): {excerpt!r}",
            line=fd.line_no,
        ) from e
    return families


def decode_metrics_body(body: bytes, source: str) -> str:
    """Decode a scraped body as UTF-8 (the format's encoding); the error names the byte offset."""
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as e:
        line = body.count(b"\n", 0, e.start) + 1
        raise MetricsParseError(f"{source}: line {line}: invalid UTF-8 at byte {e.start}", line=line) from e


# --- the fast path --------------------------------------------------------------------------------
# The subset every real vLLM / SGLang / TGI scrape is written in: legacy metric and label names,
# label values without escapes, plain numeric values, no timestamps, HELP text without escapes.
# Anything else returns None, and the reference parser decides (also what is an error).

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_NAME_RE = re.compile(_NAME)
_VALUE = r"[-+]?(?:[0-9]+\.?[0-9]*(?:[eE][-+]?[0-9]+)?|\.[0-9]+(?:[eE][-+]?[0-9]+)?|Inf|NaN)"
_SAMPLE_RE = re.compile(rf"({_NAME})(?:\{{([^{{}}\\]*)\}})?[ \t]+({_VALUE})")
_LABEL_RE = re.compile(r'[ \t]*([a-zA-Z_][a-zA-Z0-9_]*)[ \t]*=[ \t]*"([^"\\]*)"[ \t]*(,|$)')
_SUFFIXES = {
    "counter": ("",),
    "gauge": ("",),
    "summary": ("_count", "_sum", ""),
    "histogram": ("_count", "_sum", "_bucket"),
}


def _labels(body: str) -> dict[str, str] | None:
    labels: dict[str, str] = {}
    pos = 0
    while pos < len(body):
        m = _LABEL_RE.match(body, pos)
        if m is None or m.group(1) in labels:
            return None
        labels[m.group(1)] = m.group(2)
        pos = m.end()
        if not m.group(3):
            break
    return labels if pos == len(body) else None


class _Family:
    def __init__(self, name: str) -> None:
        self.name = name
        self.type = "unknown"
        self.help = ""
        self.samples: list[Sample] = []
        self.allowed: tuple[str, ...] = (name,)

    def build(self) -> MetricFamily:
        name, samples = self.name, self.samples
        if self.type == "counter":
            # Counters as the reference parser gives them (OpenMetrics style): the family drops
            # ``_total``, and samples of a family declared without it gain it.
            if name.endswith("_total"):
                name = name[:-6]
            else:
                samples = [Sample(s.name + "_total", s.labels, s.value) for s in samples]
        return MetricFamily(name, self.type, self.help, tuple(samples))


class _NotFast(Exception):
    """The text leaves the common subset: the reference parser decides."""


def _comment(line: str, current: _Family | None, out: list[MetricFamily]) -> _Family | None:
    """A ``#`` line: HELP or TYPE starts (or annotates) a family, other comments are skipped.
    Returns the current family; _NotFast outside the subset."""
    if '"' in line or "\\" in line:
        raise _NotFast
    parts = line.split(None, 3)
    if len(parts) < 3 or parts[1] not in ("HELP", "TYPE"):
        if len(parts) >= 2 and parts[1] in ("HELP", "TYPE"):
            raise _NotFast
        return current  # a plain comment
    name = parts[2]
    if not _NAME_RE.fullmatch(name) or (parts[1] == "TYPE" and len(parts) < 4):
        raise _NotFast
    if current is None or current.name != name:
        if current is not None:
            out.append(current.build())
        current = _Family(name)
    if parts[1] == "HELP":
        current.help = parts[3] if len(parts) == 4 else ""
    else:
        current.type = parts[3]
        current.allowed = tuple(name + s for s in _SUFFIXES.get(parts[3], ("",)))
    return current


def fast_parse(text: str) -> list[MetricFamily] | None:
    """Families of ``text`` when it is in the common subset, else None. Pure."""
    out: list[MetricFamily] = []
    current: _Family | None = None
    sample_re, labels_of = _SAMPLE_RE, _labels
    try:
        for raw in text.split("\n"):
            line = raw.strip()
            if not line:
                continue
            if line[0] == "#":
                current = _comment(line, current, out)
                continue
            m = sample_re.fullmatch(line)
            if m is None:
                return None
            labels = labels_of(m.group(2)) if m.group(2) else {}
            if labels is None:
                return None
            sample = Sample(m.group(1), labels, float(m.group(3)))
            if current is not None and sample.name in current.allowed:
                current.samples.append(sample)
                continue
            # A sample of no declared family stands alone as an untyped family.
            if current is not None:
                out.append(current.build())
                current = None
            out.append(MetricFamily(sample.name, "unknown", "", (sample,)))
    except _NotFast:
        return None
    if current is not None:
        out.append(current.build())
    return out
