"""The read-only web view of drift under ``/ui/``: a small static bundle the collector serves.

The pages (fleet, workload, diff, pod: docs/ui.md, the contract in collector/ui/static/app.js's
header) are one ``index.html`` that ``app.js`` fills from the JSON API (``/api/v1``) with the
user's bearer token; nothing here reads the store, so the routes need no token
(``collector.api.auth.UI_ROUTE_ROLES``) and hold no data. The assets are read once, at
``add_routes``, into memory: only the files shipped in ``static/`` by name are served (no path
from a request ever reaches the file system), each with its ETag, a 304 on a matching
``If-None-Match``, and the headers of :data:`SECURITY_HEADERS`. HTML is never cached (a page's
URL is the page); assets may be, briefly, and are revalidated by their ETag.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from typing import Final

from aiohttp import web

PREFIX: Final = "/ui"
STATIC_DIR: Final = "static"
INDEX: Final = "index.html"
# What each shipped asset is served as; a file of another suffix is not served.
CONTENT_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".txt": "text/plain; charset=utf-8",
}
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
HTML_CACHE: Final = "no-store"
ASSET_CACHE: Final = "public, max-age=300, must-revalidate"
# Every page path answers the index; app.js reads the path and query to know which page it is.
PAGE_PATHS: Final = (
    f"{PREFIX}/",
    f"{PREFIX}/workloads/{{namespace}}/{{name}}",
    f"{PREFIX}/diff",
    f"{PREFIX}/pods/{{namespace}}/{{pod}}",
)
ASSET_PATH: Final = f"{PREFIX}/static/{{asset}}"
ROUTE_PATHS: Final = (PREFIX, *PAGE_PATHS, ASSET_PATH)


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    etag: str
    cache: str


def load_assets() -> dict[str, Asset]:
    """The shipped files of ``static/`` by name (no directories: the bundle is flat)."""
    out: dict[str, Asset] = {}
    root = resources.files(__package__).joinpath(STATIC_DIR)
    for entry in root.iterdir():
        name = entry.name
        suffix = name[name.rfind(".") :] if "." in name else ""
        if not entry.is_file() or suffix not in CONTENT_TYPES or name.startswith("."):
            continue
        body = entry.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        cache = HTML_CACHE if suffix == ".html" else ASSET_CACHE
        out[name] = Asset(body, CONTENT_TYPES[suffix], etag, cache)
    if INDEX not in out:
        raise RuntimeError(f"collector/ui/{STATIC_DIR}/{INDEX} is missing from this installation")
    return out


def _respond(request: web.Request, asset: Asset) -> web.Response:
    headers = {**SECURITY_HEADERS, "Cache-Control": asset.cache, "ETag": asset.etag}
    if asset.cache != HTML_CACHE and asset.etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    headers["Content-Type"] = asset.content_type
    return web.Response(body=asset.body, headers=headers)


def add_routes(app: web.Application) -> None:
    """Register ``/ui`` (a redirect to ``/ui/``), the page paths and ``/ui/static/{asset}``."""
    assets = load_assets()
    index = assets[INDEX]

    async def redirect(request: web.Request) -> web.Response:
        query = request.query_string
        target = f"{PREFIX}/" + (f"?{query}" if query else "")
        raise web.HTTPMovedPermanently(target, headers=SECURITY_HEADERS)

    async def page(request: web.Request) -> web.Response:
        return _respond(request, index)

    async def asset(request: web.Request) -> web.Response:
        found = assets.get(request.match_info["asset"])
        if found is None or found is index:
            raise web.HTTPNotFound(reason="no such asset")
        return _respond(request, found)

    app.router.add_get(PREFIX, redirect)
    for path in PAGE_PATHS:
        app.router.add_get(path, page)
    app.router.add_get(ASSET_PATH, asset)
