"""The OpenAPI 3.1 document of the query API, written as data and served at /api/v1/openapi.json.

A test checks that every route the app serves is described here and nothing else is; a
schemathesis run (tests/collector/test_api_schemathesis.py) checks that each operation answers
only the statuses and shapes declared here. Every operation that reads a body also declares 408
(body not sent in time) and 413 (over the limit); intent uploads 503 (parse pool full, with
Retry-After) and 504 (parse time limit). Methods a path does not declare are 405 with Allow.
"""

from __future__ import annotations

from typing import Any

from collector.api import auth as auth_roles
from collector.api.evidence import OPENAPI_PATHS as EVIDENCE_PATHS
from collector.api.injection import OPENAPI_PATHS as INJECTION_PATHS

_TS = {"type": "number", "description": "Unix time, seconds"}
_NULLABLE_TS = {"type": ["number", "null"], "description": "Unix time, seconds"}
_STR = {"type": "string"}
_INT = {"type": "integer"}
_ENGINE = {
    "oneOf": [
        {"type": "null"},
        {
            "type": "object",
            "properties": {
                "state": {"type": "string", "enum": ["running", "not_running", "starting"]},
                "since": {"type": ["number", "null"]},
                "message": {"type": "string"},
            },
            "required": ["state", "since", "message"],
        },
    ],
    "description": "what the agent's target process is doing (a state, not a configuration); "
    "null from agents that do not say",
}
_FACT_VALUE = {"description": "A typed fact value: null, boolean, integer, number, string, list or map"}


def _obj(properties: dict[str, Any], *, required: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
        **extra,
    }


# A list answer cut at ApiLimits.max_list_items says so (collector/api/body.py: bounded).
_TRUNCATED = {
    "description": "present only when the list was cut at the API's max_list_items (10,000): the "
    "limit and how many there were",
    **_obj({"limit": {"type": "integer"}, "total": {"type": "integer"}}),
}


def _listed(name: str, items: dict[str, Any]) -> dict[str, Any]:
    """A list answer ``{name: [items]}``, with the optional ``truncated``."""
    return _obj({name: {"type": "array", "items": items}, "truncated": _TRUNCATED}, required=[name])


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERROR = _json(_ref("Error"), "Error")
_MAX_ID = 10**18 - 1  # ids are at most 18 digits
_BODY_ERRORS = {
    "408": _json(_ref("Error"), "The body announced did not arrive within the read timeout"),
    "413": _json(_ref("Error"), "The body is over this route's limit (Content-Length or as it streamed)"),
}
_PARSE_ERRORS = {
    "503": {
        **_json(_ref("Error"), "Busy (the parse pool is full: retry after Retry-After) or store unavailable"),
        "headers": {"Retry-After": {"description": "seconds", "schema": {"type": "string"}}},
    },
    "504": _json(_ref("Error"), "Parsing and validating the documents took longer than the time limit"),
}
_ID_PARAM = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1, "maximum": _MAX_ID},
}


def _note_body(more: dict[str, Any] | None = None) -> dict[str, Any]:
    """The body of an ack or silence: a reason, who, and (silence) for how long."""
    properties: dict[str, Any] = {
        "reason": {
            "type": "string",
            "minLength": 1,
            "maxLength": 1000,
            "pattern": "[^ \\t\\n\\r\\f\\v]",
            "description": "not blank (not only ASCII whitespace)",
        },
        "by": {"type": "string", "maxLength": 200},
        **(more or {}),
    }
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "required": ["reason"],
        "additionalProperties": False,
    }
    if more:
        schema["oneOf"] = [{"required": [name]} for name in more]  # exactly one of them
    return {"required": True, "content": {"application/json": {"schema": schema}}}


