"""Policy authors' tools on real files: test cases, explain, validate positions, shadow mode."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
from mcp import Client
from tests.conftest import ROOT, audit_events

from cedargate.aws_sandbox import STAGING_ACCOUNT
from cedargate.cli import main
from cedargate.config import load_config
from cedargate.git import git_text
from cedargate.runtime import build_runtime
from cedargate.server import build_server

pytestmark = pytest.mark.anyio


def test_the_shipped_policy_cases_pass_and_cover_every_shipped_policy(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["--config", str(ROOT / "cedargate.toml"), "policy", "test", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert status == 0, [c for c in report["cases"] if not c["passed"]]
    covered = {pid.strip() for case in report["cases"] for pid in case["actual"].split(" by ", 1)[-1].split(",")}
    shipped = set()
    for path in (ROOT / "policies").glob("*.cedar"):
        shipped |= {line.split('"')[1] for line in path.read_text().splitlines() if line.startswith("@id(")}
    assert shipped <= covered


def test_a_failing_case_prints_the_request_the_expected_and_the_actual_decision(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tree / "policies/tests/wrong.toml").write_text(
        """
[[case]]
name = "prod writes are wrongly expected to pass"
agent = "codex"
team = "payments"
user = "alice"
tool = "repo_write_file"
resource = "acme/payments"
args = { branch = "agent/x", path = "a.txt", content = "x" }
expect = "allow"
"""
    )
    status = main(["--config", str(tree / "cedargate.toml"), "policy", "test"])
    out = capsys.readouterr().out
    assert status == 1
    assert "FAIL " in out and "prod writes are wrongly expected to pass" in out
    assert "request:  agent `codex`" in out and "`repo_write_file` on `acme/payments`" in out
    assert "expected: allow" in out
    assert "actual:   deny by prod-writes-forbidden" in out
    assert "FAILED: 1 of" in out


def test_a_case_expecting_other_determining_policies_fails(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tree / "policies/tests/ids.toml").write_text(
        """
