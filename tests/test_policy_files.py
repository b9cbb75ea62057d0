"""Which policy files load, how decisions name them, and what a broken file is told.

``policies/**/*.cedar`` are read, subfolders included; ``tests/`` holds test cases only. A
decision names a file by its path under the policies folder, so two ``old.cedar`` never blur.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.conftest import ROOT, audit_events, shipped_check

from cedargate.catalog import load_catalog
from cedargate.cedar_schema import build_schema
from cedargate.cli import main
from cedargate.errors import PolicyError
from cedargate.policy_set import PolicySet, load_policy_set

pytestmark = pytest.mark.anyio

STAGING_STOP = [
    "--tool", "aws_ec2_stop_instances", "--agent", "codex", "--mode", "autonomous",
    "--resource", "739164028253", "--arg", 'InstanceIds=["i-12345678"]', "--json",
]  # fmt: skip


def _load(folder: Path, files: dict[str, str]) -> PolicySet:
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return load_policy_set(folder, build_schema(load_catalog(ROOT / "tools", check=shipped_check())))


def test_a_policy_in_a_subfolder_is_enforced_and_named_by_its_path_under_policies(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tree / "policies/retired").mkdir()
    (tree / "policies/retired/old.cedar").write_text(
        'permit (principal, action in Action::"risk:write", resource in Environment::"staging");\n'
    )
    assert main(["--config", str(tree / "cedargate.toml"), "policy", "explain", *STAGING_STOP]) == 0
    explained = json.loads(capsys.readouterr().out)
    assert explained["effect"] == "allow"
    [policy] = explained["policies"]
    assert (policy["id"], policy["file"], policy["line"]) == ("retired/old.cedar:1", "retired/old.cedar", 1)


async def test_the_audit_trail_names_a_subfolder_policy_by_its_path_under_policies(tree: Path) -> None:
    from tests.adversarial.harness import spy_on

    from cedargate.config import load_config
    from cedargate.runtime import build_runtime

    (tree / "policies/team").mkdir()
    (tree / "policies/team/web.cedar").write_text(
        '@id("web-log-off")\n@reason("no logs")\nforbid (principal, action == Action::"repo_log", resource);\n'
    )
    g = spy_on(build_runtime(load_config(tree / "cedargate.toml", environ={})))
    try:
        result = await g.acall("repo_log", {"repository": "acme/web"})
    finally:
        g.close()
    assert result.is_error
    [event] = audit_events(tree / "audit.jsonl")
    assert event["decision"]["policies"][0]["file"] == "team/web.cedar"


def test_a_policy_file_among_the_test_cases_stops_start_up(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as error:
        _load(tmp_path, {"tests/stray.cedar": "permit (principal, action, resource);\n"})
    message = str(error.value)
    assert str(tmp_path / "tests/stray.cedar") in message
    assert "holds policy test cases (*.toml), never policies" in message


def test_the_shipped_policy_tests_folder_holds_no_policy_file() -> None:
    assert list((ROOT / "policies/tests").rglob("*.cedar")) == []


def test_a_policy_template_is_refused_with_what_to_write_instead(tmp_path: Path) -> None:
    text = '@id("ok")\npermit (principal, action, resource);\n\n'
    text += '@id("tmpl")\nforbid (principal == ?principal, action, resource);\n'
    with pytest.raises(PolicyError) as error:
        _load(tmp_path, {"t.cedar": text})
    message = str(error.value)
    assert f"{tmp_path / 't.cedar'}:4:1: policy templates (`?principal`, `?resource`) are not supported" in message
    assert "write a static policy" in message


def test_a_policy_file_starting_with_a_byte_order_mark_loads(tmp_path: Path) -> None:
    policies = _load(
        tmp_path, {"bom.cedar": '\ufeff@id("bom")\npermit (principal, action == Action::"repo_status", resource);\n'}
    )
    [info] = policies.info.values()
    assert (info.annotation_id, info.line, info.column) == ("bom", 1, 1)


def test_one_mistake_is_reported_once_with_the_actions_it_affects_named_once(tmp_path: Path) -> None:
    text = (
        '@id("typo")\npermit (principal, action, resource) when { context.mdoe == "x" };\n'
        '@id("two")\npermit (principal, action in [Action::"repo_log", Action::"repo_status"], resource)\n'
        'when { context.args.nope == "x" };\n'
    )
    with pytest.raises(PolicyError) as error:
        _load(tmp_path, {"typo.cedar": text})
    message = str(error.value)
    assert message.count("attribute `mdoe`") == 1
    assert "attribute `mdoe` in context for every action (" in message
    assert message.count("`args.nope`") == 1 and "2 actions (`repo_log`, `repo_status`)" in message
    assert len(message) < 800


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '@id("a1")\n@approval\nforbid (principal, action == Action::"repo_push", resource) '
            "unless { context.approval.granted };\n",
            ':1:1: policy `a1`: `@approval` names no group; write `@approval("GROUP")`',
        ),
        (
            '@id("a2")\n@approval("sre")\npermit (principal, action == Action::"repo_commit", resource);\n',
            ':1:1: policy `a2`: `@approval("sre")` on a permit holds nothing back',
        ),
        (
            '@id("a3")\n@self_approval("interactive")\nforbid (principal, action == Action::"repo_push", resource);\n',
            ':1:1: policy `a3`: `@self_approval` lifts only a forbid with `@approval("GROUP")`',
        ),
    ],
)
def test_an_approval_annotation_that_could_never_lift_a_call_is_refused(
    tmp_path: Path, text: str, expected: str
) -> None:
    with pytest.raises(PolicyError) as error:
        _load(tmp_path, {"ann.cedar": text})
    assert f"{tmp_path / 'ann.cedar'}{expected}" in str(error.value)