_NOTE_BODY = _note_body()
_NOTE_RESPONSES = {
    "200": _json(_ref("Finding"), "The finding as it is now"),
    "400": _ERROR,
    "404": _ERROR,
    "503": _ERROR,
}
_NOTE_BODY_RESPONSES = {**_NOTE_RESPONSES, **_BODY_ERRORS}
_NULL_STR = {"type": ["string", "null"]}
_STALE = {
    "type": "boolean",
    "description": "not heard from for longer than replica_stale_s (default 300 s): no longer a replica",
}
_AGE = {"type": "number", "description": "seconds since last_seen, by the collector's clock"}
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
            "streams": {
                "type": "object",
                "additionalProperties": {"description": "Any JSON value"},
                "description": "agent stream slots: in use, limits, headroom, busiest address, refusals and "
                "deadline cuts by reason; present when saturated or with ?verbose=true",
            },
            "writes": {
                "type": "object",
                "additionalProperties": {"description": "Any JSON value"},
                "description": "the ingest's group-commit queue: pending writes, the shedding bound, writes "
                "shed, batches and writes committed, largest batch, overloaded; present when overloaded or "
                "with ?verbose=true",
            },
        },
        required=["status", "checks"],
    ),
    "Fingerprint": _obj(
        {"overall": _STR},
        additionalProperties=_STR,
        description="sha256 hex, overall and per category (model, runtime, hardware, serving, orchestration)",
    ),
    "Provenance": _obj(
        {
            "source": _STR,
            "method": _STR,
            "detail": _STR,
            "inputs": {
                "type": "array",
                "items": _STR,
                "description": "fact keys (or globs) this fact follows from: a change of theirs changes it",
            },
            "last_seen": {
                "type": "number",
                "description": "set on a fact carried while its source is not ready: unknown since then",
            },
        },
        required=["source", "method", "detail"],
    ),
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
    "Stream": _obj(
        {
            "agent_id": _STR,
            "instance_id": {"type": "string", "description": "the agent process's id; empty from old agents"},
            "peer": {"type": "string", "description": "the agent's address as gRPC reports it"},
            "since": _TS,
        },
        description="A live agent stream speaking for the pod (in memory; none after a restart until "
        "agents reconnect)",
    ),
    "Conflicts": _obj(
        {
            "count": {
                "type": "integer",
                "description": "Hellos refused because another live agent instance streams for this pod",
            },
            "last_refused_at": _NULLABLE_TS,
            "last_claimant_peer": _NULL_STR,
            "last_claimant_agent_id": _NULL_STR,
            "last_claimant_instance_id": _NULL_STR,
        },
        description="Refused claims of this pod identity since the collector started",
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
            "stale": _STALE,
            "last_seen_age_s": _AGE,
            "fingerprint": {"type": ["string", "null"], "description": "overall; null before a snapshot"},
            "source_states": _ref("SourceStates"),
            "live_streams": {"type": "integer", "description": "agent streams live for this pod now"},
            "conflicts": _ref("Conflicts"),
            "engine": _ENGINE,
        }
    ),
    "PodList": _listed("pods", _ref("PodSummary")),
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
            "stale": _STALE,
            "last_seen_age_s": _AGE,
            "last_sequence": _INT,
            "streams": {"type": "array", "items": _ref("Stream"), "description": "live now, oldest first"},
            "conflicts": _ref("Conflicts"),
            "engine": _ENGINE,
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
            "id": {
                "type": "integer",
                "description": "The stored snapshot's id: what GET /api/v1/diff?revisions=A,B and "
                "`skewwatch diff --revisions A B` take (not the sequence)",
            },
            "sequence": {
                "type": "integer",
                "description": "The agent's message sequence number when this configuration was first "
                "received: counted per agent session, so not unique and not a diff revision",
            },
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
                "description": "Newest first; one per configuration change. Each row's id is the "
                "stored snapshot id that diff's revisions=A,B takes",
            },
            "next_before": {
                "type": ["integer", "null"],
                "description": "Pass as ?before= for the next (older) page; null at the first snapshot",
            },
            "observations": {
                "type": "array",
                "description": "With ?observations=N: the last N observation windows, newest first",
                "items": _obj(
                    {
                        "at": _TS,
                        "window_seconds": {"type": "number"},
                        "values": {"type": "object", "additionalProperties": {"type": "number"}},
                    }
                ),
            },
            "events": {
                "type": "array",
                "description": "Engine events (restarts) and the agent's outbox drops (outbox_dropped: "
                "messages the collector never received), newest first: not configurations, no history row",
                "items": _obj(
                    {
                        "id": _INT,
                        "at": _TS,
                        "kind": {"type": "string", "enum": ["restart", "outbox_dropped"]},
                        "old_pid": _INT,
                        "new_pid": _INT,
                        "old_start_time": _NULLABLE_TS,
                        "new_start_time": _NULLABLE_TS,
                        "message": _STR,
                    }
                ),
            },
        },
        required=["namespace", "pod", "limit", "snapshots", "next_before", "events"],
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
            "summary": "The store answers, the gRPC ingest server is serving, agent streams have room and "
            "ingest is not shedding writes",
            "operationId": "readyz",
            "parameters": [
                {
                    "name": "verbose",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "boolean", "default": False},
                    "description": "add the stream slots and the write queue to the answer even with room",
                }
            ],
            "responses": {
                "200": _json(_ref("Readiness"), "Ready"),
                "400": _ERROR,
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
        },
        "delete": {
            "summary": "Forget a pod: its row, snapshot history and observations (findings and baselines "
            "naming it stay). Refused while an agent streams for it: it would come back at once.",
            "operationId": "deletePod",
            "parameters": _NS_POD,
            "responses": {
                "204": {"description": "Deleted; no body"},
                "404": _ERROR,
                "409": _json(_ref("Error"), "An agent streams for this pod right now; stop it first"),
                "503": _ERROR,
            },
        },
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
                    "schema": {"type": "integer", "minimum": 1, "maximum": 2**62},
                },
                {
                    "name": "observations",
                    "in": "query",
                    "description": "Also the pod's last N stored observation windows (observations)",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
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


SECURITY_SCHEMES = {
    "bearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "description": "A token of --api-tokens (docs/security-api.md). Role read: every route "
        "that only reads; role admin: every route, those that write too.",
    }
}
_ROLE_TEXT = {
    auth_roles.READ: "Needs role read (or admin) when the collector has --api-tokens.",
    auth_roles.ADMIN: "Needs role admin when the collector has --api-tokens.",
}


def _secured(path: str, method: str, op: dict[str, Any], with_auth: bool) -> dict[str, Any]:
    """``op`` with its role stated (``x-skewwatch-role``, its description) and, ``with_auth``,
    its security requirement and the 401/403 answers."""
    role = auth_roles.route_role(method.upper(), path)
    out = dict(op)
    if role == auth_roles.OPEN:
        out["x-skewwatch-role"] = "none"
        out["security"] = []  # open even with --api-tokens
        return out
    out["x-skewwatch-role"] = role
    text = _ROLE_TEXT[role]
    out["description"] = f"{op['description']}\n\n{text}" if op.get("description") else text
    if not with_auth:
        out["security"] = []
        return out
    out["security"] = [{"bearerAuth": []}]
    responses = dict(op["responses"])
    responses["401"] = {
        **_json(_ref("Error"), "No bearer token, or one the collector does not accept"),
        "headers": {"WWW-Authenticate": {"description": 'Bearer realm="skewwatch"', "schema": _STR}},
    }
    if role == auth_roles.ADMIN:
        responses["403"] = _json(_ref("Error"), "The token's role is read; this route needs admin")
    out["responses"] = responses
    return out


def document(version: str, *, auth: bool = True) -> dict[str, Any]:
    """The document of a collector with ``--api-tokens`` (``auth``: every /api/v1 route but this
    document's needs a bearer token), else of one without (no security requirement, no 401/403;
    each operation still names the role it would need)."""
    paths = {
        path: {method: _secured(path, method, op, auth) for method, op in ops.items()}
        for path, ops in PATHS.items()
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "skewwatch collector API",
            "version": version,
            "description": "What is actually running on each inference replica, and what changed. "
            "With --api-tokens every /api/v1 route except this document needs a bearer token: role "
            "read for the routes that read, admin for those that write (x-skewwatch-role on each "
            "operation; docs/security-api.md).",
        },
        **({"security": [{"bearerAuth": []}]} if auth else {}),
        "paths": paths,
        "components": {"schemas": SCHEMAS, "securitySchemes": SECURITY_SCHEMES},
    }


