"""API route of the evidence bundle: ``GET /api/v1/workloads/{namespace}/{name}/evidence``.

The handler checks ``format`` (``json``, ``markdown`` or ``tar``; 400 naming it otherwise),
resolves the workload as ``GET /api/v1/workloads/{namespace}/{name}`` does (``kind`` when
ambiguous; 404 when unknown), asks ``collector.service.evidence.EvidenceService`` for the bundle
and serialises it: JSON, Markdown, or a ``.tar.gz`` attachment whose ``snapshots/<pod>.json`` are
the pod route's answer for each pod. ``OPENAPI_PATHS`` describes the route; ``collector.api.openapi``
merges it into the served document.
"""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web

from collector.api import views
from collector.api.drift import QUERIES, path_workload
from collector.errors import BadRequestError
from collector.service.evidence import EvidenceService, build_tar, render_markdown
from collector.service.pods import Pods

EVIDENCE: web.AppKey[EvidenceService] = web.AppKey("evidence", EvidenceService)
FORMATS = ("json", "markdown", "tar")
PATH = "/api/v1/workloads/{namespace}/{name}/evidence"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def _format(request: web.Request) -> str:
    raw = request.query.get("format", "json")
    if raw not in FORMATS:
        raise BadRequestError(f"query parameter 'format': {raw[:40]!r} is not one of {', '.join(FORMATS)}")
    return raw


def attachment_name(namespace: str, name: str, stamp: str) -> str:
    """``evidence-<ns>-<name>-<UTC stamp>.tar.gz``, the names reduced to ``[A-Za-z0-9._-]``."""
    return f"evidence-{_UNSAFE.sub('_', namespace)[:100]}-{_UNSAFE.sub('_', name)[:100]}-{stamp}.tar.gz"


