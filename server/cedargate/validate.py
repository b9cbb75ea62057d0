"""Step 2, validate: the agent's arguments against the manifest's JSON Schema.

The low-level MCP server does not check ``inputSchema``; this step does, before anything
else sees the arguments, and names every field at fault. A compiled check accepts well-formed
arguments first where it can (``quick_accept``); anything it does not accept is judged here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from jsonschema.exceptions import ValidationError, best_match, relevance

from cedargate.errors import QUOTED_CHARACTERS, ToolInputError, quoted
from cedargate.manifest import ToolManifest

MAX_LISTED_PROBLEMS: Final = 5
"""Problems named in one error; an agent fixes its call in one round trip, not one per field."""


def validate_arguments(manifest: ToolManifest, arguments: Mapping[str, Any] | None) -> dict[str, Any]:
    """Return the arguments if they fit the schema; else raise naming every bad field, the likeliest first."""
    args = dict(arguments or {})
    quick = manifest.quick_accept
    if quick is not None and quick(args):
        return args
    errors = sorted(manifest.input_validator.iter_errors(args), key=relevance, reverse=True)
    if errors:
        # Each top-level error is described by its most specific cause (inside anyOf and the like).
        problems = list(dict.fromkeys(describe_schema_error(best_match([error])) for error in errors))
        listed = "; ".join(problems[:MAX_LISTED_PROBLEMS])
        more = len(problems) - MAX_LISTED_PROBLEMS
        suffix = f"; and {more} more" if more > 0 else ""
        raise ToolInputError(f"invalid arguments for `{manifest.name}`: {listed}{suffix}")
    return args


def describe_schema_error(error: ValidationError) -> str:
    """One clause naming the field and the problem, e.g. ``field `path`: `3` is not of type 'string'``."""
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
    return f"field {quoted(path or '(arguments)')}: {_as_sent(error)}"


def _as_sent(error: ValidationError) -> str:
    """jsonschema's message with the value shown as the agent sent it (JSON, cut when long), not as Python."""
    message = error.message
    python = repr(error.instance)
    if message.startswith(python):
        return _shown(error.instance) + message[len(python) :]
    return message if len(message) <= _MESSAGE_CHARACTERS else message[:_MESSAGE_CHARACTERS] + "…"


def _shown(value: object) -> str:
    """``value`` as JSON in backticks; a long string cut to its start, with its own length (not its JSON's)."""
    if isinstance(value, str) and len(value) > QUOTED_CHARACTERS:
        start = json.dumps(value[: QUOTED_CHARACTERS - 40], ensure_ascii=False)[:-1]  # no closing quote: cut
        return f"`{start}…` ({len(value):,} characters)"
    return quoted(json.dumps(value, ensure_ascii=False, default=str))


_MESSAGE_CHARACTERS: Final = 400
"""A message that embeds the value elsewhere (rare) is cut to this length."""
