"""Running the webhook as a process: settings from the parsed flags, serve until a signal."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from pathlib import Path

from skewwatch.webhook.config import load_config
from skewwatch.webhook.errors import ConfigError
from skewwatch.webhook.server import start_webhook

log = logging.getLogger(__name__)


def required(args: argparse.Namespace) -> tuple[tuple[str, int], Path, Path]:
    """The listen address, certificate and key; ConfigError naming the first one missing."""
    listen: tuple[str, int] | None = getattr(args, "webhook_listen", None)  # typed by argparse, env too
    if listen is None:
        raise ConfigError("--listen: required (or set SKEWWATCH_WEBHOOK_LISTEN)")
    cert, key = getattr(args, "tls_cert", None), getattr(args, "tls_key", None)
    if cert is None or key is None:
        raise ConfigError(
            "--tls-cert and --tls-key: both required (the API server calls webhooks over HTTPS)"
        )
    return listen, Path(cert), Path(key)


async def serve(args: argparse.Namespace, stop: asyncio.Event | None = None) -> None:
    """Serve until ``stop`` is set (or SIGTERM/SIGINT when none is given)."""
    (host, port), cert, key = required(args)
    config = load_config(getattr(args, "webhook_config", None))
    running = await start_webhook(host, port, cert, key, config)
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await running.stop()
        log.info("webhook stopped: %s", dict(running.handlers.counts))


def run(args: argparse.Namespace) -> int:
    asyncio.run(serve(args))
    return 0