# -- the drift engine's routes -------------------------------------------------------------------

_ANY: dict[str, Any] = {"description": "Any JSON value"}
_MAP_ANY = {"type": "object", "additionalProperties": _ANY}
_WORKLOAD_STATE = {
    "type": "string",
    "enum": ["serving", "no-replicas"],
    "description": "no-replicas: no pod of the workload heard from within replica_stale_s",
}
# One segment of NAMESPACE/KIND/NAME (at most 512 characters in all).
_SEGMENT = {"type": "string", "minLength": 1, "maxLength": 170, "pattern": "^[^/]+$"}
_WORKLOAD_REF = {
    "type": "string",
    "maxLength": 512,
    "pattern": "^[^/]+/[^/]+(/[^/]+)?$",
    "description": "NAMESPACE/NAME or NAMESPACE/KIND/NAME",
}
_WORKLOAD_PATH = [
    {"name": "namespace", "in": "path", "required": True, "schema": _SEGMENT},
    {"name": "name", "in": "path", "required": True, "schema": _SEGMENT},
    {
        "name": "kind",
        "in": "query",
        "description": "Workload kind (Deployment, StatefulSet …) when namespace/name is ambiguous",
        "schema": _SEGMENT,
    },
]
_INTENT_PATH = [
    {
        "name": "kind",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "enum": ["ModelSpec", "SkewPolicy"]},
    },
    {"name": "name", "in": "path", "required": True, "schema": _STR},
]
_SEVERITY = {"type": "string", "enum": ["critical", "high", "medium", "low", "info"]}
_YAML_BODY = {
    "required": True,
    "description": "One or more ModelSpec / SkewPolicy documents, YAML or JSON",
    "content": {
        "application/yaml": {"schema": {"type": "string"}},
        "application/json": {"schema": {"type": "object"}},
    },
}

