"""The AWS handler: one boto3 operation per manifest, its result projected and made JSON-ready.

The agent's arguments (minus the one naming the account) become the operation's parameters;
a manifest's ``handler.result`` JMESPath keeps only what the agent needs.
"""

from __future__ import annotations

import json
from typing import Any

import botocore.session
import jmespath
from botocore import xform_name
from botocore.exceptions import BotoCoreError, ClientError
from botocore.exceptions import UnknownServiceError as BotoUnknownServiceError

from cedargate.aws_session import AwsClients
from cedargate.errors import HandlerError
from cedargate.handlers import Handler, HandlerCall, HandlerFamily
from cedargate.manifest import AwsHandlerSpec, ToolManifest


class AwsHandlers(HandlerFamily):
    """Runs ``service.operation`` with the configured backend's clients."""

    kind = "aws"

    def __init__(self, clients: AwsClients | None) -> None:
        self._clients = clients

    def check(self, manifest: ToolManifest) -> None:
        spec = manifest.handler
        if not isinstance(spec, AwsHandlerSpec):
            raise ValueError("field `handler`: not an AWS handler")
        if manifest.resource.kind != "aws_account":
            raise ValueError('field `resource.kind`: AWS operations need `resource.kind = "aws_account"`')
        model = _service_model(spec.service)
        if spec.operation not in model.operation_names:
            raise ValueError(f"field `handler.operation`: `{spec.service}` has no operation `{spec.operation}`")
        if spec.result is not None:
            try:
                jmespath.compile(spec.result)
            except jmespath.exceptions.JMESPathError as exc:
                raise ValueError(f"field `handler.result`: not a JMESPath expression: {exc}") from exc

    def handler_for(self, manifest: ToolManifest) -> Handler:
        spec = manifest.handler
        if not isinstance(spec, AwsHandlerSpec):
            raise TypeError(f"tool `{manifest.name}` has no AWS handler spec")
        method = xform_name(spec.operation)
        projection = jmespath.compile(spec.result) if spec.result else None
        account_argument = manifest.resource.argument
        clients = self._clients
        if clients is None:
            raise TypeError("AWS handlers were built without clients: they can check manifests only")

        def run(call: HandlerCall) -> dict[str, Any]:
            params = {k: v for k, v in call.args.items() if k != account_argument}
            try:
                response = getattr(clients.client(spec.service), method)(**params)
            except ClientError as exc:
                error = exc.response.get("Error", {})
                raise HandlerError(
                    f"AWS {spec.service}:{spec.operation} failed: {error.get('Code')}: {error.get('Message')}"
                ) from exc
            except BotoCoreError as exc:
                raise HandlerError(f"AWS {spec.service}:{spec.operation} failed: {exc}") from exc
            response.pop("ResponseMetadata", None)
            result = projection.search(response) if projection else response
            return {"account": call.resource.ref.id, "result": json.loads(json.dumps(result, default=str))}

        return run


_botocore = botocore.session.get_session()


def _service_model(service: str) -> Any:
    try:
        return _botocore.get_service_model(service)
    except BotoUnknownServiceError as exc:
        raise ValueError(f"field `handler.service`: unknown AWS service `{service}`") from exc
