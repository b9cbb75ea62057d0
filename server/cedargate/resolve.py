"""Step 3, resolve: the resource a call targets, from its arguments and the config.

The resource is what policies are written about (a repository, an AWS account) and carries
the environment it lives in. A call naming something not configured stops here.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cedargate.aws_model import known_regions
from cedargate.aws_schema import REGION_ARGUMENT
from cedargate.cedar_types import AWS_ACCOUNT, REPOSITORY, EntityRef
from cedargate.config import AwsAccountConfig, Config, RepositoryConfig
from cedargate.errors import ResourceError, ToolInputError, quoted
from cedargate.manifest import ToolManifest


@dataclass(frozen=True)
class Resource:
    """The resolved target of a call; ``config`` is the repository's or account's settings."""

    ref: EntityRef
    environment: str
    config: RepositoryConfig | AwsAccountConfig = field(repr=False)


def resolve_resource(manifest: ToolManifest, args: Mapping[str, Any], config: Config) -> Resource:
    """Map the manifest's resource argument onto a configured repository or account."""
    binding = manifest.resource
    if binding.kind == "repository":
        name = str(args.get(binding.argument, ""))
        if not name and binding.when_omitted == "first_repository" and config.repositories:
            name = config.repositories[0].name
        repo = config.repository(name)
        if repo is None:
            known = ", ".join(f"`{r.name}`" for r in config.repositories) or "none"
            raise ResourceError(
                f"field `{binding.argument}`: repository {quoted(name)} is not configured (configured: {known})"
            )
        return Resource(EntityRef(REPOSITORY, repo.name), repo.environment, repo)
    account_id = args.get(binding.argument) or config.aws.default_account
    if account_id is None:
        raise ResourceError(f"field `{binding.argument}`: no account given and no `aws.default_account` configured")
    account = config.aws_account(str(account_id))
    if account is None:
        known = ", ".join(f"`{a.id}`" for a in config.aws.accounts) or "none"
        raise ResourceError(
            f"field `{binding.argument}`: AWS account {quoted(str(account_id))} is not configured (configured: {known})"
        )
    return Resource(EntityRef(AWS_ACCOUNT, account.id), account.environment, account)


def resolve_call(manifest: ToolManifest, args: dict[str, Any], config: Config) -> tuple[Resource, dict[str, Any]]:
    """The call's resource, and its arguments as it will run (what the pipeline and ``policy test`` decide on)."""
    resource = resolve_resource(manifest, args, config)
    return resource, _arguments_as_run(manifest, args, resource, config)


def _arguments_as_run(
    manifest: ToolManifest, args: dict[str, Any], resource: Resource, config: Config
) -> dict[str, Any]:
    """The arguments as the tool will run them, whether the agent named them or not.

    An omitted argument with a JSON Schema ``default`` takes it; an AWS call's omitted account
    is the configured default and its omitted region the configured one. Filled in before
    authorization, ``context.args`` shows policies what the call will do, so leaving an
    argument out cannot step around a policy that reads it, and the handler and an approval
    see the same values. The audit trail keeps the arguments as the agent sent them.
    """
    if resource.ref.type != AWS_ACCOUNT:
        return with_defaults(manifest, args)
    declared = manifest.input_schema.get("properties", {})
    filled = dict(with_defaults(manifest, args))
    if manifest.resource.argument in declared:
        filled.setdefault(manifest.resource.argument, resource.ref.id)
    if REGION_ARGUMENT in declared:
        region = filled.setdefault(REGION_ARGUMENT, config.aws.region)
        if region not in known_regions():
            raise ToolInputError(
                f"field `{REGION_ARGUMENT}`: {quoted(str(region))} is not an AWS region "
                f"(the configured one is `{config.aws.region}`; a region newer than this botocore needs an upgrade)"
            )
    return filled


def with_defaults(manifest: ToolManifest, args: dict[str, Any]) -> dict[str, Any]:
    """``args`` with each omitted argument that has a schema ``default`` set to it (a copy, when any is)."""
    defaults = manifest.argument_defaults
    missing = [name for name in defaults if name not in args]
    if not missing:
        return args
    # A copy of each default: a handler changing a list it was given never changes the manifest.
    return {**args, **{name: copy.deepcopy(defaults[name]) for name in missing}}
