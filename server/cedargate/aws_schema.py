"""Deriving an AWS tool's input schema from botocore's service model, narrowed by its manifest.

The admin lists the parameters an agent may pass (with optional tighter bounds) and the ones
fixed by the admin; everything else about a parameter (type, nesting, enums, lengths, item
counts) comes from the service model, so the published schema is exact and never copied by
hand. Every problem raises ``ValueError`` naming the manifest field, for the loader to place.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Final

import jsonschema
from pydantic import BaseModel, ConfigDict, Field

from cedargate.aws_model import input_members, operation_model, required_members
from cedargate.aws_shapes import shape_to_schema

ACCOUNT_PATTERN: Final = "^[0-9]{12}$"
REGION_PATTERN: Final = "^[a-z]{2}(-[a-z]+)+-[0-9]$"
REGION_ARGUMENT: Final = "region"


class ParameterRule(BaseModel):
    """What an admin may add to a parameter the agent passes: bounds that only narrow the model's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    required: bool = False
    description: str | None = None
    enum: tuple[str | int, ...] | None = None
    pattern: str | None = None
    max_length: Annotated[int, Field(ge=0)] | None = None
    min_items: Annotated[int, Field(ge=0)] | None = None
    max_items: Annotated[int, Field(ge=1)] | None = None
    minimum: int | float | None = None
    maximum: int | float | None = None


def narrow(name: str, schema: dict[str, Any], rule: ParameterRule) -> dict[str, Any]:
    """Apply an admin's rule to a parameter's derived schema; bounds only ever tighten."""
    field = f"handler.parameters.{name}"
    out = dict(schema)
    is_list = out.get("type") == "array"
    target = dict(out["items"]) if is_list else out
    if rule.description is not None:
        out["description"] = rule.description
    if rule.enum is not None or rule.pattern is not None or rule.max_length is not None:
        if target.get("type") != "string":
            raise ValueError(f"field `{field}`: `enum`, `pattern` and `max_length` apply to text, `{name}` is not text")
        if rule.enum is not None:
            allowed = target.get("enum")
            outside = [v for v in rule.enum if allowed is not None and v not in allowed]
            if outside:
                raise ValueError(f"field `{field}.enum`: {outside} are not values the service accepts")
            target["enum"] = list(rule.enum)
        if rule.pattern is not None:
            try:
                re.compile(rule.pattern)
            except re.error as exc:
                raise ValueError(f"field `{field}.pattern`: not a regular expression: {exc}") from exc
            target["pattern"] = rule.pattern
        if rule.max_length is not None:
            target["maxLength"] = min(rule.max_length, target.get("maxLength", rule.max_length))
    if rule.min_items is not None or rule.max_items is not None:
        if not is_list:
            raise ValueError(f"field `{field}`: `min_items` and `max_items` apply to lists, `{name}` is not a list")
        if rule.max_items is not None:
            out["maxItems"] = min(rule.max_items, out.get("maxItems", rule.max_items))
        if rule.min_items is not None:
            out["minItems"] = max(rule.min_items, out.get("minItems", 0))
    if rule.minimum is not None or rule.maximum is not None:
        if target.get("type") not in ("integer", "number"):
            raise ValueError(f"field `{field}`: `minimum` and `maximum` apply to numbers, `{name}` is not a number")
        if rule.minimum is not None:
            target["minimum"] = max(rule.minimum, target.get("minimum", rule.minimum))
        if rule.maximum is not None:
            target["maximum"] = min(rule.maximum, target.get("maximum", rule.maximum))
    if is_list:
        out["items"] = target
    return out


def derive_input_schema(
    service: str,
    operation: str,
    parameters: Mapping[str, ParameterRule],
    fixed: Mapping[str, Any],
    account_argument: str,
    extra: Mapping[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The published JSON Schema: the allowed parameters, the account, the region, and ``extra``.

    Fails when a parameter is unknown, allowed and fixed at once, or required by the service
    but neither allowed nor fixed; and when a fixed value does not fit the service model.
    """
    op = operation_model(service, operation)
    members = input_members(op)
    for name in (*parameters, *fixed):
        if name not in members:
            where = "parameters" if name in parameters else "fixed"
            known = ", ".join(f"`{m}`" for m in members) or "none"
            raise ValueError(
                f"field `handler.{where}.{name}`: `{service}:{operation}` has no parameter `{name}` (known: {known})"
            )
    both = sorted(set(parameters) & set(fixed))
    if both:
        raise ValueError(f"field `handler.fixed.{both[0]}`: a parameter is either allowed or fixed, not both")
    missing = sorted(required_members(op) - set(parameters) - set(fixed))
    if missing:
        raise ValueError(
            f"field `handler.parameters`: `{service}:{operation}` requires `{missing[0]}`; "
            f"allow it under [handler.parameters.{missing[0]}] or set it under [handler.fixed]"
        )
    for name, value in fixed.items():
        _check_fixed(name, value, shape_to_schema(members[name]))
    reserved = {account_argument, REGION_ARGUMENT, *(extra or {})}
    clash = sorted(reserved & set(parameters))
    if clash:
        raise ValueError(f"field `handler.parameters.{clash[0]}`: `{clash[0]}` is reserved by cedargate")
    properties: dict[str, Any] = {
        account_argument: {
            "type": "string",
            "pattern": ACCOUNT_PATTERN,
            "description": "AWS account id; the configured default account when omitted.",
        },
        REGION_ARGUMENT: {
            "type": "string",
            "pattern": REGION_PATTERN,
            "description": "AWS region; the configured region when omitted.",
        },
    }
    for name, rule in parameters.items():
        properties[name] = narrow(name, shape_to_schema(members[name]), rule)
    properties.update(extra or {})
    required = [n for n in parameters if n in required_members(op) or parameters[n].required]
    schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = required
    return schema


def _check_fixed(name: str, value: Any, schema: dict[str, Any]) -> None:
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(value))
    if error is not None:
        raise ValueError(f"field `handler.fixed.{name}`: {error.message}")
