"""Generating the Cedar schema from the manifests: one action per tool, one group per risk.

Policies are validated against this schema at load, so a typo in a policy is an error at
start-up rather than a silent deny. Argument types come from each manifest's JSON Schema;
arguments whose JSON type has no Cedar counterpart (numbers, objects, the boolean schema
``true``) are left out of ``context.args`` and are therefore invisible to policies.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from cedargate.aws_schema import REGION_ARGUMENT
from cedargate.cedar_types import AGENT, AWS_ACCOUNT, ENVIRONMENT, REPOSITORY, TEAM, USER
from cedargate.errors import ManifestError
from cedargate.manifest import ToolManifest
from cedargate.risk import Risk

_SCALARS: Mapping[str, str] = {"string": "String", "integer": "Long", "boolean": "Boolean"}
_RESOURCE_TYPES: Mapping[str, str] = {"repository": REPOSITORY, "aws_account": AWS_ACCOUNT}


def cedar_type_for(json_schema: Mapping[str, Any] | bool, field: str = "input_schema") -> dict[str, Any] | None:
    """The Cedar type of a JSON Schema property, or ``None`` if policies cannot see it.

    A schema may be a boolean (valid JSON Schema): ``true`` accepts anything, so has no
    Cedar type; ``false`` accepts nothing, so the argument could never be passed: raises
    ``ValueError`` naming ``field`` rather than publish a tool nobody can call as written.
    """
    if json_schema is False:
        raise ValueError(
            f"field `{field}` is `false`, a schema no value satisfies; remove the argument, or give it a type"
        )
    if not isinstance(json_schema, Mapping):  # `true`: any value, no one Cedar type
        return None
    json_type = json_schema.get("type")
    if isinstance(json_type, str) and json_type in _SCALARS:
        return {"type": _SCALARS[json_type]}
    if json_type == "array":
        element = cedar_type_for(json_schema.get("items", True), f"{field}.items")
        if element is not None and element["type"] in ("String", "Long"):
            return {"type": "Set", "element": element}
    return None


def args_record(manifest: ToolManifest) -> dict[str, Any]:
    """The ``context.args`` record of a tool: each mappable argument, required when it is always there.

    An argument is always there when the schema requires it, declares a ``default``, or is an
    AWS call's account or region: ``resolve`` fills those in before the decision. A policy may
    read such an argument without ``has`` (and one that still tests ``has`` validates).
    """
    required = {*manifest.input_schema.get("required", []), *manifest.argument_defaults}
    if manifest.resource.kind == "aws_account":
        required |= {manifest.resource.argument, REGION_ARGUMENT}
    attributes: dict[str, Any] = {}
    for name, prop in manifest.input_schema.get("properties", {}).items():
        try:
            cedar_type = cedar_type_for(prop, f"input_schema.properties.{name}")
        except ValueError as exc:
            raise ManifestError(f"{manifest.source}: tool `{manifest.name}`: {exc}") from exc
        if cedar_type is not None:
            attributes[name] = {**cedar_type, "required": name in required}
    return {"type": "Record", "attributes": attributes}


_visible_args: dict[str, frozenset[str]] = {}


def visible_arg_names(manifest: ToolManifest) -> frozenset[str]:
    """Names of the arguments that appear in ``context.args`` (memoized per manifest content)."""
    names = _visible_args.get(manifest.content_hash)
    if names is None:
        names = _visible_args[manifest.content_hash] = frozenset(args_record(manifest)["attributes"])
    return names


def _string() -> dict[str, str]:
    return {"type": "String"}


def _context(manifest: ToolManifest) -> dict[str, Any]:
    return {
        "type": "Record",
        "attributes": {
            "environment": _string(),
            "risk": _string(),
            "mode": _string(),
            "on_behalf_of": _string(),
            "task": _string(),
            "session": {
                "type": "Record",
                "attributes": {
                    "id": _string(),
                    "call_count": {"type": "Long"},
                    "repositories": {"type": "Set", "element": _string()},
                },
            },
            "args": args_record(manifest),
            "approval": {
                "type": "Record",
                "attributes": {
                    "granted": {"type": "Boolean"},
                    "approver": _string(),
                    "groups": {"type": "Set", "element": _string()},
                },
            },
            "budget": {"type": "Record", "attributes": {"remaining_cents": {"type": "Long"}}},
            "changes": {
                "type": "Record",
                "attributes": {
                    "paths": {"type": "Set", "element": _string()},
                    "classes": {"type": "Set", "element": _string()},
                    "unclassified": {"type": "Boolean"},
                },
            },
        },
    }


def _entity_types() -> dict[str, Any]:
    return {
        TEAM: {},
        USER: {"memberOfTypes": [TEAM]},
        AGENT: {"memberOfTypes": [TEAM]},
        ENVIRONMENT: {},
        REPOSITORY: {
            "memberOfTypes": [ENVIRONMENT],
            "shape": {
                "type": "Record",
                "attributes": {
                    "name": _string(),
                    "owner_team": {"type": "Entity", "name": TEAM},
                    "protected_branches": {"type": "Set", "element": _string()},
                },
            },
        },
        AWS_ACCOUNT: {
            "memberOfTypes": [ENVIRONMENT],
            "shape": {"type": "Record", "attributes": {"account_id": _string(), "alias": _string()}},
        },
    }


def build_schema(manifests: Iterable[ToolManifest]) -> dict[str, Any]:
    """The Cedar JSON schema for this set of tools (empty namespace)."""
    actions: dict[str, Any] = {risk.action_group: {} for risk in Risk}
    for manifest in manifests:
        actions[manifest.name] = {
            "memberOf": [{"id": manifest.risk.action_group}],
            "appliesTo": {
                "principalTypes": [AGENT],
                "resourceTypes": [_RESOURCE_TYPES[manifest.resource.kind]],
                "context": _context(manifest),
            },
        }
    return {"": {"entityTypes": _entity_types(), "actions": actions}}


def schema_json(manifests: Iterable[ToolManifest]) -> str:
    """The schema as stable, reviewable JSON text (what ``cedargate policy schema`` prints)."""
    return json.dumps(build_schema(manifests), indent=2, sort_keys=True) + "\n"
