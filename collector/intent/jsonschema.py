"""A small JSON-Schema validator for the keywords intent schemas use, with line-numbered errors.

Supported: ``type`` (string or list), ``const``, ``enum``, ``required``, ``properties``,
``additionalProperties`` (false or a schema), ``items``, ``minimum``, ``maximum``, ``minItems``,
``maxItems``, ``maxLength``, ``pattern``, ``description``/``default``/``title``/``$id``/``$schema``
(ignored). That is every keyword the published ModelSpec v0.1 schema uses, so it is validated
exactly as the schema says; an unknown keyword in a schema is a programming error (raised).
Booleans are not integers and integers are numbers, as in JSON Schema.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from collector.errors import IntentIssue
from collector.intent.yamldoc import Document, Path

MAX_ISSUES = 50
_IGNORED = frozenset({"description", "default", "title", "$id", "$schema", "examples", "x-skewwatch"})
_KNOWN = frozenset(
    {"type", "const", "enum", "required", "properties", "additionalProperties", "items", "minimum",
     "maximum", "minItems", "maxItems", "maxLength", "pattern"}
) | _IGNORED  # fmt: skip

_TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "null": lambda v: v is None,
}


def _describe(value: Any) -> str:
    for name in ("null", "boolean", "integer", "number", "string", "array", "object"):
        if _TYPES[name](value):
            return name
    return type(value).__name__


def validate(
    doc: Document, schema: dict[str, Any], hints: dict[Path, str] | None = None
) -> list[IntentIssue]:
    """Every way ``doc.data`` breaks ``schema`` (at most MAX_ISSUES), each with file, line, path.

    ``hints`` adds a sentence to the "unknown field" error of a path (e.g. where the field lives).
    """
    walk = _Walk(doc, hints or {})
    _check(walk, doc.data, schema, ())
    return walk.issues[:MAX_ISSUES]


@dataclass
class _Walk:
    """One validation: the document (for line numbers), the hints and the issues found so far."""

    doc: Document
    hints: dict[Path, str]
    issues: list[IntentIssue] = field(default_factory=list)

    def add(self, path: Path, message: str) -> None:
        self.issues.append(self.doc.issue(path, message))


def _check(walk: _Walk, value: Any, schema: dict[str, Any], path: Path) -> None:
    if len(walk.issues) >= MAX_ISSUES:
        return
    unknown = set(schema) - _KNOWN
    if unknown:
        raise AssertionError(f"schema at {path!r} uses unsupported keywords {sorted(unknown)}")
    problem = _kind_problem(value, schema)
    if problem:
        walk.add(path, problem)
        return
    if isinstance(value, int | float) and not isinstance(value, bool):
        _check_number(walk, value, schema, path)
    elif isinstance(value, str):
        _check_string(walk, value, schema, path)
    elif isinstance(value, dict):
        _check_object(walk, value, schema, path)
    elif isinstance(value, list):
        _check_array(walk, value, schema, path)


def _kind_problem(value: Any, schema: dict[str, Any]) -> str:
    """What is wrong with the value's type, const or enum ('' when nothing): checked first, alone."""
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_TYPES[t](value) for t in types):
            return f"must be {' or '.join(types)}, got {_describe(value)} {_short(value)}"
    if "const" in schema and value != schema["const"]:
        return f"must be {schema['const']!r}, got {_short(value)}"
    if "enum" in schema and value not in schema["enum"]:
        allowed = ", ".join(repr(v) for v in schema["enum"])
        return f"must be one of {allowed}; got {_short(value)}"
    return ""


def _check_number(walk: _Walk, value: float, schema: dict[str, Any], path: Path) -> None:
    if "minimum" in schema and value < schema["minimum"]:
        walk.add(path, f"must be at least {schema['minimum']}, got {value}")
    if "maximum" in schema and value > schema["maximum"]:
        walk.add(path, f"must be at most {schema['maximum']}, got {value}")


def _check_string(walk: _Walk, value: str, schema: dict[str, Any], path: Path) -> None:
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        walk.add(path, f"must be at most {schema['maxLength']} characters, got {len(value)}")
    if "pattern" in schema and not re.search(schema["pattern"], value):
        walk.add(path, f"{_short(value)} does not match {schema['pattern']!r}")


def _check_object(walk: _Walk, value: dict[str, Any], schema: dict[str, Any], path: Path) -> None:
    for name in schema.get("required", ()):
        if name not in value:
            walk.add(path, f"missing required field {name!r}")
    props: dict[str, Any] = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    for key, item in value.items():
        child = (*path, key)
        if key in props:
            _check(walk, item, props[key], child)
        elif extra is False:
            hint = walk.hints.get(child, "")
            known = ", ".join(sorted(props)) or "none"
            walk.add(child, f"unknown field {key!r} (allowed here: {known})" + (f"; {hint}" if hint else ""))
        elif isinstance(extra, dict):
            _check(walk, item, extra, child)


def _check_array(walk: _Walk, value: list[Any], schema: dict[str, Any], path: Path) -> None:
    if "minItems" in schema and len(value) < schema["minItems"]:
        walk.add(path, f"must have at least {schema['minItems']} items")
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        walk.add(path, f"must have at most {schema['maxItems']} items, got {len(value)}")
    if "items" in schema:
        for i, item in enumerate(value):
            _check(walk, item, schema["items"], (*path, i))


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
