"""API routes of probe results and the verification answer, per workload.

``POST .../probes`` reads the probe's JSON document (at most ``MAX_PROBE_BYTES``, through the
API's bounded body reader), ``Queries.record_probe`` checks, redacts and stores it; ``GET
.../probes`` lists the newest, ``GET .../probes/{id}`` shows one with its document; ``GET
.../verification`` answers whether the workload's incident may be closed, and why not.
Handlers parse, call one method of ``Queries``, serialise its typed answer.
"""

from __future__ import annotations

from aiohttp import web

from collector.api import body as bodies
from collector.api.drift import QUERIES, is_id, path_workload
from collector.api.params import int_param
from collector.errors import BadRequestError
from collector.service.probes import (
    DEFAULT_PROBES_LIMIT,
    LIMIT_PROBE_BYTES,
    MAX_PROBE_BYTES,
    MAX_PROBES_LIMIT,
)


def _probe_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not is_id(raw) or int(raw) < 1:
        raise BadRequestError(f"probe id {raw[:32]!r} is not a positive integer")
    return int(raw)


async def post_probe(request: web.Request) -> web.Response:
    """Store one probe result with the workload: 201 ``{"probe": PROBE}``."""
    # The body first: a malformed one is 400 whatever the workload.
    text = await bodies.read_text(request, MAX_PROBE_BYTES, LIMIT_PROBE_BYTES)
    if not text.strip():
        raise BadRequestError("body: the probe's JSON document (skewwatch probe -o json) is required")
    document = bodies.parse_json(text, request.app[bodies.LIMITS])
    q = request.app[QUERIES]
    workload = await path_workload(request)
    stored = await q.record_probe(workload, document)
    return web.json_response({"probe": stored.as_dict()}, status=201)


async def list_probes(request: web.Request) -> web.Response:
    limit = int_param(request, "limit", DEFAULT_PROBES_LIMIT, 1, MAX_PROBES_LIMIT) or DEFAULT_PROBES_LIMIT
    listed = await request.app[QUERIES].probes(await path_workload(request), limit)
    return web.json_response(listed.as_dict())


async def get_probe(request: web.Request) -> web.Response:
    probe_id = _probe_id(request)
    found = await request.app[QUERIES].probe(await path_workload(request), probe_id)
    return web.json_response({"probe": found.as_dict()})


async def get_verification(request: web.Request) -> web.Response:
    answer = await request.app[QUERIES].verification(await path_workload(request))
    return web.json_response(answer.as_dict())


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/v1/workloads/{namespace}/{name}/probes", list_probes)
    r.add_post("/api/v1/workloads/{namespace}/{name}/probes", post_probe)
    r.add_get("/api/v1/workloads/{namespace}/{name}/probes/{id}", get_probe)
    r.add_get("/api/v1/workloads/{namespace}/{name}/verification", get_verification)
