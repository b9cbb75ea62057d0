"""AWS manifests: schemas derived from botocore's service model, and manifests refused at load."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from botocore.session import get_session

from cedargate.aws_model import is_read_operation
from cedargate.aws_shapes import DEFAULT_MAX_ITEMS
from cedargate.catalog import load_catalog
from cedargate.cedar_schema import args_record
from cedargate.cli import main
from cedargate.config import Config, load_config
from cedargate.errors import ManifestError, ToolInputError
from cedargate.manifest import AwsHandlerSpec, ToolManifest
from cedargate.runtime import handler_registry
from cedargate.validate import validate_arguments

STOP = """
name = "aws_ec2_stop"
description = "Stop instances."
risk = "write"
owner = "platform"
duty = "infra-operator"

[handler]
kind = "aws"
service = "ec2"
operation = "StopInstances"
{handler_extra}

[handler.parameters.InstanceIds]
max_items = 3
pattern = "^i-[0-9a-f]{{8,17}}$"
{parameters_extra}

[resource]
kind = "aws_account"
argument = "account"
"""


def _write(tree: Path, text: str) -> Path:
    folder = tree / "tools" / "extra"
    folder.mkdir(exist_ok=True)
    path = folder / "tool.toml"
    path.write_text(text)
    return path


def _load(config: Config) -> None:
    load_catalog(config.tools_dir, check=handler_registry(None, config).check)


def _load_error(config: Config) -> str:
    with pytest.raises(ManifestError) as info:
        _load(config)
    return str(info.value)


def test_the_published_schema_is_the_service_model_narrowed_to_the_allowed_parameters(config: Config) -> None:
    _load(config)
    catalog = load_catalog(config.tools_dir, check=handler_registry(None, config).check)
    schema = catalog.tools["aws_ec2_stop_instances"].input_schema
    assert set(schema["properties"]) == {"account", "region", "InstanceIds"}
    assert schema["required"] == ["InstanceIds"]
    assert schema["additionalProperties"] is False
    ids = schema["properties"]["InstanceIds"]
    assert ids["type"] == "array"
    assert ids["items"]["type"] == "string"
    assert ids["items"]["pattern"] == "^i-[0-9a-f]{8,17}$"
    assert (ids["minItems"], ids["maxItems"]) == (1, 10)
    # Force is fixed by the admin: the agent cannot pass it.
    assert "Force" not in schema["properties"]
    assert catalog.tools["aws_ec2_stop_instances"].handler.fixed == {"Force": False}  # type: ignore[union-attr]


def test_nested_parameters_and_enums_come_from_botocore(config: Config) -> None:
    catalog = load_catalog(config.tools_dir, check=handler_registry(None, config).check)
    props = catalog.tools["aws_cloudtrail_lookup_events"].input_schema["properties"]
    attribute = props["LookupAttributes"]["items"]
    model = get_session().get_service_model("cloudtrail").shape_for("LookupAttributeKey")
    assert attribute["properties"]["AttributeKey"]["enum"] == list(model.enum)
    assert attribute["required"] == ["AttributeKey", "AttributeValue"]
    assert props["LookupAttributes"]["maxItems"] == 1
    assert props["StartTime"] == {
        "type": "string",
        "format": "date-time",
        "description": props["StartTime"]["description"],
    }
    assert catalog.tools["aws_ssm_put_parameter"].input_schema["properties"]["Type"]["enum"] == ["String", "StringList"]


def test_the_account_argument_stays_in_the_schema_and_is_typed_for_cedar(config: Config) -> None:
    catalog = load_catalog(config.tools_dir, check=handler_registry(None, config).check)
    record = args_record(catalog.tools["aws_ec2_stop_instances"])
    # Always there once resolved (the default account when omitted): policies read it without `has`.
    assert record["attributes"]["account"] == {"type": "String", "required": True}
    assert record["attributes"]["InstanceIds"] == {"type": "Set", "element": {"type": "String"}, "required": True}


@pytest.mark.parametrize(
    ("handler_extra", "parameters_extra", "expected"),
    [
        (
            "",
            "[handler.parameters.Hibernat]",
            "field `handler.parameters.Hibernat`: `ec2:StopInstances` has no parameter",
        ),
        ('[handler.fixed]\nForce = "yes"', "", "field `handler.fixed.Force`: 'yes' is not of type 'boolean'"),
        ('[handler.fixed]\nInstanceIds = ["i-0123456789"]', "", "field `handler.fixed.InstanceIds`: a parameter is"),
        ('result = "Stopping["', "", "field `handler.result`"),
        (
            "",
            "[handler.parameters.Force]\nmax_items = 2",
            "field `handler.parameters.Force`: `min_items` and `max_items` apply to lists",
        ),
    ],
)
def test_a_manifest_naming_what_the_service_model_does_not_have_is_refused_with_file_and_field(
    tree: Path, config: Config, handler_extra: str, parameters_extra: str, expected: str
) -> None:
    path = _write(tree, STOP.format(handler_extra=handler_extra, parameters_extra=parameters_extra))
    message = _load_error(config)
    assert str(path) in message
    assert "tool `aws_ec2_stop`" in message
    assert expected in message


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('service = "ec2"', 'service = "ec3"', "field `handler.service`: unknown AWS service `ec3`"),
        (
            'operation = "StopInstances"',
            'operation = "StopInstance"',
            "field `handler.operation`: service `ec2` has no operation `StopInstance`",
        ),
        ('duty = "infra-operator"', 'duty = "root"', "field `duty`: `root` is not a configured AWS duty"),
        (
            '[handler.parameters.InstanceIds]\nmax_items = 3\npattern = "^i-[0-9a-f]{8,17}$"',
            "",
            "field `handler.parameters`: `ec2:StopInstances` requires `InstanceIds`",
        ),
    ],
)
def test_unknown_service_operation_duty_or_missing_required_parameter_is_refused(
    tree: Path, config: Config, old: str, new: str, expected: str
) -> None:
    text = STOP.format(handler_extra="", parameters_extra="")
    assert old in text
    path = _write(tree, text.replace(old, new))
    message = _load_error(config)
    assert str(path) in message
    assert expected in message


@pytest.mark.parametrize(
    ("service", "operation"),
    [("sts", "AssumeRole"), ("sts", "GetSessionToken"), ("iam", "CreateAccessKey"), ("sso", "GetRoleCredentials")],
)
def test_credential_vending_operations_are_never_published(
    tree: Path, config: Config, service: str, operation: str
) -> None:
    text = f"""
