"""A believable estate for a sandbox account: instances, buckets, logs, functions, metrics, trail.

What is seeded depends on the account's environment: prod runs more, staging is smaller and
holds a large export (to show the read cap), and both have a checkout service whose log
group holds an error burst twenty minutes ago. Every duty role of the config is created in
every account, trusting the sandbox's own identity.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from cedargate.aws_session import SANDBOX_ACCOUNT, AwsClients, AwsCredentials
from cedargate.aws_trail import SandboxTrail
from cedargate.config import AwsAccountConfig, AwsDutyConfig

AMI: Final = "ami-760aaa0f"  # an Amazon Linux image moto ships
SEEDER_ROLE: Final = "cedargate-sandbox-seeder"
LAMBDA_ROLE: Final = "checkout-api-lambda"
_INSTANCES: Final = {
    "prod": (("web-1", "m6i.large"), ("web-2", "m6i.large"), ("worker-1", "c6i.xlarge")),
    "staging": (("web-1", "t3.medium"), ("worker-1", "t3.large")),
}
_FUNCTIONS: Final = ("checkout-api", "image-resizer")


def seed_account(
    clients: AwsClients, account: AwsAccountConfig, duties: Mapping[str, AwsDutyConfig], trail: SandboxTrail
) -> None:
    """Create the duty roles and the estate of ``account``; runs once per sandbox."""
    credentials = _seeder_credentials(clients, account.id)

    def client(service: str) -> Any:
        return clients.client(service, credentials=credentials, agent="sandbox-seeder")

    env = account.environment
    if _already_seeded(client("iam")):
        return
    role_arns = _create_duty_roles(client("iam"), account.id, duties)
    _create_instances(client("ec2"), env)
    _create_buckets(client("s3"), env, account.id)
    _create_logs(client("logs"), env)
    _create_functions(client("lambda"), env, role_arns.get("lambda", ""))
    _create_metrics(client("cloudwatch"), client("ec2"))
    _create_parameters(client("ssm"), env)
    _seed_trail(trail, account.id, env)


def _already_seeded(iam: Any) -> bool:
    """moto state outlives a sandbox when another one is active in the process: seed once."""
    try:
        iam.get_role(RoleName=LAMBDA_ROLE)
    except iam.exceptions.NoSuchEntityException:
        return False
    return True


def _seeder_credentials(clients: AwsClients, account: str) -> AwsCredentials:
    sts = clients.client("sts", agent="sandbox-seeder")
    response = sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/{SEEDER_ROLE}", RoleSessionName="sandbox-seed")
    c = response["Credentials"]
    return AwsCredentials(c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"], c["Expiration"])


def _create_duty_roles(iam: Any, account: str, duties: Mapping[str, AwsDutyConfig]) -> dict[str, str]:
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{SANDBOX_ACCOUNT}:root"},
                "Action": ["sts:AssumeRole", "sts:TagSession"],
            }
        ],
    }
    arns: dict[str, str] = {}
    for name, duty in duties.items():
        arn = duty.role_for(name, account)
        if arn.split(":")[4] != account:
            continue
        path_and_name = arn.split(":role/", 1)[1]
        role_name = path_and_name.rsplit("/", 1)[-1]
        path = "/" + path_and_name[: -len(role_name)] if "/" in path_and_name else "/"
        iam.create_role(
            RoleName=role_name,
            Path=path,
            AssumeRolePolicyDocument=json.dumps(trust),
            Description=duty.description or f"cedargate duty `{name}`",
            Tags=[{"Key": "cedargate:duty", "Value": name}],
        )
    role = iam.create_role(
        RoleName=LAMBDA_ROLE,
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
                ],
            }
        ),
    )
    arns["lambda"] = role["Role"]["Arn"]
    return arns


def _create_instances(ec2: Any, env: str) -> None:
    for name, kind in _INSTANCES.get(env, (("dev-box", "t3.small"),)):
        tags = [
            {"Key": "Name", "Value": f"{env}-{name}"},
            {"Key": "env", "Value": env},
            {"Key": "team", "Value": "storefront"},
        ]
        ec2.run_instances(
            ImageId=AMI,
            MinCount=1,
            MaxCount=1,
            InstanceType=kind,
            TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
        )


def _create_buckets(s3: Any, env: str, account: str) -> None:
    artifacts = f"acme-{env}-artifacts-{account}"
    s3.create_bucket(Bucket=artifacts)
    s3.put_object(
        Bucket=artifacts, Key="releases/2026-11-20/manifest.json", Body=json.dumps({"version": "4.18.2", "env": env})
    )
    s3.put_object(Bucket=artifacts, Key="config/app.yaml", Body=f"env: {env}\ncheckout:\n  timeout_seconds: 5\n")
    s3.put_object(Bucket=artifacts, Key="exports/orders-full.csv", Body=_large_csv())
    s3.create_bucket(Bucket=f"acme-{env}-access-logs-{account}")


def _large_csv() -> str:
    rows = ["order_id,sku,amount_cents,status"]
    rows += [f"{100000 + i},SKU-{i % 97:03d},{(i * 37) % 9000 + 100},shipped" for i in range(12000)]
    return "\n".join(rows) + "\n"


def _create_logs(logs: Any, env: str) -> None:
    now = datetime.now(UTC)
    group = "/aws/lambda/checkout-api"
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName="2026/11/26/[$LATEST]a1b2c3")
    events = [(now - timedelta(minutes=60 - m), f"INFO request served in {80 + m} ms") for m in range(0, 60, 3)]
    burst_start = now - timedelta(minutes=20)
    events += [
        (burst_start + timedelta(seconds=7 * i), "ERROR payment provider timeout after 5000 ms (order checkout)")
        for i in range(25)
    ]
    events.sort()
    logs.put_log_events(
        logGroupName=group,
        logStreamName="2026/11/26/[$LATEST]a1b2c3",
        logEvents=[{"timestamp": int(t.timestamp() * 1000), "message": m} for t, m in events],
    )
    logs.create_log_group(logGroupName=f"/ecs/{env}/storefront-web")
    logs.create_log_group(logGroupName="/aws/lambda/image-resizer")


def _create_functions(lambda_: Any, env: str, role_arn: str) -> None:
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("handler.py", "def handle(event, context):\n    return {'ok': True}\n")
    for name in _FUNCTIONS:
        lambda_.create_function(
            FunctionName=name,
            Runtime="python3.12",
            Role=role_arn,
            Handler="handler.handle",
            Code={"ZipFile": code.getvalue()},
            Timeout=5 if name == "checkout-api" else 30,
            MemorySize=512,
            Environment={"Variables": {"ENV": env, "PAYMENT_TIMEOUT_MS": "5000"}},
        )


def _create_metrics(cloudwatch: Any, ec2: Any) -> None:
    now = datetime.now(UTC)
    reservations = ec2.describe_instances()["Reservations"]
    for reservation in reservations:
        for instance in reservation["Instances"]:
            cloudwatch.put_metric_data(
                Namespace="AWS/EC2",
                MetricData=[
                    {
                        "MetricName": "CPUUtilization",
                        "Dimensions": [{"Name": "InstanceId", "Value": instance["InstanceId"]}],
                        "Timestamp": now - timedelta(minutes=5 * i),
                        "Value": 20.0 + (i * 7) % 50,
                        "Unit": "Percent",
                    }
                    for i in range(12)
                ],
            )


def _create_parameters(ssm: Any, env: str) -> None:
    ssm.put_parameter(Name=f"/acme/{env}/checkout/feature-flags", Value='{"new_cart": true}', Type="String")
    ssm.put_parameter(Name=f"/acme/{env}/checkout/db-password", Value=f"{env}-Sup3r-s3cret-pw", Type="SecureString")


def _seed_trail(trail: SandboxTrail, account: str, env: str) -> None:
    now = datetime.now(UTC)
    human = f"arn:aws:sts::{account}:assumed-role/AdministratorAccess/alice@acme.example"
    deploy = f"arn:aws:sts::{account}:assumed-role/deploy-pipeline/release-4.18.2"
    seeded = (
        ("ConsoleLogin", "signin.amazonaws.com", "alice@acme.example", human, 180, ()),
        (
            "UpdateFunctionConfiguration20150331v2",
            "lambda.amazonaws.com",
            "release-4.18.2",
            deploy,
            95,
            (("AWS::Lambda::Function", "checkout-api"),),
        ),
        (
            "PutObject",
            "s3.amazonaws.com",
            "release-4.18.2",
            deploy,
            94,
            (("AWS::S3::Object", "releases/2026-11-20/manifest.json"),),
        ),
    )
    for name, source, user, arn, minutes_ago, resources in seeded:
        trail.record(
            account,
            name=name,
            source=source,
            username=user,
            identity_arn=arn,
            resources=resources,
            time=now - timedelta(minutes=minutes_ago),
            user_agent=f"{env} seed",
        )
