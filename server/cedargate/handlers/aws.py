"""The AWS handler: one boto3 operation per manifest, run as the manifest's duty identity.

The agent's arguments (minus the account, the region and a reveal flag) and the admin's
fixed parameters become the operation's parameters. The call runs with the credentials of
the duty role assumed for this principal; the audit event records the duty, the role and
the session (``HandlerCall.execution``). AWS errors become tool errors naming the operation
and the AWS error code, recorded in the audit event too; no stack trace or credential leaks.

A call runs only in the account and region the policy decided on: the duty's role is in that
account (``aws_duty``), ARN-valued arguments that name another account or region are refused
(S3 bucket arguments take names only, since botocore routes an access-point ARN to the ARN's
own account and region), and every S3 operation that accepts ``ExpectedBucketOwner`` gets the
call's account, so AWS refuses a bucket another account owns.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from typing import Any, Final

from botocore import xform_name
from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError
from botocore.model import Shape

from cedargate.aws_duty import AssumeRoleError, DutySessions
from cedargate.aws_model import operation_model, refuse_mutation_as_read
from cedargate.aws_result import read_bodies, shape_result
from cedargate.aws_schema import REGION_ARGUMENT
from cedargate.aws_session import AwsClients
from cedargate.config import AwsDutyConfig
from cedargate.errors import HandlerError
from cedargate.handlers import Handler, HandlerCall, HandlerFamily
from cedargate.manifest import AwsHandlerSpec, ToolManifest
from cedargate.progress import heartbeat

logger = logging.getLogger(__name__)

OWNER_MEMBERS: Final = ("ExpectedBucketOwner", "ExpectedSourceBucketOwner")
"""S3 members set to the call's account on every operation that has them: AWS then refuses
(``AccessDenied``) a bucket owned by another account, whatever bucket name the agent passed."""
_ARN: Final = re.compile(r"^arn:(?P<partition>[^:]*):(?P<service>[^:]*):(?P<region>[^:]*):(?P<account>[^:]*):")
_BUCKET_MEMBER: Final = re.compile(r"(^|[a-z])Bucket(Name)?$|^CopySource$")
"""Members botocore routes by when they hold an ARN (an access point, Object Lambda, Outposts)."""
_ACCOUNT_MEMBERS: Final = frozenset({"AccountId"})
"""Members naming the account an operation reads or acts in (CloudWatch's cross-account queries)."""


class AwsHandlers(HandlerFamily):
    """Runs ``service.operation`` with the configured backend's clients, as the manifest's duty."""

    kind = "aws"

    def __init__(self, clients: AwsClients | None, duties: Mapping[str, AwsDutyConfig] | None = None) -> None:
        self._clients = clients
        self._duties = dict(duties if duties is not None else (clients.config.duties if clients else {}))
        self._sessions = DutySessions(clients, self._duties) if clients is not None else None

    def check(self, manifest: ToolManifest) -> None:
        """Service, operation and parameters are checked when the manifest's schema is derived.

        Here: the resource, the duty, and that risk ``read`` names an operation that only reads.
        """
        if not isinstance(manifest.handler, AwsHandlerSpec):
            raise ValueError("field `handler`: not an AWS handler")
        refuse_mutation_as_read(manifest.handler.service, manifest.handler.operation, manifest.risk)
        if manifest.resource.kind != "aws_account":
            raise ValueError('field `resource.kind`: AWS operations need `resource.kind = "aws_account"`')
        if manifest.duty not in self._duties:
            known = ", ".join(f"`{d}`" for d in sorted(self._duties)) or "none"
            raise ValueError(
                f"field `duty`: `{manifest.duty}` is not a configured AWS duty (configured: {known}); "
                f"add it under [aws.duties] in the config"
            )

    def handler_for(self, manifest: ToolManifest) -> Handler:
        spec = manifest.handler
        if not isinstance(spec, AwsHandlerSpec):
            raise TypeError(f"tool `{manifest.name}` has no AWS handler spec")
        clients, sessions = self._clients, self._sessions
        if clients is None or sessions is None:
            raise TypeError("AWS handlers were built without clients: they can check manifests only")
        method = xform_name(spec.operation)
        operation = f"{spec.service}:{spec.operation}"
        input_shape = operation_model(spec.service, spec.operation).input_shape
        owner_members = [m for m in OWNER_MEMBERS if input_shape is not None and m in input_shape.members]
        reserved = {manifest.resource.argument, REGION_ARGUMENT}
        if spec.secrets is not None:
            reserved.add(spec.secrets.reveal_argument)

        def run(call: HandlerCall) -> dict[str, Any]:
            account = call.resource.ref.id
            region = str(call.args.get(REGION_ARGUMENT) or clients.region)
            params = {k: v for k, v in call.args.items() if k not in reserved}
            params.update(spec.fixed)  # the admin's values win; the schema already refuses them from agents
            refuse_foreign_arns(input_shape, params, account, region, operation)
            params.update(dict.fromkeys(owner_members, account))  # never the agent's: the policy's account
            clients.ensure_ready(call.progress)
            try:
                session, cached = sessions.session_for(manifest.duty, call.principal, account)
            except AssumeRoleError as exc:
                call.execution.update(duty=exc.duty, role_arn=exc.role_arn, aws_error_code=exc.code)
                raise
            call.execution.update(
                session.audit_facts(), credentials_cached=cached, region=region, backend=clients.backend
            )
            client = clients.client(
                spec.service,
                region=region,
                credentials=session.credentials,
                agent=call.principal.agent,
                trail=session.trail_identity(),
            )
            with heartbeat(call.progress, f"AWS `{operation}`"):
                response = _invoke(client, method, params, call.execution, operation, clients.sandbox is not None)
            call.execution["aws_request_id"] = response.get("ResponseMetadata", {}).get("RequestId")
            response = read_bodies(response, spec.max_body_bytes, operation)
            reveal = spec.secrets is not None and call.args.get(spec.secrets.reveal_argument) is True
            result, truncated = shape_result(spec, response, reveal)
            return {"account": account, "region": region, "result": result, "truncated": truncated}

        return run


def _invoke(
    client: Any, method: str, params: Mapping[str, Any], execution: dict[str, Any], operation: str, sandboxed: bool
) -> dict[str, Any]:
    """Call the operation; AWS's refusals (and the sandbox's own failures) become ``HandlerError``."""
    try:
        response: dict[str, Any] = getattr(client, method)(**params)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or "Unknown")
        execution["aws_error_code"] = code
        execution["aws_request_id"] = exc.response.get("ResponseMetadata", {}).get("RequestId")
        raise HandlerError(f"AWS `{operation}` failed with `{code}`: {error.get('Message', '')}") from exc
    except ParamValidationError as exc:
        execution["aws_error_code"] = "ParamValidation"
        raise HandlerError(f"AWS `{operation}` refused the parameters: {exc}") from exc
    except BotoCoreError as exc:
        execution["aws_error_code"] = type(exc).__name__
        raise HandlerError(f"AWS `{operation}` failed: {exc}") from exc
    except Exception as exc:
        if not sandboxed:
            raise  # against real AWS an unknown failure is a bug: the pipeline logs its trace
        logger.warning("the embedded sandbox failed on AWS `%s`", operation, exc_info=True)
        execution["aws_error_code"] = type(exc).__name__
        raise sandbox_error(operation, exc) from exc
    return response


