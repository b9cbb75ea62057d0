"""Pull requests: a GitHub REST stand-in on loopback receives the provenance body; plain push without a forge."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import audit_events
from tests.repo_support import (
    ForgeStandIn,
    Session,
    bare_remote,
    client_for,
    configure_web,
    forge_stand_in,
    with_remote,
)

from cedargate.config import load_config
from cedargate.git import git_text
from cedargate.runtime import Runtime, build_runtime

pytestmark = pytest.mark.anyio

TOKEN_ENV = "CEDARGATE_TEST_FORGE_TOKEN"
TOKEN = "stand-in-token-0123456789"
WEB = {"repository": "acme/web"}
BRANCH = {"repository": "acme/web", "branch": "agent/timeout"}
PATCH = """--- a/src/app.py
+++ b/src/app.py
@@ -1 +1 @@
-TIMEOUT_SECONDS = 5
+TIMEOUT_SECONDS = 30
"""


@pytest.fixture
def forge() -> Iterator[ForgeStandIn]:
    with forge_stand_in() as stand_in:
        yield stand_in


def _github_runtime(tree: Path, forge: ForgeStandIn) -> tuple[Runtime, Path]:
    remote = bare_remote(tree / "remote.git")
    runtime = configure_web(
        tree,
        f"""remote = "{remote}"
test_command = "sh ./ci.sh"
test_timeout_seconds = 30

