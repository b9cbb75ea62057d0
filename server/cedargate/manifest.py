"""Tool manifests: what an admin writes in ``tools/`` to publish one governed tool.

A manifest is declarative. It names the handler that does the work, the resource the call
targets, the risk level (the only source of the tool's MCP annotations and Cedar action
group), the duty identity whose credentials the handler uses, and the JSON Schema of the
arguments the agent may pass. An AWS manifest does not write that schema: it lists the
allowed parameters and the schema is derived from botocore's service model (``aws_schema``).
"""

from __future__ import annotations

import hashlib
import json
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import jmespath
import mcp_types as types
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from cedargate.aws_schema import ParameterRule, derive_input_schema
from cedargate.errors import ManifestError, describe_validation_error
from cedargate.quick_accept import ASSERTED_FORMATS, QuickAccept, compile_quick_accept
from cedargate.risk import Risk

ToolName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RepoHandlerSpec(_Strict):
    """A built-in git operation on a configured repository."""

    kind: Literal["repo"]
    operation: str

    @property
    def reaches_outside(self) -> bool:
        """Whether the operation talks to a system beyond the server (the remote, the forge)."""
        return self.operation in _REMOTE_OPERATIONS


_REMOTE_OPERATIONS: Final = frozenset({"push", "open_pull_request"})


class SecretSpec(_Strict):
    """Response fields that hold secrets: redacted unless the call asked to reveal them.

    Asking to reveal is an argument policies see (``context.args.<reveal_argument>``), so a
    value is disclosed only when a policy lets such a call through. Paths are dotted keys,
    ``[]`` stepping into every element of a list (``Parameters[].Value``).
    """

    paths: tuple[Annotated[str, StringConstraints(min_length=1)], ...]
    reveal_argument: ToolName = "reveal"


class AwsHandlerSpec(_Strict):
    """One boto3 operation: what the agent may pass, what the admin fixes, what comes back.

    ``result`` is a JMESPath projection of the response; the projected result is capped at
    ``max_result_bytes`` of JSON and streamed bodies (``s3:GetObject``) at ``max_body_bytes``.
    """

    kind: Literal["aws"]
    service: Annotated[str, StringConstraints(min_length=1)]
    operation: Annotated[str, StringConstraints(min_length=1)]
    parameters: dict[str, ParameterRule] = Field(default_factory=dict)
    fixed: dict[str, Any] = Field(default_factory=dict)
    result: str | None = None
    max_result_bytes: Annotated[int, Field(ge=256, le=4 * 1024 * 1024)] = 64 * 1024
    max_body_bytes: Annotated[int, Field(ge=1, le=4 * 1024 * 1024)] = 256 * 1024
    secrets: SecretSpec | None = None

    @property
    def reaches_outside(self) -> bool:
        """Every AWS call leaves the server (to AWS, or the embedded sandbox standing in for it)."""
        return True

    @field_validator("result")
    @classmethod
    def _result_is_jmespath(cls, result: str | None) -> str | None:
        if result is not None:
            try:
                jmespath.compile(result)
            except jmespath.exceptions.JMESPathError as exc:
                raise ValueError(f"not a JMESPath expression: {exc}") from exc
        return result


HandlerSpec = Annotated[RepoHandlerSpec | AwsHandlerSpec, Field(discriminator="kind")]


class ResourceBinding(_Strict):
    """Which argument names the resource, and what kind of resource it is.

    For an AWS account the argument may be omitted by the agent; the configured default
    account is used then. A repository argument may be omitted only where the manifest says
    ``when_omitted = "first_repository"`` (and leaves the argument optional).
    """

    kind: Literal["repository", "aws_account"]
    argument: str
    when_omitted: Literal["refuse", "first_repository"] = "refuse"


class PathsBinding(_Strict):
    """Which argument holds the repository paths a call changes (``context.changes``, see ``change_paths``).

    ``format = "path"``: the argument is one path; ``"diff"``: a unified diff, whose headers name them.
    """

    argument: str
    format: Literal["path", "diff"]