[[case]]
name = "read in dev"
agent = "codex"
team = "storefront"
user = "alice"
tool = "repo_read_file"
resource = "acme/web"
args = { path = "README.md" }
expect = "allow"
policies = ["dev-writes-allowed"]
"""
    )
    assert main(["--config", str(tree / "cedargate.toml"), "policy", "test"]) == 1
    assert "determined by ['reads-allowed'], expected ['dev-writes-allowed']" in capsys.readouterr().out


def test_a_case_file_without_cases_fails_instead_of_passing_nothing(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tree / "policies/tests/empty.toml").write_text("# to do\n")
    assert main(["--config", str(tree / "cedargate.toml"), "policy", "test"]) == 2
    assert "empty.toml: no `[[case]]` tables; a case file holds at least one case" in capsys.readouterr().err


def test_cases_can_name_one_case_file_but_not_another_kind_of_file(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(tree / "cedargate.toml")
    one = next((tree / "policies/tests").glob("*.toml"))
    assert main(["--config", config, "policy", "test", "--cases", str(one), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["files"] == 1 and {case["file"] for case in report["cases"]} == {str(one)}
    (tree / "cases.json").write_text("{}")
    assert main(["--config", config, "policy", "test", "--cases", str(tree / "cases.json")]) == 2
    assert "is neither a folder of case files nor a case file (*.toml)" in capsys.readouterr().err


def test_explain_names_the_decision_the_determining_policies_and_their_reasons(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(
        [
            "--config", str(tree / "cedargate.toml"), "policy", "explain", "--tool", "repo_delete_branch",
            "--agent", "codex", "--resource", "acme/payments", "--arg", "branch=agent/old",
        ]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert status == 0
    assert out.splitlines()[0] == "decision: deny"
    assert "prod-destructive-forbidden (prod.cedar:" in out
    assert "destructive actions are never allowed in prod" in out


def test_explain_with_an_approval_shows_the_approved_permit(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tree / "cedargate.toml"
    config.write_text(
        config.read_text().replace(
            'environment = "dev"\nowner_team = "storefront"', 'environment = "staging"\nowner_team = "storefront"'
        )
    )
    base = ["--config", str(config), "policy", "explain", "--tool", "repo_delete_branch", "--agent", "codex"]
    base += ["--resource", "acme/web", "--arg", "branch=agent/old", "--json"]
    main(base)
    waiting = json.loads(capsys.readouterr().out)
    main([*base, "--approved-by", "sre"])
    approved = json.loads(capsys.readouterr().out)
    assert waiting["effect"] == "approval_required"
    assert waiting["policies"][0]["approval_group"] == "sre"
    assert approved["effect"] == "allow"
    assert [p["id"] for p in approved["policies"]] == ["staging-destructive-when-approved"]


def test_explain_shows_the_paths_and_path_classes_the_decision_saw(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--config", str(tree / "cedargate.toml"), "policy", "explain", "--tool", "repo_write_file"]
    base += ["--agent", "codex", "--resource", "acme/web", "--arg", "branch=agent/x", "--arg", "content=x"]
    assert main([*base, "--arg", "path=./.github//workflows/ci.yml"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "decision: approval_required"
    assert "changes: `.github/workflows/ci.yml` (path classes: `ci`)" in out
    assert main([*base, "--arg", "path=src/app.py", "--json"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert plain["effect"] == "allow"
    assert plain["changes"] == {"paths": ["src/app.py"], "classes": [], "unclassified": True}


def test_explain_refuses_arguments_the_tool_does_not_accept(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(
        [
            "--config", str(tree / "cedargate.toml"), "policy", "explain", "--tool", "repo_read_file",
            "--agent", "codex", "--resource", "acme/web", "--arg", "path=a", "--arg", "colour=red",
        ]
    )  # fmt: skip
    assert status == 2
    assert "field `colour` is not accepted" in capsys.readouterr().err


def test_validate_names_file_line_and_column_of_a_bad_policy(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tree / "policies/typo.cedar").write_text(
        '// a typo\n\n@id("typo")\npermit (principal, action == Action::"repo_wirte_file", resource);\n'
    )
    assert main(["--config", str(tree / "cedargate.toml"), "policy", "validate"]) == 2
    err = capsys.readouterr().err
    assert f"{tree / 'policies/typo.cedar'}:3:1" in err


def _with_policy_table(tree: Path, table: str) -> Path:
    config = tree / "cedargate.toml"
    config.write_text(config.read_text() + "\n[policy]\n" + table + "\n")
    return config


async def _write_to_web(config: Path) -> tuple[types.CallToolResult, Path, list[dict[str, Any]]]:
    """One write to `agent/s` of acme/web through a fresh server: the result, the repository, the events."""
    runtime = build_runtime(load_config(config, environ={}))
    repo = runtime.config.repository("acme/web")
    assert repo is not None
    try:
        async with Client(build_server(runtime)) as client:
            result = await client.call_tool(
                "repo_write_file", {"repository": "acme/web", "branch": "agent/s", "path": "a.txt", "content": "a"}
            )
    finally:
        runtime.close()
    return result, repo.path, audit_events(runtime.config.audit.path)


async def test_a_shadow_file_is_audited_as_would_deny_and_the_call_runs(tree: Path) -> None:
    (tree / "policies/canary.cedar").write_text(
        '@id("no-dev-writes")\n@reason("canary: dev writes go through review")\n'
        'forbid (principal, action in Action::"risk:write", resource in Environment::"dev");\n'
    )
    config = _with_policy_table(tree, 'shadow_files = ["canary.cedar"]')
    result, repo, events = await _write_to_web(config)
    assert result.is_error is False
    assert git_text(repo, ["show", "agent/s:a.txt"]) == "a"
    [event] = events
    assert event["outcome"] == "succeeded"
    assert event["decision"]["effect"] == "allow"
    assert event["shadow"]["scope"] == "file"
    assert event["shadow"]["would"] == "deny"
    assert [p["id"] for p in event["shadow"]["decision"]["policies"]] == ["no-dev-writes"]


async def test_a_shadow_environment_runs_a_denied_call_and_audits_the_deny(tree: Path) -> None:
    config = _with_policy_table(tree, 'shadow_environments = ["prod"]')
    runtime = build_runtime(load_config(config, environ={}))
    repo = runtime.config.repository("acme/payments")
    assert repo is not None
    try:
        async with Client(build_server(runtime)) as client:
            result = await client.call_tool(
                "repo_write_file",
                {"repository": "acme/payments", "branch": "agent/s", "path": "a.txt", "content": "a"},
            )
            read = await client.call_tool("repo_read_file", {"repository": "acme/payments", "path": "README.md"})
    finally:
        runtime.close()
    assert result.is_error is False
    assert git_text(repo.path, ["show", "agent/s:a.txt"]) == "a"
    write_event, read_event = audit_events(runtime.config.audit.path)
    assert write_event["outcome"] == "succeeded"
    assert write_event["decision"]["effect"] == "deny"
    assert write_event["shadow"] == {
        "scope": "environment",
        "would": "deny",
        "decision": write_event["decision"],
    }
    assert read.is_error is False and read_event["shadow"] is None


def test_a_shadow_file_that_does_not_exist_stops_start_up(tree: Path) -> None:
    from cedargate.errors import PolicyError

    config = _with_policy_table(tree, 'shadow_files = ["canray.cedar"]')
    with pytest.raises(PolicyError, match=r"`canray\.cedar` is not a policy file"):
        build_runtime(load_config(config, environ={}))


def test_explain_names_a_policy_that_failed_to_evaluate_and_denies(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tree / "policies/overflow.cedar").write_text(
        '@id("call-budget")\n@reason("a guard whose arithmetic overflows")\n'
        "forbid (principal, action, resource) when { context.session.call_count + 9223372036854775807 > 0 };\n"
    )
    argv = ["--config", str(tree / "cedargate.toml"), "policy", "explain", "--tool", "repo_read_file"]
    assert main([*argv, "--agent", "codex", "--resource", "acme/web", "--arg", "path=README.md"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "decision: deny"
    assert "errored (cedargate denies when a policy fails to evaluate):" in out
    assert "call-budget (overflow.cedar:1)" in out


async def test_a_shadow_permit_never_lifts_an_enforced_deny(tree: Path) -> None:
    (tree / "policies/canary.cedar").write_text(
        '@id("qa-writes-allowed")\n@reason("canary: agents may write in qa")\n'
        'permit (principal, action in Action::"risk:write", resource in Environment::"qa");\n'
    )
    config = _with_policy_table(tree, 'shadow_files = ["canary.cedar"]')
    config.write_text(
        config.read_text().replace(
            'environment = "dev"\nowner_team = "storefront"', 'environment = "qa"\nowner_team = "storefront"'
        )
    )
    result, repo, events = await _write_to_web(config)
    assert result.is_error is True
    assert git_text(repo, ["branch", "--list", "agent/s"]) == ""
    [event] = events
    assert event["outcome"] == "denied" and event["decision"]["policies"] == []
    assert event["shadow"]["would"] == "allow"
    assert event["shadow"]["decision"]["policies"][0]["id"] == "qa-writes-allowed"


def test_explain_shows_what_a_shadow_file_would_decide(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tree / "policies/canary.cedar").write_text(
        '@id("no-dev-reads")\n@reason("canary")\nforbid (principal, action, resource in Environment::"dev");\n'
    )
    config = _with_policy_table(tree, 'shadow_files = ["canary.cedar"]')
    argv = ["--config", str(config), "policy", "explain", "--tool", "repo_read_file", "--agent", "codex"]
    assert main([*argv, "--resource", "acme/web", "--arg", "path=README.md"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "decision: allow"
    assert "shadow (file): would deny by no-dev-reads" in out


def test_explain_decides_an_aws_call_in_the_region_it_would_run_in(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """As served: an omitted region is the configured one, so a policy on the region sees it."""
    (tree / "policies" / "region.cedar").write_text(
        '@id("eu-only")\n@reason("AWS work stays in eu-west-1")\n'
        "forbid (principal, action, resource is AwsAccount)\n"
        'when { context.args has region && context.args.region != "eu-west-1" };\n'
    )
    base = ["--config", str(tree / "cedargate.toml"), "policy", "explain", "--tool", "aws_sts_get_caller_identity",
            "--agent", "codex-demo", "--resource", STAGING_ACCOUNT]  # fmt: skip
    assert main(base) == 0
    omitted = capsys.readouterr().out
    assert main([*base, "--arg", "region=eu-west-1"]) == 0
    named = capsys.readouterr().out
    assert omitted.splitlines()[0] == "decision: deny" and "eu-only" in omitted
    assert named.splitlines()[0] == "decision: allow"


LOW_BUDGET = (
    '@id("low-budget")\n@reason("writes stop when the team is nearly out of budget")\n'
    'forbid (principal, action in Action::"risk:write", resource) when { context.budget.remaining_cents < 100 };\n'
)


async def test_explain_sees_the_budget_headroom_a_live_call_sees(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With no spend cap a live call sees Cedar's largest Long; explain must decide on the same."""
    (tree / "policies/budget.cedar").write_text(LOW_BUDGET)
    result, _, _ = await _write_to_web(tree / "cedargate.toml")
    argv = ["--config", str(tree / "cedargate.toml"), "policy", "explain", "--tool", "repo_create_branch"]
    argv += ["--agent", "codex-demo", "--resource", "acme/web", "--arg", "branch=agent/budget"]
    assert main(argv) == 0
    uncapped = capsys.readouterr().out
    assert main([*argv, "--remaining-cents", "50"]) == 0
    low = capsys.readouterr().out
    assert result.is_error is False
    assert uncapped.splitlines()[0] == "decision: allow"
    assert low.splitlines()[0] == "decision: deny" and "low-budget" in low


