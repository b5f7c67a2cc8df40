"""The error family of the shared core: every invalid fact or value raises a FactError."""


class SkewwatchError(Exception):
    """Base of every error skewwatch raises on purpose."""


class FactError(SkewwatchError, ValueError):
    """A fact key or value breaks the fact contract; the message names the key and why."""
