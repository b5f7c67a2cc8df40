"""The webhook over HTTPS: ``POST /mutate`` (and ``/mutate/namespace-enabled``), ``GET /healthz``.

The request body is read with a size cap (:data:`MAX_BODY_BYTES`, the API server's own limit on
a request: larger is answered 413 naming ``max_review_bytes`` before it is read) and a time
limit (a client that stops sending is answered 408); a body that is no AdmissionReview is
answered 400 with the reason; everything else gets an AdmissionReview that admits the pod
(see :mod:`skewwatch.webhook.review`).

TLS: :class:`skewwatch.tls.ReloadingTLS` (shared with the collector's HTTPS API) serves the
certificate and key in two files and loads them again, without a restart, when either changes.

Limits: the webhook may run on its own, without the collector's telemetry, so it counts each
review refused for a limit itself, in ``WebhookApp.limits_exceeded`` (by limit name:
``max_review_bytes``, ``max_review_depth``, ``max_review_uid``; docs/collector-limits.md), logs
each refusal naming the limit, and logs the counts when it stops.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from skewwatch.tls import ReloadingTLS
from skewwatch.webhook.config import WebhookConfig
from skewwatch.webhook.errors import ReviewError
from skewwatch.webhook.review import answer, read_review

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 3 * 1024 * 1024
LIMIT_BODY = "max_review_bytes"
BODY_TIMEOUT_S = 10.0


@dataclass
class WebhookApp:
    """The handlers and what they counted (outcomes; there are no other side effects)."""

    config: WebhookConfig
    counts: Counter[str] = field(default_factory=Counter)
    # Reviews refused for a limit, by the limit's name.
    limits_exceeded: Counter[str] = field(default_factory=Counter)

    async def mutate(self, request: web.Request) -> web.Response:
        return await self._mutate(request, namespace_enabled=False)

    async def mutate_namespace_enabled(self, request: web.Request) -> web.Response:
        return await self._mutate(request, namespace_enabled=True)

    async def _mutate(self, request: web.Request, namespace_enabled: bool) -> web.Response:
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            return self._error(
                413,
                f"request body: {request.content_length} bytes, more than {MAX_BODY_BYTES} ({LIMIT_BODY})",
                LIMIT_BODY,
            )
        try:
            async with asyncio.timeout(BODY_TIMEOUT_S):
                body = await _read_capped(request)
        except TimeoutError:
            return self._error(408, f"request body: not received within {BODY_TIMEOUT_S:g} s")
        if body is None:
            return self._error(
                413, f"request body: more than {MAX_BODY_BYTES} bytes ({LIMIT_BODY})", LIMIT_BODY
            )
        try:
            data = read_review(body)
        except ReviewError as e:
            return self._error(400, str(e), e.limit)
        result = answer(data, self.config, namespace_enabled=namespace_enabled)
        self.counts[result.outcome] += 1
        request_data = data["request"]
        log.info(
            "admission %r: %s %r/%r: %s%s",  # repr: a hostile uid or name cannot forge log lines
            request_data["uid"],
            result.outcome,
            str(request_data.get("namespace") or "")[:63],
            str(request_data.get("name") or "")[:253],
            result.reason,
            " (dry run)" if result.dry_run else "",
        )
        return web.json_response(result.review)

    def _error(self, status: int, message: str, limit: str | None = None) -> web.Response:
        self.counts[f"http_{status}"] += 1
        if limit is not None:
            self.limits_exceeded[limit] += 1
        log.warning("admission request refused (%d): %s", status, message)
        response = web.json_response({"error": message}, status=status)
        if status in (408, 413):
            response.force_close()  # the rest of the body is never read: the connection ends
        return response

    async def healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})


async def _read_capped(request: web.Request) -> bytes | None:
    """The body, or None once it passes MAX_BODY_BYTES (chunked bodies have no Content-Length)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def add_routes(app: web.Application, handlers: WebhookApp) -> None:
    """The webhook's routes on ``app`` (its own, or a process that serves it beside others)."""
    app.router.add_post("/mutate", handlers.mutate)
    app.router.add_post("/mutate/namespace-enabled", handlers.mutate_namespace_enabled)
    app.router.add_get("/healthz", handlers.healthz)


def make_app(config: WebhookConfig) -> tuple[web.Application, WebhookApp]:
    # client_max_size: aiohttp's own cap, one byte over ours, so that ours answers first.
    app = web.Application(client_max_size=MAX_BODY_BYTES + 1)
    handlers = WebhookApp(config)
    add_routes(app, handlers)
    return app, handlers


@dataclass
class RunningWebhook:
    """A started webhook server: its port, its TLS, its handlers; ``stop()`` ends it."""

    runner: web.AppRunner
    tls: ReloadingTLS
    handlers: WebhookApp
    port: int

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start_webhook(host: str, port: int, cert: Path, key: Path, config: WebhookConfig) -> RunningWebhook:
    """Serve the webhook on ``host:port`` (port 0: a free one) over TLS from ``cert``/``key``."""
    tls = ReloadingTLS(cert, key)
    app, handlers = make_app(config)
    # lingering_time: how long the unread rest of a refused body is drained before the connection
    # closes (aiohttp's default, 10 s, lets a hostile client hold a connection that long).
    runner = web.AppRunner(
        app, access_log=None, handle_signals=False, shutdown_timeout=5.0, lingering_time=1.0
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=tls.context)
    await site.start()
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    bound = int(sockets[0].getsockname()[1]) if sockets else port
    log.info("webhook listening on https://%s:%d/mutate", host, bound)
    return RunningWebhook(runner, tls, handlers, bound)
