"""The sandbox's trail: what CloudTrail would have recorded, served to ``cloudtrail:LookupEvents``.

moto does not implement ``LookupEvents``. In the sandbox, cedargate records the calls its
own clients make (who, which operation, the request parameters, the error code) plus a few
seeded human events, and answers ``LookupEvents`` from that record through a botocore
``before-call`` hook, so the tool works offline exactly as it does against real AWS.
"""

from __future__ import annotations

import copy
import json
import threading
import uuid
from collections import defaultdict, deque
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from botocore.awsrequest import AWSResponse
from botocore.utils import parse_timestamp

from cedargate.redact import redact_value

if TYPE_CHECKING:
    from cedargate.aws_session import TrailIdentity

_READ_PREFIXES: Final = ("Describe", "Get", "List", "Lookup", "Filter", "Head", "Search")
_PARAMS_KEY: Final = "cedargate_api_params"
_MAX_RESULTS: Final = 50
MAX_EVENTS: Final = 10_000
_MAX_PARAMETER_CHARS: Final = 512
_ATTRIBUTES: Final = {
    "EventId": lambda e: [e["EventId"]],
    "EventName": lambda e: [e["EventName"]],
    "Username": lambda e: [e.get("Username", "")],
    "EventSource": lambda e: [e["EventSource"]],
    "ReadOnly": lambda e: [e["ReadOnly"]],
    "AccessKeyId": lambda e: [e.get("AccessKeyId", "")],
    "ResourceName": lambda e: [r["ResourceName"] for r in e.get("Resources", [])],
    "ResourceType": lambda e: [r["ResourceType"] for r in e.get("Resources", [])],
}


class SandboxTrail:
    """Events per account, newest last, the oldest dropped past ``MAX_EVENTS``; thread-safe."""

    def __init__(self) -> None:
        self._events: dict[str, deque[dict[str, Any]]] = defaultdict(lambda: deque(maxlen=MAX_EVENTS))
        self._lock = threading.Lock()

    def record(
        self,
        account: str,
        *,
        name: str,
        source: str,
        username: str,
        identity_arn: str,
        request_parameters: Mapping[str, Any] | None = None,
        resources: tuple[tuple[str, str], ...] = (),
        error_code: str | None = None,
        user_agent: str = "",
        time: datetime | None = None,
    ) -> None:
        """Add one event in CloudTrail's ``LookupEvents`` shape."""
        when = time or datetime.now(UTC)
        event_id = str(uuid.uuid4())
        detail = {
            "eventVersion": "1.09",
            "eventID": event_id,
            "eventTime": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "eventName": name,
            "eventSource": source,
            "recipientAccountId": account,
            "userIdentity": {
                "type": "AssumedRole" if ":assumed-role/" in identity_arn else "IAMUser",
                "arn": identity_arn,
            },
            "userAgent": user_agent,
            "requestParameters": _request_parameters(request_parameters or {}),
            "errorCode": error_code,
        }
        event = {
            "EventId": event_id,
            "EventName": name,
            "ReadOnly": "true" if name.startswith(_READ_PREFIXES) else "false",
            "EventTime": when,
            "EventSource": source,
            "Username": username,
            "Resources": [{"ResourceType": t, "ResourceName": n} for t, n in resources],
            "CloudTrailEvent": json.dumps(detail, sort_keys=True),
        }
        with self._lock:
            self._events[account].append(event)

    def events(self, account: str) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._events.get(account, []))

    def lookup(self, account: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """A ``LookupEvents`` response: attribute filter, time window, newest first, at most MaxResults."""
        start = _time(params.get("StartTime"))
        end = _time(params.get("EndTime"))
        attributes = list(params.get("LookupAttributes") or [])
        limit = min(int(params.get("MaxResults") or _MAX_RESULTS), _MAX_RESULTS)
        found = []
        for event in reversed(self.events(account)):
            if start is not None and event["EventTime"] < start:
                continue
            if end is not None and event["EventTime"] > end:
                continue
            if not all(_matches(event, a) for a in attributes):
                continue
            found.append(copy.deepcopy(event))
            if len(found) >= limit:
                break
        return {"Events": found}

    def instrument(self, client: Any, identity: TrailIdentity) -> None:
        """Record every call ``client`` makes; answer its ``LookupEvents`` from this trail."""
        events = client.meta.events
        user_agent = client.meta.config.user_agent_extra or ""

        def stash(params: Mapping[str, Any], context: dict[str, Any], **_: Any) -> None:
            context[_PARAMS_KEY] = copy.deepcopy(dict(params))

        def lookup(context: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
            parsed = self.lookup(identity.account, context.get(_PARAMS_KEY, {}))
            parsed["ResponseMetadata"] = {"HTTPStatusCode": 200, "RequestId": str(uuid.uuid4())}
            return AWSResponse("https://cloudtrail.sandbox", 200, {}, None), parsed

        def after(model: Any, http_response: Any, parsed: Mapping[str, Any], context: dict[str, Any], **_: Any) -> None:
            error = parsed.get("Error", {}).get("Code") if http_response.status_code >= 300 else None
            self.record(
                identity.account,
                name=model.name,
                source=f"{model.service_model.endpoint_prefix}.amazonaws.com",
                username=identity.username,
                identity_arn=identity.arn,
                request_parameters=context.get(_PARAMS_KEY, {}),
                error_code=error,
                user_agent=user_agent,
            )

        events.register("before-parameter-build", stash)
        events.register("before-call.cloudtrail.LookupEvents", lookup)
        events.register("after-call", after)


def _matches(event: Mapping[str, Any], attribute: Mapping[str, Any]) -> bool:
    getter = _ATTRIBUTES.get(str(attribute.get("AttributeKey")))
    return getter is not None and str(attribute.get("AttributeValue")) in getter(event)


def _time(value: Any) -> datetime | None:
    if value is None:
        return None
    moment = value if isinstance(value, datetime) else parse_timestamp(value)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _request_parameters(params: Mapping[str, Any]) -> Any:
    """As CloudTrail keeps them: secure values hidden, long values cut, secret shapes redacted."""
    kept = {k: v for k, v in params.items() if k != "Body"}
    if kept.get("Type") == "SecureString" and "Value" in kept:
        kept["Value"] = "HIDDEN_DUE_TO_SECURITY_REASONS"
    return _cut(redact_value(json.loads(json.dumps(kept, default=str))))


def _cut(value: Any) -> Any:
    if isinstance(value, str) and len(value) > _MAX_PARAMETER_CHARS:
        return value[:_MAX_PARAMETER_CHARS] + "..."
    if isinstance(value, dict):
        return {k: _cut(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_cut(v) for v in value]
    return value
