"""Query-parameter parsing shared by every API route: bounded, with errors naming the parameter."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from aiohttp import web

from collector.errors import BadRequestError

MAX_SEGMENT = 170  # one segment of NAMESPACE/KIND/NAME (the OpenAPI document's _SEGMENT)
# A ``limit`` query parameter over its route's maximum is refused (400) and counted as this.
LIMIT_QUERY = "query_limit"


def int_param(request: web.Request, name: str, default: int | None, low: int, high: int) -> int | None:
    """The integer query parameter ``name`` within [low, high], or ``default`` when absent; a
    ``limit`` (the rows a page returns) over ``high`` is refused naming ``query_limit``."""
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw, 10)
    except ValueError:
        raise BadRequestError(f"query parameter {name!r}: {raw[:32]!r} is not an integer") from None
    if not low <= value <= high:
        over = name == "limit" and value > high
        raise BadRequestError(
            f"query parameter {name!r}: {value} is not between {low} and {high}"
            + (f" (the most one page returns, {LIMIT_QUERY})" if over else ""),
            limit=LIMIT_QUERY if over else None,
        )
    return value


# Unix seconds: at most 11 digits (up to the year 5138), an optional fraction; no sign, no exponent.
UNIX_PATTERN = r"\d{1,11}(\.\d{1,9})?"
# RFC 3339 section 5.6 date-time. A space where the offset's sign goes is a '+' that URL decoding
# turned into a space (``?since=...T10:00:00+02:00`` sent without encoding the '+').
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?(?:[Zz]|([+\- ])(\d{2}):(\d{2}))",
    re.ASCII,  # \d: ASCII digits only, as in the document's pattern
)
_UNIX = re.compile(UNIX_PATTERN, re.ASCII)


def parse_time(raw: str) -> float | None:
    """Unix seconds from ``raw``: Unix seconds (``1796119200``, ``1796119200.5``) or an RFC 3339
    timestamp (``2026-12-01T10:00:00Z``, ``2026-12-01T12:00:00.25+02:00``, a leap second's
    ``:60`` included); None when it is neither or names no real date (month 13, 31 June)."""
    if _UNIX.fullmatch(raw):
        return float(raw)
    m = _RFC3339.fullmatch(raw)
    if m is None:
        return None
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    leap = second == 60  # one second after :59
    offset = timedelta(0)
    if m[8] is not None:
        offset = timedelta(hours=int(m[9]), minutes=int(m[10])) * (-1 if m[8] == "-" else 1)
    try:
        at = datetime(year, month, day, hour, minute, second - leap, tzinfo=timezone(offset))
    except ValueError:  # no such date, hour 24, an offset of a day or more
        return None
    return at.timestamp() + leap + float(m[7] or 0)


def time_param(request: web.Request, name: str) -> float | None:
    """The moment named by query parameter ``name`` in Unix seconds (``parse_time``), or None when absent."""
    raw = request.query.get(name)
    if raw is None:
        return None
    value = parse_time(raw) if len(raw) <= 64 else None
    if value is None:
        raise BadRequestError(
            f"query parameter {name!r}: {raw[:64]!r} is not an RFC 3339 timestamp "
            "(like 2026-12-01T10:00:00Z) or Unix seconds (at most 11 digits)"
        )
    return value


def segment_param(request: web.Request, name: str) -> str | None:
    """A query parameter naming one segment of a workload id (a namespace): not empty, no '/'."""
    raw = request.query.get(name)
    if raw is None:
        return None
    if not raw or "/" in raw or len(raw) > MAX_SEGMENT:
        raise BadRequestError(
            f"query parameter {name!r}: {raw[:40]!r} must be a namespace: 1 to {MAX_SEGMENT} "
            "characters, no '/'"
        )
    return raw
