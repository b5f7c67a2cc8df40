"""Intent documents as typed values: ModelSpec (read as published) and our SkewPolicy.

``parse_documents(text, file)`` loads every YAML document of a file, validates each against its
schema (ModelSpec: the published v0.1 schema; SkewPolicy: ``SKEWPOLICY_SCHEMA`` below) and
returns typed intents, or raises one ``IntentError`` listing every problem with file, line and
field path. Pure: no I/O.

SkewPolicy (``apiVersion: skewwatch.io/v1alpha1``, ``kind: SkewPolicy``) says what ModelSpec
cannot: which workloads an intent binds to, pins (revisions, digests, image digest, version
ranges, quantization, KV-cache dtype, parallelism, MIG profile, any fact), tolerances for
performance observations, keys to ignore, and severity overrides. docs/drift.md documents it.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from collector.errors import IntentError, IntentIssue
from collector.intent import modelspec_schema
from collector.intent.jsonschema import validate
from collector.intent.mapping import POLICY_ROWS, uncheckable
from collector.intent.versions import VersionRangeError, parse_range
from collector.intent.yamldoc import Document, load_documents

POLICY_API_VERSION = "skewwatch.io/v1alpha1"
POLICY_KIND = "SkewPolicy"
SEVERITIES = ("critical", "high", "medium", "low", "info")
MODELSPEC_ANNOTATION = "skewwatch.io/modelspec"
_NAME = r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?$"


def _o(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        out["required"] = required
    return out


_S: dict[str, Any] = {"type": "string", "maxLength": 4096}
_SMAP: dict[str, Any] = {"type": "object", "additionalProperties": {"type": "string"}}
_STRS: dict[str, Any] = {"type": "array", "items": {"type": "string"}, "maxItems": 1000}
_POS: dict[str, Any] = {"type": "integer", "minimum": 1}
_PCT: dict[str, Any] = {"type": "number", "minimum": 0, "maximum": 1000}

SKEWPOLICY_SCHEMA: dict[str, Any] = _o(
    {
        "apiVersion": {"type": "string", "const": POLICY_API_VERSION},
        "kind": {"type": "string", "const": POLICY_KIND},
        "metadata": _o(
            {"name": {"type": "string", "pattern": _NAME}, "labels": _SMAP, "annotations": _SMAP}, ["name"]
        ),
        "spec": _o(
            {
                "modelSpec": {
                    "type": "string",
                    "description": "metadata.name of the ModelSpec this policy binds",
                },
                "bindings": {
                    "type": "array",
                    "maxItems": 100,
                    "items": _o(
                        {
                            "namespaces": _STRS,
                            "workloads": {**_STRS, "description": "globs over name or kind/name"},
                            "selector": _o(
                                {
                                    "matchLabels": _SMAP,
                                    "matchExpressions": {
                                        "type": "array",
                                        "items": _o(
                                            {
                                                "key": _S,
                                                "operator": {
                                                    "type": "string",
                                                    "enum": ["In", "NotIn", "Exists", "DoesNotExist"],
                                                },
                                                "values": _STRS,
                                            },
                                            ["key", "operator"],
                                        ),
                                    },
                                }
                            ),
                        }
                    ),
                },
                "pins": _o(
                    {
                        "model": _o(
                            {
                                "revision": _S,
                                "tokenizerRevision": _S,
                                "weightsDigest": _S,
                                "configDigest": _S,
                                "tokenizerDigest": _S,
                                "chatTemplateDigest": _S,
                                "generationConfigDigest": _S,
                                "files": {"type": "object", "additionalProperties": {"type": "string"}},
                            }
                        ),
                        "image": _o({"reference": _S, "digest": _S}),
                        "runtime": _o(
                            {
                                "version": _S,
                                "dtype": _S,
                                "quantization": {"type": ["string", "null"]},
                                "kvCacheDtype": _S,
                                "tensorParallelSize": _POS,
                                "pipelineParallelSize": _POS,
                            }
                        ),
                        "hardware": _o(
                            {
                                "driverVersion": _S,
                                "cudaVersion": _S,
                                "migProfile": {"type": ["string", "null"]},
                            }
                        ),
                        "facts": {"type": "object", "additionalProperties": {}},
                    }
                ),
                "tolerances": {
                    "type": "object",
                    "additionalProperties": _o({"maxDecreasePercent": _PCT, "maxIncreasePercent": _PCT}),
                },
                "load": _o({"requestsPerSecondPercent": _PCT, "runningRequestsPercent": _PCT}),
                "ignore": _STRS,
                "severity": {
                    "type": "object",
                    "additionalProperties": {"type": "string", "enum": list(SEVERITIES)},
                },
            }
        ),
    },
    ["apiVersion", "kind", "metadata", "spec"],
)


@dataclass(frozen=True)
class LabelExpression:
    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "Exists":
            return self.key in labels
        if self.operator == "DoesNotExist":
            return self.key not in labels
        if self.operator == "In":
            return labels.get(self.key) in self.values
        return labels.get(self.key) not in self.values  # NotIn


@dataclass(frozen=True)
class Binding:
    """One way a policy selects workloads; every given part must match (empty parts match all)."""

    namespaces: tuple[str, ...] = ()
    workloads: tuple[str, ...] = ()
    match_labels: Mapping[str, str] = field(default_factory=dict)
    match_expressions: tuple[LabelExpression, ...] = ()

    def matches(self, namespace: str, kind: str, name: str, labels: Mapping[str, str]) -> bool:
        if self.namespaces and namespace not in self.namespaces:
            return False
        if self.workloads and not any(
            fnmatch.fnmatchcase(name, g) or fnmatch.fnmatchcase(f"{kind}/{name}", g) for g in self.workloads
        ):
            return False
        if any(labels.get(k) != v for k, v in self.match_labels.items()):
            return False
        return all(e.matches(labels) for e in self.match_expressions)


@dataclass(frozen=True)
class Tolerance:
    max_decrease: float | None = None  # fractions: 0.2 = 20 %
    max_increase: float | None = None


@dataclass(frozen=True)
class ModelSpec:
    name: str
    data: Mapping[str, Any]  # the document exactly as read
    file: str
    lines: Mapping[tuple[str | int, ...], int] = field(default_factory=dict)

    kind = "ModelSpec"

    def get(self, path: str) -> Any:
        """The value at a dotted path (``spec.runtime.batch.maxBatchSize``), or None."""
        node: Any = self.data
        for part in path.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return None
            node = node[part]
        return node

    def line(self, path: str) -> int | None:
        return self.lines.get(tuple(path.split(".")))

    @property
    def model_id(self) -> str:
        return str(self.get("spec.identity.model.id") or "")


@dataclass(frozen=True)
class SkewPolicy:
    name: str
    data: Mapping[str, Any]
    file: str
    model_spec: str | None
    bindings: tuple[Binding, ...]
    pins: Mapping[str, Any]  # spec.pins as read
    tolerances: Mapping[str, Tolerance]
    load_tolerance: Mapping[str, float]
    ignore: tuple[str, ...]
    severity: Mapping[str, str]
    lines: Mapping[tuple[str | int, ...], int] = field(default_factory=dict)

    kind = "SkewPolicy"

    def binds(self, namespace: str, kind: str, name: str, labels: Mapping[str, str]) -> bool:
        return any(b.matches(namespace, kind, name, labels) for b in self.bindings)


Intent = ModelSpec | SkewPolicy


def _policy(doc: Document) -> SkewPolicy:
    data: dict[str, Any] = doc.data
    spec: dict[str, Any] = data["spec"]
    issues: list[IntentIssue] = []
    bindings = []
    for i, b in enumerate(spec.get("bindings", [])):
        sel = b.get("selector", {})
        bindings.append(
            Binding(
                namespaces=tuple(b.get("namespaces", ())),
                workloads=tuple(b.get("workloads", ())),
                match_labels=dict(sel.get("matchLabels", {})),
                match_expressions=tuple(
                    LabelExpression(e["key"], e["operator"], tuple(e.get("values", ())))
                    for e in sel.get("matchExpressions", ())
                ),
            )
        )
        for j, e in enumerate(sel.get("matchExpressions", ())):
            needs_values = e["operator"] in ("In", "NotIn")
            if needs_values != bool(e.get("values")):
                path = ("spec", "bindings", i, "selector", "matchExpressions", j, "values")
                word = "needs" if needs_values else "must not have"
                issues.append(doc.issue(path, f"operator {e['operator']} {word} values"))
    pins: dict[str, Any] = spec.get("pins", {})
    for section, key in (("runtime", "version"), ("hardware", "driverVersion"), ("hardware", "cudaVersion")):
        text = pins.get(section, {}).get(key)
        if text is not None:
            try:
                parse_range(text)
            except VersionRangeError as e:
                issues.append(doc.issue(("spec", "pins", section, key), str(e)))
    for key in pins.get("facts", {}):
        if not re.match(r"^(model|runtime|hardware|serving|orchestration)\.\S+$", key):
            issues.append(doc.issue(("spec", "pins", "facts", key), "not a fact key (category.dotted.name)"))
    for pin_path, target, value in _pin_entries(pins):
        why = uncheckable(target, value)
        if why is not None:
            issues.append(doc.issue(pin_path, f"{value!r} cannot be checked: {why}"))
    tolerances = {
        name: Tolerance(
            None if t.get("maxDecreasePercent") is None else t["maxDecreasePercent"] / 100,
            None if t.get("maxIncreasePercent") is None else t["maxIncreasePercent"] / 100,
        )
        for name, t in spec.get("tolerances", {}).items()
    }
    load = spec.get("load", {})
    if issues:
        raise IntentError(issues)
    return SkewPolicy(
        name=data["metadata"]["name"],
        data=data,
        file=doc.file,
        model_spec=spec.get("modelSpec"),
        bindings=tuple(bindings),
        pins=pins,
        tolerances=tolerances,
        load_tolerance={
            k: v / 100
            for k, v in (
                ("requests_per_s", load.get("requestsPerSecondPercent")),
                ("requests_running", load.get("runningRequestsPercent")),
            )
            if v is not None
        },
        ignore=tuple(spec.get("ignore", ())),
        severity=dict(spec.get("severity", {})),
        lines=dict(doc.lines),
    )


def _pin_entries(pins: Mapping[str, Any]) -> list[tuple[tuple[str, ...], str, Any]]:
    """(field path, target fact key, value) of every pin given, ``.*`` rows expanded per entry."""
    out: list[tuple[tuple[str, ...], str, Any]] = []
    for row in POLICY_ROWS:
        if row.target is None:
            continue
        parts = tuple(row.field.removesuffix(".*").split("."))
        node: Any = pins
        for part in parts[2:]:  # below spec.pins
            node = node.get(part) if isinstance(node, Mapping) else None
        if row.field.endswith(".*"):
            prefix = row.target.removesuffix("*")
            for k, v in node.items() if isinstance(node, Mapping) else ():
                out.append(((*parts, k), prefix + k, v))
        elif isinstance(node, str):
            out.append((parts, row.target, node))
    return out


def parse_document(doc: Document) -> Intent:
    """One validated intent from one loaded document; raises IntentError."""
    data = doc.data
    if not isinstance(data, dict):
        raise IntentError([doc.issue((), "an intent document must be a mapping with apiVersion and kind")])
    api, kind = data.get("apiVersion"), data.get("kind")
    if kind == modelspec_schema.KIND or api == modelspec_schema.API_VERSION:
        issues = validate(doc, modelspec_schema.SCHEMA, modelspec_schema.UNKNOWN_FIELD_HINTS)
        if issues:
            raise IntentError(issues)
        return ModelSpec(name=data["metadata"]["name"], data=data, file=doc.file, lines=dict(doc.lines))
    if kind == POLICY_KIND or api == POLICY_API_VERSION:
        issues = validate(doc, SKEWPOLICY_SCHEMA)
        if issues:
            raise IntentError(issues)
        return _policy(doc)
    raise IntentError(
        [
            doc.issue(
                ("kind",) if "kind" in data else (),
                f"unknown document: apiVersion {api!r}, kind {kind!r} (expected "
                f"{modelspec_schema.API_VERSION} ModelSpec or {POLICY_API_VERSION} SkewPolicy)",
            )
        ]
    )


def parse_documents(text: str | bytes, file: str) -> list[Intent]:
    """Every intent in a file; one IntentError with every problem of every document."""
    issues: list[IntentIssue] = []
    out: list[Intent] = []
    for doc in load_documents(text, file):
        try:
            out.append(parse_document(doc))
        except IntentError as e:
            issues.extend(e.issues)
    if issues:
        raise IntentError(issues)
    return out