name = "vend"
description = "x"
risk = "read"
owner = "platform"
duty = "aws-reader"
[handler]
kind = "aws"
service = "{service}"
operation = "{operation}"
"""
    _write(tree, text)
    assert f"`{service}:{operation}` hands out credentials and is never published" in _load_error(config)


def test_a_hand_written_input_schema_on_an_aws_manifest_is_refused(tree: Path, config: Config) -> None:
    text = STOP.format(handler_extra="", parameters_extra="") + '\n[input_schema]\ntype = "object"\n'
    _write(tree, text)
    message = _load_error(config)
    assert "field `input_schema`: AWS tools derive their schema from the service model" in message


def test_repository_duties_need_no_aws_role(config: Config) -> None:
    catalog = load_catalog(config.tools_dir, check=handler_registry(None, config).check)
    assert catalog.tools["repo_read_file"].duty == "repo-reader"
    assert "repo-reader" not in config.aws.duties


def test_tools_new_writes_a_manifest_that_loads_and_an_admin_can_narrow(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_path = tree / "cedargate.toml"
    code = main(
        ["--config", str(config_path), "tools", "new", "aws", "ec2", "RebootInstances", "--risk", "write", "--json"]
    )
    assert code == 0
    path = tree / "tools" / "aws" / "aws_ec2_reboot_instances.toml"
    assert str(path) in capsys.readouterr().out
    raw = tomllib.loads(path.read_text())
    assert raw["handler"] == {
        "kind": "aws",
        "service": "ec2",
        "operation": "RebootInstances",
        "max_result_bytes": 65536,
        "parameters": {"InstanceIds": {}},
    }
    assert raw["duty"] == "infra-operator"
    config = load_config(config_path, environ={})
    catalog = load_catalog(config.tools_dir, check=handler_registry(None, config).check)
    assert catalog.tools["aws_ec2_reboot_instances"].annotations.destructive_hint is False
    # Running it twice refuses to overwrite the admin's edits.
    assert main(["--config", str(config_path), "tools", "new", "aws", "ec2", "RebootInstances", "--risk", "write"]) == 2


@pytest.mark.parametrize(
    ("operation", "risk", "overwrites"),
    [
        ("PutParameter", "write", True),
        ("ModifyInstanceAttribute", "write", True),
        ("UpdateFunctionConfiguration", "write", True),
        ("RebootInstances", "write", False),
        ("PutParameter", "destructive", False),
    ],
)
def test_tools_new_marks_a_write_that_replaces_what_was_there_as_destructive_to_clients(
    tree: Path, operation: str, risk: str, overwrites: bool
) -> None:
    service = {"PutParameter": "ssm", "UpdateFunctionConfiguration": "lambda"}.get(operation, "ec2")
    written = tree / "drafts" / f"{operation}.toml"
    command = ["tools", "new", "aws", service, operation, "--risk", risk, "--output", str(written)]
    assert main(["--config", str(tree / "cedargate.toml"), *command]) == 0
    manifest = ToolManifest.model_validate(tomllib.loads(written.read_text()))
    assert manifest.overwrites is overwrites
    assert manifest.annotations.destructive_hint is (overwrites or risk == "destructive")


def test_tools_new_names_an_unknown_operation(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["--config", str(tree / "cedargate.toml"), "tools", "new", "aws", "ec2", "StopEverything", "--risk", "write"]
    )
    assert code == 2
    assert "service `ec2` has no operation `StopEverything`" in capsys.readouterr().err


def test_tools_new_refuses_a_duty_the_config_lacks_and_writes_nothing(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    command = ["--config", str(tree / "cedargate.toml"), "tools", "new", "aws", "ec2", "RebootInstances"]
    before = sorted((tree / "tools").rglob("*"))
    assert main([*command, "--risk", "write", "--duty", "nosuchduty"]) == 2
    error = capsys.readouterr().err
    assert "--duty `nosuchduty` is not configured" in error and "`infra-operator`" in error
    assert sorted((tree / "tools").rglob("*")) == before


def test_a_loaded_aws_manifest_round_trips_through_its_dump(config: Config) -> None:
    catalog = load_catalog(config.tools_dir, check=handler_registry(None, config).check)
    manifest = catalog.tools["aws_ec2_stop_instances"]
    again = ToolManifest.model_validate(manifest.model_dump())
    assert again.content_hash == manifest.content_hash


def test_a_mutating_operation_published_as_a_read_is_refused_with_file_tool_and_what_to_do(
    tree: Path, config: Config
) -> None:
    text = STOP.format(handler_extra="", parameters_extra="").replace('risk = "write"', 'risk = "read"')
    path = _write(tree, text)
    message = _load_error(config)
    assert str(path) in message and "tool `aws_ec2_stop`" in message
    assert "field `risk`: `ec2:StopInstances` is not a read" in message
    assert 'publish it as `risk = "write"`' in message


@pytest.mark.parametrize(
    ("operation", "reads"),
    [
        ("DescribeInstances", True),
        ("GetMetricData", True),
        ("BatchGetItem", True),
        ("Query", True),
        ("StopInstances", False),
        ("CheckInLicense", False),
        ("TestInvokeMethod", False),
        ("Getaway", False),
        ("ListenerUpdate", False),
    ],
)
def test_only_operations_named_with_a_read_verb_count_as_reads(operation: str, reads: bool) -> None:
    assert is_read_operation(operation) is reads


def test_every_shipped_read_is_named_with_a_read_verb(config: Config) -> None:
    catalog = load_catalog(config.tools_dir, check=handler_registry(None, config).check)
    reads = [m for m in catalog if m.risk.read_only and isinstance(m.handler, AwsHandlerSpec)]
    assert len(reads) >= 10


def test_tools_new_refuses_a_mutating_operation_as_a_read_and_writes_nothing(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    command = ["--config", str(tree / "cedargate.toml"), "tools", "new", "aws", "ec2", "StopInstances"]
    before = sorted((tree / "tools").rglob("*"))
    assert main([*command, "--risk", "read", "--duty", "aws-reader", "--output", str(tree / "tools/aws/x.toml")]) == 2
    assert "`ec2:StopInstances` is not a read" in capsys.readouterr().err
    assert sorted((tree / "tools").rglob("*")) == before


def test_tools_new_refuses_a_name_a_pack_already_publishes_naming_its_file(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    command = ["--config", str(tree / "cedargate.toml"), "tools", "new", "aws", "ec2", "TerminateInstances"]
    before = sorted((tree / "tools").rglob("*"))
    assert main([*command, "--risk", "destructive"]) == 2
    error = capsys.readouterr().err
    assert (
        f"tool `aws_ec2_terminate_instances` is already published by `{tree / 'tools' / 'aws' / 'ec2.toml'}`" in error
    )
    assert sorted((tree / "tools").rglob("*")) == before
    # Outside the tools folder nothing loads it: the admin may rename it there.
    assert main([*command, "--risk", "destructive", "--output", str(tree / "elsewhere.toml")]) == 0


def test_lists_the_model_leaves_unbounded_get_a_default_item_bound_at_every_depth(config: Config) -> None:
    catalog = load_catalog(config.tools_dir, check=handler_registry(None, config).check)
    manifest = catalog.tools["aws_ec2_describe_instances"]
    filters = manifest.input_schema["properties"]["Filters"]
    assert filters["maxItems"] == 10  # the admin's own bound
    assert filters["items"]["properties"]["Values"]["maxItems"] == DEFAULT_MAX_ITEMS
    too_many = {"Filters": [{"Name": "tag:env", "Values": ["x"] * (DEFAULT_MAX_ITEMS + 1)}]}
    with pytest.raises(ToolInputError, match=r"field `Filters\.0\.Values`"):
        validate_arguments(manifest, too_many)
