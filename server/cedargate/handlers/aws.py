"""The AWS handler: one boto3 operation per manifest, run as the manifest's duty identity.

The agent's arguments (minus the account, the region and a reveal flag) and the admin's
fixed parameters become the operation's parameters. The call runs with the credentials of
the duty role assumed for this principal; the audit event records the duty, the role and
the session (``HandlerCall.execution``). AWS errors become tool errors naming the operation
and the AWS error code, recorded in the audit event too; no stack trace or credential leaks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botocore import xform_name
from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from cedargate.aws_duty import AssumeRoleError, DutySessions
from cedargate.aws_result import read_bodies, shape_result
from cedargate.aws_schema import REGION_ARGUMENT
from cedargate.aws_session import AwsClients
from cedargate.config import AwsDutyConfig
from cedargate.errors import HandlerError
from cedargate.handlers import Handler, HandlerCall, HandlerFamily
from cedargate.manifest import AwsHandlerSpec, ToolManifest
from cedargate.progress import heartbeat


class AwsHandlers(HandlerFamily):
    """Runs ``service.operation`` with the configured backend's clients, as the manifest's duty."""

    kind = "aws"

    def __init__(self, clients: AwsClients | None, duties: Mapping[str, AwsDutyConfig] | None = None) -> None:
        self._clients = clients
        self._duties = dict(duties if duties is not None else (clients.config.duties if clients else {}))
        self._sessions = DutySessions(clients, self._duties) if clients is not None else None

    def check(self, manifest: ToolManifest) -> None:
        """Service, operation and parameters are checked when the manifest's schema is derived."""
        if not isinstance(manifest.handler, AwsHandlerSpec):
            raise ValueError("field `handler`: not an AWS handler")
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
        reserved = {manifest.resource.argument, REGION_ARGUMENT}
        if spec.secrets is not None:
            reserved.add(spec.secrets.reveal_argument)

        def run(call: HandlerCall) -> dict[str, Any]:
            account = call.resource.ref.id
            region = str(call.args.get(REGION_ARGUMENT) or clients.region)
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
            params = {k: v for k, v in call.args.items() if k not in reserved}
            params.update(spec.fixed)  # the admin's values win; the schema already refuses them from agents
            try:
                with heartbeat(call.progress, f"AWS `{operation}`"):
                    response = getattr(client, method)(**params)
            except ClientError as exc:
                error = exc.response.get("Error", {})
                code = str(error.get("Code") or "Unknown")
                call.execution["aws_error_code"] = code
                call.execution["aws_request_id"] = exc.response.get("ResponseMetadata", {}).get("RequestId")
                raise HandlerError(f"AWS `{operation}` failed with `{code}`: {error.get('Message', '')}") from exc
            except ParamValidationError as exc:
                call.execution["aws_error_code"] = "ParamValidation"
                raise HandlerError(f"AWS `{operation}` refused the parameters: {exc}") from exc
            except BotoCoreError as exc:
                call.execution["aws_error_code"] = type(exc).__name__
                raise HandlerError(f"AWS `{operation}` failed: {exc}") from exc
            call.execution["aws_request_id"] = response.get("ResponseMetadata", {}).get("RequestId")
            response = read_bodies(response, spec.max_body_bytes, operation)
            reveal = spec.secrets is not None and call.args.get(spec.secrets.reveal_argument) is True
            result, truncated = shape_result(spec, response, reveal)
            return {"account": account, "region": region, "result": result, "truncated": truncated}

        return run
