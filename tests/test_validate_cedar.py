"""Arguments that fit the schema must fit Cedar too: refused or normalized at validation, never a policy failure."""

from __future__ import annotations

from typing import Any

import pytest
from tests.conftest import audit_events

from cedargate.audit.event import Outcome
from cedargate.catalog import load_catalog
from cedargate.demo import project_root
from cedargate.errors import ToolInputError
from cedargate.manifest import ToolManifest
from cedargate.pipeline import CallRequest
from cedargate.runtime import Runtime
from cedargate.session import SessionState
from cedargate.validate import validate_arguments

pytestmark = pytest.mark.anyio


def _manifest(name: str) -> ToolManifest:
    return load_catalog(project_root() / "tools").tools[name]


async def _call(runtime: Runtime, tool: str, args: dict[str, Any]) -> Any:
    assert runtime.principal is not None
    request = CallRequest(tool=tool, arguments=args, principal=runtime.principal, session=SessionState())
    return await runtime.pipeline.call(request)


def test_an_integer_sent_as_an_integral_float_reaches_cedar_as_an_integer() -> None:
    args = validate_arguments(_manifest("aws_s3_list_objects"), {"Bucket": "acme-bucket", "MaxKeys": 5.0})
    assert args["MaxKeys"] == 5 and type(args["MaxKeys"]) is int


def test_an_integral_float_nested_in_a_list_is_made_an_integer_too() -> None:
    query = {"Id": "q", "Expression": "m1", "Period": 60.0}
    args = validate_arguments(
        _manifest("aws_cloudwatch_get_metric_data"),
        {"MetricDataQueries": [query], "StartTime": "2026-11-26T00:00:00Z", "EndTime": "2026-11-26T01:00:00Z"},
    )
    assert type(args["MetricDataQueries"][0]["Period"]) is int


def test_a_lone_surrogate_is_refused_naming_the_field_without_echoing_it() -> None:
    with pytest.raises(ToolInputError) as refused:
        validate_arguments(_manifest("aws_s3_get_object"), {"Bucket": "acme-bucket", "Key": "config/\udcffapp.yaml"})
    message = str(refused.value)
    assert "field `Key`: text holds a lone surrogate (`\\udcff` at character 7)" in message
    message.encode("utf-8")  # the message itself is valid Unicode: the audit trail can carry it


def test_a_lone_surrogate_in_a_nested_key_is_refused() -> None:
    with pytest.raises(ToolInputError, match=r"field `Filters.0.\(a key\)`"):
        validate_arguments(_manifest("aws_ec2_describe_instances"), {"Filters": [{"Name\ud800": "x"}]})


def test_an_integer_beyond_a_cedar_long_is_refused_naming_the_field() -> None:
    with pytest.raises(ToolInputError, match="field `max_count`: the integer is outside the 64-bit range"):
        validate_arguments(_manifest("repo_log"), {"repository": "acme/web", "max_count": 2**64})


async def test_schema_valid_arguments_cedar_cannot_take_end_as_invalid_arguments_not_a_policy_failure(
    runtime: Runtime,
) -> None:
    surrogate = await _call(runtime, "repo_read_file", {"repository": "acme/web", "path": "README\ud800.md"})
    as_float = await _call(runtime, "repo_log", {"repository": "acme/web", "max_count": 2.0})
    assert surrogate.outcome is Outcome.INVALID_ARGUMENTS
    assert "field `path`" in (surrogate.message or "")
    assert as_float.outcome is Outcome.SUCCEEDED, as_float.message
    events = audit_events(runtime.config.audit.path)
    assert [e["outcome"] for e in events] == ["invalid_arguments", "succeeded"]
    assert events[1]["arguments"]["max_count"] == 2
