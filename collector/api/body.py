"""Request bodies, read the one way every handler reads them: bounded, timed, decoded, parsed.

``read_text`` refuses a body over the route's limit before reading more of it (413, from
``Content-Length`` when given, else as it streams in), gives up on a client that announced more
than it sends (408 after ``read_timeout_s``; 400 when the connection ends short), and decodes it
as UTF-8 (the only charset accepted; ASCII is a subset): anything else is a 400 naming the
charset or the first undecodable byte. ``parse_json`` bounds nesting and number sizes.

CPU-heavy parsing (intent documents: YAML, schema validation) runs in ``ParsePool``: a small
thread pool with a bounded queue (full → 503 with Retry-After) and a time limit per request
(→ 504), so the event loop the gRPC ingest shares stays responsive.

Every refusal for a limit carries the limit's name (``ApiError.limit``: ``max_json_bytes``,
``max_intent_bytes``, ``max_json_depth``, ``max_int_digits``, ``parse_queue``), which the app's
error middleware counts (``EVENTS``, ``ServiceEvents.limit_exceeded``). ``bounded`` cuts a list
an answer returns to ``max_list_items`` and says so in the answer (counted as ``max_list_items``).
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from collector.errors import (
    BadRequestError,
    OverloadedError,
    PayloadTooLargeError,
    ProcessingTimeoutError,
    RequestTimeoutError,
)
from collector.service.events import ServiceEvents

T = TypeVar("T")
KIB = 1024
UTF8_CHARSETS = frozenset({"utf-8", "utf8", "us-ascii", "ascii"})
_CHUNK = 64 * KIB


@dataclass(frozen=True)
class ApiLimits:
    """The HTTP API's limits; ``create_app`` takes them (defaults: ``DEFAULT_LIMITS``)."""

    # Intent documents are the largest bodies; the other bodies are small JSON notes.
    max_intent_bytes: int = 256 * KIB
    max_json_bytes: int = 64 * KIB
    # From the handler asking for the body until its last byte arrived.
    read_timeout_s: float = 10.0
    max_json_depth: int = 32
    max_int_digits: int = 32
    parse_workers: int = 2
    # Requests waiting for a parse worker beyond those running; more are answered 503.
    parse_queue: int = 16
    # From admission (queue wait included) until the parse is done.
    parse_timeout_s: float = 10.0
    retry_after_s: int = 1
    # Items any list an answer returns holds at most (pods, workloads, baselines, intents).
    max_list_items: int = 10_000

    @property
    def max_body_bytes(self) -> int:
        return max(self.max_intent_bytes, self.max_json_bytes)


DEFAULT_LIMITS = ApiLimits()
LIMITS: web.AppKey[ApiLimits] = web.AppKey("limits", ApiLimits)
# Who is told of each request refused (or answer cut) for a limit (``limit_exceeded``).
EVENTS: web.AppKey[ServiceEvents] = web.AppKey("events", ServiceEvents)
LIMIT_LIST_ITEMS = "max_list_items"


def bounded(request: web.Request, name: str, items: list[Any], **more: Any) -> dict[str, Any]:
    """``{name: items}`` with at most ``max_list_items`` items; when cut, also ``truncated``:
    ``{"limit": N, "total": M}`` (and the cut is counted); ``more`` is added as is."""
    limit = request.app[LIMITS].max_list_items
    out: dict[str, Any] = {name: items[:limit], **more}
    if len(items) > limit:
        out["truncated"] = {"limit": limit, "total": len(items)}
        request.app[EVENTS].limit_exceeded(LIMIT_LIST_ITEMS)
    return out


async def read_body(request: web.Request, max_bytes: int, limit: str = "max_body_bytes") -> bytes:
    """The whole body, at most ``max_bytes`` (the limit named ``limit``); 413 / 408 / 400 as the
    module docstring says."""
    limits = request.app[LIMITS]
    announced = request.content_length
    if announced is not None and announced > max_bytes:
        raise PayloadTooLargeError(
            f"body: Content-Length {announced} is over this route's limit of {max_bytes} bytes ({limit})",
            limit=limit,
        )
    chunks: list[bytes] = []
    total = 0
    try:
        async with asyncio.timeout(limits.read_timeout_s):
            while True:
                chunk = await request.content.read(_CHUNK)
                if not chunk:
                    break
                total += len(chunk)
                if total > max_bytes:
                    raise PayloadTooLargeError(
                        f"body: over this route's limit of {max_bytes} bytes ({limit})", limit=limit
                    )
                chunks.append(chunk)
    except TimeoutError:
        of = f" of the {announced} announced" if announced is not None else ""
        raise RequestTimeoutError(
            f"body: {total}{of} bytes arrived within {limits.read_timeout_s:g} s; send the whole body"
        ) from None
    except (HttpProcessingError, ConnectionError) as e:
        raise BadRequestError(f"body: incomplete or malformed after {total} bytes: {e}") from None
    if announced is not None and total != announced:  # the parser enforces this; belt and braces
        raise BadRequestError(f"body: {total} bytes arrived, Content-Length said {announced}")
    return b"".join(chunks)


