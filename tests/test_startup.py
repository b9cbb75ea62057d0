"""Broken files stop start-up with a message that names the place; nothing is served half-way."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.conftest import ROOT

from cedargate.config import load_config
from cedargate.errors import ConfigError, ManifestError, PolicyError
from cedargate.runtime import build_runtime


def _start(tree: Path, environ: dict[str, str] | None = None) -> None:
    runtime = build_runtime(load_config(tree / "cedargate.toml", environ=environ or {}))
    runtime.close()


def test_a_manifest_with_a_bad_field_names_file_tool_and_field(tree: Path) -> None:
    path = tree / "tools/repo/read_file.toml"
    path.write_text(path.read_text().replace('risk = "read"', 'risk = "harmless"'))
    with pytest.raises(ManifestError) as error:
        _start(tree)
    message = str(error.value)
    assert str(path) in message
    assert "tool `repo_read_file`" in message
    assert "field `risk`" in message


def test_a_manifest_naming_an_unknown_operation_is_refused(tree: Path) -> None:
    path = tree / "tools/aws/sts.toml"
    path.write_text(path.read_text().replace('operation = "GetCallerIdentity"', 'operation = "GetCallerIdentityX"'))
    expected = r"sts.toml: tool `aws_sts_get_caller_identity`: field `handler.operation`: service `sts` has no"
    with pytest.raises(ManifestError, match=expected):
        _start(tree)


def test_a_manifest_that_is_not_toml_is_refused_with_its_path(tree: Path) -> None:
    path = tree / "tools/repo/broken.toml"
    path.write_text("name = \n")
    with pytest.raises(ManifestError, match=r"broken\.toml: not valid TOML"):
        _start(tree)


def test_a_tool_name_published_twice_refuses_start_up(tree: Path) -> None:
    source = tree / "tools/repo/read_file.toml"
    (tree / "tools/aws/copy.toml").write_text(source.read_text())
    with pytest.raises(ManifestError, match=r"tool `repo_read_file` is already declared in"):
        _start(tree)


def test_a_resource_argument_missing_from_the_schema_is_refused(tree: Path) -> None:
    path = tree / "tools/repo/read_file.toml"
    path.write_text(path.read_text().replace('argument = "repository"', 'argument = "repo"'))
    with pytest.raises(ManifestError, match=r"resource.argument `repo` is not a property of input_schema"):
        _start(tree)


def test_a_policy_that_does_not_parse_names_file_line_and_column(tree: Path) -> None:
    path = tree / "policies/dev.cedar"
    text = path.read_text()
    path.write_text(text + '\n@id("broken")\npermit (principal, action, resource) when { context.mode == };\n')
    with pytest.raises(PolicyError) as error:
        _start(tree)
    line = text.count("\n") + 2
    assert f"{path}:{line}:1: policy does not parse" in str(error.value)


def test_a_policy_that_does_not_validate_names_the_place_and_the_problem(tree: Path) -> None:
    path = tree / "policies/prod.cedar"
    text = path.read_text()
    path.write_text(text + '\npermit (principal, action == Action::"repo_raed_file", resource);\n')
    with pytest.raises(PolicyError) as error:
        _start(tree)
    line = text.count("\n") + 2
    assert f"{path}:{line}:1" in str(error.value)
    assert "repo_raed_file" in str(error.value)


def test_two_policies_with_one_id_are_refused(tree: Path) -> None:
    path = tree / "policies/dev.cedar"
    path.write_text(path.read_text() + '\n@id("reads-allowed")\npermit (principal, action, resource);\n')
    with pytest.raises(PolicyError, match=r'@id\("reads-allowed"\) is already used at .*baseline.cedar'):
        _start(tree)


def test_no_principal_is_a_start_up_error_not_an_anonymous_agent(tree: Path) -> None:
    path = tree / "cedargate.toml"
    text = path.read_text()
    start = text.index("[principal]")
    end = text.index("[audit]")
    path.write_text(text[:start] + text[end:])
    with pytest.raises(ConfigError, match=r"no principal configured"):
        _start(tree)


def test_environment_overrides_complete_the_principal(tree: Path) -> None:
    config = load_config(
        tree / "cedargate.toml", environ={"CEDARGATE_AGENT": "codex-ci", "CEDARGATE_MODE": "autonomous"}
    )
    assert config.principal is not None
    assert (config.principal.agent, config.principal.mode, config.principal.team) == (
        "codex-ci",
        "autonomous",
        "storefront",
    )


def test_a_bad_override_names_the_field(tree: Path) -> None:
    with pytest.raises(ConfigError, match=r"field `principal.mode`"):
        load_config(tree / "cedargate.toml", environ={"CEDARGATE_MODE": "sometimes"})


def test_a_missing_config_says_how_to_provide_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config file `.*nope.toml` not found: pass --config PATH"):
        load_config(tmp_path / "nope.toml")


def test_serve_exits_with_status_2_and_names_the_broken_policy(tree: Path) -> None:
    path = tree / "policies/staging.cedar"
    path.write_text(path.read_text() + "\nforbid (principal, action, resource) when {\n")
    result = subprocess.run(
        [sys.executable, "-m", "cedargate", "--config", str(tree / "cedargate.toml"), "serve"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "server")},
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("cedargate: error: ")
    assert "staging.cedar:" in result.stderr
    assert "Traceback" not in result.stderr
