"""The pre-deploy skew check (``skewwatch check``): manifests, or one local process, against intent.

It reuses, never re-implements: the agent's engine tables and command-line parser
(:mod:`agent.engines`, through :mod:`agent.sources.process`), the agent's redaction, the
collector's intent loader (:mod:`collector.intent.model`) and its drift engine
(:func:`collector.drift.engine.evaluate`). Neither the agent nor the collector imports this package
(an import-linter contract). ``register(subparsers)`` adds the ``check`` command.
"""

from skewwatch.check.command import main, register

__all__ = ["main", "register"]