class ToolManifest(_Strict):
    """One published tool, exactly as loaded from its TOML file."""

    name: ToolName
    description: Annotated[str, StringConstraints(min_length=1, strip_whitespace=True)]
    risk: Risk
    owner: Annotated[str, StringConstraints(min_length=1)]
    duty: Annotated[str, StringConstraints(min_length=1)]
    cost_cents: Annotated[int, Field(ge=0)] = 0
    idempotent: bool = False
    overwrites: bool = False
    """A write that replaces what was there (an object, a parameter, a configuration): MCP calls that
    destructive (its ``destructiveHint`` means "may do more than add"), though its risk is ``write``."""
    handler: HandlerSpec
    resource: ResourceBinding
    paths: PathsBinding | None = None
    input_schema: dict[str, Any]
    sensitive_fields: tuple[str, ...] = ()
    """Argument and result keys whose values never reach the audit log or the agent (replaced whole)."""
    source: Path = Field(default=Path("?"), exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _derive_aws_schema(cls, data: Any) -> Any:
        """An AWS manifest's schema comes from the service model, never from the file."""
        if not isinstance(data, dict):
            return data
        handler = data.get("handler")
        if not isinstance(handler, dict) or handler.get("kind") != "aws":
            return data
        resource = data.get("resource") or {"kind": "aws_account", "argument": "account"}
        account = resource.get("argument", "account") if isinstance(resource, dict) else "account"
        try:
            spec = AwsHandlerSpec.model_validate(handler)
        except ValidationError as exc:
            raise ValueError(describe_validation_error(exc, prefix="handler")) from exc
        extra = {}
        if spec.secrets is not None:
            extra[spec.secrets.reveal_argument] = {
                "type": "boolean",
                "default": False,
                "description": "Return the secret values instead of `[REDACTED]`; only where a policy allows it.",
            }
        schema = derive_input_schema(spec.service, spec.operation, spec.parameters, spec.fixed, account, extra)
        # A dumped manifest round-trips; a schema written by hand that differs is refused.
        if "input_schema" in data and data["input_schema"] != schema:
            raise ValueError(
                "field `input_schema`: AWS tools derive their schema from the service model; "
                "list the parameters agents may pass under [handler.parameters.NAME] instead"
            )
        return {**data, "resource": resource, "input_schema": schema}

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

    @model_validator(mode="after")
    def _paths_argument_is_a_repository_string(self) -> ToolManifest:
        if self.paths is None:
            return self
        if self.resource.kind != "repository":
            raise ValueError("field `paths`: only a repository tool changes repository paths; remove `[paths]`")
        prop = self.input_schema.get("properties", {}).get(self.paths.argument)
        if not isinstance(prop, dict) or prop.get("type") != "string":
            raise ValueError(
                f"field `paths.argument`: `{self.paths.argument}` is not a string property of input_schema; "
                "name the argument that holds the path or the diff"
            )
        return self

    @cached_property
    def content_hash(self) -> str:
        """sha256 of the manifest's canonical content: any change to what governs the tool shows."""
        return _content_hash(self)

    @cached_property
    def input_validator(self) -> Draft202012Validator:
        """The compiled validator for the arguments, built once per manifest (``date-time`` asserted)."""
        return Draft202012Validator(self.input_schema, format_checker=ASSERTED_FORMATS)

    @cached_property
    def argument_defaults(self) -> dict[str, Any]:
        """The ``default`` of each top-level argument that declares one, worked out once per manifest.

        Fails with ``ManifestError`` when a default does not fit its own argument's schema: it
        would reach the handler and the policies as if an agent had sent it. The Cedar schema is
        built from every manifest at load, so such a manifest stops start-up and a reload.
        """
        defaults: dict[str, Any] = {}
        for name, prop in self.input_schema.get("properties", {}).items():
            if not isinstance(prop, dict) or "default" not in prop:
                continue
            # The tool's own validator, narrowed to this argument: its formats and references apply.
            error = next(self.input_validator.evolve(schema=prop).iter_errors(prop["default"]), None)
            if error is not None:
                raise ManifestError(
                    f"{self.source}: tool `{self.name}`: field `input_schema.properties.{name}.default`: "
                    f"{error.message}; give a default the argument accepts, or none"
                )
            defaults[name] = prop["default"]
        return defaults

    @cached_property
    def quick_accept(self) -> QuickAccept | None:
        """A compiled check that says yes to well-formed arguments fast (see ``quick_accept``)."""
        return compile_quick_accept(self.input_schema)

    @property
    def annotations(self) -> types.ToolAnnotations:
        """All four MCP hints, derived from risk and handler; never from the client."""
        return types.ToolAnnotations(
            read_only_hint=self.risk.read_only,
            destructive_hint=self.risk.destructive or self.overwrites,
            idempotent_hint=self.risk.read_only or self.idempotent,
            open_world_hint=self.handler.reaches_outside,
        )

    def to_mcp_tool(self) -> types.Tool:
        return types.Tool(
            name=self.name,
            description=self.description,
            input_schema=self.input_schema,
            annotations=self.annotations,
        )


_FIELDS_ADDED_SINCE_LOCKS: Final = ("overwrites", "paths")
"""Manifest fields newer than the first tools locks: hashed only when set, so an upgrade that adds
a field leaves every lock (and every hash in the audit trail) of an unchanged manifest as it was."""


def _content_hash(manifest: ToolManifest) -> str:
    content = manifest.model_dump(mode="json")
    for field in _FIELDS_ADDED_SINCE_LOCKS:
        if content.get(field) == ToolManifest.model_fields[field].default:
            del content[field]
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