def charset_of(request: web.Request) -> str:
    """The request's charset, lower-cased; 400 unless it is UTF-8 (or ASCII, a subset)."""
    raw = request.charset
    if raw is None:
        return "utf-8"
    charset = raw.strip().strip('"').lower()
    if charset not in UTF8_CHARSETS:
        raise BadRequestError(f"body: charset {raw[:40]!r} is not supported; send UTF-8")
    return charset


def decode(body: bytes) -> str:
    """UTF-8 text (a leading BOM dropped); 400 naming the first undecodable byte."""
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise BadRequestError(
            f"body: not valid UTF-8: byte 0x{body[e.start]:02x} at offset {e.start} ({e.reason})"
        ) from None


async def read_text(request: web.Request, max_bytes: int, limit: str = "max_body_bytes") -> str:
    charset_of(request)  # before reading: a bad charset is refused without waiting for the body
    return decode(await read_body(request, max_bytes, limit))


class _Refused(ValueError):
    def __init__(self, message: str, limit: str | None = None) -> None:
        super().__init__(message)
        self.limit = limit


def parse_json(text: str, limits: ApiLimits) -> Any:
    """JSON with nesting at most ``max_json_depth``, integers of at most ``max_int_digits`` digits,
    finite numbers and no NaN/Infinity; 400 naming the problem."""

    def integer(s: str) -> int:
        if len(s.lstrip("-")) > limits.max_int_digits:
            raise _Refused(f"an integer with more than {limits.max_int_digits} digits", "max_int_digits")
        return int(s)

    def number(s: str) -> float:
        value = float(s)
        if not math.isfinite(value):
            raise _Refused(f"number {s[:40]} is out of range")
        return value

    def constant(s: str) -> Any:
        raise _Refused(f"{s} is not a JSON value")

    try:
        value = json.loads(text, parse_int=integer, parse_float=number, parse_constant=constant)
    except _Refused as e:
        raise BadRequestError(f"body: {e}", limit=e.limit) from None
    except RecursionError:
        raise BadRequestError(
            f"body: JSON nested deeper than {limits.max_json_depth} levels", limit="max_json_depth"
        ) from None
    except ValueError as e:
        raise BadRequestError(f"body is not JSON: {e}") from None
    if _depth(value) > limits.max_json_depth:
        raise BadRequestError(
            f"body: JSON nested deeper than {limits.max_json_depth} levels", limit="max_json_depth"
        )
    return value


def _depth(value: Any) -> int:
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


async def read_json(request: web.Request) -> Any:
    """A small JSON body (``max_json_bytes``); an empty body reads as ``{}``."""
    limits = request.app[LIMITS]
    text = await read_text(request, limits.max_json_bytes, "max_json_bytes")
    return parse_json(text, limits) if text.strip() else {}


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class ParsePool:
    """A bounded thread pool for CPU-heavy request work, with a time limit per request.

    A job holds its slot until its thread is really done (a thread cannot be interrupted), so
    jobs that outlived their time limit still count against the bound.
    """

    def __init__(self, limits: ApiLimits) -> None:
        self.limits = limits
        self._executor = ThreadPoolExecutor(max_workers=limits.parse_workers, thread_name_prefix="api-parse")
        self._capacity = limits.parse_workers + limits.parse_queue
        self._lock = threading.Lock()
        self._busy = 0

    @property
    def busy(self) -> int:
        return self._busy

    def _release(self, _: object) -> None:
        with self._lock:
            self._busy -= 1

    async def run(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        limits = self.limits
        with self._lock:
            if self._busy >= self._capacity:
                raise OverloadedError(
                    f"{what}: {self._busy} requests are being parsed or wait for it; retry shortly",
                    limits.retry_after_s,
                    limit="parse_queue",
                )
            self._busy += 1
        try:
            job = self._executor.submit(fn, *args)
        except RuntimeError:  # shutting down
            self._release(None)
            raise OverloadedError(f"{what}: the collector is shutting down", limits.retry_after_s) from None
        job.add_done_callback(self._release)
        result = asyncio.wrap_future(job)
        result.add_done_callback(_retrieve)  # a job that fails after its time limit logs nothing
        try:
            return await asyncio.wait_for(asyncio.shield(result), limits.parse_timeout_s)
        except TimeoutError:
            job.cancel()  # only if it has not started; a running one finishes and frees its slot
            raise ProcessingTimeoutError(
                f"{what}: not done within {limits.parse_timeout_s:g} s; send smaller documents"
            ) from None

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
