"""The collector's error family: one base class, one subclass per boundary.

Third-party exceptions (sqlite3, grpc, aiohttp) are translated into these at the edge with
``raise ... from e``; the gRPC and HTTP layers translate these into status codes, nowhere else.
"""

from __future__ import annotations

from skewwatch.core.errors import SkewwatchError


class CollectorError(SkewwatchError):
    """Base of every error the collector raises on purpose."""


class SettingsError(CollectorError, ValueError):
    """A setting is invalid; ``flag`` names the command-line flag (or variable) at fault."""

    def __init__(self, flag: str, message: str) -> None:
        super().__init__(f"{flag}: {message}")
        self.flag = flag


class StoreError(CollectorError):
    """The store could not be opened, read or written; nothing already stored was changed."""


class UnsupportedStoreError(StoreError, ValueError):
    """The store URL names a backend this build does not support (yet)."""


class IngestError(CollectorError, ValueError):
    """An agent message breaks the stream protocol; the message names the field at fault."""


class ApiError(CollectorError):
    """An HTTP API request cannot be answered; carries the HTTP status and a stable code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class NotFoundError(ApiError):
    def __init__(self, message: str) -> None:
        super().__init__(404, "not_found", message)


class BadRequestError(ApiError):
    def __init__(self, message: str) -> None:
        super().__init__(400, "bad_request", message)


class ClientError(CollectorError):
    """The CLI could not get an answer from a collector's API (unreachable, error status, bad JSON)."""
