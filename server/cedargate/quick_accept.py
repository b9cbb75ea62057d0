"""A compiled check that accepts well-formed arguments in microseconds, for schemas it can read.

``jsonschema`` walks the schema for every call (20-35 µs for a typical tool). ``fastjsonschema``
compiles it to plain Python once, but speaks drafts 4 to 7 while manifests are JSON Schema
2020-12. The keywords listed here mean the same in draft 7 and 2020-12, so a schema made only
of them is compiled as draft 7. The compiled check may only *accept*: anything it refuses, and
every schema it cannot read, goes to ``jsonschema``, which decides and names the field at fault.
``format`` is asserted for ``date-time`` alone, in both, by one checker (``ASSERTED_FORMATS``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

import fastjsonschema
from jsonschema import FormatChecker

QuickAccept = Callable[[Mapping[str, Any]], bool]

ASSERTED_FORMATS: Final = FormatChecker(formats=("date-time",))
"""The formats arguments must meet: AWS timestamps travel as strings, and botocore refuses one
it cannot read only after the call was let through."""

_SAME_IN_DRAFT_7 = frozenset(
    {
        # annotations (no assertion in either draft)
        "title",
        "description",
        "default",
        "examples",
        "$comment",
        "format",  # asserted for date-time by ASSERTED_FORMATS in both; other formats only annotate
        # assertions
        "type",
        "enum",
        "const",
        "properties",
        "required",
        "additionalProperties",
        "minProperties",
        "maxProperties",
        "items",  # a single schema: the array form does not pass 2020-12's meta-schema
        "minItems",
        "maxItems",
        "minLength",
        "maxLength",
        "pattern",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
    }
)
_SUBSCHEMA_MAPS = ("properties",)
_SUBSCHEMAS = ("items", "additionalProperties")
_DRAFT_7 = "http://json-schema.org/draft-07/schema#"
_FORMATS: Final = {
    name: functools.partial(ASSERTED_FORMATS.conforms, format=name) for name in ASSERTED_FORMATS.checkers
}


def compile_quick_accept(schema: Mapping[str, Any]) -> QuickAccept | None:
    """A fast yes for ``schema``, or ``None`` when only ``jsonschema`` may judge it."""
    if not _readable(schema):
        return None
    try:
        check = fastjsonschema.compile(
            # Its own checks of other formats may refuse more than jsonschema: refusing is always safe here.
            {**schema, "$schema": _DRAFT_7},
            formats=_FORMATS,
            use_default=False,
        )
    except (fastjsonschema.JsonSchemaDefinitionException, re.error, ValueError, TypeError, KeyError, RecursionError):
        return None  # e.g. a pattern its end-of-string rewrite cannot take: the slow path judges

    def accepts(arguments: Mapping[str, Any]) -> bool:
        try:
            check(arguments)
        except fastjsonschema.JsonSchemaValueException:
            return False
        return True

    return accepts


def _readable(schema: object) -> bool:
    """Whether every keyword, at every level, is one that draft 7 reads as 2020-12 does."""
    if isinstance(schema, bool):
        return True
    if not isinstance(schema, Mapping) or not set(schema) <= _SAME_IN_DRAFT_7:
        return False
    for key in _SUBSCHEMA_MAPS:
        members = schema.get(key, {})
        if not isinstance(members, Mapping) or not all(_readable(sub) for sub in members.values()):
            return False
    return all(_readable(schema[key]) for key in _SUBSCHEMAS if key in schema)
