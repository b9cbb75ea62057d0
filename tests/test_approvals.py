"""Approvals: approval-required calls wait in the store until an approver grants them, once."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters
from sqlalchemy import select, update
from tests.conftest import audit_events, settled_reload
from tests.governed_tree import DELETE, cli_on, delete_branch, governed_config

from cedargate.approvals import ApprovalQueue, ApprovalStatus
from cedargate.audit.verify import verify_log
from cedargate.config import StoreConfig, load_config
from cedargate.errors import ApprovalError
from cedargate.git import git_text
from cedargate.identity import principal_from_config
from cedargate.pipeline import CallRequest
from cedargate.runtime import Runtime, build_runtime
from cedargate.session import SessionState
from cedargate.store.tables import admin_actions, approvals

pytestmark = pytest.mark.anyio


@pytest.fixture
def governed(tree: Path, store_config: StoreConfig) -> Iterator[Runtime]:
    runtime = build_runtime(load_config(governed_config(tree, store_config), environ={}))
    repo = runtime.config.repository("acme/web")
    assert repo is not None
    git_text(repo.path, ["branch", "agent/old"])
    git_text(repo.path, ["branch", "agent/other"])
    yield runtime
    runtime.close()


def _branch_exists(runtime: Runtime, branch: str) -> bool:
    repo = runtime.config.repository("acme/web")
    assert repo is not None
    return git_text(repo.path, ["branch", "--list", branch]) != ""


def _pending_id(runtime: Runtime) -> str:
    assert runtime.store is not None
    [pending] = ApprovalQueue(runtime.store, runtime.config.approvals).list(ApprovalStatus.PENDING)
    return pending.id


async def test_an_approval_required_call_opens_a_pending_approval_names_who_may_approve_and_runs_nothing(
    governed: Runtime,
) -> None:
    is_error, text = await delete_branch(governed)
    assert is_error
    approval_id = _pending_id(governed)
    assert approval_id in text
    assert "awaits approval by `sre`" in text
    assert "nothing ran" in text
    assert _branch_exists(governed, "agent/old")
    assert governed.store is not None
    approval = ApprovalQueue(governed.store, governed.config.approvals).get(approval_id)
    assert approval.tool == DELETE
    assert approval.agent == "codex-demo" and approval.on_behalf_of == "alice"
    assert approval.policies == ["staging-destructive-needs-sre"]
    assert approval.approver_groups == ["sre"]
    assert approval.arguments == {"repository": "acme/web", "branch": "agent/old"}
    [event] = audit_events(governed.config.audit.path)
    assert event["outcome"] == "approval_required"
    assert event["approval"] == {
        "id": approval_id,
        "status": "pending",
        "approver": None,
        "request_event_id": event["event_id"],
        "self_approvable": False,
    }


async def test_retrying_the_same_call_reuses_the_open_approval(governed: Runtime) -> None:
    await delete_branch(governed)
    await delete_branch(governed)
    first, second = audit_events(governed.config.audit.path)
    assert first["approval"]["id"] == second["approval"]["id"]


async def test_an_approved_retry_runs_once_and_the_audit_trail_links_request_approval_and_execution(
    governed: Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    await delete_branch(governed)
    approval_id = _pending_id(governed)
    assert cli_on(governed, "approvals", "approve", approval_id, "--as", "bob", "--json") == 0
    assert json.loads(capsys.readouterr().out)["status"] == "approved"
    is_error, text = await delete_branch(governed)
    assert not is_error, text
    assert not _branch_exists(governed, "agent/old")
    request, execution = audit_events(governed.config.audit.path)
    assert execution["outcome"] == "succeeded"
    assert execution["decision"]["effect"] == "allow"
    assert [p["id"] for p in execution["decision"]["policies"]] == ["staging-destructive-when-approved"]
    assert execution["approval"] == {
        "id": approval_id,
        "status": "granted",
        "approver": "bob",
        "request_event_id": request["event_id"],
        "self_approvable": False,
    }
    assert governed.store is not None
    used = ApprovalQueue(governed.store, governed.config.approvals).get(approval_id)
    assert used.status is ApprovalStatus.CONSUMED
    assert used.consumed_event_id == execution["event_id"]
    with governed.store.engine.connect() as connection:
        [action] = connection.execute(select(admin_actions)).mappings().all()
    assert (action["actor"], action["action"], action["subject"]) == ("bob", "approval_approved", approval_id)
    assert verify_log(governed.config.audit.path).ok


async def test_a_used_approval_is_not_reused(governed: Runtime) -> None:
    await delete_branch(governed)
    approval_id = _pending_id(governed)
    cli_on(governed, "approvals", "approve", approval_id, "--as", "bob")
    assert not (await delete_branch(governed))[0]
    repo = governed.config.repository("acme/web")
    assert repo is not None
    git_text(repo.path, ["branch", "agent/old"])
    is_error, text = await delete_branch(governed, approval=approval_id)
    assert is_error
    assert f"approval `{approval_id}` is consumed" in text
    assert _branch_exists(governed, "agent/old")


async def test_an_approval_is_bound_to_the_arguments_it_was_granted_for(governed: Runtime) -> None:
    await delete_branch(governed, "agent/old")
    approval_id = _pending_id(governed)
    cli_on(governed, "approvals", "approve", approval_id, "--as", "bob")
    is_error, text = await delete_branch(governed, "agent/other", approval=approval_id)
    assert is_error
    assert "granted for other arguments" in text
    assert _branch_exists(governed, "agent/other")
    is_error, _ = await delete_branch(governed, "agent/other")
    assert is_error and _branch_exists(governed, "agent/other")


async def test_an_expired_approval_is_refused(governed: Runtime) -> None:
    await delete_branch(governed)
    approval_id = _pending_id(governed)
    cli_on(governed, "approvals", "approve", approval_id, "--as", "bob")
    assert governed.store is not None
    with governed.store.engine.begin() as connection:
        past = datetime.now(UTC) - timedelta(seconds=1)
        connection.execute(update(approvals).where(approvals.c.id == approval_id).values(expires_at=past))
    is_error, text = await delete_branch(governed, approval=approval_id)
    assert is_error
    assert f"approval `{approval_id}` is expired" in text
    assert _branch_exists(governed, "agent/old")


@pytest.mark.parametrize("user", ["alice", "codex-demo", "carol"])
async def test_the_requester_its_human_and_non_members_cannot_approve(
    governed: Runtime, user: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await delete_branch(governed)
    approval_id = _pending_id(governed)
    assert cli_on(governed, "approvals", "approve", approval_id, "--as", user) == 2
    error = capsys.readouterr().err
    assert f"`{user}` may not decide approval `{approval_id}`" in error
    assert _pending_id(governed) == approval_id


async def test_a_denied_approval_cannot_be_used(governed: Runtime) -> None:
    await delete_branch(governed)
    approval_id = _pending_id(governed)
    assert cli_on(governed, "approvals", "deny", approval_id, "--as", "erin", "--note", "not today") == 0
    is_error, text = await delete_branch(governed, approval=approval_id)
    assert is_error and f"approval `{approval_id}` is denied" in text
    assert _branch_exists(governed, "agent/old")


async def test_approvals_list_and_show_print_json(governed: Runtime, capsys: pytest.CaptureFixture[str]) -> None:
    await delete_branch(governed)
    approval_id = _pending_id(governed)
    capsys.readouterr()
    assert cli_on(governed, "approvals", "list", "--json") == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert listed["id"] == approval_id and listed["status"] == "pending"
    assert cli_on(governed, "approvals", "show", approval_id, "--json") == 0
    assert json.loads(capsys.readouterr().out)["approver_groups"] == ["sre"]


def test_only_one_of_two_racing_calls_consumes_a_grant(governed: Runtime) -> None:
    assert governed.store is not None
    queue = ApprovalQueue(governed.store, governed.config.approvals)
    anyio.run(delete_branch, governed)
    approval_id = _pending_id(governed)
    queue.decide(approval_id, "bob", approve=True)
    results: list[bool] = []

    async def race() -> None:
        async with anyio.create_task_group() as tg:
            for n in range(4):
                tg.start_soon(lambda n=n: _consume(n))

    async def _consume(n: int) -> None:
        results.append(await anyio.to_thread.run_sync(queue.consume, approval_id, f"event-{n}"))

    anyio.run(race)
    assert sorted(results) == [False, False, False, True]


async def test_a_second_server_process_sees_an_approval_granted_through_the_first(tree: Path, postgres: object) -> None:
    from tests.store_fixtures import PostgresCluster

    assert isinstance(postgres, PostgresCluster)
    store = StoreConfig(url=postgres.create_database())
    config_path = governed_config(tree, store)
    first = build_runtime(load_config(config_path, environ={}))
    try:
        repo = first.config.repository("acme/web")
        assert repo is not None
        git_text(repo.path, ["branch", "agent/old"])
        is_error, _ = await delete_branch(first)
        assert is_error
        approval_id = _pending_id(first)
        assert cli_on(first, "approvals", "approve", approval_id, "--as", "bob") == 0
    finally:
        first.close()
    second_config = tree / "replica2.toml"
    second_config.write_text(config_path.read_text().replace('path = "audit.jsonl"', 'path = "audit-2.jsonl"'))
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "cedargate", "--config", str(second_config), "serve"]
    )
    with anyio.fail_after(60):
        async with Client(params) as client:
            result = await client.call_tool(DELETE, {"repository": "acme/web", "branch": "agent/old"})
    assert result.is_error is False, result.content
    assert git_text(repo.path, ["branch", "--list", "agent/old"]) == ""
    [event] = audit_events(tree / "audit-2.jsonl")
    assert event["approval"]["id"] == approval_id
    assert event["approval"]["approver"] == "bob"


async def test_an_approved_call_stopped_by_a_rate_cap_keeps_its_approval_for_the_retry(
    tree: Path, store_config: StoreConfig
) -> None:
    caps = "\n[budgets.agents.codex-demo]\ncalls_per_minute = 0\n"
    runtime = build_runtime(load_config(governed_config(tree, store_config, extra=caps), environ={}))
    repo = runtime.config.repository("acme/web")
    assert repo is not None
    git_text(repo.path, ["branch", "agent/old"])
    try:
        await delete_branch(runtime)
        approval_id = _pending_id(runtime)
        assert cli_on(runtime, "approvals", "approve", approval_id, "--as", "bob") == 0
        is_error, text = await delete_branch(runtime)
        assert is_error
        assert "calls-per-minute cap is 0 calls" in text
        assert _branch_exists(runtime, "agent/old")
        assert runtime.store is not None
        approval = ApprovalQueue(runtime.store, runtime.config.approvals).get(approval_id)
        assert approval.status is ApprovalStatus.APPROVED
    finally:
        runtime.close()
    assert [e["outcome"] for e in audit_events(tree / "audit.jsonl")] == ["approval_required", "over_budget"]


async def test_a_call_cancelled_after_its_grant_was_taken_gives_the_grant_back(governed: Runtime) -> None:
    await delete_branch(governed)
    approval_id = _pending_id(governed)
    cli_on(governed, "approvals", "approve", approval_id, "--as", "bob")
    request = CallRequest(
        DELETE,
        {"repository": "acme/web", "branch": "agent/old"},
        principal_from_config(governed.config),
        SessionState(),
    )
    with anyio.CancelScope() as scope:

        async def cancel_once_admitted(fn: Callable[..., Any], *args: Any) -> Any:
            result = await anyio.to_thread.run_sync(fn, *args)
            if getattr(args[0], "__name__", "") == "admit":  # the grant is consumed: the client gives up now
                scope.cancel()
            return result

        await governed.pipeline.rewired(offload=cancel_once_admitted).call(request)
    assert scope.cancelled_caught
    assert _branch_exists(governed, "agent/old")
    cancelled = audit_events(governed.config.audit.path)[-1]
    assert cancelled["outcome"] == "failed" and "before its tool ran" in cancelled["error"]
    assert cancelled["approval"]["status"] == "granted"
    assert governed.store is not None
    assert ApprovalQueue(governed.store, governed.config.approvals).get(approval_id).status is ApprovalStatus.APPROVED
    is_error, text = await delete_branch(governed)  # the grant still serves the call it was given for
    assert not is_error, text
    assert not _branch_exists(governed, "agent/old")


def _groups_runtime(tree: Path, store_config: StoreConfig, groups: str) -> Runtime:
    """The governed tree with `[approvals.groups]` as given (one `name = [...]` line each)."""
    path = governed_config(tree, store_config)
    path.write_text(path.read_text().replace('sre = ["bob", "erin", "alice"]\n', groups))
    runtime = build_runtime(load_config(path, environ={}))
    repo = runtime.config.repository("acme/web")
    assert repo is not None
    git_text(repo.path, ["branch", "agent/old"])
    return runtime


async def _pending_then_policy_asks_security(runtime: Runtime, tree: Path) -> str:
    """A delete waits for `sre`; then the policy is reloaded to ask `security`. Returns the waiting approval."""
    await delete_branch(runtime)
    stale = _pending_id(runtime)
    policy = tree / "policies" / "staging.cedar"
    policy.write_text(policy.read_text().replace('@approval("sre")', '@approval("security")'))
    assert (await settled_reload(runtime)) is not None
    return stale


async def test_a_grant_from_outside_the_groups_the_policies_in_force_name_does_not_lift_the_call(
    tree: Path, store_config: StoreConfig
) -> None:
    runtime = _groups_runtime(tree, store_config, 'sre = ["bob"]\nsecurity = ["erin"]\n')
    try:
        stale = await _pending_then_policy_asks_security(runtime, tree)
        assert runtime.store is not None
        queue = ApprovalQueue(runtime.store, runtime.config.approvals)
        queue.decide(stale, "bob", approve=True)  # bob is in `sre`, the group stored on the old approval
        is_error, text = await delete_branch(runtime)
        assert is_error
        assert f"approval `{stale}` was granted by `bob`, who is not in `security`" in text
        assert _branch_exists(runtime, "agent/old")
        fresh = _pending_id(runtime)
        assert fresh != stale and fresh in text
        assert queue.get(fresh).approver_groups == ["security"]
        with pytest.raises(ApprovalError, match="not a member of `security`"):
            queue.decide(fresh, "bob", approve=True)
        queue.decide(fresh, "erin", approve=True)
        is_error, text = await delete_branch(runtime)
        assert not is_error, text
        assert not _branch_exists(runtime, "agent/old")
    finally:
        runtime.close()
    assert audit_events(tree / "audit.jsonl")[-1]["approval"]["approver"] == "erin"


async def test_a_pending_approval_opened_under_other_groups_is_retired_when_the_call_is_retried(
    tree: Path, store_config: StoreConfig
) -> None:
    runtime = _groups_runtime(tree, store_config, 'sre = ["bob"]\nsecurity = ["erin"]\n')
    try:
        stale = await _pending_then_policy_asks_security(runtime, tree)
        is_error, text = await delete_branch(runtime)
        assert is_error and "a member of `security`" in text
        assert runtime.store is not None
        queue = ApprovalQueue(runtime.store, runtime.config.approvals)
        assert queue.get(stale).status is ApprovalStatus.EXPIRED
        with pytest.raises(ApprovalError):
            queue.decide(stale, "bob", approve=True)
        assert _pending_id(runtime) != stale
    finally:
        runtime.close()


async def test_an_approval_nobody_can_decide_says_the_server_must_be_restarted_after_the_config_change(
    tree: Path, store_config: StoreConfig
) -> None:
    runtime = _groups_runtime(tree, store_config, 'sre = ["alice"]\n')
    try:
        is_error, text = await delete_branch(runtime)
    finally:
        runtime.close()
    assert is_error and "nobody can decide it" in text
    assert "ask an admin to add one and restart the server" in text


async def test_an_approval_shows_its_tools_sensitive_fields_redacted_and_still_binds_the_real_arguments(
    tree: Path, store_config: StoreConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tree / "tools/repo/delete_branch.toml"
    manifest.write_text(
        manifest.read_text().replace("idempotent = false\n", 'idempotent = false\nsensitive_fields = ["branch"]\n')
    )
    runtime = build_runtime(load_config(governed_config(tree, store_config), environ={}))
    try:
        repo = runtime.config.repository("acme/web")
        assert repo is not None
        git_text(repo.path, ["branch", "agent/hunter2-sensitive"])
        await delete_branch(runtime, "agent/hunter2-sensitive")
        approval_id = _pending_id(runtime)
        assert cli_on(runtime, "approvals", "list", "--json") == 0
        listed = capsys.readouterr().out
        assert "hunter2-sensitive" not in listed
        assert json.loads(listed)[0]["arguments"]["branch"] == "[REDACTED]"
        assert cli_on(runtime, "approvals", "approve", approval_id, "--as", "bob") == 0
        is_error, text = await delete_branch(runtime, "agent/hunter2-sensitive")
        assert not is_error, text
        assert not _branch_exists(runtime, "agent/hunter2-sensitive")
    finally:
        runtime.close()
