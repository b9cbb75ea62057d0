"""Writing a starting AWS manifest from the service model, for an admin to edit.

The template allows the operation's required parameters, lists every other parameter as a
commented-out table with its type and documentation, and suggests a result projection from
the output's top-level members. What it writes is loaded back before it is returned, so a
template that would not load is never written.
"""

from __future__ import annotations

import tomllib
from typing import Any

from botocore import xform_name

from cedargate.aws_model import (
    input_members,
    operation_model,
    overwrites_existing,
    refuse_mutation_as_read,
    required_members,
)
from cedargate.aws_shapes import doc_text, shape_to_schema
from cedargate.manifest import ToolManifest
from cedargate.risk import Risk

_TOML_SPECIAL = str.maketrans({"\\": "\\\\", '"': '\\"'})


def tool_name(service: str, operation: str) -> str:
    """``aws_<service>_<operation in snake case>``, e.g. ``aws_ec2_stop_instances``."""
    return f"aws_{service.replace('-', '_')}_{xform_name(operation)}"[:64]


def render_manifest(service: str, operation: str, risk: Risk, duty: str, owner: str = "platform") -> str:
    """The TOML text of a manifest for ``service:operation``; ``ValueError`` naming the field if unknown."""
    op = operation_model(service, operation)
    refuse_mutation_as_read(service, operation, risk)
    required = required_members(op)
    name = tool_name(service, operation)
    doc = shape_to_schema(op.input_shape).get("description", "") if op.input_shape is not None else ""
    description = _first_sentence(op.documentation) or doc or f"{service} {operation}"
    lines = [
        f"# {service}:{operation}, written by `cedargate tools new`. Edit, then run `cedargate policy validate`.",
        "# The input schema is derived from botocore's service model: allow parameters under",
        "# [handler.parameters.NAME] (bounds: enum, pattern, max_length, min_items, max_items, minimum,",
        "# maximum, required, description) and fix others under [handler.fixed].",
        f'name = "{name}"',
        f'description = "{_toml(description)}"',
        f'risk = "{risk.value}"',
        f'owner = "{_toml(owner)}"',
        f'duty = "{_toml(duty)}"',
        *_overwrites(operation, risk),
        "",
        "[handler]",
        'kind = "aws"',
        f'service = "{service}"',
        f'operation = "{operation}"',
        *_result_suggestion(op),
        "max_result_bytes = 65536",
        "",
    ]
    for param, shape in input_members(op).items():
        schema = shape_to_schema(shape)
        summary = f"{schema.get('type', 'any')}: {schema.get('description', '')}".strip(": ")[:160]
        if param in required:
            lines += [f"# {summary}", f"[handler.parameters.{param}]", ""]
        else:
            lines += [f"# [handler.parameters.{param}]  # {summary}"]
    lines += ["", "[resource]", 'kind = "aws_account"', 'argument = "account"', ""]
    text = "\n".join(lines)
    _must_load(text)
    return text


def _overwrites(operation: str, risk: Risk) -> list[str]:
    """``overwrites = true`` for a ``write`` whose name says it replaces something (higher risks are destructive)."""
    if risk is not Risk.WRITE or not overwrites_existing(operation):
        return []
    return [
        "# Replaces what was there: clients are told the tool is destructive (destructiveHint).",
        "overwrites = true",
    ]


def _result_suggestion(op: Any) -> list[str]:
    output = op.output_shape
    members = [m for m in (output.members if output is not None else {}) if m != "ResponseMetadata"]
    if not members:
        return []
    projection = "{" + ", ".join(f"{xform_name(m)}: {m}" for m in members[:6]) + "}"
    return [f'# result = "{projection}"  # JMESPath: keep only what the agent needs']


def _first_sentence(html: str | None) -> str:
    text = doc_text(html)
    return text.split(". ")[0].rstrip(".")[:200] if text else ""


def _toml(value: str) -> str:
    return value.translate(_TOML_SPECIAL).replace("\n", " ")


def _must_load(text: str) -> None:
    ToolManifest.model_validate(tomllib.loads(text))