SCHEMAS.update(
    {
        "IntentIssue": _obj(
            {"file": _STR, "line": {"type": ["integer", "null"]}, "path": _STR, "message": _STR}
        ),
        "IntentError": _obj(
            {
                "error": _obj(
                    {
                        "code": _STR,
                        "message": _STR,
                        "issues": {"type": "array", "items": _ref("IntentIssue")},
                    },
                    required=["code", "message"],
                )
            }
        ),
        "Finding": _obj(
            {
                "id": _INT,
                "workload": {"type": "string", "description": "namespace/kind/name"},
                "reference": {
                    "type": "string",
                    "enum": ["intent", "baseline", "peers"],
                    "description": "the first reference it breaks (intent, then baseline, then peers)",
                },
                "references": {
                    "type": "array",
                    "items": {"type": "string", "enum": ["intent", "baseline", "peers"]},
                    "description": "every reference this root cause breaks",
                },
                "key": {
                    "type": "string",
                    "description": "the root cause's fact key (the setting, not its spelling), or "
                    "observation.NAME for performance",
                },
                "root": {"type": "string", "description": "the key whose change caused the others"},
                "expected_by_reference": {**_MAP_ANY, "description": "reference -> what it expects"},
                "related": {
                    "type": "array",
                    "description": "the cause (an argument or variable that spelled it) and the "
                    "consequences (facts that follow from it), each with its values per pod",
                    "items": _obj(
                        {
                            "key": _STR,
                            "role": {"type": "string", "enum": ["cause", "consequence"]},
                            "references": {"type": "array", "items": _STR},
                            "expected": _ANY,
                            "actual_by_pod": _MAP_ANY,
                        }
                    ),
                },
                "category": {
                    "type": "string",
                    "enum": ["model", "runtime", "hardware", "serving", "orchestration", "performance"],
                },
                "severity": _SEVERITY,
                "status": {"type": "string", "enum": ["pending", "open", "resolved"]},
                "expected": _ANY,
                "actual": {**_ANY, "description": "the value on most affected pods"},
                "pods": {"type": "array", "items": _STR},
                "actual_by_pod": _MAP_ANY,
                "message": _STR,
                "source": {
                    "type": "string",
                    "description": "which intent field, baseline or majority set the expectation",
                },
                "hint": {"type": "string", "description": "mitigation from the playbook"},
                "symptom": _STR,
                "evidence": {
                    "type": "object",
                    "additionalProperties": _MAP_ANY,
                    "description": "pod -> provenance",
                },
                "first_seen": _TS,
                "last_seen": _TS,
                "opened_at": _NULLABLE_TS,
                "resolved_at": _NULLABLE_TS,
                "resolution": {
                    "type": ["string", "null"],
                    "enum": ["fixed", "gone", None],
                    "description": "why it resolved: no longer seen, or its replicas went away",
                },
                "seen": {"type": "integer", "description": "evaluations that saw this drift"},
                "acknowledged": {
                    "type": ["object", "null"],
                    "description": "an admin's acknowledgement: by, reason, at",
                    "additionalProperties": _ANY,
                },
                "silence": {
                    "type": ["object", "null"],
                    "description": "an admin's silence: by, reason, at, until; silenced findings stay "
                    "listed but count apart",
                    "additionalProperties": _ANY,
                },
                "silenced": {"type": "boolean", "description": "silenced now (until is in the future)"},
            }
        ),
        "FindingEvent": _obj({"at": _TS, "event": _STR, "actual": _ANY, "pods": _ANY, "message": _STR}),
        "FindingList": _obj(
            {
                "findings": {"type": "array", "items": _ref("Finding")},
                "next_before": {
                    "type": ["integer", "null"],
                    "description": "pass as ?before= (with the same filters) for the next, older page; "
                    "null exactly when there is none",
                },
                "more": {
                    "type": "boolean",
                    "description": "whether older findings match the filters (next_before is not null)",
                },
            }
        ),
        "WorkloadSummary": _obj(
            {
                "workload": _STR,
                "namespace": _STR,
                "kind": _STR,
                "name": _STR,
                "replicas": {"type": "integer", "description": "pods heard from recently"},
                "replicas_live": {
                    "type": "integer",
                    "description": "pods heard from within replica_stale_s (the same as replicas)",
                },
                "state": _WORKLOAD_STATE,
                "pods": _INT,
                "configurations": {"type": "integer", "description": "distinct fingerprints among replicas"},
                "last_seen": _TS,
                "open_findings": {
                    "type": "object",
                    "additionalProperties": _INT,
                    "description": "open root causes by severity, silenced ones left out",
                },
                "silenced_findings": {"type": "integer", "description": "open but silenced now"},
                "baseline_recorded_at": _NULLABLE_TS,
                "open_findings_by_category": {
                    "type": "object",
                    "additionalProperties": {"type": "object", "additionalProperties": _INT},
                    "description": "open findings by category, then severity, silenced ones left out",
                },
                "silent_pods": {
                    "type": "integer",
                    "description": "pods stored for it whose agent was not heard from within replica_stale_s",
                },
                "intent_bound": {"type": "boolean", "description": "whether an intent binds it now"},
                "drift_state": {
                    "type": "string",
                    "enum": ["in_intent", "drifting", "no_intent", "no_baseline"],
                    "description": "the first that holds: drifting (an open finding, silenced aside), "
                    "no_intent (no intent binds it), no_baseline (none recorded), else in_intent",
                },
            }
        ),
        "WorkloadList": _listed("workloads", _ref("WorkloadSummary")),
        "Check": _obj(
            {
                "intent": _STR,
                "field": _STR,
                "line": {"type": ["integer", "null"]},
                "target": _NULL_STR,
                "expected": _ANY,
                "status": {
                    "type": "string",
                    "enum": ["ok", "drift", "unverifiable", "documentary", "ignored"],
                },
                "detail": _STR,
                "pods": _MAP_ANY,
            }
        ),
        "BaselineSummary": _obj(
            {
                "id": _INT,
                "workload": _STR,
                "recorded_at": _TS,
                "origin": {"type": "string", "enum": ["manual", "auto"]},
                "fingerprint": _STR,
                "pods": {"type": "array", "items": _STR},
                "performance": {"type": "object", "additionalProperties": {"type": "number"}},
                "performance_bounds": {
                    "description": "metric -> [lower, upper]: where a latency quantile read from "
                    "histogram buckets can lie (its bucket); findings open only past it",
                    "type": "object",
                    "additionalProperties": {
                        "type": "array",
                        "items": {"type": "number"},
                        "minItems": 2,
                        "maxItems": 2,
                    },
                },
                "load": {"type": "object", "additionalProperties": {"type": "number"}},
                "samples": _INT,
                "note": _STR,
                "facts": _MAP_ANY,
                "provenance": {"type": "object", "additionalProperties": _ref("Provenance")},
            },
            required=[
                "id",
                "workload",
                "recorded_at",
                "origin",
                "fingerprint",
                "pods",
                "performance",
                "load",
            ],
        ),
        "WorkloadDetail": _obj(
            {
                "workload": _STR,
                "namespace": _STR,
                "kind": _STR,
                "name": _STR,
                "replicas": {"type": "array", "items": _MAP_ANY},
                "replicas_live": {"type": "integer", "description": "how many replicas are listed"},
                "state": _WORKLOAD_STATE,
                "configurations": {"type": "array", "items": _MAP_ANY},
                "facts": {**_MAP_ANY, "description": "the majority configuration, cluster facts included"},
                "provenance": {"type": "object", "additionalProperties": _ref("Provenance")},
                "divergent_keys": {"type": "array", "items": _STR},
                "intent": _obj(
                    {
                        "bound": {"type": "array", "items": _MAP_ANY},
                        "checks": {"type": "array", "items": _ref("Check")},
                    }
                ),
                "baseline": {"oneOf": [{"type": "null"}, _ref("BaselineSummary")]},
                "findings": {"type": "array", "items": _ref("Finding")},
                "cluster": _ref("WorkloadCluster"),
                "probe": {
                    "oneOf": [{"type": "null"}, _ref("ProbeBrief")],
                    "description": "the latest probe result stored for the workload (without its document)",
                },
            }
        ),
        "Diff": _obj(
            {
                "workload": _STR,
                "mode": {"type": "string", "enum": ["last_good", "baseline", "intent", "revisions", "pods"]},
                "from": {
                    "type": ["object", "null"],
                    "additionalProperties": _ANY,
                    "description": "label; snapshot_id or baseline_id; why (last-good); a pod-template "
                    "revision side: revision, template_hash, source, created_at, current",
                },
                "to": {"type": ["object", "null"], "additionalProperties": _ANY},
                "changes": {"type": "array", "items": _ref("FactChange")},
                "provenance": _obj(
                    {
                        side: {"type": "object", "additionalProperties": _ref("Provenance")}
                        for side in ("from", "to")
                    },
                    description="where each side's value of a changed key came from, for a side that "
                    "names a stored snapshot or baseline; absent when neither side has any (an intent, "
                    "a pod template, or no change)",
                ),
                "checks": {"type": "array", "items": _ref("Check")},
                "template": {
                    "oneOf": [{"type": "null"}, _ref("Diff")],
                    "description": "last_good mode: the pod-template diff, last-good revision (the one the "
                    "baseline was recorded on) to the current one, mode revisions; null when either is "
                    "unknown (template_why says why)",
                },
                "template_why": {**_NULL_STR, "description": "last_good mode: why template is null"},
            },
            required=["workload", "mode", "from", "to", "changes"],
        ),
        "Revision": _obj(
            {
                "revision": {**_NULL_STR, "description": "the controller's revision number, as text"},
                "template_hash": {
                    "type": "string",
                    "description": "pod-template-hash or controller-revision hash",
                },
                "created_at": {
                    **_TS,
                    "description": "the ReplicaSet's / ControllerRevision's creationTimestamp",
                },
                "first_seen": {
                    **_NULLABLE_TS,
                    "description": "when this collector's store first heard of it",
                },
                "last_seen": {**_NULLABLE_TS, "description": "when the cluster watch last listed it"},
                "source": {
                    "type": "string",
                    "description": "the object read: Kind/namespace/name@resourceVersion",
                },
                "current": {
                    "type": "boolean",
                    "description": "the revision the controller names current (else the newest stored)",
                },
            }
        ),
        "LastGoodRevision": _obj(
            {
                "revision": _NULL_STR,
                "template_hash": _NULL_STR,
                "why": {
                    "type": "string",
                    "description": "the baseline it was recorded on, or why there is none",
                },
            }
        ),
        "RevisionList": _obj(
            {
                "workload": _STR,
                "namespace": _STR,
                "kind": _STR,
                "name": _STR,
                "available": {"type": "boolean", "description": "false: no cluster watch on this collector"},
                "message": _NULL_STR,
                "current_revision": _NULL_STR,
                "last_good": _ref("LastGoodRevision"),
                "revisions": {"type": "array", "items": _ref("Revision"), "description": "newest first"},
            },
            description="A workload's stored pod-template revisions (at most cluster_revisions_keep)",
        ),
        "ClusterFacts": _obj(
            {
                "workload": _STR,
                "status": _ref("SourceStatus"),
                "observed_at": _TS,
                "current_revision": _NULL_STR,
                "revisions": {
                    "type": "object",
                    "additionalProperties": _STR,
                    "description": "template hash -> revision",
                },
                "facts": {**_MAP_ANY, "description": "fact key -> typed value (source cluster, method k8s)"},
                "provenance": {"type": "object", "additionalProperties": _ref("Provenance")},
            }
        ),
        "WorkloadCluster": _obj(
            {
                "available": {
                    "type": "boolean",
                    "description": "the cluster watch has facts of the workload",
                },
                "message": {**_NULL_STR, "description": "why there are none (the watch's own message)"},
                "cluster_facts": {"oneOf": [{"type": "null"}, _ref("ClusterFacts")]},
                "revisions": {"type": "array", "items": _ref("Revision"), "description": "newest first"},
            },
            description="What the Kubernetes API says of the workload (the cluster watch)",
        ),
        "ClusterStatus": {
            "type": "object",
            "properties": {
                "available": {"type": "boolean"},
                "message": {"type": ["string", "null"]},
                "namespaces": {
                    "type": "object",
                    "additionalProperties": {"type": "object", "additionalProperties": _ANY},
                    "description": "namespace -> kind -> its state (status, message, group_version, "
                    "resource_version, relists)",
                },
            },
            "required": ["available"],
            "additionalProperties": _ANY,
            "description": "The cluster watch's report: whether it runs, and each kind it lists and watches",
        },
        "BaselineList": _listed("baselines", _ref("BaselineSummary")),
        "BaselineDetail": _obj(
            {
                "workload": _STR,
                "baseline": _ref("BaselineSummary"),
                "history": {"type": "array", "items": _ref("BaselineSummary")},
            }
        ),
        "BaselineRecorded": _obj({"workload": _STR, "baseline": _ref("BaselineSummary")}),
        "BaselineDeleted": _obj(
            {"deleted": _ref("BaselineDetail")},
            description="The deleted baseline as GET showed it: the current one and the older ones",
        ),
        "IntentList": _obj(
            {
                "intents": {
                    "type": "array",
                    "items": _obj(
                        {
                            "kind": _STR,
                            "name": _STR,
                            "file": _STR,
                            "origin": {"type": "string", "enum": ["directory", "api"]},
                            "state": {"type": "string", "enum": ["active", "overridden"]},
                        }
                    ),
                },
                "errors": {"type": "array", "items": _ref("IntentIssue")},
                "directory": _NULL_STR,
                "truncated": _TRUNCATED,
            },
            required=["intents", "errors", "directory"],
        ),
        "Intent": _obj({"kind": _STR, "name": _STR, "file": _STR, "document": {"type": "object"}}),
        "IntentsCreated": _obj({"created": {"type": "array", "items": _ref("Intent")}}),
        "IntentDeleted": _obj({"deleted": _obj({"kind": _STR, "name": _STR})}),
    }
)


