"""An aiohttp app served on 127.0.0.1, a free port, on its own event loop in a thread.

For stand-in servers that a test's synchronous code (or a command's own ``asyncio.run``) talks
to: the stand-in engine, the stand-in collectors. A failure to start is raised in the test,
never left as a hung thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aiohttp import web

START_TIMEOUT_S = 10.0


@contextmanager
def serve_in_thread(app: web.Application, name: str) -> Iterator[str]:
    """Serve ``app`` until the block ends; yields its base URL (``http://127.0.0.1:PORT``)."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, Any] = {}

    async def start() -> None:
        runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        holder["runner"] = runner
        holder["port"] = runner.addresses[0][1]

    def main() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(start())
        except BaseException as e:  # the test sees it, not a hung thread
            holder["error"] = e
            ready.set()
            return
        ready.set()
        loop.run_forever()
        loop.run_until_complete(holder["runner"].cleanup())
        loop.close()

    thread = threading.Thread(target=main, name=name, daemon=True)
    thread.start()
    if not ready.wait(START_TIMEOUT_S):
        raise AssertionError(f"{name} did not start within {START_TIMEOUT_S:g} s")
    if "error" in holder:
        raise holder["error"]
    try:
        yield f"http://127.0.0.1:{holder['port']}"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
