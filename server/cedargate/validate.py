"""Step 2, validate: the agent's arguments against the manifest's JSON Schema.

The low-level MCP server does not check ``inputSchema``; this step does, before anything
else sees the arguments, and names every field at fault. A compiled check accepts well-formed
arguments first where it can (``quick_accept``); anything it does not accept is judged here.

Arguments that fit the schema must also fit Cedar, which sees them in ``context.args``: an
integer sent as ``5.0`` (JSON Schema calls it an integer) becomes ``5``; an integer beyond
Cedar's 64-bit Long and text holding a lone surrogate (not Unicode, so neither Cedar nor the
audit trail can carry it) are refused here, naming the field, rather than failing the policy.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from typing import Any, Final

from jsonschema.exceptions import ValidationError, best_match, relevance

from cedargate.errors import QUOTED_CHARACTERS, ToolInputError, quoted
from cedargate.manifest import ToolManifest
from cedargate.redact import redact_value

MAX_LISTED_PROBLEMS: Final = 5
"""Problems named in one error; an agent fixes its call in one round trip, not one per field."""
LONG_RANGE: Final = range(-(2**63), 2**63)
"""The integers Cedar's Long holds."""
_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def validate_arguments(manifest: ToolManifest, arguments: Mapping[str, Any] | None) -> dict[str, Any]:
    """Return the arguments if they fit the schema; else raise naming every bad field, the likeliest first."""
    args = dict(arguments or {})
    has_float = _refuse_what_cedar_cannot_take(manifest.name, args, "")  # first: no message may echo it
    quick = manifest.quick_accept
    if not (quick is not None and quick(args)):
        _refuse_schema_errors(manifest, args)
    return _integers_as_int(args, manifest.input_schema) if has_float else args


def _refuse_schema_errors(manifest: ToolManifest, args: dict[str, Any]) -> None:
    errors = sorted(manifest.input_validator.iter_errors(args), key=relevance, reverse=True)
    if errors:
        # Each top-level error is described by its most specific cause (inside anyOf and the like).
        sensitive = manifest.sensitive_fields
        problems = list(dict.fromkeys(describe_schema_error(best_match([error]), sensitive) for error in errors))
        listed = "; ".join(problems[:MAX_LISTED_PROBLEMS])
        more = len(problems) - MAX_LISTED_PROBLEMS
        suffix = f"; and {more} more" if more > 0 else ""
        raise ToolInputError(f"invalid arguments for `{manifest.name}`: {listed}{suffix}")


def _refuse_what_cedar_cannot_take(tool: str, value: Any, path: str) -> bool:
    """Raise naming the field for a lone surrogate or an integer past a Long; return whether a float was seen."""
    if isinstance(value, str):
        found = _SURROGATE.search(value) if not value.isascii() else None
        if found is not None:
            raise ToolInputError(
                f"invalid arguments for `{tool}`: field {quoted(path or '(arguments)')}: text holds a lone "
                f"surrogate (`\\u{ord(found.group()):04x}` at character {found.start()}), which is not Unicode; "
                "send it as valid UTF-8"
            )
        return False
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        if value not in LONG_RANGE:
            raise ToolInputError(
                f"invalid arguments for `{tool}`: field {quoted(path or '(arguments)')}: "
                "the integer is outside the 64-bit range policies can read; send a smaller number"
            )
        return False
    if isinstance(value, float):
        return True
    seen = False
    if isinstance(value, Mapping):
        for key, item in value.items():
            field = f"{path}.{key}" if path else str(key)
            _refuse_what_cedar_cannot_take(tool, str(key), f"{path}.(a key)" if path else "(a key)")
            seen = _refuse_what_cedar_cannot_take(tool, item, field) or seen
    elif isinstance(value, list):
        for index, item in enumerate(value):
            seen = _refuse_what_cedar_cannot_take(tool, item, f"{path}.{index}" if path else str(index)) or seen
    return seen


def _integers_as_int(value: Any, schema: Any) -> Any:
    """``value`` with each integral float the schema types as an integer made an ``int`` (Cedar has no floats)."""
    if not isinstance(schema, Mapping):
        return value
    if isinstance(value, float):
        kinds = schema.get("type")
        integer = kinds == "integer" or (isinstance(kinds, list) and "integer" in kinds and "number" not in kinds)
        return int(value) if integer and value.is_integer() else value
    if isinstance(value, Mapping):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        return {k: _integers_as_int(v, properties.get(k, extra)) for k, v in value.items()}
    if isinstance(value, list):
        return [_integers_as_int(v, schema.get("items")) for v in value]
    return value


def describe_schema_error(error: ValidationError, sensitive: Collection[str] = ()) -> str:
    """One clause naming the field and the problem, e.g. ``field `path`: `3` is not of type 'string'``.

    The value of a ``sensitive`` field (the manifest's ``sensitive_fields``) is never shown:
    the message goes back to the agent and into the audit trail.
    """
    path = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        field = f"{path}.{missing}" if path else missing
        return f"field {quoted(field)} is required"
    if error.validator == "additionalProperties":
        declared = error.schema.get("properties", {}) if isinstance(error.schema, dict) else {}
        given = error.instance if isinstance(error.instance, dict) else {}
        extras = sorted(set(given) - set(declared))
        field = ", ".join(quoted(f"{path + '.' if path else ''}{e}") for e in extras)
        return f"field {field} is not accepted by this tool"
    return f"field {quoted(path or '(arguments)')}: {_as_sent(error, sensitive)}"


def _as_sent(error: ValidationError, sensitive: Collection[str]) -> str:
    """jsonschema's message with the value shown as the agent sent it (JSON, cut when long), not as Python."""
    message = error.message
    python = repr(error.instance)
    hidden = any(str(part) in sensitive for part in error.absolute_path)
    if message.startswith(python):
        shown = (
            _HIDDEN if hidden else _shown(redact_value(error.instance, "", sensitive) if sensitive else error.instance)
        )
        return shown + message[len(python) :]
    if hidden or (sensitive and not isinstance(error.instance, str | int | float | bool | None)):
        return f"the value does not fit the schema (`{error.validator}`); {_HIDDEN} is not shown"
    return message if len(message) <= _MESSAGE_CHARACTERS else message[:_MESSAGE_CHARACTERS] + "…"


def _shown(value: object) -> str:
    """``value`` as JSON in backticks; a long string cut to its start, with its own length (not its JSON's)."""
    if isinstance(value, str) and len(value) > QUOTED_CHARACTERS:
        start = json.dumps(value[: QUOTED_CHARACTERS - 40], ensure_ascii=False)[:-1]  # no closing quote: cut
        return f"`{start}…` ({len(value):,} characters)"
    return quoted(json.dumps(value, ensure_ascii=False, default=str))


_MESSAGE_CHARACTERS: Final = 400
"""A message that embeds the value elsewhere (rare) is cut to this length."""
_HIDDEN: Final = "the value of a sensitive field"