def _q(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "query", "description": description, "schema": schema or _STR}


_STATUS = {"type": "string", "enum": ["pending", "open", "resolved"]}
_NAMESPACE = _q("namespace", "only workloads in this namespace (none known: an empty list)", _SEGMENT)
# Unix seconds as params.UNIX_PATTERN reads them, or an RFC 3339 date-time.
_MOMENT = {
    "anyOf": [
        {"type": "string", "format": "date-time"},
        {"type": "string", "pattern": "^[0-9]{1,11}([.][0-9]{1,9})?$"},
    ],
    "examples": ["2026-12-01T10:00:00Z", "1796119200"],
}


# Probe results (collector/service/probes.py) and the verification answer.
_NULL_NUM = {"type": ["number", "null"]}
_PROBE_SUMMARY = _obj(
    {
        "verdict": {"type": "string", "enum": ["pass", "fail", "inconclusive", "error"]},
        "endpoint": _STR,
        "model": _STR,
        "levels": {
            "type": "array",
            "items": _obj(
                {
                    "concurrency": {"type": "integer", "minimum": 1},
                    "requests_per_s": _NULL_NUM,
                    "output_tokens_per_s": _NULL_NUM,
                    "ttft_ms_p95": _NULL_NUM,
                    "e2e_ms_p99": _NULL_NUM,
                    "errors": {
                        "type": "object",
                        "additionalProperties": {"type": "integer"},
                        "description": "failed requests by kind",
                    },
                }
            ),
            "description": "each concurrency level that ran, as the document has them",
        },
        "failed": {
            "type": "array",
            "items": _STR,
            "description": "the failed thresholds' names (their flags, e.g. --max-ttft-ms), each once",
        },
    },
    required=["verdict", "levels", "failed"],
    description="The headline of a probe result; endpoint and model where its document names them",
)
_PROBE_BRIEF = {
    "id": {"type": "integer", "minimum": 1},
    "workload": _STR,
    "recorded_at": {**_TS, "description": "when the collector received it (its clock), Unix seconds"},
    "verdict": {"type": "string", "enum": ["pass", "fail", "inconclusive", "error"]},
    "summary": _PROBE_SUMMARY,
}
SCHEMAS.update(
    {
        "ProbeBrief": _obj(_PROBE_BRIEF, description="A stored probe result without its document"),
        "Probe": _obj(
            {
                **_PROBE_BRIEF,
                "document": {
                    **_MAP_ANY,
                    "description": "the probe's document (schema skewwatch.probe/v1, docs/probe.md), every "
                    "string redacted as the collector stores it",
                },
            },
            description="A stored probe result with its document",
        ),
        "ProbeResult": _obj({"probe": _ref("Probe")}),
        "ProbeList": _obj(
            {
                "workload": _STR,
                "probes": {"type": "array", "items": _ref("ProbeBrief"), "description": "newest first"},
            }
        ),
        "Verification": _obj(
            {
                "workload": _STR,
                "may_close": {
                    "type": "boolean",
                    "description": "no open or pending finding, a baseline, every metric comparable and "
                    "within tolerance",
                },
                "reasons": {
                    "type": "array",
                    "items": _STR,
                    "description": "why the incident may not be closed; empty when it may",
                },
                "findings": _obj(
                    {
                        "open": {"type": "integer", "description": "acknowledged and silenced ones too"},
                        "pending": {"type": "integer"},
                        "items": {
                            "type": "array",
                            "items": _obj(
                                {
                                    "id": {"type": "integer"},
                                    "key": _STR,
                                    "severity": _STR,
                                    "reference": _STR,
                                    "status": {"type": "string", "enum": ["pending", "open"]},
                                }
                            ),
                        },
                    }
                ),
                "baseline": {
                    "oneOf": [
                        {"type": "null"},
                        _obj({"id": {"type": "integer"}, "recorded_at": _TS, "origin": _STR}),
                    ]
                },
                "performance": {
                    "type": "array",
                    "items": _obj(
                        {
                            "metric": _STR,
                            "baseline": {"type": "number"},
                            "current": {
                                **_NULL_NUM,
                                "description": "the median of the live replicas judged (at comparable load)",
                            },
                            "ratio": {**_NULL_NUM, "description": "current / baseline"},
                            "tolerance": _obj(
                                {"max_decrease": _NULL_NUM, "max_increase": _NULL_NUM},
                                description="fractions of the baseline (0.3: 30 %), the SkewPolicy's where "
                                "it names them",
                            ),
                            "comparable": {
                                "type": "boolean",
                                "description": "a live replica runs at a load comparable with the baseline's",
                            },
                            "within": {
                                "type": ["boolean", "null"],
                                "description": "null: not judged (incomparable load, too few samples)",
                            },
                            "why": _STR,
                        }
                    ),
                    "description": "each performance metric the baseline holds, judged as the drift engine "
                    "judges it",
                },
                "latest_probe": {"oneOf": [{"type": "null"}, _ref("ProbeBrief")]},
            },
            description="May the workload's incident be closed, and why not",
        ),
    }
)

