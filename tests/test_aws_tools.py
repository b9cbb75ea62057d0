"""The curated AWS pack through a real MCP client session, against the seeded sandbox accounts.

The tests here only read (or are refused before anything runs), so they share one runtime and
one seeded sandbox; tests that change the estate are in ``test_aws_changes.py``.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from botocore.client import BaseClient
from mcp import Client
from moto.sts.models import sts_backends
from tests.aws_support import ARTIFACTS, NOW, SESSION, call, make_tree, text_of

from cedargate import progress
from cedargate.audit.verify import verify_log
from cedargate.aws_sandbox import PROD_ACCOUNT, STAGING_ACCOUNT
from cedargate.config import load_config
from cedargate.runtime import Runtime, build_runtime
from cedargate.server import build_server

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    """One runtime (and one seeded sandbox) for the tests that only read."""
    config = make_tree(tmp_path_factory.mktemp("aws"))
    runtime = build_runtime(load_config(config, environ={}))
    yield runtime
    runtime.close()


READS = [
    ("aws_sts_get_caller_identity", {}, "Arn"),
    ("aws_s3_list_buckets", {}, "name"),
    ("aws_s3_list_objects", {"Bucket": ARTIFACTS, "Prefix": "releases/"}, "objects"),
    ("aws_s3_get_object", {"Bucket": ARTIFACTS, "Key": "config/app.yaml"}, "body"),
    ("aws_ec2_describe_instances", {"account": PROD_ACCOUNT}, "state"),
    ("aws_logs_describe_log_groups", {"logGroupNamePrefix": "/aws/lambda/"}, "groups"),
    ("aws_logs_filter_log_events", {"logGroupName": "/aws/lambda/checkout-api", "filterPattern": "ERROR"}, "events"),
    ("aws_cloudtrail_lookup_events", {"MaxResults": 5}, "events"),
    ("aws_lambda_list_functions", {}, "functions"),
    ("aws_lambda_get_function_configuration", {"FunctionName": "checkout-api"}, "timeout"),
    (
        "aws_cloudwatch_get_metric_data",
        {
            "MetricDataQueries": [
                {
                    "Id": "cpu",
                    "MetricStat": {
                        "Metric": {"Namespace": "AWS/EC2", "MetricName": "CPUUtilization"},
                        "Period": 300,
                        "Stat": "Average",
                    },
                }
            ],
            "StartTime": (NOW - timedelta(hours=2)).isoformat(),
            "EndTime": (NOW + timedelta(minutes=10)).isoformat(),
        },
        "values",
    ),
    ("aws_ssm_get_parameter", {"Name": "/acme/staging/checkout/feature-flags"}, "version"),
]


@pytest.mark.parametrize(("tool", "args", "key"), READS, ids=[r[0] for r in READS])
async def test_every_curated_read_works_against_the_sandbox_and_is_audited_with_its_duty(
    shared: Runtime, tool: str, args: dict[str, Any], key: str
) -> None:
    result, event = await call(shared, tool, args)
    assert result.is_error is False, text_of(result)
    assert key in json.dumps(result.structured_content["result"])
    assert event["tool"] == tool
    assert event["outcome"] == "succeeded"
    manifest = shared.catalog.tools[tool]
    assert event["execution"]["duty"] == manifest.duty
    assert event["execution"]["role_arn"].endswith(f":role/cedargate-{manifest.duty}")
    assert event["execution"]["role_session_name"] == SESSION


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_calls_run_as_the_duty_role_assumed_in_the_target_account(shared: Runtime, mode: str) -> None:
    result, event = await call(shared, "aws_sts_get_caller_identity", {"account": PROD_ACCOUNT}, mode)
    identity = result.structured_content["result"]
    assert identity["Account"] == PROD_ACCOUNT
    assert identity["Arn"] == f"arn:aws:sts::{PROD_ACCOUNT}:assumed-role/cedargate-aws-reader/{SESSION}"
    assert event["execution"]["assumed_role_arn"] == identity["Arn"]
    assert event["resource"] == {"type": "AwsAccount", "id": PROD_ACCOUNT}
    assert event["environment"] == "prod"
    # moto's own record of the AssumeRole call: the duty's role and the session name.
    assumed = [(r.role_arn, r.session_name) for r in sts_backends[PROD_ACCOUNT]["aws"].assumed_roles]
    assert (f"arn:aws:iam::{PROD_ACCOUNT}:role/cedargate-aws-reader", SESSION) in assumed


async def test_assume_role_carries_session_tags_naming_agent_user_team_and_task(shared: Runtime) -> None:
    await call(shared, "aws_lambda_list_functions", {"account": STAGING_ACCOUNT})
    result, _ = await call(
        shared,
        "aws_cloudtrail_lookup_events",
        {"LookupAttributes": [{"AttributeKey": "EventName", "AttributeValue": "AssumeRole"}], "MaxResults": 50},
    )
    details = [json.loads(e["detail"]) for e in result.structured_content["result"]["events"]]
    reader = next(d for d in details if d["requestParameters"]["RoleArn"].endswith("role/cedargate-aws-reader"))
    params = reader["requestParameters"]
    assert params["RoleSessionName"] == SESSION
    assert {t["Key"]: t["Value"] for t in params["Tags"]} == {
        "cedargate:agent": "codex-demo",
        "cedargate:user": "alice",
        "cedargate:team": "storefront",
        "cedargate:task": "demo-timeout",
    }
    assert re.search(r"cedargate/\S+ agent/codex-demo", reader["userAgent"])


async def test_calls_made_as_a_duty_appear_in_the_trail_under_the_role_session(shared: Runtime) -> None:
    await call(shared, "aws_ec2_describe_instances", {})
    result, _ = await call(
        shared,
        "aws_cloudtrail_lookup_events",
        {"LookupAttributes": [{"AttributeKey": "EventName", "AttributeValue": "DescribeInstances"}]},
    )
    [event, *_] = result.structured_content["result"]["events"]
    assert event["user"] == SESSION
    detail = json.loads(event["detail"])
    assert detail["userIdentity"]["arn"].endswith(f"assumed-role/cedargate-aws-reader/{SESSION}")


async def test_credentials_never_reach_the_agent_or_the_audit_trail(shared: Runtime) -> None:
    result, _ = await call(shared, "aws_sts_get_caller_identity", {})
    trail_text = shared.config.audit.path.read_text()
    for text in (text_of(result), trail_text):
        assert "SecretAccessKey" not in text
        assert "SessionToken" not in text
        assert not re.search(r"\bASIA[0-9A-Z]{16}\b", text)


async def test_the_projection_keeps_only_what_the_manifest_names(shared: Runtime) -> None:
    result, _ = await call(shared, "aws_ec2_describe_instances", {"account": PROD_ACCOUNT})
    instances = result.structured_content["result"]
    assert len(instances) == 3
    assert {i["name"] for i in instances} == {"prod-web-1", "prod-web-2", "prod-worker-1"}
    assert set(instances[0]) == {"id", "name", "type", "state", "zone", "launched", "private_ip"}


async def test_an_object_over_the_read_cap_is_refused_and_audited(shared: Runtime) -> None:
    result, event = await call(shared, "aws_s3_get_object", {"Bucket": ARTIFACTS, "Key": "exports/orders-full.csv"})
    assert result.is_error is True
    assert "over this tool's 262144-byte cap" in text_of(result)
    assert event["outcome"] == "failed"


async def test_an_aws_error_is_a_tool_error_naming_operation_and_code_and_is_audited(shared: Runtime) -> None:
    result, event = await call(shared, "aws_s3_get_object", {"Bucket": "acme-no-such-bucket", "Key": "x"})
    assert result.is_error is True
    message = text_of(result)
    assert "AWS `s3:GetObject` failed with `NoSuchBucket`" in message
    assert "Traceback" not in message
    assert event["outcome"] == "failed"
    assert event["execution"]["aws_error_code"] == "NoSuchBucket"
    assert verify_log(shared.config.audit.path).ok


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ({"InstanceIds": ["i-0123456789abcdef0"] * 11}, "InstanceIds"),
        ({"InstanceIds": ["../../etc"]}, "InstanceIds.0"),
        ({"InstanceIds": ["i-0123456789abcdef0"], "Force": True}, "`Force`"),
        ({"InstanceIds": ["i-0123456789abcdef0"], "account": "12"}, "account"),
    ],
)
async def test_the_derived_schema_refuses_bad_parameters_before_any_aws_call(
    shared: Runtime, args: dict[str, Any], field: str
) -> None:
    assumed_before = len(sts_backends[STAGING_ACCOUNT]["aws"].assumed_roles)
    result, event = await call(shared, "aws_ec2_stop_instances", args)
    assert result.is_error is True
    assert field in text_of(result)
    assert event["outcome"] == "invalid_arguments"
    assert event["execution"] is None
    assert len(sts_backends[STAGING_ACCOUNT]["aws"].assumed_roles) == assumed_before


@pytest.mark.parametrize(
    ("tool", "args", "expected"),
    [
        (
            "aws_ec2_describe_instances",
            {"region": "xx-nowhere-9"},
            "field `region`: `xx-nowhere-9` is not an AWS region",
        ),
        (
            "aws_cloudtrail_lookup_events",
            {"StartTime": "yesterday"},
            "field `StartTime`: `\"yesterday\"` is not a 'date-time'",
        ),
        (
            "aws_cloudtrail_lookup_events",
            {"StartTime": "2026-13-45T00:00:00Z"},
            "field `StartTime`: `\"2026-13-45T00:00:00Z\"` is not a 'date-time'",
        ),
    ],
    ids=["unknown-region", "words-for-a-time", "no-such-month"],
)
async def test_a_region_or_a_time_aws_cannot_take_is_refused_before_any_aws_call(
    shared: Runtime, tool: str, args: dict[str, Any], expected: str
) -> None:
    assumed_before = len(sts_backends[STAGING_ACCOUNT]["aws"].assumed_roles)
    result, event = await call(shared, tool, args)
    assert result.is_error is True
    assert expected in text_of(result)
    assert event["outcome"] == "invalid_arguments" and event["execution"] is None
    assert len(sts_backends[STAGING_ACCOUNT]["aws"].assumed_roles) == assumed_before


async def test_secret_values_are_redacted_and_revealing_them_is_denied_by_default(shared: Runtime) -> None:
    name = "/acme/staging/checkout/db-password"
    result, _ = await call(shared, "aws_ssm_get_parameter", {"Name": name})
    assert result.structured_content["result"]["value"] == "[REDACTED]"
    assert result.structured_content["result"]["type"] == "SecureString"
    assert "Sup3r" not in shared.config.audit.path.read_text()
    revealed, event = await call(shared, "aws_ssm_get_parameter", {"Name": name, "reveal": True})
    assert revealed.is_error is True
    assert "secret-reveal" in text_of(revealed)
    assert event["outcome"] == "denied"


async def test_the_first_aws_call_says_the_sandbox_is_being_seeded_and_later_ones_do_not(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    runtime = build_runtime(load_config(make_tree(tmp_path_factory.mktemp("fresh")), environ={}))
    heard: list[str | None] = []

    async def report(progress: float, total: float | None, message: str | None) -> None:
        heard.append(message)

    try:
        async with Client(build_server(runtime)) as client:
            first = await client.call_tool("aws_sts_get_caller_identity", {}, progress_callback=report)
            seeded = list(heard)
            second = await client.call_tool("aws_sts_get_caller_identity", {}, progress_callback=report)
    finally:
        runtime.close()
    assert first.is_error is False and second.is_error is False
    # (A request slower than the 5 s heartbeat would add "waiting for AWS" notes: not about seeding.)
    assert len([m for m in seeded if "seeding the embedded sandbox" in (m or "")]) == 1
    assert not any("seeding" in (m or "") for m in heard[len(seeded) :])


def _slow_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """Heartbeats 5 ms apart, and AWS requests that take 0.1 s whatever the machine's speed."""
    monkeypatch.setattr(progress, "HEARTBEAT_EVERY_S", 0.005)
    original = BaseClient._make_api_call

    def slow_call(self: BaseClient, operation: str, params: dict[str, Any]) -> Any:
        time.sleep(0.1)
        return original(self, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", slow_call)


@pytest.mark.parametrize("asks", [False, True])
async def test_a_handshake_era_client_gets_a_heartbeat_only_when_it_asks_for_progress(
    shared: Runtime, heartbeat_threads: list[str], monkeypatch: pytest.MonkeyPatch, asks: bool
) -> None:
    """Without a progress token nobody listens: no heartbeat thread is started for the call."""
    await call(shared, "aws_sts_get_caller_identity", {})  # the sandbox is seeded before the call is watched
    _slow_aws(monkeypatch)
    heartbeat_threads.clear()
    heard: list[str | None] = []

    async def report(done: float, total: float | None, message: str | None) -> None:
        heard.append(message)

    async with Client(build_server(shared), mode="legacy") as client:
        result = await client.call_tool("aws_sts_get_caller_identity", {}, progress_callback=report if asks else None)
    assert result.is_error is False
    assert ("cedargate-heartbeat" in heartbeat_threads) is asks
    assert bool(heard) is asks


async def test_a_client_asking_for_progress_hears_a_running_aws_call_is_alive(
    shared: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A heartbeat from its own thread reaches the client through the real session (5 s apart; here 5 ms)."""
    await call(shared, "aws_sts_get_caller_identity", {})  # the sandbox is seeded before the call is timed
    _slow_aws(monkeypatch)
    heard: list[str | None] = []

    async def report(done: float, total: float | None, message: str | None) -> None:
        heard.append(message)

    async with Client(build_server(shared)) as client:
        result = await client.call_tool("aws_sts_get_caller_identity", {}, progress_callback=report)
    assert result.is_error is False
    assert heard and all("waiting for AWS `sts:GetCallerIdentity`" in (m or "") for m in heard)