def refuse_foreign_arns(
    shape: Shape | None, params: Mapping[str, Any], account: str, region: str, operation: str
) -> None:
    """Refuse an argument that names another account or region than the call's, or an ARN as a bucket.

    The policy decided on ``account`` and ``region``; an ARN elsewhere (or an ``AccountId``
    such as CloudWatch's cross-account ``MetricDataQueries[].AccountId``) would act on what
    the policy never saw, and botocore even sends an S3 call to an access-point ARN's own
    account and region. Only text members are looked at: a body that reads like an ARN is data.
    """
    for path, name, text in _text_values(shape, params, ""):
        if name in _ACCOUNT_MEMBERS and text != account:
            raise HandlerError(
                f"AWS `{operation}`: field `{path}` names account `{text}`, but this call was authorized for "
                f"account `{account}`; pass `{account}` or leave it out, and call on the other account instead"
            )
        arn = _ARN.match(text)
        if arn is None:
            continue
        if _BUCKET_MEMBER.search(name):
            raise HandlerError(
                f"AWS `{operation}`: field `{path}` takes a bucket name, not an ARN (`{arn.group(0)}...`); "
                "pass the bucket's name and the account it belongs to"
            )
        if arn["account"] not in ("", account) or arn["region"] not in ("", region):
            where = f"account `{arn['account'] or account}`, region `{arn['region'] or region}`"
            raise HandlerError(
                f"AWS `{operation}`: field `{path}` names a resource in {where}, but this call was authorized "
                f"for account `{account}`, region `{region}`; pass that account and region instead"
            )


def _text_values(shape: Shape | None, value: Any, path: str, name: str = "") -> Iterator[tuple[str, str, str]]:
    """(path, member name, text) of every text value, walked along the input shape (blobs are skipped)."""
    if shape is None:
        return
    kind = shape.type_name
    if kind == "structure" and isinstance(value, Mapping):
        for member, item in value.items():
            yield from _text_values(shape.members.get(member), item, f"{path}.{member}" if path else member, member)
    elif kind == "list" and isinstance(value, list):
        for index, item in enumerate(value):
            yield from _text_values(shape.member, item, f"{path}[{index}]", name)
    elif kind == "map" and isinstance(value, Mapping):
        for key, item in value.items():
            yield from _text_values(shape.value, item, f"{path}.{key}", name)
    elif kind == "string" and isinstance(value, str):
        yield path, name, value


def sandbox_error(operation: str, exc: Exception) -> HandlerError:
    """The error for a failure inside the embedded sandbox (moto) that is no AWS error response.

    moto raises its own exceptions (or a ``TypeError``) for requests it cannot model; the agent
    learns which operation failed and that the sandbox, not AWS, refused it.
    """
    detail = str(exc).splitlines()[0][:200] if str(exc) else ""
    return HandlerError(
        f"AWS `{operation}` failed in the embedded sandbox (moto raised `{type(exc).__name__}`"
        f"{': ' + detail if detail else ''}); the sandbox does not model this request: "
        "check the arguments (tokens, names, ARNs) or run it against real AWS"
    )
