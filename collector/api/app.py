"""The aiohttp application serving the query API, health and readiness.

Errors are JSON ``{"error": {"code", "message"}}``; ``ApiError`` (and aiohttp's own 404/405,
with their Allow header) are translated here, at the edge, and nowhere else. Anything else is a
bug: the last-resort handler logs it and answers a JSON 500 (the schemathesis and fuzz tests
prove it never fires). Bodies are read and parsed through ``collector.api.body``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from collector import ui as ui_routes
from collector.api import auth, body, openapi, views
from collector.api import drift as drift_routes
from collector.api import evidence as evidence_routes
from collector.api import injection as injection_routes
from collector.api import probes as probe_routes
from collector.api.drift import IntentBadRequest
from collector.api.params import int_param
from collector.errors import ApiError, BadRequestError, StoreError
from collector.service.events import NO_EVENTS, ServiceEvents
from collector.service.injection import InjectionReport
from collector.service.pods import MAX_HISTORY_LIMIT, Pods
from collector.service.queries import Queries
from collector.tokens import TokenFile
from skewwatch import __version__
from skewwatch.core.identity import PodKey

log = logging.getLogger(__name__)

PODS: web.AppKey[Pods] = web.AppKey("pods", Pods)
# Whether bearer tokens guard the API: the OpenAPI document then requires them (collector/api/auth.py).
AUTH: web.AppKey[bool] = web.AppKey("auth", bool)
GRPC_SERVING: web.AppKey[Callable[[], bool]] = web.AppKey("grpc_serving")

DEFAULT_HISTORY_LIMIT = 50
READY_TIMEOUT_S = 2.0
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as e:
        if e.limit is not None:  # the one place the API counts a request over a limit
            request.app[body.EVENTS].limit_exceeded(e.limit)
        if isinstance(e, IntentBadRequest):
            return web.json_response(
                {"error": {"code": e.code, "message": e.message, "issues": e.issues}}, status=400
            )
        return _api_error_response(e)
    except StoreError as e:
        log.error("%s %s: store failed: %s", request.method, request.path, e)
        return error_response(503, "store_unavailable", str(e))
    except web.HTTPException as e:
        if e.status < 400:
            raise
        if e.status == 413:  # aiohttp's own cap (client_max_size): the largest body limit
            request.app[body.EVENTS].limit_exceeded("max_body_bytes")
        code = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}.get(
            e.status, "http_error"
        )
        resp = error_response(e.status, code, f"{request.method} {request.path}: {e.reason}")
        if "Allow" in e.headers:
            resp.headers["Allow"] = e.headers["Allow"]
        return resp
    except Exception:
        log.exception("%s %s: unexpected error (a bug: please report it)", request.method, request.path)
        return error_response(500, "internal", f"{request.method} {request.path}: internal error")


def _api_error_response(e: ApiError) -> web.Response:
    resp = error_response(e.status, e.code, e.message)
    resp.headers.update(e.headers)
    if e.status in (408, 413):
        resp.force_close()  # the rest of the body is not read: the connection cannot be reused
    return resp


def _bool_param(request: web.Request, name: str) -> bool:
    raw = request.query.get(name)
    if raw is None:
        return False
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise BadRequestError(f"query parameter {name!r}: {raw[:32]!r} is not true or false")


def _key(request: web.Request) -> PodKey:
    return PodKey(request.match_info["namespace"], request.match_info["pod"])


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready: the store answers, gRPC serves, and agent streams have room.

    Streams are saturated once free slots are at most 1 % of ``max_streams`` (none left below
    100; ``StreamRegistry.readiness``): then 503, ``checks.streams`` naming the streams in use and
    the limit, and ``streams`` (slots, limits, refusals and deadline cuts by reason). Overloaded
    while the ingest's write queue is nearly full or shed a write in the last seconds
    (``GroupCommit.readiness``): then 503, ``checks.ingest`` and ``writes``. With room,
    the body is ``{"status", "checks": {"store", "grpc"}}`` as before; ``?verbose=true`` adds
    ``streams`` to it either way.
    """
    checks: dict[str, str] = {}
    pods = request.app[PODS]
    try:
        await pods.ping(READY_TIMEOUT_S)
        checks["store"] = "ok"
    except (StoreError, TimeoutError) as e:
        checks["store"] = f"failed: {e or 'timed out'}"
    checks["grpc"] = "ok" if request.app[GRPC_SERVING]() else "failed: not serving"
    streams = pods.streams_readiness()
    if streams["saturated"]:
        checks["streams"] = (
            f"failed: saturated: {streams['in_use']} of {streams['limit']} agent streams in use "
            f"(not ready at {streams['limit'] - streams['headroom']} or more; at {streams['limit']} new "
            "agents are refused with RESOURCE_EXHAUSTED)"
        )
    writes = pods.writes_readiness()
    if writes is not None and writes["overloaded"]:
        checks["ingest"] = (
            f"failed: overloaded: {writes['pending']} agent messages wait for the store (sheds new ones "
            f"from {writes['max_pending']}; {writes['shed']} shed so far, answered RESOURCE_EXHAUSTED "
            "with a retry hint)"
        )
    ready = all(v == "ok" for v in checks.values())
    response: dict[str, Any] = {"status": "ready" if ready else "not ready", "checks": checks}
    if streams["saturated"] or _bool_param(request, "verbose"):
        response["streams"] = streams
    if writes is not None and (writes["overloaded"] or _bool_param(request, "verbose")):
        response["writes"] = writes
    return web.json_response(response, status=200 if ready else 503)


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(openapi.document(__version__, auth=request.app.get(AUTH, False)))


