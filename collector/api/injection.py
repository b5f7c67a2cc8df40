"""``GET /api/v1/injection``: the latest missed-injection report, and its OpenAPI description.

The report is ``collector.service.injection.InjectionReport``, kept by
``collector.cluster.injection.InjectionCheck``; ``collector.main`` hands its ``report`` in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from collector.api.body import bounded
from collector.service.injection import InjectionReport, MissedPod, unavailable

INJECTION: web.AppKey[Callable[[], InjectionReport]] = web.AppKey("injection")
NO_CHECK = "no injection check runs behind this API"


def missed_view(m: MissedPod) -> dict[str, Any]:
    return {"namespace": m.namespace, "pod": m.pod, "workload": m.workload, "why": m.why, "since": m.since}


def report_view(r: InjectionReport) -> dict[str, Any]:
    return {
        "available": r.available,
        "reason": r.reason,
        "checked_at": r.checked_at,
        "opted_in": r.opted_in,
        "injected": r.injected,
        "reporting": r.reporting,
        "missed": [missed_view(m) for m in r.missed],
    }


async def get_injection(request: web.Request) -> web.Response:
    """Opted-in pods running with no agent reporting, as the latest check saw them (the list cut
    at the API's ``max_list_items``, as every list answer: ``truncated`` says so)."""
    report = request.app.get(INJECTION)
    view = report_view(report() if report is not None else unavailable(NO_CHECK))
    missed = view.pop("missed")
    return web.json_response({**view, **bounded(request, "missed", missed)})


_NUM_OR_NULL = {"type": ["number", "null"], "description": "Unix time, seconds"}
_COUNT = {"type": "integer", "minimum": 0}
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "available": {
            "type": "boolean",
            "description": "whether the last check could read the Kubernetes API (false: see reason)",
        },
        "reason": {
            "type": ["string", "null"],
            "description": "why no check ran or the last one failed (no credentials, 403 naming the "
            "verb and resource, a timeout …); null when available",
        },
        "checked_at": _NUM_OR_NULL,
        "opted_in": {**_COUNT, "description": "pods asking for the agent (annotation or namespace label)"},
        "injected": {**_COUNT, "description": "of those, pods the webhook patched"},
        "reporting": {**_COUNT, "description": "of those, pods whose agent reports to this collector"},
        "missed": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "namespace": {"type": "string"},
                    "pod": {"type": "string"},
                    "workload": {
                        "type": ["string", "null"],
                        "description": "KIND/NAME of the pod's controlling owner, null without one",
                    },
                    "why": {"type": "string", "enum": ["not injected", "injected, no agent reporting"]},
                    "since": {**_NUM_OR_NULL, "description": "the pod's status.startTime, Unix seconds"},
                },
                "required": ["namespace", "pod", "workload", "why", "since"],
            },
        },
        "truncated": {
            "description": "present only when missed was cut at the API's max_list_items (10,000)",
            "type": "object",
            "properties": {"limit": {"type": "integer"}, "total": {"type": "integer"}},
            "required": ["limit", "total"],
        },
    },
    "required": ["available", "reason", "checked_at", "opted_in", "injected", "reporting", "missed"],
}
OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/injection": {
        "get": {
            "summary": "Opted-in pods running past the grace period with no agent reporting (missed "
            "injections: the webhook's failurePolicy is Ignore)",
            "operationId": "getInjection",
            "responses": {
                "200": {
                    "description": "The latest check",
                    "content": {"application/json": {"schema": SCHEMA}},
                }
            },
        }
    }
}
