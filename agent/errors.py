"""The agent's error family: every deliberate agent error derives from AgentError."""

from skewwatch.core.errors import SkewwatchError


class AgentError(SkewwatchError):
    """Base of the agent's errors."""


class SourceUnavailable(AgentError):
    """A source has nothing to read here (no GPU, no process, no model dir); not a failure."""


class SourceFailed(AgentError):
    """A source could read its input but the input was wrong; the message names what and where."""


class SettingsError(AgentError, ValueError):
    """A setting (flag or SKEWWATCH_* variable) is invalid; the message names it."""
