"""The error family of ``skewwatch verify``: one base class, and one subclass per kind of failure.

Each kind maps onto the command's exit code 2 (could not verify): bad usage, a collector answer
that does not have the verification route's shape, an evidence file that could not be written.
"""

from __future__ import annotations

from skewwatch.core.errors import SkewwatchError


class VerifyError(SkewwatchError):
    """Base of the errors ``skewwatch verify`` raises on purpose."""


class VerifyUsageError(VerifyError, ValueError):
    """The flags do not make a verification: the message names the flag and what to give."""


class AnswerError(VerifyError):
    """The collector's verification answer is not of the route's shape; names the field at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"verification answer: {field}: {message}")
        self.field = field


class EvidenceWriteError(VerifyError):
    """The evidence bundle could not be written; names the file and the reason."""
