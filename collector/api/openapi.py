"""The OpenAPI 3.1 document of the query API, written as data and served at /api/v1/openapi.json.

A test checks that every route the app serves is described here and nothing else is.
"""

from __future__ import annotations

from typing import Any

_TS = {"type": "number", "description": "Unix time, seconds"}
_NULLABLE_TS = {"type": ["number", "null"], "description": "Unix time, seconds"}
_STR = {"type": "string"}
_INT = {"type": "integer"}
_FACT_VALUE = {"description": "A typed fact value: null, boolean, integer, number, string, list or map"}


def _obj(properties: dict[str, Any], *, required: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
        **extra,
    }


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERROR = _json(_ref("Error"), "Error")
_NS_POD = [
    {"name": "namespace", "in": "path", "required": True, "schema": _STR},
    {"name": "pod", "in": "path", "required": True, "schema": _STR},
]

SCHEMAS: dict[str, Any] = {
    "Error": _obj({"error": _obj({"code": _STR, "message": _STR})}),
    "Health": _obj({"status": _STR}),
    "Readiness": _obj(
        {
            "status": {"type": "string", "enum": ["ready", "not ready"]},
            "checks": {"type": "object", "additionalProperties": _STR},
        }
    ),
    "Fingerprint": _obj(
        {"overall": _STR},
        additionalProperties=_STR,
        description="sha256 hex, overall and per category (model, runtime, hardware, serving, orchestration)",
    ),
    "Provenance": _obj({"source": _STR, "method": _STR, "detail": _STR}),
    "SourceStatus": _obj(
        {
            "status": {"type": "string", "enum": ["ok", "unavailable", "error", "pending"]},
            "message": _STR,
            "duration_seconds": {"type": "number"},
        }
    ),
    "SourceStates": _obj(
        {k: _INT for k in ("ok", "unavailable", "error", "pending")},
        description="How many sources of the pod's latest snapshot are in each state",
    ),
    "PodSummary": _obj(
        {
            "namespace": _STR,
            "pod": _STR,
            "node": _STR,
            "workload": {"type": "string", "description": "namespace/kind/name as the agent resolved it"},
            "workload_source": _STR,
            "first_seen": _TS,
            "last_seen": _TS,
            "fingerprint": {"type": ["string", "null"], "description": "overall; null before a snapshot"},
            "source_states": _ref("SourceStates"),
        }
    ),
    "PodList": _obj({"pods": {"type": "array", "items": _ref("PodSummary")}}),
    "PodDetail": _obj(
        {
            "namespace": _STR,
            "pod": _STR,
            "node": _STR,
            "workload": _STR,
            "workload_source": _STR,
            "agent": _obj({"id": _STR, "version": _STR}),
            "first_seen": _TS,
            "last_seen": _TS,
            "last_sequence": _INT,
            "snapshot": {
                "oneOf": [
                    {"type": "null"},
                    _obj({"id": _INT, "sequence": _INT, "collected_at": _TS, "received_at": _TS}),
                ],
                "description": "The latest snapshot received; id is the history row of its configuration",
            },
            "facts": {"type": "object", "additionalProperties": _FACT_VALUE},
            "provenance": {"type": "object", "additionalProperties": _ref("Provenance")},
            "sources": {"type": "object", "additionalProperties": _ref("SourceStatus")},
            "fingerprint": {"oneOf": [{"type": "null"}, _ref("Fingerprint")]},
            "observations": {
                "type": "object",
                "additionalProperties": _obj({"value": {"type": "number"}, "unit": _STR}),
            },
            "observations_at": _NULLABLE_TS,
            "observations_window_seconds": {"type": ["number", "null"]},
        }
    ),
    "FactChange": _obj(
        {
            "key": _STR,
            "category": _STR,
            "change": {"type": "string", "enum": ["added", "removed", "changed"]},
            "before": {**_FACT_VALUE, "description": "null when change is 'added'"},
            "after": {**_FACT_VALUE, "description": "null when change is 'removed'"},
        }
    ),
    "HistorySnapshot": _obj(
        {
            "id": _INT,
            "sequence": _INT,
            "agent_id": _STR,
            "collected_at": _TS,
            "received_at": _TS,
            "fingerprint": _ref("Fingerprint"),
            "previous_id": {
                "type": ["integer", "null"],
                "description": "The stored snapshot the changes are against; null for the pod's first "
                "(then every fact is 'added')",
            },
            "changes": {"type": "array", "items": _ref("FactChange")},
            "facts": {"type": "object", "additionalProperties": _FACT_VALUE},
            "provenance": {"type": "object", "additionalProperties": _ref("Provenance")},
            "sources": {"type": "object", "additionalProperties": _ref("SourceStatus")},
        },
        required=[
            "id",
            "sequence",
            "agent_id",
            "collected_at",
            "received_at",
            "fingerprint",
            "previous_id",
            "changes",
        ],
        description="facts, provenance and sources are present only with ?facts=true",
    ),
    "History": _obj(
        {
            "namespace": _STR,
            "pod": _STR,
            "limit": _INT,
            "snapshots": {
                "type": "array",
                "items": _ref("HistorySnapshot"),
                "description": "Newest first; one per configuration change",
            },
            "next_before": {
                "type": ["integer", "null"],
                "description": "Pass as ?before= for the next (older) page; null at the first snapshot",
            },
        }
    ),
}

PATHS: dict[str, Any] = {
    "/healthz": {
        "get": {
            "summary": "The process is alive",
            "operationId": "healthz",
            "responses": {"200": _json(_ref("Health"), "Alive")},
        }
    },
    "/readyz": {
        "get": {
            "summary": "The store answers and the gRPC ingest server is serving",
            "operationId": "readyz",
            "responses": {
                "200": _json(_ref("Readiness"), "Ready"),
                "503": _json(_ref("Readiness"), "Not ready; checks say which part failed"),
            },
        }
    },
    "/api/v1/openapi.json": {
        "get": {
            "summary": "This document",
            "operationId": "openapi",
            "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1 document")},
        }
    },
    "/api/v1/pods": {
        "get": {
            "summary": "Every pod an agent has reported, ordered by namespace and pod",
            "operationId": "listPods",
            "responses": {"200": _json(_ref("PodList"), "Pods"), "503": _ERROR},
        }
    },
    "/api/v1/pods/{namespace}/{pod}": {
        "get": {
            "summary": "A pod's current facts, provenance, sources, fingerprints and observations",
            "operationId": "getPod",
            "parameters": _NS_POD,
            "responses": {
                "200": _json(_ref("PodDetail"), "The pod"),
                "404": _ERROR,
                "503": _ERROR,
            },
        }
    },
    "/api/v1/pods/{namespace}/{pod}/history": {
        "get": {
            "summary": "A pod's stored configurations, newest first, each with its changes",
            "operationId": "getPodHistory",
            "parameters": [
                *_NS_POD,
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50},
                },
                {
                    "name": "facts",
                    "in": "query",
                    "description": "Include each snapshot's facts, provenance and sources",
                    "schema": {"type": "boolean", "default": False},
                },
                {
                    "name": "before",
                    "in": "query",
                    "description": "Only snapshots with an id below this (paging)",
                    "schema": {"type": "integer", "minimum": 1},
                },
            ],
            "responses": {
                "200": _json(_ref("History"), "History"),
                "400": _ERROR,
                "404": _ERROR,
                "503": _ERROR,
            },
        }
    },
}


def document(version: str) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "skewwatch collector API",
            "version": version,
            "description": "What is actually running on each inference replica, and what changed.",
        },
        "paths": PATHS,
        "components": {"schemas": SCHEMAS},
    }
