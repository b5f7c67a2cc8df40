"""The error family of the pre-deploy check: every bad input is a CheckInputError naming file and line."""

from __future__ import annotations

from skewwatch.core.errors import SkewwatchError


class CheckError(SkewwatchError):
    """Base of the errors ``skewwatch check`` raises on purpose."""


class CheckInputError(CheckError, ValueError):
    """An input the check cannot read: a file, its YAML, an intent, or no inference container.

    ``str()`` is ``FILE:LINE: message`` (``FILE: message`` when no line applies), the form the
    command prints on stderr before it exits with code 2.
    """

    def __init__(self, file: str, line: int | None, message: str) -> None:
        self.file = file
        self.line = line
        self.message = message
        where = file + (f":{line}" if line else "")
        super().__init__(f"{where}: {message}")


class TargetNotFound(CheckError):
    """The live mode (``--pid`` / ``--match``) found no inference process to check."""
