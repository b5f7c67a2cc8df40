"""The published ModelSpec v0.1 JSON Schema, as data — the one place to correct it.

Source: github.com/paralleliq/modelspec, ``schema/modelspec.v0.1.json`` at commit
43703e9d606296794c0447ad79704af748d73ec9 (its ``$id`` reads ``model-spec-v0.2.json`` and its
title "ModelSpec v0.2", though the file and the repository's docs call it v0.1; the content is
what matters and is transcribed here keyword for keyword). Every object in it sets
``additionalProperties: false``, so unknown fields are rejected, as the schema does.

Known divergences in that repository, decided in favour of the schema (docs/modelspec-mapping.md):
its examples use ``apiVersion: modelspec.paralleliq.ai/v0.1`` (the schema requires
``piqc.ai/v1alpha1``) and put ``dependencies`` directly under ``spec`` (the schema has them under
``spec.pipeline.dependencies``); ``UNKNOWN_FIELD_HINTS`` points users at the schema's place.
"""

from __future__ import annotations

from typing import Any

API_VERSION = "piqc.ai/v1alpha1"
KIND = "ModelSpec"
SOURCE = (
    "github.com/paralleliq/modelspec schema/modelspec.v0.1.json @ 43703e9d606296794c0447ad79704af748d73ec9"
)


def _obj(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        out["required"] = required
    return out


_STR: dict[str, Any] = {"type": "string"}
_BOOL: dict[str, Any] = {"type": "boolean"}
_STR_MAP: dict[str, Any] = {"type": "object", "additionalProperties": {"type": "string"}}


def _int(minimum: int, maximum: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "integer", "minimum": minimum}
    if maximum is not None:
        out["maximum"] = maximum
    return out


_NUM0: dict[str, Any] = {"type": "number", "minimum": 0}
_PROBE = _obj({"path": _STR, "timeoutSeconds": _int(0)})
_STEPS = _obj(
    {
        "steps": {
            "type": "array",
            "items": _obj({"name": _STR, "type": _STR, "enabled": _BOOL}, ["name", "type"]),
        }
    }
)

SCHEMA: dict[str, Any] = {
    "$id": "https://piqc.ai/schemas/model-spec-v0.2.json",
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "ModelSpec v0.2",
    **_obj(
        {
            "apiVersion": {"type": "string", "const": API_VERSION},
            "kind": {"type": "string", "const": KIND},
            "metadata": _obj(
                {
                    "name": _STR,
                    "version": _STR,
                    "description": _STR,
                    "labels": _STR_MAP,
                    "annotations": _STR_MAP,
                },
                ["name"],
            ),
            "spec": _obj(
                {
                    "identity": _obj(
                        {
                            "model": _obj(
                                {
                                    "id": _STR,
                                    "family": _STR,
                                    "task": _STR,
                                    "framework": _STR,
                                    "precision": _STR,
                                    "artifacts": _obj({"modelUri": _STR, "tokenizerUri": _STR}),
                                },
                                ["id", "family", "task", "framework"],
                            )
                        },
                        ["model"],
                    ),
                    "runtime": _obj(
                        {
                            "accelerator": _obj(
                                {"vendor": _STR, "type": _STR, "count": _int(1)}, ["vendor", "type", "count"]
                            ),
                            "batch": _obj({"maxBatchSize": _int(1), "maxSequenceLengthTokens": _int(1)}),
                            "resources": _obj(
                                {"cpuCores": _int(0), "memoryGb": _NUM0, "ephemeralStorageGb": _NUM0}
                            ),
                            "environment": _obj({"variables": _STR_MAP}),
                        },
                        ["accelerator"],
                    ),
                    "operations": _obj(
                        {
                            "serving": _obj(
                                {
                                    "protocol": {"type": "string", "enum": ["http", "grpc"]},
                                    "port": _int(1, 65535),
                                    "readinessProbe": _PROBE,
                                    "livenessProbe": _PROBE,
                                    "maxConcurrency": _int(1),
                                    "timeoutSeconds": _int(0),
                                }
                            ),
                            "scaling": _obj(
                                {
                                    "minReplicas": _int(0),
                                    "maxReplicas": _int(0),
                                    "strategy": {
                                        "type": "string",
                                        "enum": ["reactive", "predictive", "manual"],
                                    },
                                    "targetLatencyMsP95": _NUM0,
                                    "targetRps": _NUM0,
                                    "warmPool": _obj({"size": _int(0), "strategy": _STR}),
                                }
                            ),
                            "observability": _obj(
                                {
                                    "metrics": _obj(
                                        {"enabled": _BOOL, "provider": _STR, "port": _int(1, 65535)}
                                    ),
                                    "logging": _obj({"level": _STR}),
                                    "tracing": _obj({"enabled": _BOOL}),
                                }
                            ),
                        }
                    ),
                    "pipeline": _obj(
                        {
                            "preprocess": _STEPS,
                            "postprocess": _STEPS,
                            "dependencies": {
                                "type": "array",
                                "items": _obj(
                                    {
                                        "id": _STR,
                                        "role": {
                                            "type": "string",
                                            "enum": [
                                                "input",
                                                "guardrail",
                                                "reranker",
                                                "postprocess",
                                                "custom",
                                            ],
                                        },
                                        "specRef": _STR,
                                        "required": {"type": "boolean", "default": True},
                                        "interface": _obj(
                                            {"inputType": _STR, "outputType": _STR, "maxLatencyMs": _NUM0}
                                        ),
                                    },
                                    ["id", "role"],
                                ),
                            },
                        }
                    ),
                    "governance": _obj(
                        {
                            "compliance": _obj(
                                {
                                    "pii": _obj({"allowed": _BOOL, "policy": _STR}),
                                    "retention": _obj({"logsDays": _int(0), "artifactsDays": _int(0)}),
                                    "governance": _obj({"changeApproval": _STR, "owner": _STR}),
                                }
                            ),
                            "cost": _obj(
                                {
                                    "targetCostPer1kTokensUsd": _NUM0,
                                    "pricingHints": _obj(
                                        {"cloudProvider": _STR, "instanceType": _STR, "spotAllowed": _BOOL}
                                    ),
                                }
                            ),
                        }
                    ),
                },
                ["identity", "runtime"],
            ),
        },
        ["apiVersion", "kind", "metadata", "spec"],
    ),
}

# Extra words for the "unknown field" error where the published examples and the schema disagree.
UNKNOWN_FIELD_HINTS: dict[tuple[str | int, ...], str] = {
    ("spec", "dependencies"): "the v0.1 schema places dependencies under spec.pipeline.dependencies",
}


def leaf_paths(schema: dict[str, Any] | None = None, prefix: str = "") -> list[str]:
    """Every leaf field path of the schema (``spec.runtime.batch.maxBatchSize``), in order.

    Map-valued fields (labels, environment variables) end in ``.*``; array items in ``[]``.
    The mapping table test uses this to prove every field is accounted for.
    """
    node = SCHEMA if schema is None else schema
    out: list[str] = []
    props = node.get("properties")
    if props:
        for name, child in props.items():
            out.extend(leaf_paths(child, f"{prefix}.{name}" if prefix else name))
        return out
    if node.get("type") == "array" and "items" in node:
        return leaf_paths(node["items"], prefix + "[]")
    if isinstance(node.get("additionalProperties"), dict):
        return [prefix + ".*"]
    return [prefix]
