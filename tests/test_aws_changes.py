"""AWS calls that change the estate, each on a fresh runtime and sandbox, through a real MCP session."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters
from moto import settings
from moto.core.authorization import ActionAuthenticatorMixin
from tests.aws_support import ARTIFACTS, call, make_tree, text_of
from tests.conftest import audit_events

from cedargate.audit.verify import verify_log
from cedargate.aws_sandbox import PROD_ACCOUNT, STAGING_ACCOUNT
from cedargate.config import load_config
from cedargate.runtime import build_runtime
from cedargate.server import build_server

pytestmark = pytest.mark.anyio


async def test_a_policy_that_allows_disclosure_reveals_the_secret(tmp_path: Path) -> None:
    runtime = build_runtime(load_config(make_tree(tmp_path, principal_team="secret-readers"), environ={}))
    try:
        result, event = await call(
            runtime, "aws_ssm_get_parameter", {"Name": "/acme/staging/checkout/db-password", "reveal": True}
        )
    finally:
        runtime.close()
    assert result.is_error is False, text_of(result)
    assert result.structured_content["result"]["value"] == "staging-Sup3r-s3cret-pw"
    assert event["arguments"]["reveal"] is True


async def test_stop_instances_is_denied_in_prod_and_allowed_in_staging(tmp_path: Path) -> None:
    runtime = build_runtime(load_config(make_tree(tmp_path), environ={}))
    try:
        async with Client(build_server(runtime)) as client:
            prod = (await client.call_tool("aws_ec2_describe_instances", {"account": PROD_ACCOUNT})).structured_content
            staging = (
                await client.call_tool("aws_ec2_describe_instances", {"account": STAGING_ACCOUNT})
            ).structured_content
            assert prod is not None and staging is not None
            prod_id, staging_id = prod["result"][0]["id"], staging["result"][0]["id"]
            denied = await client.call_tool(
                "aws_ec2_stop_instances", {"account": PROD_ACCOUNT, "InstanceIds": [prod_id]}
            )
            allowed = await client.call_tool(
                "aws_ec2_stop_instances", {"account": STAGING_ACCOUNT, "InstanceIds": [staging_id]}
            )
            after_prod = await client.call_tool(
                "aws_ec2_describe_instances", {"account": PROD_ACCOUNT, "InstanceIds": [prod_id]}
            )
            after_staging = await client.call_tool(
                "aws_ec2_describe_instances", {"account": STAGING_ACCOUNT, "InstanceIds": [staging_id]}
            )
    finally:
        runtime.close()
    assert denied.is_error is True
    assert "prod-writes-forbidden" in text_of(denied)
    assert allowed.is_error is False, text_of(allowed)
    assert allowed.structured_content["result"] == [{"id": staging_id, "previous": "running", "current": "stopping"}]
    assert after_prod.structured_content["result"][0]["state"] == "running"
    assert after_staging.structured_content["result"][0]["state"] == "stopped"
    events = audit_events(runtime.config.audit.path)
    stop_events = [e for e in events if e["tool"] == "aws_ec2_stop_instances"]
    assert [(e["environment"], e["outcome"]) for e in stop_events] == [("prod", "denied"), ("staging", "succeeded")]
    assert stop_events[0]["execution"] is None  # denied: no role was assumed, nothing ran
    assert stop_events[1]["execution"]["duty"] == "infra-operator"
    assert stop_events[1]["execution"]["assumed_role_arn"].startswith(
        f"arn:aws:sts::{STAGING_ACCOUNT}:assumed-role/cedargate-infra-operator/"
    )


async def test_a_result_over_its_size_cap_is_truncated_and_says_so(tmp_path: Path) -> None:
    config = make_tree(tmp_path)
    ec2 = tmp_path / "tools" / "aws" / "ec2.toml"
    ec2.write_text(
        ec2.read_text().replace(
            'operation = "DescribeInstances"', 'operation = "DescribeInstances"\nmax_result_bytes = 400', 1
        )
    )
    runtime = build_runtime(load_config(config, environ={}))
    try:
        result, event = await call(runtime, "aws_ec2_describe_instances", {"account": PROD_ACCOUNT})
    finally:
        runtime.close()
    payload = result.structured_content
    assert payload["truncated"] is True
    assert 1 <= len(payload["result"]) < 3
    assert len(json.dumps(payload["result"], separators=(",", ":"))) <= 400
    assert event["outcome"] == "succeeded"


async def test_every_curated_change_works_where_policy_allows_it(tmp_path: Path) -> None:
    config = make_tree(tmp_path)
    config.write_text(
        config.read_text() + '\n[[aws.accounts]]\nid = "123456789012"\nenvironment = "dev"\nalias = "dev"\n'
    )
    runtime = build_runtime(load_config(config, environ={}))
    dev_bucket = "acme-dev-artifacts-123456789012"
    try:
        async with Client(build_server(runtime)) as client:

            async def ok(tool: str, args: dict[str, Any]) -> Any:
                result = await client.call_tool(tool, args)
                assert result.is_error is False, f"{tool}: {text_of(result)}"
                return result.structured_content["result"]

            staging = await ok("aws_ec2_describe_instances", {})
            instance = staging[0]["id"]
            await ok("aws_ec2_stop_instances", {"InstanceIds": [instance]})
            started = await ok("aws_ec2_start_instances", {"InstanceIds": [instance]})
            assert started == [{"id": instance, "previous": "stopped", "current": "pending"}]
            await ok("aws_s3_put_object", {"Bucket": ARTIFACTS, "Key": "notes/agent.txt", "Body": "hello\n"})
            assert (await ok("aws_s3_get_object", {"Bucket": ARTIFACTS, "Key": "notes/agent.txt"}))["body"] == "hello\n"
            await ok(
                "aws_ssm_put_parameter", {"Name": "/acme/staging/checkout/mode", "Value": "safe", "Type": "String"}
            )
            updated = await ok(
                "aws_lambda_update_function_configuration", {"FunctionName": "checkout-api", "Timeout": 15}
            )
            assert updated["timeout"] == 15
            # Destructive changes: in dev they run; in staging they wait for an SRE's approval.
            dev_box = (await ok("aws_ec2_describe_instances", {"account": "123456789012"}))[0]["id"]
            terminated = await ok("aws_ec2_terminate_instances", {"account": "123456789012", "InstanceIds": [dev_box]})
            assert terminated[0]["current"] == "shutting-down"
            await ok(
                "aws_s3_delete_object", {"account": "123456789012", "Bucket": dev_bucket, "Key": "config/app.yaml"}
            )
            gone = await client.call_tool(
                "aws_s3_get_object", {"account": "123456789012", "Bucket": dev_bucket, "Key": "config/app.yaml"}
            )
            waiting = await client.call_tool("aws_s3_delete_object", {"Bucket": ARTIFACTS, "Key": "notes/agent.txt"})
    finally:
        runtime.close()
    assert "failed with `NoSuchKey`" in text_of(gone)
    assert waiting.is_error is True and "awaits approval by `sre`" in text_of(waiting)
    outcomes = [e["outcome"] for e in audit_events(runtime.config.audit.path)]
    assert outcomes[-2:] == ["failed", "approval_required"]
    assert verify_log(runtime.config.audit.path).ok


async def test_a_refused_assume_role_is_an_audited_tool_error_naming_the_duty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = build_runtime(load_config(make_tree(tmp_path), environ={}))
    try:
        seeded, _ = await call(runtime, "aws_sts_get_caller_identity", {})
        assert seeded.is_error is False
        # From here on moto checks credentials: the server's own `testing` key is unknown to IAM.
        monkeypatch.setattr(settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)
        monkeypatch.setattr(ActionAuthenticatorMixin, "request_count", 0)
        result, event = await call(runtime, "aws_logs_describe_log_groups", {})
    finally:
        runtime.close()
    assert result.is_error is True
    message = text_of(result)
    assert "cannot assume the role of duty `logs-reader`" in message
    assert "AWS error `InvalidClientTokenId`" in message
    assert event["outcome"] == "failed"
    assert event["execution"]["duty"] == "logs-reader"
    assert event["execution"]["aws_error_code"] == "InvalidClientTokenId"
    assert event["execution"]["role_arn"] == f"arn:aws:iam::{STAGING_ACCOUNT}:role/cedargate-logs-reader"


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_over_stdio_with_the_sandbox_a_prod_stop_is_denied_before_any_aws_call(tmp_path: Path, mode: str) -> None:
    config = make_tree(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CEDARGATE_", "AWS_"))}
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "cedargate", "--config", str(config), "serve", "--aws", "sandbox"],
        env=env,
    )
    async with Client(params, mode=mode) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        result = await client.call_tool(
            "aws_ec2_stop_instances", {"account": PROD_ACCOUNT, "InstanceIds": ["i-0123456789abcdef0"]}
        )
    stop = tools["aws_ec2_stop_instances"]
    assert stop.annotations is not None
    assert (stop.annotations.read_only_hint, stop.annotations.destructive_hint) == (False, False)
    assert stop.input_schema["properties"]["InstanceIds"]["maxItems"] == 10
    assert result.is_error is True
    assert "prod-writes-forbidden" in text_of(result)
    [event] = audit_events(tmp_path / "audit.jsonl")
    assert (event["outcome"], event["environment"], event["execution"]) == ("denied", "prod", None)