def test_explain_starts_from_the_smallest_spend_cap_when_one_applies(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tree / "policies/budget.cedar").write_text(LOW_BUDGET)
    config = tree / "cedargate.toml"
    config.write_text(config.read_text() + "\n[budgets.teams.storefront]\nday_cents = 60\nmonth_cents = 5000\n")
    argv = ["--config", str(config), "policy", "explain", "--tool", "repo_create_branch", "--agent", "codex-demo"]
    assert main([*argv, "--team", "storefront", "--resource", "acme/web", "--arg", "branch=agent/b"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "decision: deny"


def test_explain_with_an_approval_from_a_group_the_policy_does_not_name_still_waits(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """As at the live gate: a grant lifts the call only from the groups the determining policies name."""
    base = ["--config", str(tree / "cedargate.toml"), "policy", "explain", "--tool", "aws_ec2_terminate_instances",
            "--agent", "codex", "--resource", STAGING_ACCOUNT, "--arg", 'InstanceIds=["i-12345678"]']  # fmt: skip
    assert main([*base, "--approved-by", "interns"]) == 0
    interns = capsys.readouterr().out
    assert main([*base, "--approved-by", "sre"]) == 0
    sre = capsys.readouterr().out
    assert interns.splitlines()[0] == "decision: approval_required"
    assert "approval: an approval from `interns` would not lift the call: it needs `sre`" in interns
    assert sre.splitlines()[0] == "decision: allow"


def test_a_case_whose_approval_comes_from_the_wrong_group_fails_and_says_why(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tree / "policies/tests/approval.toml").write_text(
        f"""
[[aws_accounts]]
id = "{STAGING_ACCOUNT}"
environment = "staging"

[[case]]
name = "an intern's approval lifts a staging terminate"
agent = "codex"
team = "storefront"
user = "alice"
tool = "aws_ec2_terminate_instances"
resource = "{STAGING_ACCOUNT}"
args = {{ InstanceIds = ["i-12345678"] }}
approval = {{ granted = true, approver = "ivan", groups = ["interns"] }}
expect = "allow"
"""
    )
    assert main(["--config", str(tree / "cedargate.toml"), "policy", "test"]) == 1
    out = capsys.readouterr().out
    assert "decision is `approval_required`, expected `allow`" in out
    assert "an approval from `interns` would not lift the call: it needs `sre`" in out


def test_explain_reads_an_argument_value_as_json_when_it_is_json(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--config", str(tree / "cedargate.toml"), "policy", "explain", "--tool", "repo_log", "--agent", "codex"]
    assert main([*base, "--resource", "acme/web", "--arg", "max_count=7", "--arg", "ref=main", "--json"]) == 0
    explained = json.loads(capsys.readouterr().out)
    assert explained["effect"] == "allow"
    assert explained["request"]["args"] == {"max_count": 7, "ref": "main"}


def test_a_case_without_expect_says_the_field_is_missing(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tree / "policies/tests/no_expect.toml").write_text(
        '[[case]]\nname = "no expect"\nagent = "codex"\nteam = "storefront"\nuser = "alice"\n'
        'tool = "repo_status"\nresource = "acme/web"\n'
    )
    assert main(["--config", str(tree / "cedargate.toml"), "policy", "test"]) == 2
    assert "no_expect.toml: case `no expect`: field `expect` is missing; say what" in capsys.readouterr().err