async def get_evidence(request: web.Request) -> web.Response:
    fmt = _format(request)  # first: a bad format is 400 whatever the workload
    evidence = await request.app[EVIDENCE].bundle(await path_workload(request))
    doc = evidence.as_dict()
    if fmt == "json":
        return web.Response(
            text=json.dumps(doc, ensure_ascii=False), content_type="application/json", charset="utf-8"
        )
    markdown = render_markdown(doc)
    if fmt == "markdown":
        return web.Response(text=markdown, content_type="text/markdown", charset="utf-8")
    snapshots = [(p.view.record.identity.pod, views.pod_detail(p.view)) for p in evidence.pods]
    w = doc["workload"]
    filename = attachment_name(w["namespace"], w["name"], evidence.stamp)
    return web.Response(
        body=build_tar(doc, markdown, snapshots),
        content_type="application/gzip",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def add_routes(app: web.Application, pods: Pods) -> None:
    """Serve the route over the drift queries already on ``app`` (``drift.add_routes`` first) and
    the pod queries ``pods``."""
    app[EVIDENCE] = EvidenceService(app[QUERIES], pods)
    app.router.add_get(PATH, get_evidence)


# -- the OpenAPI description ---------------------------------------------------------------------
# Self-contained (collector.api.openapi imports this module): components are named by $ref.


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_ERROR = {"description": "Error", "content": {"application/json": {"schema": _ref("Error")}}}
_ANY: dict[str, Any] = {"description": "Any JSON value"}
_MAP_ANY = {"type": "object", "additionalProperties": _ANY}
_NULL_NUM = {"type": ["number", "null"]}
_STR = {"type": "string"}
_SEGMENT = {"type": "string", "minLength": 1, "maxLength": 170, "pattern": "^[^/]+$"}


def _obj(properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(properties), **extra}


_POD = _obj(
    {
        "pod": _STR,
        "node": _STR,
        "live": {"type": "boolean", "description": "a replica now (heard from within replica_stale_s)"},
        "in_majority": {"type": "boolean"},
        "stale": {"type": "boolean"},
        "last_seen_age_s": {"type": "number"},
        "first_seen": {"type": "number"},
        "last_seen": {"type": "number"},
        "fingerprint": {"type": ["string", "null"]},
        "snapshot_id": {"type": ["integer", "null"]},
        "engine": {"type": ["object", "null"], "additionalProperties": _ANY},
        "sources": {"type": "object", "additionalProperties": _STR, "description": "source -> state"},
        "image": {**_MAP_ANY, "description": "orchestration.image and orchestration.image_digest"},
        "gpu": {**_MAP_ANY, "description": "hardware.gpu.* and driver facts, by key"},
        "observations": {"type": "object", "additionalProperties": _MAP_ANY},
        "observations_at": _NULL_NUM,
    }
)
_LAST_GOOD = _obj(
    {
        "available": {"type": "boolean"},
        "why": {"type": ["string", "null"]},
        "from": {"type": ["object", "null"], "additionalProperties": _ANY},
        "to": {"type": ["object", "null"], "additionalProperties": _ANY},
        "last_good_at": {"type": ["string", "null"], "description": "RFC 3339"},
        "last_good_at_unix": _NULL_NUM,
        "unchanged": {"type": "boolean"},
        "changes": {"type": "array", "items": _MAP_ANY},
    },
    required=["available", "why", "from", "to", "changes"],
)
_TEMPLATE_DIFF = _obj(
    {
        "available": {"type": "boolean", "description": "false: no last-good or no current revision known"},
        "why": {
            "type": ["string", "null"],
            "description": "which baseline the last-good revision is the template of, or why there is none",
        },
        "from": {
            "type": ["object", "null"],
            "additionalProperties": _ANY,
            "description": "label, revision, template_hash, source, created_at, current",
        },
        "to": {"type": ["object", "null"], "additionalProperties": _ANY},
        "unchanged": {"type": "boolean"},
        "changes": {
            "type": "array",
            "items": _MAP_ANY,
            "description": "key, category, change, before, after (env values redacted as stored)",
        },
    },
    description="The pod-template diff, last-good revision (the one the baseline was recorded on) to current",
)
EVIDENCE_SCHEMA = _obj(
    {
        "schema": {"type": "string", "enum": ["skewwatch.evidence/v1"]},
        "generated_at": {"type": "string", "description": "RFC 3339, UTC"},
        "generated_at_unix": {"type": "number"},
        "workload": _MAP_ANY,
        "pods": {"type": "array", "items": _POD},
        "configurations": {"type": "array", "items": _MAP_ANY},
        "baseline": {"type": ["object", "null"], "additionalProperties": _ANY},
        "probe": {
            "oneOf": [{"type": "null"}, _ref("ProbeBrief")],
            "description": "the latest probe result stored for the workload: its summary, per level",
        },
        "diff_last_good": _LAST_GOOD,
        "cluster": {
            **_ref("WorkloadCluster"),
            "description": "the cluster facts (with provenance) and the stored pod-template revisions",
        },
        "template_diff": _TEMPLATE_DIFF,
        "findings": {"type": "array", "items": _ref("Finding")},
        "restarts": {"type": "array", "items": _MAP_ANY},
        "intents": _obj(
            {
                "bound": {"type": "array", "items": _MAP_ANY},
                "checks": {"type": "array", "items": _ref("Check")},
            }
        ),
        "limits": {"type": "object", "additionalProperties": {"type": "integer"}},
    },
    description="The evidence bundle, schema skewwatch.evidence/v1 (docs/evidence.md)",
)

OPENAPI_PATHS: dict[str, Any] = {
    PATH: {
        "get": {
            "summary": "A workload's evidence bundle: pods, image, args and env (redacted), GPU, metrics "
            "and baseline ratios, the latest probe result, diff against last-good, cluster facts, "
            "pod-template revisions and the last-good to current template diff, open findings, restarts, "
            "intents and baseline",
            "operationId": "getWorkloadEvidence",
            "parameters": [
                {"name": "namespace", "in": "path", "required": True, "schema": _SEGMENT},
                {"name": "name", "in": "path", "required": True, "schema": _SEGMENT},
                {
                    "name": "kind",
                    "in": "query",
                    "description": "Workload kind (Deployment, StatefulSet …) when namespace/name is "
                    "ambiguous",
                    "schema": _SEGMENT,
                },
                {
                    "name": "format",
                    "in": "query",
                    "description": "json (default), markdown, or tar (a .tar.gz attachment)",
                    "schema": {"type": "string", "enum": list(FORMATS), "default": "json"},
                },
            ],
            "responses": {
                "200": {
                    "description": "The bundle; the tar holds evidence.json, evidence.md and "
                    "snapshots/<pod>.json (each pod as GET /api/v1/pods/{namespace}/{pod} shows it)",
                    "headers": {
                        "Content-Disposition": {
                            "description": "format=tar: attachment; "
                            "filename=evidence-<ns>-<name>-<UTC>.tar.gz",
                            "schema": _STR,
                        }
                    },
                    "content": {
                        "application/json": {"schema": EVIDENCE_SCHEMA},
                        "text/markdown": {"schema": _STR},
                        "application/gzip": {"schema": {"type": "string", "format": "binary"}},
                    },
                },
                "400": _ERROR,
                "404": _ERROR,
                "503": _ERROR,
            },
        }
    }
}
