"""The webhook's error family: one base class, translated to an HTTP answer only at the edge."""

from __future__ import annotations

from skewwatch.core.errors import SkewwatchError
from skewwatch.tls import TLSFilesError as _TLSFilesError


class WebhookError(SkewwatchError):
    """Base of every error the admission webhook raises on purpose."""


class ConfigError(WebhookError, ValueError):
    """The webhook's YAML config file is unreadable or invalid; the message names the field."""


class ReviewError(WebhookError, ValueError):
    """An AdmissionReview the webhook cannot read at all (not JSON, not an object); the message
    names what was wrong. Reviews it can read but will not act on are answered, not raised.
    ``limit`` names the limit the review went over when that is why (``max_review_depth``,
    ``max_review_uid``), else None."""

    def __init__(self, message: str, *, limit: str | None = None) -> None:
        super().__init__(message)
        self.limit = limit


# The serving certificate or key cannot be loaded: ``skewwatch.tls``'s error (shared with the
# collector's HTTPS API), under its old name here.
TLSFilesError = _TLSFilesError
