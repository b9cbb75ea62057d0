"""Policies decide on the arguments as the tool will run them: omitted ones with their defaults.

A forbid on an argument that has a schema ``default`` cannot be stepped around by leaving the
argument out; the handler gets the same filled-in arguments, and the trail what was sent.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.adversarial.harness import make_tree, spy_on
from tests.conftest import ROOT, shipped_check

from cedargate.catalog import load_catalog
from cedargate.cedar_schema import build_schema
from cedargate.config import load_config
from cedargate.errors import ManifestError
from cedargate.policy_set import load_policy_set
from cedargate.runtime import build_runtime

pytestmark = pytest.mark.anyio

LOG_CAP = """
@id("log-at-most-10")
@reason("repo_log returns at most 10 commits")
forbid (principal, action == Action::"repo_log", resource)
when { context.args has max_count && context.args.max_count > 10 };
"""


async def test_leaving_out_an_argument_with_a_default_cannot_step_around_a_forbid(tmp_path: Path) -> None:
    config = make_tree(tmp_path)
    (tmp_path / "policies" / "cap.cedar").write_text(LOG_CAP)
    g = spy_on(build_runtime(load_config(config, environ={})), replace={"repo": lambda call: {"ran": True}})
    try:
        over = await g.acall("repo_log", {"repository": "acme/web", "max_count": 20})
        omitted = await g.acall("repo_log", {"repository": "acme/web"})
        under = await g.acall("repo_log", {"repository": "acme/web", "max_count": 5})
    finally:
        g.close()
    assert over.is_error and "log-at-most-10" in (over.message or "")
    assert omitted.is_error and "log-at-most-10" in (omitted.message or ""), omitted.payload
    assert under.is_error is False, under.message
    [run] = g.runs
    # The handler runs with the arguments the policies decided on, defaults included.
    assert run.args == {"repository": "acme/web", "max_count": 5, "ref": "HEAD"}
    # The trail keeps the arguments as the agent sent them.
    assert [e.arguments for e in g.events] == [
        {"repository": "acme/web", "max_count": 20},
        {"repository": "acme/web"},
        {"repository": "acme/web", "max_count": 5},
    ]


async def test_an_omitted_argument_reaches_the_handler_with_its_default(tmp_path: Path) -> None:
    g = spy_on(
        build_runtime(load_config(make_tree(tmp_path), environ={})), replace={"repo": lambda call: {"ran": True}}
    )
    try:
        result = await g.acall("repo_search", {"repository": "acme/web", "pattern": "x"})
    finally:
        g.close()
    assert result.is_error is False, result.message
    [run] = g.runs
    assert run.args == {
        "repository": "acme/web",
        "pattern": "x",
        "ref": "HEAD",
        "ignore_case": False,
        "fixed_string": False,
        "max_results": 100,
    }


def test_defaulted_arguments_and_an_aws_calls_account_and_region_need_no_has() -> None:
    """Always present once resolved, so the schema says so; a policy still testing ``has`` validates too."""
    catalog = load_catalog(ROOT / "tools", check=shipped_check())
    schema = build_schema(catalog)
    args = schema[""]["actions"]["repo_log"]["appliesTo"]["context"]["attributes"]["args"]["attributes"]
    assert args["max_count"]["required"] is True and args["ref"]["required"] is True
    assert args["path"]["required"] is False
    aws = schema[""]["actions"]["aws_ec2_stop_instances"]["appliesTo"]["context"]["attributes"]["args"]
    assert aws["attributes"]["account"]["required"] is True and aws["attributes"]["region"]["required"] is True


def test_policies_read_defaulted_arguments_and_aws_region_without_has(tmp_path: Path) -> None:
    folder = tmp_path / "policies"
    folder.mkdir()
    (folder / "direct.cedar").write_text(
        '@id("region-lock")\n'
        'forbid (principal, action == Action::"aws_ec2_stop_instances", resource)\n'
        'unless { context.args.region == "us-east-1" && context.args.account == resource.account_id };\n'
        '@id("log-cap")\n'
        'forbid (principal, action == Action::"repo_log", resource) when { context.args.max_count > 10 };\n'
        '@id("with-has")\n'
        'forbid (principal, action == Action::"repo_log", resource)\n'
        'when { context.args has ref && context.args.ref == "x" };\n'
    )
    policies = load_policy_set(folder, build_schema(load_catalog(ROOT / "tools", check=shipped_check())))
    assert len(policies.info) == 3


def test_a_default_its_argument_refuses_stops_start_up(tmp_path: Path) -> None:
    config = make_tree(tmp_path)
    path = tmp_path / "tools/repo/log.toml"
    path.write_text(path.read_text().replace("default = 20", "default = 500"))
    with pytest.raises(ManifestError) as error:
        build_runtime(load_config(config, environ={})).close()
    message = str(error.value)
    assert str(path) in message and "tool `repo_log`" in message
    assert "field `input_schema.properties.max_count.default`: 500 is greater than the maximum of 200" in message
