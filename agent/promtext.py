"""Pure parsing of the Prometheus text exposition format (what ``/metrics`` of vLLM, SGLang and TGI serve).

The grammar is the reference parser's (``prometheus_client.parser``), so every quirk of real
scrapes (summaries, repeated families, ``# TYPE`` without ``# HELP``, no trailing newline) is
handled the way Prometheus' own client handles it. This module only adds what the agent needs
around it: typed, immutable results that do not leak the third-party classes, bounded input, and
an error that names the line at fault. It does no I/O.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass

from prometheus_client.parser import text_fd_to_metric_families

from agent.errors import SourceFailed

# A scrape of a busy vLLM replica is a few hundred KiB; anything near this is not a metrics page.
MAX_TEXT_CHARS = 8 * 1024 * 1024
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
    """Parse exposition text into families; raise MetricsParseError naming ``source`` and the line."""
    if len(text) > MAX_TEXT_CHARS:
        raise MetricsParseError(f"{source}: {len(text)} characters, over the {MAX_TEXT_CHARS} limit")
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
    except (ValueError, TypeError, IndexError, KeyError) as e:
        # The reference parser raises bare ValueErrors (sometimes without a message) from deep
        # inside its line handling; the counting reader knows which line it was on.
        excerpt = fd.current.strip()
        if len(excerpt) > _EXCERPT_CHARS:
            excerpt = excerpt[:_EXCERPT_CHARS] + "…"
        reason = str(e) or type(e).__name__
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