async def list_pods(request: web.Request) -> web.Response:
    pods = await request.app[PODS].list()
    listed = body.bounded(request, "pods", [views.pod_summary(p) for p in pods])
    return web.json_response(listed)


async def get_pod(request: web.Request) -> web.Response:
    return web.json_response(views.pod_detail(await request.app[PODS].get(_key(request))))


async def delete_pod(request: web.Request) -> web.Response:
    """Delete a pod and its stored history; refused while an agent streams for it."""
    await request.app[PODS].delete(_key(request))
    return web.Response(status=204)


async def pod_history(request: web.Request) -> web.Response:
    key = _key(request)
    limit = int_param(request, "limit", DEFAULT_HISTORY_LIMIT, 1, MAX_HISTORY_LIMIT)
    assert limit is not None
    before = int_param(request, "before", None, 1, 2**62)
    page = await request.app[PODS].history(key, limit, before, include_facts=_bool_param(request, "facts"))
    out = views.history(page)
    # ?observations=N: the pod's last N observation windows too (the web view's sparklines).
    windows = int_param(request, "observations", None, 1, MAX_HISTORY_LIMIT)
    if windows is not None:
        out["observations"] = views.observation_series(await request.app[PODS].observations(key, windows))
    return web.json_response(out)


ROUTES: tuple[tuple[str, str, Any], ...] = (
    ("GET", "/healthz", healthz),
    ("GET", "/readyz", readyz),
    ("GET", "/api/v1/openapi.json", openapi_json),
    ("GET", "/api/v1/pods", list_pods),
    ("GET", "/api/v1/pods/{namespace}/{pod}", get_pod),
    ("DELETE", "/api/v1/pods/{namespace}/{pod}", delete_pod),
    ("GET", "/api/v1/pods/{namespace}/{pod}/history", pod_history),
    ("GET", "/api/v1/injection", injection_routes.get_injection),
)


# The collector's telemetry as Prometheus scrapes it: () -> (body, content type).
MetricsText = Callable[[], Awaitable[tuple[bytes, str]]]
METRICS: web.AppKey[MetricsText] = web.AppKey("metrics")


async def serve_metrics(request: web.Request) -> web.Response:
    body_bytes, content_type = await request.app[METRICS]()
    return web.Response(body=body_bytes, headers={"Content-Type": content_type})


def create_app(
    pods: Pods,
    *,
    queries: Queries | None = None,
    grpc_serving: Callable[[], bool] = lambda: True,
    limits: body.ApiLimits | None = None,
    metrics: MetricsText | None = None,
    injection: Callable[[], InjectionReport] | None = None,
    events: ServiceEvents | None = None,
    tokens: TokenFile | None = None,
    metrics_auth: bool = False,
    ui: bool = False,
) -> web.Application:
    """The API app over the pod queries ``pods`` (which also answer /readyz's store and stream
    checks); ``grpc_serving`` tells /readyz whether ingest is up; with ``queries``, the drift
    engine's routes (workloads, findings, diff, baselines, intents) too; ``limits``, body sizes,
    timeouts and the parse pool (default ``body.DEFAULT_LIMITS``); with ``metrics`` (the
    telemetry's Prometheus text and content type), ``GET /metrics``; ``injection``, the latest
    missed-injection report ``GET /api/v1/injection`` serves (without: unavailable); ``events``,
    told of each request refused for a limit (``limit_exceeded``; default: no one) and, with
    ``tokens`` (``auth.load_tokens``), of each refused for its credentials: every ``/api/v1``
    route then needs a bearer token of the role ``auth.ROUTE_ROLES`` gives it, ``/metrics`` too
    with ``metrics_auth`` (collector/api/auth.py); with ``ui``, the web view's pages and assets
    under ``/ui/`` (collector/ui: open, not in the OpenAPI document, like ``/metrics``)."""
    limits = limits if limits is not None else body.DEFAULT_LIMITS
    middlewares: list[Any] = [errors_middleware]
    if tokens is not None:
        middlewares.append(auth.auth_middleware(tokens, events or NO_EVENTS, metrics_auth=metrics_auth))
    elif metrics_auth:
        raise ValueError("metrics_auth needs tokens: without them /metrics could never be read")
    app = web.Application(middlewares=middlewares, client_max_size=limits.max_body_bytes)
    app[AUTH] = tokens is not None
    app[body.LIMITS] = limits
    app[PODS] = pods
    app[GRPC_SERVING] = grpc_serving
    app[body.EVENTS] = events if events is not None else NO_EVENTS
    if injection is not None:
        app[injection_routes.INJECTION] = injection
    for method, path, handler in ROUTES:
        if method == "GET":
            app.router.add_get(path, handler)  # and HEAD
        else:
            app.router.add_route(method, path, handler)
    if metrics is not None:
        app[METRICS] = metrics
        app.router.add_get("/metrics", serve_metrics)  # Prometheus text, not in the OpenAPI document
    if ui:
        ui_routes.add_routes(app)  # static pages calling /api/v1, not in the OpenAPI document
    if queries is not None:
        app[drift_routes.QUERIES] = queries
        pool = body.ParsePool(limits)
        app[drift_routes.PARSER] = pool

        async def close_pool(_: web.Application) -> None:
            pool.close()

        app.on_cleanup.append(close_pool)
        drift_routes.add_routes(app)
        probe_routes.add_routes(app)
        evidence_routes.add_routes(app, pods)
    return app
