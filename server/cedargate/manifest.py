"""Tool manifests: what an admin writes in ``tools/`` to publish one governed tool.

A manifest is declarative. It names the handler that does the work, the resource the call
targets, the risk level (the only source of the tool's MCP annotations and Cedar action
group), the duty identity whose credentials the handler uses, and the JSON Schema of the
arguments the agent may pass.
"""

from __future__ import annotations

import hashlib
import json
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

import mcp_types as types
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from cedargate.risk import Risk

ToolName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RepoHandlerSpec(_Strict):
    """A built-in git operation on a configured repository."""

    kind: Literal["repo"]
    operation: str


class AwsHandlerSpec(_Strict):
    """One boto3 operation; ``result`` is a JMESPath projection of the response."""

    kind: Literal["aws"]
    service: str
    operation: str
    result: str | None = None


HandlerSpec = Annotated[RepoHandlerSpec | AwsHandlerSpec, Field(discriminator="kind")]


class ResourceBinding(_Strict):
    """Which argument names the resource, and what kind of resource it is.

    For an AWS account the argument may be omitted by the agent; the configured default
    account is used then.
    """

    kind: Literal["repository", "aws_account"]
    argument: str


class ToolManifest(_Strict):
    """One published tool, exactly as loaded from its TOML file."""

    name: ToolName
    description: Annotated[str, StringConstraints(min_length=1, strip_whitespace=True)]
    risk: Risk
    owner: Annotated[str, StringConstraints(min_length=1)]
    duty: Annotated[str, StringConstraints(min_length=1)]
    cost_cents: Annotated[int, Field(ge=0)] = 0
    idempotent: bool = False
    handler: HandlerSpec
    resource: ResourceBinding
    input_schema: dict[str, Any]
    sensitive_fields: tuple[str, ...] = ()
    """Argument and result keys whose values never reach the audit log or the agent (replaced whole)."""
    source: Path = Field(default=Path("?"), exclude=True)

    @field_validator("input_schema")
    @classmethod
    def _schema_is_a_closed_object(cls, schema: dict[str, Any]) -> dict[str, Any]:
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as exc:
            raise ValueError(f"not a valid JSON Schema: {exc.message}") from exc
        if schema.get("type") != "object":
            raise ValueError('must describe an object (`type = "object"`)')
        # Agents may pass only what the admin listed: unknown arguments are refused.
        return {**schema, "additionalProperties": False}

    @model_validator(mode="after")
    def _resource_argument_is_declared(self) -> ToolManifest:
        properties = self.input_schema.get("properties", {})
        if self.resource.argument not in properties:
            raise ValueError(
                f"resource.argument `{self.resource.argument}` is not a property of input_schema; "
                "declare it under [input_schema.properties]"
            )
        return self

    @cached_property
    def content_hash(self) -> str:
        """sha256 of the manifest's canonical content: any change to what governs the tool shows."""
        return _content_hash(self)

    @cached_property
    def input_validator(self) -> Draft202012Validator:
        """The compiled validator for the arguments, built once per manifest."""
        return Draft202012Validator(self.input_schema)

    @property
    def annotations(self) -> types.ToolAnnotations:
        """All four MCP hints, derived from risk and handler kind; never from the client."""
        return types.ToolAnnotations(
            read_only_hint=self.risk.read_only,
            destructive_hint=self.risk.destructive,
            idempotent_hint=self.risk.read_only or self.idempotent,
            open_world_hint=self.handler.kind == "aws",
        )

    def to_mcp_tool(self) -> types.Tool:
        return types.Tool(
            name=self.name,
            description=self.description,
            input_schema=self.input_schema,
            annotations=self.annotations,
        )


def _content_hash(manifest: ToolManifest) -> str:
    canonical = json.dumps(manifest.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