_NULL_STR_OR = {"type": ["string", "null"]}
# What the collector checks of a posted document (collector/service/probes.py parse_document);
# the rest of the probe's document (docs/probe.md) is stored as it is.
_PROBE_DOCUMENT = {
    "type": "object",
    "properties": {
        "schema": {"type": "string", "enum": ["skewwatch.probe/v1"]},
        "verdict": {"type": "string", "enum": ["pass", "fail", "inconclusive", "error"]},
        "levels": {
            "type": "array",
            "maxItems": 64,
            "items": {
                "type": "object",
                "properties": {
                    "concurrency": {"type": "integer", "minimum": 1, "maximum": 1_000_000},
                    "requests_per_s": _NULL_NUM,
                    "output_tokens_per_s": _NULL_NUM,
                    "ttft_ms": {"type": ["object", "null"], "properties": {"p95": _NULL_NUM}},
                    "e2e_ms": {"type": ["object", "null"], "properties": {"p99": _NULL_NUM}},
                    "errors": {"type": ["object", "null"], "additionalProperties": {"type": "integer"}},
                },
                "required": ["concurrency"],
            },
        },
        "target": {
            "type": ["object", "null"],
            "properties": {"endpoint": _NULL_STR_OR, "model": _NULL_STR_OR},
        },
        "thresholds": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"passed": {"type": "boolean"}, "flag": _NULL_STR_OR, "metric": _NULL_STR_OR},
                "required": ["passed"],
            },
        },
    },
    "required": ["schema", "verdict", "levels"],
    "description": "The probe's document (skewwatch probe -o json, docs/probe.md); the fields listed are "
    "checked, the rest stored as posted",
}
_PROBE_LIMIT = {
    "name": "limit",
    "in": "query",
    "description": "how many, newest first (default 10)",
    "schema": {"type": "integer", "minimum": 1, "maximum": 50, "default": 10},
}
PATHS.update(
    {
        "/api/v1/workloads/{namespace}/{name}/probes": {
            "get": {
                "summary": "A workload's stored probe results, newest first (without their documents)",
                "operationId": "listWorkloadProbes",
                "parameters": [*_WORKLOAD_PATH, _PROBE_LIMIT],
                "responses": {
                    "200": _json(_ref("ProbeList"), "The probe results"),
                    "400": _ERROR,
                    "404": _ERROR,
                    "503": _ERROR,
                },
            },
            "post": {
                "summary": "Store a probe result (skewwatch probe -o json, schema skewwatch.probe/v1, at "
                "most 256 KiB) with the workload, every string redacted; at most 50 are kept per workload, "
                "the oldest dropped; admin",
                "operationId": "createWorkloadProbe",
                "parameters": _WORKLOAD_PATH,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _PROBE_DOCUMENT}},
                },
                "responses": {
                    "201": _json(_ref("ProbeResult"), "Stored"),
                    "400": _json(_ref("Error"), "Not a probe document: the message names the field"),
                    "404": _ERROR,
                    "503": _ERROR,
                    **_BODY_ERRORS,
                },
            },
        },
        "/api/v1/workloads/{namespace}/{name}/probes/{id}": {
            "get": {
                "summary": "One stored probe result of the workload, with its document",
                "operationId": "getWorkloadProbe",
                "parameters": [*_WORKLOAD_PATH, _ID_PARAM],
                "responses": {
                    "200": _json(_ref("ProbeResult"), "The probe result"),
                    "400": _ERROR,
                    "404": _ERROR,
                    "503": _ERROR,
                },
            }
        },
        "/api/v1/workloads/{namespace}/{name}/verification": {
            "get": {
                "summary": "May the workload's incident be closed: its findings resolved, a baseline, the "
                "latest observations of its live replicas within tolerance of it at comparable load",
                "operationId": "getWorkloadVerification",
                "parameters": _WORKLOAD_PATH,
                "responses": {
                    "200": _json(_ref("Verification"), "The answer, with each reason why not"),
                    "400": _ERROR,
                    "404": _ERROR,
                    "503": _ERROR,
                },
            }
        },
    }
)

