"""The mutating admission webhook (``skewwatch webhook``) that injects the agent into opted-in pods.

It sits above the agent, as the pre-deploy check does: it finds the inference container with
the agent's own engine tables (:mod:`agent.engines`, through :mod:`agent.sources.process`), so a
command line means here what it means to the running agent. Neither the agent nor the collector
imports this package (an import-linter contract); the injection itself
(:mod:`skewwatch.webhook.inject`, :mod:`skewwatch.webhook.review`) is pure, the server
(:mod:`skewwatch.webhook.server`) is aiohttp over TLS. ``register(subparsers)`` adds the command;
``attach(parser)`` serves the webhook beside another command (the collector) given ``--webhook``.
"""

from skewwatch.webhook.command import attach, register

__all__ = ["attach", "register"]