[repositories.forge]
kind = "github"
api_url = "{forge.url}"
repository = "acme-corp/web"
token_env = "{TOKEN_ENV}"
""",
    )
    return runtime, remote


async def test_a_pull_request_carries_the_provenance_of_the_task(
    tree: Path, forge: ForgeStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    runtime, remote = _github_runtime(tree, forge)
    try:
        async with client_for(runtime) as client:
            s = Session(client)
            await s.ok("repo_read_file", {**WEB, "path": "src/app.py"})
            await s.ok("repo_create_branch", BRANCH)
            await s.ok("repo_write_file", {**BRANCH, "path": "ci.sh", "content": "grep -q 30 src/app.py\n"})
            await s.ok("repo_apply_diff", {**BRANCH, "patch": PATCH})
            committed = await s.ok("repo_commit", {**BRANCH, "message": "Raise the timeout"})
            tests = await s.ok("repo_run_tests", WEB)
            opened = await s.ok(
                "repo_open_pull_request", {**BRANCH, "title": "Raise the timeout", "body": "Requests time out."}
            )
    finally:
        runtime.close()
    read, _, write, _, commit, run, pr = audit_events(runtime.config.audit.path)
    assert tests["passed"] is True
    assert opened["pull_request"] == {"number": 1, "url": f"{forge.url}/acme-corp/web/pull/1"}
    [request] = forge.requests
    assert request["path"] == "/repos/acme-corp/web/pulls"
    assert request["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert request["headers"]["X-GitHub-Api-Version"] == "2022-11-28"
    sent = request["json"]
    assert (sent["title"], sent["head"], sent["base"]) == ("Raise the timeout", "agent/timeout", "main")
    body = sent["body"]
    assert body.startswith("Requests time out.\n\n## Provenance (recorded by cedargate)")
    assert "- task: `demo-timeout`" in body
    assert "`codex-demo`" in body and "on behalf of `alice`" in body
    assert f"- `{write['event_id']}`: " in body and f"- `{commit['event_id']}`: " in body
    assert f"{committed['commit'][:12]} Raise the timeout" in body
    assert f"- `{read['event_id']}`" in body
    assert "`sh ./ci.sh`: passed" in body and "tested the branch head" in body
    assert f"audit event `{run['event_id']}`" in body and f"audit event `{pr['event_id']}`" in body
    # The branch reached the remote, and the token reached only the forge.
    assert git_text(remote, ["rev-parse", "refs/heads/agent/timeout"]) == committed["commit"]
    assert TOKEN not in runtime.config.audit.path.read_text()
    assert TOKEN not in str(opened)
    assert pr["execution"]["pull_request"]["number"] == 1


async def test_without_a_forge_api_the_branch_is_pushed_and_the_body_returned(tree: Path) -> None:
    runtime, remote = with_remote(tree)
    try:
        async with client_for(runtime) as client:
            s = Session(client)
            written = await s.ok("repo_write_file", {**BRANCH, "path": "a.txt", "content": "a"})
            opened = await s.ok("repo_open_pull_request", {**BRANCH, "title": "Add a"})
    finally:
        runtime.close()
    assert opened["pull_request"] is None and opened["forge"] == "none"
    assert "no forge API" in opened["note"]
    assert git_text(remote, ["rev-parse", "refs/heads/agent/timeout"]) == written["commit"]
    assert "tests were not run" in opened["body"]


@pytest.mark.parametrize(
    ("rewrite", "said"),
    [
        (False, "- tested the branch head's content (staged on `{base}`, then committed)"),
        (True, "- tested `{base}`, not the branch head, with uncommitted changes"),
    ],
    ids=["staged-then-committed", "worktree-changed-too"],
)
async def test_tests_run_on_staged_changes_before_the_commit_count_for_the_head_only_when_nothing_else_changed(
    tree: Path, rewrite: bool, said: str
) -> None:
    """The usual order (apply, test, commit): the commit holds exactly the tested tree, unless a tracked
    file in the worktree differed from what was staged when the run started."""
    runtime, _ = with_remote(tree, 'test_command = "true"')
    try:
        async with client_for(runtime) as client:
            s = Session(client)
            created = await s.ok("repo_create_branch", BRANCH)
            await s.ok("repo_apply_diff", {**BRANCH, "patch": PATCH})
            if rewrite:  # what an earlier run (or a tool outside cedargate) left in a tracked file
                worktree = runtime.config.workspaces_dir / "acme/web" / str(created["workspace"])
                (worktree / "README.md").write_text("changed under the tests\n")
            await s.ok("repo_run_tests", WEB)
            await s.ok("repo_commit", {**BRANCH, "message": "Raise the timeout"})
            opened = await s.ok("repo_open_pull_request", {**BRANCH, "title": "Raise the timeout"})
    finally:
        runtime.close()
    assert said.format(base=created["base_commit"]) in opened["body"]


async def test_a_branch_with_nothing_new_is_refused_before_anything_is_pushed(tree: Path) -> None:
    runtime, remote = with_remote(tree)
    try:
        async with client_for(runtime) as client:
            s = Session(client)
            await s.ok("repo_create_branch", BRANCH)
            message = await s.refused("repo_open_pull_request", {**BRANCH, "title": "Nothing yet"})
    finally:
        runtime.close()
    assert "`agent/timeout` has no commit that `main` lacks, so there is nothing to propose" in message
    assert "nothing was pushed" in message
    assert git_text(remote, ["for-each-ref"]) == ""


async def test_a_missing_token_refuses_before_anything_is_pushed(tree: Path, forge: ForgeStandIn) -> None:
    runtime, remote = _github_runtime(tree, forge)
    try:
        async with client_for(runtime) as client:
            s = Session(client)
            await s.ok("repo_write_file", {**BRANCH, "path": "a.txt", "content": "a"})
            message = await s.refused("repo_open_pull_request", {**BRANCH, "title": "Add a"})
    finally:
        runtime.close()
    assert f"`{TOKEN_ENV}`" in message and "is not set" in message
    assert forge.requests == []
    assert git_text(remote, ["for-each-ref"]) == ""


@pytest.mark.parametrize(
    "line",
    [
        "## Provenance (recorded by cedargate)",
        "### provenance",
        "<h2>Provenance</h2>",
        "- tests: recorded by cedargate",
    ],
)
async def test_a_body_passing_for_the_provenance_section_is_refused_before_anything_is_pushed(
    tree: Path, forge: ForgeStandIn, monkeypatch: pytest.MonkeyPatch, line: str
) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    runtime, remote = _github_runtime(tree, forge)
    body = f"Raises the timeout.\n\n{line}\n- task: `someone-elses-task`\n"
    try:
        async with client_for(runtime) as client:
            s = Session(client)
            await s.ok("repo_write_file", {**BRANCH, "path": "a.txt", "content": "a"})
            message = await s.refused("repo_open_pull_request", {**BRANCH, "title": "Add a", "body": body})
            assert git_text(remote, ["for-each-ref"]) == ""  # refused before the push
            # A heading that does not pass for the section is the agent's to write.
            opened = await s.ok(
                "repo_open_pull_request", {**BRANCH, "title": "Add a", "body": "## Why\nRequests time out."}
            )
    finally:
        runtime.close()
    assert "field `body`" in message and "reads as the provenance section" in message
    assert len(forge.requests) == 1 and opened["body"].startswith("## Why\nRequests time out.\n\n## Provenance")


async def test_a_forge_refusal_is_reported_with_its_status(
    tree: Path, forge: ForgeStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    forge.status = 422
    runtime, _ = _github_runtime(tree, forge)
    try:
        async with client_for(runtime) as client:
            s = Session(client)
            await s.ok("repo_write_file", {**BRANCH, "path": "a.txt", "content": "a"})
            message = await s.refused("repo_open_pull_request", {**BRANCH, "title": "Add a"})
    finally:
        runtime.close()
    assert "HTTP 422" in message and "Validation Failed" in message and TOKEN not in message


async def test_a_pull_request_from_a_protected_branch_is_denied_by_policy(tree: Path, forge: ForgeStandIn) -> None:
    runtime, _ = _github_runtime(tree, forge)
    try:
        async with client_for(runtime) as client:
            message = await Session(client).refused(
                "repo_open_pull_request", {**WEB, "branch": "main", "title": "Straight from main"}
            )
    finally:
        runtime.close()
    assert "protected-branches" in message
    assert forge.requests == []


async def test_a_token_is_never_sent_over_plain_http_to_another_host(
    tree: Path, forge: ForgeStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    runtime, remote = _github_runtime(tree, forge)
    runtime.close()
    config_path = tree / "cedargate.toml"
    config_path.write_text(config_path.read_text().replace(forge.url, "http://forge.example.test"))
    runtime = build_runtime(load_config(config_path, environ={}))
    try:
        async with client_for(runtime) as client:
            s = Session(client)
            await s.ok("repo_write_file", {**BRANCH, "path": "a.txt", "content": "a"})
            message = await s.refused("repo_open_pull_request", {**BRANCH, "title": "Add a"})
    finally:
        runtime.close()
    assert "must be https" in message
    assert git_text(remote, ["for-each-ref"]) == ""


async def _refused_pull_request(tree: Path, forge: ForgeStandIn) -> tuple[str, dict[str, Any], str, Path]:
    """Write a file on the task branch, ask for a pull request the forge refuses; the message, event, commit, remote."""
    runtime, remote = _github_runtime(tree, forge)
    try:
        async with client_for(runtime) as client:
            s = Session(client)
            written = await s.ok("repo_write_file", {**BRANCH, "path": "a.txt", "content": "a"})
            message = await s.refused("repo_open_pull_request", {**BRANCH, "title": "Add a"})
    finally:
        runtime.close()
    return message, audit_events(runtime.config.audit.path)[-1], written["commit"], remote


async def test_a_forge_reply_echoing_the_token_reaches_neither_the_agent_nor_the_trail(
    tree: Path, forge: ForgeStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    forge.status, forge.reply = 403, json.dumps({"message": f"token {TOKEN} lacks scope"}).encode()
    message, event, _, _ = await _refused_pull_request(tree, forge)
    assert "HTTP 403" in message and "token [REDACTED] lacks scope" in message
    assert TOKEN not in message and TOKEN not in json.dumps(event)
    assert TOKEN not in (tree / "audit.jsonl").read_text()


async def test_a_token_echoed_in_the_urls_of_a_created_pull_request_is_redacted(
    tree: Path, forge: ForgeStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    urls = {"html_url": f"https://forge.test/pull/7?t={TOKEN}", "url": f"https://forge.test/api/7?t={TOKEN}"}
    forge.reply = json.dumps({"number": 7, **urls}).encode()
    runtime, _ = _github_runtime(tree, forge)
    try:
        async with client_for(runtime) as client:
            s = Session(client)
            await s.ok("repo_write_file", {**BRANCH, "path": "a.txt", "content": "a"})
            opened = await s.ok("repo_open_pull_request", {**BRANCH, "title": "Add a"})
    finally:
        runtime.close()
    assert opened["pull_request"] == {"number": 7, "url": "https://forge.test/pull/7?t=[REDACTED]"}
    assert TOKEN not in (tree / "audit.jsonl").read_text()


@pytest.mark.parametrize("reply", [b"<html>created</html>", b'{"html_url": "https://forge.test/pull/7"}', b"[7]"])
async def test_a_success_reply_without_a_pull_request_number_is_a_forge_error(
    tree: Path, forge: ForgeStandIn, monkeypatch: pytest.MonkeyPatch, reply: bytes
) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    forge.reply = reply
    message, event, _, _ = await _refused_pull_request(tree, forge)
    assert f"forge `{forge.url}` answered HTTP 201 without a pull request number" in message
    assert "unexpectedly" not in message and "was pushed" in message
    assert event["outcome"] == "failed"


async def test_after_a_forge_failure_the_error_and_the_trail_say_the_branch_was_pushed(
    tree: Path, forge: ForgeStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    forge.status = 500
    message, event, commit, remote = await _refused_pull_request(tree, forge)
    assert git_text(remote, ["rev-parse", "refs/heads/agent/timeout"]) == commit
    assert "HTTP 500" in message
    assert f"the branch `agent/timeout` was pushed at `{commit[:12]}`" in message
    assert "the pull request was not opened" in message and "`repo_open_pull_request`" in message
    assert event["execution"]["pushed"] == {"branch": "agent/timeout", "commit": commit}


async def test_a_422_names_what_the_forge_found_wrong(
    tree: Path, forge: ForgeStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    errors = [{"resource": "PullRequest", "code": "custom", "message": "A pull request already exists for x:y."}]
    forge.status, forge.reply = 422, json.dumps({"message": "Validation Failed", "errors": errors}).encode()
    message, _, _, _ = await _refused_pull_request(tree, forge)
    assert "(HTTP 422): Validation Failed: A pull request already exists for x:y." in message


@pytest.mark.parametrize("subject", ["Fix\u2028thing", "Fix\x1fthing", "Fix\x1e\x1fthing"])
async def test_a_commit_subject_holding_a_separator_is_described_not_a_crash_after_the_push(
    tree: Path, forge: ForgeStandIn, monkeypatch: pytest.MonkeyPatch, subject: str
) -> None:
    """Reading the commits for the body split subjects at line breaks and `\\x1f`, after the branch was pushed."""
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    runtime, remote = _github_runtime(tree, forge)
    try:
        async with client_for(runtime) as client:
            s = Session(client)
            written = await s.ok("repo_write_file", {**BRANCH, "path": "a.txt", "content": "a", "message": subject})
            opened = await s.ok("repo_open_pull_request", {**BRANCH, "title": "Add a"})
    finally:
        runtime.close()
    assert f"{written['commit'][:12]} {subject}" in forge.requests[0]["json"]["body"]
    assert opened["commit"] == written["commit"] == git_text(remote, ["rev-parse", "refs/heads/agent/timeout"])


@pytest.mark.parametrize("workspace", [False, True])
async def test_a_base_that_is_not_a_branch_is_refused_before_anything_is_pushed(
    tree: Path, forge: ForgeStandIn, monkeypatch: pytest.MonkeyPatch, workspace: bool
) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    runtime, remote = _github_runtime(tree, forge)
    try:
        async with client_for(runtime) as client:
            s = Session(client)
            if workspace:
                await s.ok("repo_create_branch", BRANCH)
            await s.ok("repo_write_file", {**BRANCH, "path": "a.txt", "content": "a"})
            message = await s.refused("repo_open_pull_request", {**BRANCH, "title": "Add a", "base": "no-such-branch"})
    finally:
        runtime.close()
    assert "field `base`: `no-such-branch` is not a commit in `acme/web`" in message
    assert "was pushed" not in message
    assert git_text(remote, ["for-each-ref"]) == "" and forge.requests == []
    assert "pushed" not in (audit_events(runtime.config.audit.path)[-1]["execution"] or {})


async def test_another_tasks_branch_cannot_be_pushed_or_proposed(
    tree: Path, forge: ForgeStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Task B publishing task A's workspace branch would put A's work out under B's name."""
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    runtime, remote = _github_runtime(tree, forge)
    other = build_runtime(
        load_config(tree / "cedargate.toml", environ={"CEDARGATE_AGENT": "agent-b", "CEDARGATE_TASK": "task-b"})
    )
    try:
        async with client_for(runtime) as owner_client, client_for(other) as other_client:
            owner, intruder = Session(owner_client), Session(other_client)
            created = await owner.ok("repo_create_branch", BRANCH)
            await owner.ok("repo_write_file", {**BRANCH, "path": "a.txt", "content": "a"})
            pushed = await intruder.refused("repo_push", BRANCH)
            proposed = await intruder.refused("repo_open_pull_request", {**BRANCH, "title": "Not mine"})
            assert git_text(remote, ["for-each-ref"]) == "" and forge.requests == []
            opened = await owner.ok("repo_open_pull_request", {**BRANCH, "title": "Mine"})
    finally:
        other.close()
        runtime.close()
    for message in (pushed, proposed):
        assert f"field `branch`: `agent/timeout` is checked out in workspace `{created['workspace']}`" in message
        assert "of task `demo-timeout`" in message and "not this task's" in message
    assert opened["pull_request"]["number"] == 1
