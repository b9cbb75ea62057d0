"""Converting botocore shapes to JSON Schema: types, nesting, enums, lengths and item counts.

botocore's own string patterns are left out: they are written for other regex engines and
would fail at validation time here. Recursive shapes stop at an untyped object. A list the
model leaves unbounded gets ``DEFAULT_MAX_ITEMS``, at every depth, so no argument (say
100,000 ``Filters[].Values``) can swell a request, a policy context or an audit line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from botocore.model import Shape

_MAX_DEPTH: Final = 8
DEFAULT_MAX_ITEMS: Final = 100
"""``maxItems`` of a list botocore gives no ``max``: well above what one governed call needs (an
agent needing more splits the call); an admin's ``max_items`` only lowers it."""
_DOC_CHARS: Final = 300


def shape_to_schema(shape: Shape, *, depth: int = 0, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """The JSON Schema of one botocore shape; recursive shapes stop at an untyped object."""
    schema = _schema_for_type(shape, depth, seen)
    doc = doc_text(shape.documentation)
    if doc and depth == 0:
        schema["description"] = doc
    return schema


def _schema_for_type(shape: Shape, depth: int, seen: tuple[str, ...]) -> dict[str, Any]:
    kind = shape.type_name
    meta = shape.metadata
    if kind == "structure":
        if shape.name in seen or depth >= _MAX_DEPTH:
            return {"type": "object"}
        inner = (*seen, shape.name)
        members = shape.members
        properties = {name: _member_schema(m, depth + 1, inner) for name, m in members.items()}
        schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
        required = [r for r in shape.required_members if r in properties]
        if required:
            schema["required"] = required
        return schema
    if kind == "list":
        schema = {"type": "array", "items": _member_schema(shape.member, depth + 1, seen)}
        _copy_bound(meta, "min", schema, "minItems")
        _copy_bound(meta, "max", schema, "maxItems")
        schema.setdefault("maxItems", DEFAULT_MAX_ITEMS)
        return schema
    if kind == "map":
        return {"type": "object", "additionalProperties": _member_schema(shape.value, depth + 1, seen)}
    if kind == "string":
        schema = {"type": "string"}
        if shape.enum:
            schema["enum"] = list(shape.enum)
        _copy_bound(meta, "min", schema, "minLength")
        _copy_bound(meta, "max", schema, "maxLength")
        return schema
    if kind in ("integer", "long"):
        schema = {"type": "integer"}
        _copy_bound(meta, "min", schema, "minimum")
        _copy_bound(meta, "max", schema, "maximum")
        return schema
    if kind in ("float", "double"):
        return {"type": "number"}
    if kind == "boolean":
        return {"type": "boolean"}
    if kind == "timestamp":
        return {"type": "string", "format": "date-time"}
    if kind == "blob":
        return {"type": "string", "description": "content as text"}
    return {}


def _member_schema(shape: Shape, depth: int, seen: tuple[str, ...]) -> dict[str, Any]:
    return _schema_for_type(shape, depth, seen)


def _copy_bound(meta: Mapping[str, Any], key: str, schema: dict[str, Any], target: str) -> None:
    value = meta.get(key)
    if isinstance(value, int) and not isinstance(value, bool):
        schema[target] = value


def doc_text(html: str | None) -> str:
    text = re.sub(r"<[^>]+>", "", html or "")
    text = " ".join(text.split())
    if len(text) <= _DOC_CHARS:
        return text
    cut = text[:_DOC_CHARS]
    return (cut[: cut.rfind(". ") + 1] if ". " in cut else cut.rstrip() + "…").strip()
