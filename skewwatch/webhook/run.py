"""Running the webhook as a process: settings from the parsed flags, serve until a signal."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import threading
from collections.abc import Callable
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
        log.info(
            "webhook stopped: %s; over a limit: %s",
            dict(running.handlers.counts),
            dict(running.handlers.limits_exceeded),
        )


START_TIMEOUT_S = 30.0


def run_beside(func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """``func(args)`` — a command that runs its own event loop (and signal handlers) in this
    thread — with the webhook served on an event loop in a thread of its own, started first (an
    unusable certificate stops both before the command starts) and stopped when it returns."""
    required(args)  # the flags' errors before any thread
    stop: asyncio.Event | None = None
    loop: asyncio.AbstractEventLoop | None = None
    ready = threading.Event()
    failed: list[BaseException] = []

    async def main() -> None:
        nonlocal stop, loop
        stop, loop = asyncio.Event(), asyncio.get_running_loop()
        (host, port), cert, key = required(args)
        running = await start_webhook(
            host, port, cert, key, load_config(getattr(args, "webhook_config", None))
        )
        ready.set()
        try:
            await stop.wait()
        finally:
            await running.stop()

    def thread_main() -> None:
        try:
            asyncio.run(main())
        except BaseException as e:  # handed to the main thread, which raises it
            failed.append(e)
        finally:
            ready.set()

    thread = threading.Thread(target=thread_main, name="skewwatch-webhook", daemon=True)
    thread.start()
    if not ready.wait(START_TIMEOUT_S):
        raise ConfigError(f"--webhook: not serving within {START_TIMEOUT_S:g} s")
    if failed:
        raise failed[0]
    try:
        return func(args)
    finally:
        if loop is not None and stop is not None and thread.is_alive():
            loop.call_soon_threadsafe(stop.set)
        thread.join(10.0)


def run(args: argparse.Namespace) -> int:
    asyncio.run(serve(args))
    return 0
