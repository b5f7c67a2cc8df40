"""The OpenAPI document the collector serves, and a small check of responses against it."""

from __future__ import annotations

from typing import Any

from collector.api.openapi import document

DOC = document("test")
_TYPES: dict[str, Any] = {
    "object": dict,
    "array": list,
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
    "null": type(None),
}


def conforms(value: Any, schema: dict[str, Any], where: str = "$") -> None:
    """A small JSON-schema subset check: enough to keep the document honest about our shapes."""
    if "$ref" in schema:
        schema = DOC["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    if "oneOf" in schema:
        errors = []
        for option in schema["oneOf"]:
            try:
                conforms(value, option, where)
                return
            except AssertionError as e:
                errors.append(str(e))
        raise AssertionError(f"{where}: matches no oneOf option: {errors}")
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        ok = any(
            isinstance(value, _TYPES[t]) and not (t in ("integer", "number") and isinstance(value, bool))
            for t in types
        )
        assert ok, f"{where}: {value!r} is not {types}"
    if "enum" in schema:
        assert value in schema["enum"], f"{where}: {value!r} not in {schema['enum']}"
    if isinstance(value, dict):
        for name in schema.get("required", []):
            assert name in value, f"{where}: missing {name!r}"
        props = schema.get("properties", {})
        for k, v in value.items():
            if k in props:
                conforms(v, props[k], f"{where}.{k}")
            elif isinstance(schema.get("additionalProperties"), dict):
                conforms(v, schema["additionalProperties"], f"{where}.{k}")
            else:
                assert schema.get("type") != "object" or "additionalProperties" in schema or not props, (
                    f"{where}: undocumented field {k!r}"
                )
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            conforms(item, schema["items"], f"{where}[{i}]")


def response_schema(path: str, status: int) -> dict[str, Any]:
    schema: dict[str, Any] = DOC["paths"][path]["get"]["responses"][str(status)]["content"][
        "application/json"
    ]["schema"]
    return schema
