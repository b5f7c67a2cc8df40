"""Bearer tokens and roles on the HTTP API: one table says which role each route needs.

With ``--api-tokens`` (a ``ROLE TOKEN`` file or a mounted Secret directory, read by
``collector.tokens.TokenFile``) every route under ``/api/v1`` needs ``Authorization: Bearer
TOKEN``. Two roles: ``read`` (every route that only reads) and ``admin`` (every route that writes,
and everything ``read`` may). :data:`ROUTE_ROLES` classifies every route the app registers, by
method and path pattern; a route missing from it needs ``admin`` (fail closed), and a test checks
that nothing the app serves is missing. ``/healthz``, ``/readyz`` and the OpenAPI document are
open (probes, and clients discovering the scheme: the document is static and holds no data);
``/metrics`` is open unless ``metrics_auth``, then it needs ``read``. The web view's routes
(``/ui``, :data:`UI_ROUTE_ROLES`, registered with ``create_app(ui=True)``) are open too: they
serve the static pages only, which then call ``/api/v1`` with the user's token. A request for a path under
``/api/v1`` that matches no route (404, 405) needs a valid token of either role first, so the
API's shape is not probed without one.

No token, or one the file does not hold: 401 with ``WWW-Authenticate: Bearer realm="skewwatch"``;
a ``read`` token on an ``admin`` route: 403. Both are the API's JSON error body and are counted
(``ServiceEvents.refused("api", "unauthenticated" | "forbidden")``). A token never appears in a
log line, an error or an answer: only its name (``read.alice``, ``FILE:LINE``) is logged.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final

from aiohttp import web

from collector.service.events import ServiceEvents
from collector.tokens import TokenFile, bearer

log = logging.getLogger(__name__)

READ: Final = "read"
ADMIN: Final = "admin"
ROLES: Final = (READ, ADMIN)
OPEN: Final = "open"  # no token needed
METRICS: Final = "metrics"  # open, or read with metrics_auth
REALM = "skewwatch"
CHALLENGE = f'Bearer realm="{REALM}"'
API_PREFIX = "/api/v1/"

# Every route the app serves: (method, path pattern as aiohttp registers it) → role. HEAD is GET.
ROUTE_ROLES: Final[dict[tuple[str, str], str]] = {
    ("GET", "/healthz"): OPEN,
    ("GET", "/readyz"): OPEN,
    ("GET", "/metrics"): METRICS,
    ("GET", "/api/v1/openapi.json"): OPEN,
    ("GET", "/api/v1/pods"): READ,
    ("GET", "/api/v1/pods/{namespace}/{pod}"): READ,
    ("DELETE", "/api/v1/pods/{namespace}/{pod}"): ADMIN,
    ("GET", "/api/v1/pods/{namespace}/{pod}/history"): READ,
    ("GET", "/api/v1/injection"): READ,
    ("GET", "/api/v1/workloads"): READ,
    ("GET", "/api/v1/workloads/{namespace}/{name}"): READ,
    ("GET", "/api/v1/workloads/{namespace}/{name}/evidence"): READ,
    ("GET", "/api/v1/workloads/{namespace}/{name}/revisions"): READ,
    ("GET", "/api/v1/workloads/{namespace}/{name}/probes"): READ,
    ("POST", "/api/v1/workloads/{namespace}/{name}/probes"): ADMIN,
    ("GET", "/api/v1/workloads/{namespace}/{name}/probes/{id}"): READ,
    ("GET", "/api/v1/workloads/{namespace}/{name}/verification"): READ,
    ("GET", "/api/v1/cluster"): READ,
    ("GET", "/api/v1/findings"): READ,
    ("GET", "/api/v1/findings/{id}"): READ,
    ("POST", "/api/v1/findings/{id}/ack"): ADMIN,
    ("DELETE", "/api/v1/findings/{id}/ack"): ADMIN,
    ("POST", "/api/v1/findings/{id}/silence"): ADMIN,
    ("DELETE", "/api/v1/findings/{id}/silence"): ADMIN,
    ("GET", "/api/v1/diff"): READ,
    ("GET", "/api/v1/baselines"): READ,
    ("GET", "/api/v1/baselines/{namespace}/{name}"): READ,
    ("POST", "/api/v1/baselines/{namespace}/{name}"): ADMIN,
    ("DELETE", "/api/v1/baselines/{namespace}/{name}"): ADMIN,
    ("GET", "/api/v1/intents"): READ,
    ("POST", "/api/v1/intents"): ADMIN,
    ("GET", "/api/v1/intents/{kind}/{name}"): READ,
    ("PUT", "/api/v1/intents/{kind}/{name}"): ADMIN,
    ("DELETE", "/api/v1/intents/{kind}/{name}"): ADMIN,
}

# The web view's routes (collector/ui): the static bundle, no data, so no token. Apart from
# ROUTE_ROLES, the API app's table, as /ui is served only with create_app(ui=True); the two
# tables share no route and route_role reads both (tests/collector/test_ui_routes.py checks
# that this one names exactly the routes collector.ui registers).
UI_ROUTE_ROLES: Final[dict[tuple[str, str], str]] = {
    ("GET", "/ui"): OPEN,
    ("GET", "/ui/"): OPEN,
    ("GET", "/ui/workloads/{namespace}/{name}"): OPEN,
    ("GET", "/ui/diff"): OPEN,
    ("GET", "/ui/pods/{namespace}/{pod}"): OPEN,
    ("GET", "/ui/static/{asset}"): OPEN,
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]


def route_role(method: str, pattern: str) -> str:
    """The role ``method pattern`` needs per :data:`ROUTE_ROLES` (or :data:`UI_ROUTE_ROLES`); one
    missing from both needs ``admin``."""
    route = ("GET" if method == "HEAD" else method, pattern)
    return ROUTE_ROLES.get(route) or UI_ROUTE_ROLES.get(route, ADMIN)


def needed_role(request: web.Request, metrics_auth: bool) -> str | None:
    """The role ``request`` needs (``read`` or ``admin``), or None when it needs no token."""
    match = request.match_info
    resource = match.route.resource
    if match.http_exception is not None or resource is None:
        # No route: a 404 or 405 to come. Under /api/v1 only a holder of a token learns which.
        return READ if request.path.startswith(API_PREFIX) else None
    role = route_role(request.method, resource.canonical)
    if role == OPEN:
        return None
    if role == METRICS:
        return READ if metrics_auth else None
    return role


def allows(label: str, role: str) -> bool:
    """Whether a token of role ``label`` may use a route that needs ``role`` (admin may all)."""
    return label in (ADMIN, role)


def role_label_ok(label: str) -> bool:
    """The labels an API token file takes (``TokenFile``'s ``label_ok``)."""
    return label in ROLES


def load_tokens(path: Path, *, reload_s: float = 1.0) -> TokenFile:
    """The API's tokens at ``path`` (``--api-tokens``); SettingsError naming the entry at fault."""
    return TokenFile(path, "--api-tokens", role_label_ok, reload_s=reload_s)


def _refusal(status: int, code: str, message: str, challenge: str) -> web.Response:
    resp = web.json_response({"error": {"code": code, "message": message}}, status=status)
    resp.headers["WWW-Authenticate"] = challenge
    return resp


def _what(request: web.Request) -> str:
    return f"{request.method} {request.path[:256]}"


def auth_middleware(tokens: TokenFile, events: ServiceEvents, *, metrics_auth: bool = False) -> Middleware:
    """The middleware that checks each request's bearer token against ``tokens`` per the table."""

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        role = needed_role(request, metrics_auth)
        if role is None:
            return await handler(request)
        presented = bearer(request.headers.get("Authorization"))
        token = tokens.match(presented) if presented is not None else None
        if token is None:
            events.refused("api", "unauthenticated")
            if presented is None:
                reason = "this collector needs a bearer token (Authorization: Bearer TOKEN)"
            else:
                reason = "the bearer token is not one this collector accepts"
            log.debug("api: refused %s from %s: %s", _what(request), request.remote, reason)
            return _refusal(
                401, "unauthenticated", f"{_what(request)}: {reason}; this route needs role {role}", CHALLENGE
            )
        if not allows(token.label, role):
            events.refused("api", "forbidden")
            log.warning(
                "api: refused %s from %s: token %s has role %s, the route needs %s",
                _what(request),
                request.remote,
                token.name,
                token.label,
                role,
            )
            return _refusal(
                403,
                "forbidden",
                f"{_what(request)}: needs role {role}; the token presented has role {token.label}",
                f'{CHALLENGE}, error="insufficient_scope", scope="{role}"',
            )
        if role == ADMIN:
            log.info("api: %s by token %s", _what(request), token.name)  # who changed what
        return await handler(request)

    return check
