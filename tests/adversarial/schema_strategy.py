"""Values that fit a tool's JSON Schema, for the subset manifests use.

Covers ``type`` (string, integer, number, boolean, array, object), ``enum``, ``const``,
``pattern``, ``minLength``/``maxLength``, ``minimum``/``maximum``, ``items``, ``properties``
and ``required``; optional properties are included or left out at random.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hypothesis import strategies as st


def from_schema(schema: Mapping[str, Any]) -> st.SearchStrategy[Any]:
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(list(schema["enum"]))
    kind = schema.get("type")
    if kind == "string":
        return _string(schema)
    if kind == "integer":
        return st.integers(schema.get("minimum"), schema.get("maximum"))
    if kind == "number":
        return st.floats(schema.get("minimum"), schema.get("maximum"), allow_nan=False, allow_infinity=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "array":
        return st.lists(
            from_schema(schema.get("items", {"type": "string"})),
            min_size=schema.get("minItems", 0),
            max_size=min(schema.get("maxItems", 4), 4),
        )
    if kind == "object":
        return _object(schema)
    return st.none() | st.booleans() | st.text(max_size=20)


def _string(schema: Mapping[str, Any]) -> st.SearchStrategy[str]:
    low = schema.get("minLength", 0)
    high = min(schema.get("maxLength", 64), 64)
    if "pattern" in schema:
        return st.from_regex(schema["pattern"], fullmatch=True).filter(
            lambda s: low <= len(s) <= schema.get("maxLength", 1 << 30)
        )
    return st.text(min_size=low, max_size=max(low, high))


@st.composite
def _object(draw: st.DrawFn, schema: Mapping[str, Any]) -> dict[str, Any]:
    required = set(schema.get("required", []))
    out: dict[str, Any] = {}
    for name, prop in schema.get("properties", {}).items():
        if name in required or draw(st.booleans()):
            out[name] = draw(from_schema(prop))
    return out
