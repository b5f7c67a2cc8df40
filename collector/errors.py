"""The collector's error family: one base class, one subclass per boundary.

Third-party exceptions (sqlite3, grpc, aiohttp) are translated into these at the edge with
``raise ... from e``; the gRPC and HTTP layers translate these into status codes, nowhere else.
"""

from __future__ import annotations

from skewwatch.core.errors import SkewwatchError


class CollectorError(SkewwatchError):
    """Base of every error the collector raises on purpose.

    ``limit`` names the limit an input went over when that is why it was refused (the names of
    docs/collector-limits.md, counted as ``skewwatch.limits.exceeded{limit}`` where the surface
    answers the error); None for every other error."""

    limit: str | None = None


class SettingsError(CollectorError, ValueError):
    """A setting is invalid; ``flag`` names the command-line flag (or variable) at fault."""

    def __init__(self, flag: str, message: str) -> None:
        super().__init__(f"{flag}: {message}")
        self.flag = flag


class StoreError(CollectorError):
    """The store could not be opened, read or written; nothing already stored was changed.

    ``reason`` classifies a database failure (``collector.store.sql.classify``): corrupt,
    read_only, full, locked, io or None when not known."""

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason


class UnsupportedStoreError(StoreError, ValueError):
    """The store URL names a backend this build does not support (yet)."""


class WriteShedError(CollectorError):
    """The collector sheds this write: too many wait for the store; retry after ``retry_after_s``."""

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class IngestError(CollectorError, ValueError):
    """An agent message breaks the stream protocol; the message names the field at fault;
    ``limit`` the limit it went over, if that is why."""

    def __init__(self, message: str, *, limit: str | None = None) -> None:
        super().__init__(message)
        self.limit = limit


class ApiError(CollectorError):
    """An HTTP API request cannot be answered; carries the HTTP status and a stable code."""

    def __init__(self, status: int, code: str, message: str, *, limit: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.limit = limit
        # Extra response headers (Retry-After on 503); the HTTP edge adds them.
        self.headers: dict[str, str] = {}


class NotFoundError(ApiError):
    def __init__(self, message: str) -> None:
        super().__init__(404, "not_found", message)


class BadRequestError(ApiError):
    def __init__(self, message: str, *, limit: str | None = None) -> None:
        super().__init__(400, "bad_request", message, limit=limit)


class ClientError(CollectorError):
    """The CLI could not get an answer from a collector's API (unreachable, error status, bad JSON)."""


class IntentError(CollectorError, ValueError):
    """An intent document (ModelSpec / SkewPolicy) is malformed or breaks its schema.

    ``issues`` lists every problem found (bounded), each naming the file, the 1-based line and
    the field path; the message is the first few of them, one per line.
    """

    def __init__(self, issues: list[IntentIssue], *, limit: str | None = None) -> None:
        self.limit = limit
        shown = issues[:5]
        more = f"\n(and {len(issues) - len(shown)} more)" if len(issues) > len(shown) else ""
        super().__init__("\n".join(str(i) for i in shown) + more)
        self.issues = issues


class IntentIssue:
    """One problem in an intent document: where (file, line, field path) and what."""

    __slots__ = ("file", "line", "message", "path")

    def __init__(self, file: str, line: int | None, path: str, message: str) -> None:
        self.file = file
        self.line = line
        self.path = path
        self.message = message

    def __str__(self) -> str:
        where = self.file + (f":{self.line}" if self.line else "")
        return f"{where}: {self.path or '(document)'}: {self.message}"

    def as_dict(self) -> dict[str, object]:
        return {"file": self.file, "line": self.line, "path": self.path, "message": self.message}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IntentIssue) and self.as_dict() == other.as_dict()

    def __hash__(self) -> int:
        return hash((self.file, self.line, self.path, self.message))


class ConflictError(ApiError):
    def __init__(self, message: str) -> None:
        super().__init__(409, "conflict", message)


class PayloadTooLargeError(ApiError):
    """A request body over the route's limit: refused before more of it is read."""

    def __init__(self, message: str, *, limit: str | None = None) -> None:
        super().__init__(413, "payload_too_large", message, limit=limit)


class RequestTimeoutError(ApiError):
    """The client announced a body and did not send it in time."""

    def __init__(self, message: str) -> None:
        super().__init__(408, "request_timeout", message)


class OverloadedError(ApiError):
    """The bounded parse pool is full; the client should retry after ``retry_after_s``."""

    def __init__(self, message: str, retry_after_s: int, *, limit: str | None = None) -> None:
        super().__init__(503, "overloaded", message, limit=limit)
        self.headers["Retry-After"] = str(retry_after_s)


class ProcessingTimeoutError(ApiError):
    """Parsing or validating a request took longer than its time limit."""

    def __init__(self, message: str) -> None:
        super().__init__(504, "processing_timeout", message)
