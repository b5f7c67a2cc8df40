"""Query-parameter parsing shared by every API route: bounded, with errors naming the parameter."""

from __future__ import annotations

from aiohttp import web

from collector.errors import BadRequestError


def int_param(request: web.Request, name: str, default: int | None, low: int, high: int) -> int | None:
    """The integer query parameter ``name`` within [low, high], or ``default`` when absent."""
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw, 10)
    except ValueError:
        raise BadRequestError(f"query parameter {name!r}: {raw[:32]!r} is not an integer") from None
    if not low <= value <= high:
        raise BadRequestError(f"query parameter {name!r}: {value} is not between {low} and {high}")
    return value
