"""A call runs only in the account and region its policy decided on, whatever its arguments name."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from moto.s3.models import s3_backends
from tests.aws_support import ARTIFACTS, call, make_tree, text_of

from cedargate.aws_model import operation_model
from cedargate.aws_sandbox import PROD_ACCOUNT, STAGING_ACCOUNT
from cedargate.config import load_config
from cedargate.errors import HandlerError
from cedargate.handlers.aws import refuse_foreign_arns
from cedargate.runtime import Runtime, build_runtime

pytestmark = pytest.mark.anyio

PROD_BUCKET = f"acme-prod-artifacts-{PROD_ACCOUNT}"
ACCESS_POINT = f"arn:aws:s3:ap-south-1:{PROD_ACCOUNT}:accesspoint/ap1"


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    runtime = build_runtime(load_config(make_tree(tmp_path), environ={}))
    yield runtime
    runtime.close()


def _refused(service: str, operation: str, params: dict[str, Any], region: str = "us-east-1") -> str:
    shape = operation_model(service, operation).input_shape
    with pytest.raises(HandlerError) as refused:
        refuse_foreign_arns(shape, params, STAGING_ACCOUNT, region, f"{service}:{operation}")
    return str(refused.value)


async def test_a_write_into_another_accounts_bucket_is_refused_and_writes_nothing(runtime: Runtime) -> None:
    args = {"account": STAGING_ACCOUNT, "Bucket": PROD_BUCKET, "Key": "qa/x", "Body": "via staging"}
    result, event = await call(runtime, "aws_s3_put_object", args)
    assert result.is_error is True
    assert "AWS `s3:PutObject` failed with `AccessDenied`" in text_of(result)
    assert event["environment"] == "staging" and event["execution"]["aws_error_code"] == "AccessDenied"
    assert "qa/x" not in s3_backends[PROD_ACCOUNT]["aws"].get_bucket(PROD_BUCKET).keys


async def test_the_calls_own_bucket_still_reads_and_writes(runtime: Runtime) -> None:
    put, _ = await call(runtime, "aws_s3_put_object", {"Bucket": ARTIFACTS, "Key": "qa/own", "Body": "mine"})
    got, _ = await call(runtime, "aws_s3_get_object", {"Bucket": ARTIFACTS, "Key": "qa/own"})
    assert put.is_error is False, text_of(put)
    assert got.structured_content["result"]["body"] == "mine"


async def test_an_access_point_arn_as_bucket_is_refused_before_any_policy_or_aws_call(runtime: Runtime) -> None:
    result, event = await call(runtime, "aws_s3_list_objects", {"account": STAGING_ACCOUNT, "Bucket": ACCESS_POINT})
    assert result.is_error is True
    assert "field `Bucket`" in text_of(result)
    assert event["outcome"] == "invalid_arguments" and event["decision"] is None


def test_an_arn_is_refused_as_a_bucket_even_where_a_manifest_sets_no_pattern() -> None:
    for arn in (
        ACCESS_POINT,
        f"arn:aws:s3-object-lambda:us-east-1:{STAGING_ACCOUNT}:accesspoint/ol",
        f"arn:aws:s3-outposts:eu-west-3:{PROD_ACCOUNT}:outpost/op-01234567890123456/accesspoint/x",
    ):
        assert "field `Bucket` takes a bucket name, not an ARN" in _refused("s3", "ListObjectsV2", {"Bucket": arn})


def test_an_arn_in_another_account_or_region_is_refused_naming_the_field_and_both_places() -> None:
    other_account = f"arn:aws:lambda:us-east-1:{PROD_ACCOUNT}:function:checkout-api"
    message = _refused("lambda", "GetFunctionConfiguration", {"FunctionName": other_account})
    assert f"field `FunctionName` names a resource in account `{PROD_ACCOUNT}`, region `us-east-1`" in message
    assert f"authorized for account `{STAGING_ACCOUNT}`, region `us-east-1`" in message
    other_region = f"arn:aws:lambda:eu-west-1:{STAGING_ACCOUNT}:function:checkout-api"
    assert "region `eu-west-1`" in _refused("lambda", "GetFunctionConfiguration", {"FunctionName": other_region})


def test_arns_in_the_calls_account_and_region_and_bodies_that_read_like_arns_pass() -> None:
    shape = operation_model("lambda", "GetFunctionConfiguration").input_shape
    own = f"arn:aws:lambda:us-east-1:{STAGING_ACCOUNT}:function:checkout-api"
    refuse_foreign_arns(shape, {"FunctionName": own}, STAGING_ACCOUNT, "us-east-1", "lambda:GetFunctionConfiguration")
    put = operation_model("s3", "PutObject").input_shape
    params = {"Bucket": "b", "Key": "k", "Body": ACCESS_POINT}  # a blob is data, not a target
    refuse_foreign_arns(put, params, STAGING_ACCOUNT, "us-east-1", "s3:PutObject")


def test_a_metric_query_in_another_account_is_refused() -> None:
    query = {"Id": "q", "Expression": "m1", "AccountId": PROD_ACCOUNT}
    message = _refused("cloudwatch", "GetMetricData", {"MetricDataQueries": [query]})
    assert f"field `MetricDataQueries[0].AccountId` names account `{PROD_ACCOUNT}`" in message


async def test_every_s3_call_names_the_calls_account_as_the_expected_bucket_owner(runtime: Runtime) -> None:
    sent: list[dict[str, Any]] = []
    clients = runtime.aws.client

    def recording(service: str, **kwargs: Any) -> Any:
        client = clients(service, **kwargs)
        record = lambda params, **_: sent.append(dict(params))  # noqa: E731
        client.meta.events.register("before-parameter-build.s3", record, unique_id="test-recorder")
        return client

    runtime.aws.ensure_ready()  # seeding's own calls are not the agent's
    runtime.aws.client = recording  # type: ignore[method-assign]
    await call(runtime, "aws_s3_get_object", {"Bucket": ARTIFACTS, "Key": "config/app.yaml"})
    await call(runtime, "aws_s3_list_buckets", {})
    assert [p.get("ExpectedBucketOwner") for p in sent] == [STAGING_ACCOUNT, None]  # ListBuckets has no such member


def test_s3_clients_never_follow_an_arns_region(runtime: Runtime) -> None:
    client = runtime.aws.client("s3", agent="t")
    assert client.meta.config.s3["use_arn_region"] is False


async def test_a_sandbox_failure_names_the_operation_and_what_to_do(runtime: Runtime) -> None:
    args = {"Bucket": ARTIFACTS, "MaxKeys": 2, "ContinuationToken": "garbage-token"}
    result, event = await call(runtime, "aws_s3_list_objects", args)
    assert result.is_error is True
    message = text_of(result)
    assert "AWS `s3:ListObjectsV2` failed in the embedded sandbox (moto raised `" in message
    assert "see the server log" not in message and "check the arguments" in message
    assert event["outcome"] == "failed" and event["execution"]["aws_error_code"]