SCHEMAS["FindingDetail"] = _obj(
    {**SCHEMAS["Finding"]["properties"], "history": {"type": "array", "items": _ref("FindingEvent")}},
    description="A finding and its history events, oldest first",
)

PATHS.update(
    {
        "/api/v1/workloads": {
            "get": {
                "summary": "Every workload: live replicas, distinct configurations, open findings, baseline",
                "operationId": "listWorkloads",
                "responses": {"200": _json(_ref("WorkloadList"), "Workloads"), "503": _ERROR},
            }
        },
        "/api/v1/workloads/{namespace}/{name}": {
            "get": {
                "summary": "A workload: replicas, majority facts, intent checks, baseline, findings",
                "operationId": "getWorkload",
                "parameters": _WORKLOAD_PATH,
                "responses": {
                    "200": _json(_ref("WorkloadDetail"), "The workload"),
                    "400": _ERROR,
                    "404": _ERROR,
                    "503": _ERROR,
                },
            }
        },
        "/api/v1/workloads/{namespace}/{name}/revisions": {
            "get": {
                "summary": "A workload's pod-template revisions, newest first, with the current and the "
                "last-good one (the revision its baseline was recorded on)",
                "operationId": "listWorkloadRevisions",
                "parameters": _WORKLOAD_PATH,
                "responses": {
                    "200": _json(_ref("RevisionList"), "The revisions"),
                    "400": _ERROR,
                    "404": _ERROR,
                    "503": _ERROR,
                },
            }
        },
        "/api/v1/cluster": {
            "get": {
                "summary": "The cluster watch's report: available, a message, each kind's state",
                "operationId": "getClusterStatus",
                "responses": {"200": _json(_ref("ClusterStatus"), "The cluster watch")},
            }
        },
        "/api/v1/findings": {
            "get": {
                "summary": "Findings, newest first, filtered",
                "operationId": "listFindings",
                "parameters": [
                    _q("workload", "NAMESPACE/NAME or NAMESPACE/KIND/NAME", _WORKLOAD_REF),
                    _NAMESPACE,
                    _q("status", "pending | open | resolved", _STATUS),
                    _q("state", "the same as status (both given: they must agree, else 400)", _STATUS),
                    _q(
                        "reference",
                        "intent | baseline | peers",
                        {"type": "string", "enum": ["intent", "baseline", "peers"]},
                    ),
                    _q(
                        "category",
                        "model, runtime, hardware, serving, orchestration or performance",
                        {
                            "type": "string",
                            "enum": [
                                "model",
                                "runtime",
                                "hardware",
                                "serving",
                                "orchestration",
                                "performance",
                            ],
                        },
                    ),
                    _q("severity", "critical … info", _SEVERITY),
                    _q(
                        "since",
                        "only findings last seen at or after this moment: an RFC 3339 timestamp "
                        "(2026-12-01T10:00:00Z; encode a '+' offset as %2B) or Unix seconds",
                        _MOMENT,
                    ),
                    _q("until", "only findings last seen before this moment (as since)", _MOMENT),
                    _q(
                        "limit",
                        "at most this many",
                        {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
                    ),
                    _q(
                        "before",
                        "only ids below this: the previous page's next_before (paging)",
                        {"type": "integer", "minimum": 1, "maximum": 2**62},
                    ),
                ],
                "responses": {
                    "200": _json(_ref("FindingList"), "Findings"),
                    "400": _ERROR,
                    "404": _ERROR,
                    "503": _ERROR,
                },
            }
        },
        "/api/v1/findings/{id}": {
            "get": {
                "summary": "One finding with its history (opened, updated, resolved)",
                "operationId": "getFinding",
                "parameters": [_ID_PARAM],
                "responses": {
                    "200": _json(_ref("FindingDetail"), "The finding"),
                    "400": _ERROR,
                    "404": _ERROR,
                    "503": _ERROR,
                },
            }
        },
        "/api/v1/findings/{id}/ack": {
            "post": {
                "summary": "Acknowledge a finding (it stays open and counts as before); admin",
                "operationId": "ackFinding",
                "parameters": [_ID_PARAM],
                "requestBody": _NOTE_BODY,
                "responses": _NOTE_BODY_RESPONSES,
            },
            "delete": {
                "summary": "Take an acknowledgement back",
                "operationId": "unackFinding",
                "parameters": [_ID_PARAM],
                "responses": _NOTE_RESPONSES,
            },
        },
        "/api/v1/findings/{id}/silence": {
            "post": {
                "summary": "Silence a finding until a time: still listed, counted apart; admin",
                "operationId": "silenceFinding",
                "parameters": [_ID_PARAM],
                "requestBody": _note_body(
                    {
                        "for": {
                            "description": "seconds, or 30m, 2h, 7d (at most 90 days)",
                            "oneOf": [{"type": "number"}, {"type": "string"}],
                        },
                        "until": {"type": "number", "description": "Unix time"},
                    }
                ),
                "responses": _NOTE_BODY_RESPONSES,
            },
            "delete": {
                "summary": "End a silence",
                "operationId": "unsilenceFinding",
                "parameters": [_ID_PARAM],
                "responses": _NOTE_RESPONSES,
            },
        },
        "/api/v1/diff": {
            "get": {
                "summary": "What differs: current configuration against last-good, baseline or intent; two "
                "revisions; two pods. Exactly one of last_good, baseline, intent, revisions, pods.",
                "operationId": "diff",
                "parameters": [
                    {
                        **_q("workload", "NAMESPACE/NAME or NAMESPACE/KIND/NAME", _WORKLOAD_REF),
                        "required": True,
                    },
                    _q(
                        "last_good",
                        "against the replica's previous configuration (flag; no value needed); the answer's "
                        "template is the pod-template diff from the last-good revision to the current one",
                    ),
                    _q("baseline", "against the workload's baseline (flag)"),
                    _q("intent", "against the bound intents, field by field (flag)"),
                    _q(
                        "revisions",
                        "two stored snapshot ids, A,B: the id of a row of GET /api/v1/pods/{namespace}/"
                        "{pod}/history (not its sequence); or two workload revisions, whose pod templates "
                        "are compared: rN or revision:N (the controller's revision number), a template "
                        "hash (or hash:H for one of digits only), current, last-good (GET /api/v1/"
                        "workloads/{namespace}/{name}/revisions lists them)",
                    ),
                    _q("pods", "two pods of the workload, P1,P2"),
                ],
                "responses": {
                    "200": _json(_ref("Diff"), "The differences"),
                    "400": _ERROR,
                    "404": _ERROR,
                    "503": _ERROR,
                },
            }
        },
        "/api/v1/baselines": {
            "get": {
                "summary": "The latest baseline of each workload (or every baseline of ?workload=)",
                "operationId": "listBaselines",
                "parameters": [
                    _q("workload", "NAMESPACE/NAME or NAMESPACE/KIND/NAME", _WORKLOAD_REF),
                    _NAMESPACE,
                ],
                "responses": {
                    "200": _json(_ref("BaselineList"), "Baselines"),
                    "400": _ERROR,
                    "404": _ERROR,
                    "503": _ERROR,
                },
            }
        },
        "/api/v1/baselines/{namespace}/{name}": {
            "get": {
                "summary": "A workload's current baseline (facts and performance) and older ones",
                "operationId": "getBaseline",
                "parameters": _WORKLOAD_PATH,
                "responses": {
                    "200": _json(_ref("BaselineDetail"), "The baseline"),
                    "400": _ERROR,
                    "404": _ERROR,
                    "503": _ERROR,
                },
            },
            "post": {
                "summary": "Record a baseline from the live replicas (majority configuration + performance)",
                "operationId": "recordBaseline",
                "parameters": _WORKLOAD_PATH,
                "requestBody": {
                    "required": False,
                    "content": {
                        "application/json": {
                            "schema": _obj({"note": _STR}, required=[], additionalProperties=False)
                        }
                    },
                },
                "responses": {
                    "201": _json(_ref("BaselineRecorded"), "Recorded"),
                    "400": _ERROR,
                    "404": _ERROR,
                    "409": _json(_ref("Error"), "No live replica to record"),
                    "503": _ERROR,
                    **_BODY_ERRORS,
                },
            },
            "delete": {
                "summary": "Forget the workload's baseline (the current one and the older ones; nothing "
                "else) and re-evaluate its findings; admin",
                "operationId": "deleteBaseline",
                "parameters": _WORKLOAD_PATH,
                "responses": {
                    "200": _json(_ref("BaselineDeleted"), "Deleted"),
                    "400": _ERROR,
                    "404": _json(_ref("Error"), "No such workload, or it has no baseline"),
                    "503": _ERROR,
                },
            },
        },
        "/api/v1/intents": {
            "get": {
                "summary": "Loaded intents (directory and API) and the errors of files that failed to load",
                "operationId": "listIntents",
                "responses": {"200": _json(_ref("IntentList"), "Intents"), "503": _ERROR},
            },
            "post": {
                "summary": "Add intents; 409 if one of that kind and name exists (PUT replaces)",
                "operationId": "createIntents",
                "requestBody": _YAML_BODY,
                "responses": {
                    "201": _json(_ref("IntentsCreated"), "Created"),
                    "400": _json(_ref("IntentError"), "Invalid: each issue with file, line and field"),
                    "409": _ERROR,
                    **_BODY_ERRORS,
                    **_PARSE_ERRORS,
                },
            },
        },
        "/api/v1/intents/{kind}/{name}": {
            "get": {
                "summary": "One loaded intent document",
                "operationId": "getIntent",
                "parameters": _INTENT_PATH,
                "responses": {"200": _json(_ref("Intent"), "The intent"), "400": _ERROR, "404": _ERROR},
            },
            "put": {
                "summary": "Create or replace one intent posted through the API",
                "operationId": "putIntent",
                "parameters": _INTENT_PATH,
                "requestBody": _YAML_BODY,
                "responses": {
                    "200": _json(_ref("Intent"), "Replaced"),
                    "201": _json(_ref("Intent"), "Created"),
                    "400": _json(_ref("IntentError"), "Invalid: each issue with file, line and field"),
                    **_BODY_ERRORS,
                    **_PARSE_ERRORS,
                },
            },
            "delete": {
                "summary": "Remove an intent posted through the API (directory intents: remove the file)",
                "operationId": "deleteIntent",
                "parameters": _INTENT_PATH,
                "responses": {
                    "200": _json(_ref("IntentDeleted"), "Deleted"),
                    "400": _ERROR,
                    "404": _ERROR,
                    "409": _ERROR,
                    "503": _ERROR,
                },
            },
        },
    }
)
PATHS.update(EVIDENCE_PATHS)  # the evidence bundle's route (collector/api/evidence.py)
PATHS.update(INJECTION_PATHS)  # the missed-injection report (collector/api/injection.py)
