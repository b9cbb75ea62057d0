"""Interactive self-approval through elicitation, only where policy allows it and the client can ask."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
from mcp import Client
from sqlalchemy import select
from tests.conftest import audit_events, settled_reload
from tests.governed_tree import governed_config

from cedargate.approvals import ApprovalQueue, ApprovalStatus
from cedargate.config import StoreConfig, load_config
from cedargate.elicit import asks_in_forms
from cedargate.git import git_text
from cedargate.runtime import Runtime, build_runtime
from cedargate.server import build_server
from cedargate.store.tables import admin_actions

pytestmark = pytest.mark.anyio

MODES = ["legacy", "2026-07-28"]
DELETE = {"repository": "acme/web", "branch": "agent/old"}


def _runtime(tree: Path, *, self_approval: bool, environ: dict[str, str] | None = None) -> Runtime:
    if self_approval:
        policy = tree / "policies" / "staging.cedar"
        policy.write_text(
            policy.read_text().replace('@approval("sre")', '@approval("sre")\n@self_approval("interactive")')
        )
    path = governed_config(tree, StoreConfig(path=tree / "state.db"))
    runtime = build_runtime(load_config(path, environ=environ or {}))
    repo = runtime.config.repository("acme/web")
    assert repo is not None
    git_text(repo.path, ["branch", "agent/old"])
    return runtime


class Human:
    """The person at the keyboard: answers every question the same way and remembers what was asked."""

    def __init__(self, approve: bool) -> None:
        self.approve = approve
        self.asked: list[str] = []

    async def __call__(self, context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        self.asked.append(params.message)
        if not self.approve:
            return types.ElicitResult(action="decline")
        return types.ElicitResult(action="accept", content={"approve": True})


def _branch_exists(runtime: Runtime) -> bool:
    repo = runtime.config.repository("acme/web")
    assert repo is not None
    return git_text(repo.path, ["branch", "--list", "agent/old"]) != ""


@pytest.mark.parametrize("mode", MODES)
async def test_the_interactive_human_approves_through_elicitation_and_the_call_runs(tree: Path, mode: str) -> None:
    runtime = _runtime(tree, self_approval=True)
    human = Human(approve=True)
    try:
        async with Client(build_server(runtime), mode=mode, elicitation_callback=human) as client:
            result = await client.call_tool("repo_delete_branch", DELETE)
        assert runtime.store is not None
        with runtime.store.engine.connect() as connection:
            actions = connection.execute(select(admin_actions)).mappings().all()
    finally:
        runtime.close()
    assert result.is_error is False, result.content
    assert len(human.asked) == 1 and "repo_delete_branch" in human.asked[0]
    assert not _branch_exists(runtime)
    request, execution = audit_events(runtime.config.audit.path)
    assert request["outcome"] == "approval_required" and request["approval"]["self_approvable"] is True
    assert execution["outcome"] == "succeeded"
    assert execution["approval"]["id"] == request["approval"]["id"]
    assert execution["approval"]["approver"] == "alice"
    assert execution["approval"]["request_event_id"] == request["event_id"]
    # Recorded as every approver's decision is: who, what, and that it was their own request.
    assert [(a["actor"], a["action"], a["subject"], a["reason"]) for a in actions] == [
        ("alice", "approval_approved", request["approval"]["id"], "self-approved")
    ]


async def _unable_to_ask(context: Any, params: types.ElicitRequestParams) -> types.ErrorData:
    return types.ErrorData(code=types.METHOD_NOT_FOUND, message="no UI available to ask the user")


@pytest.mark.parametrize(
    ("mode", "answer"),
    [*((mode, Human(approve=False)) for mode in MODES), ("legacy", _unable_to_ask)],
    ids=[*(f"declined-{mode}" for mode in MODES), "client-fails-to-ask"],
)
async def test_a_declined_or_unasked_question_leaves_the_call_waiting_and_nothing_runs(
    tree: Path, mode: str, answer: Any
) -> None:
    """A client's error answer is not the call's: the agent still learns which approval it waits for."""
    runtime = _runtime(tree, self_approval=True)
    try:
        async with Client(build_server(runtime), mode=mode, elicitation_callback=answer) as client:
            result = await client.call_tool("repo_delete_branch", DELETE)
        assert runtime.store is not None
        [pending] = ApprovalQueue(runtime.store, runtime.config.approvals).list(ApprovalStatus.PENDING)
    finally:
        runtime.close()
    assert result.is_error is True
    assert pending.id in result.content[0].text  # type: ignore[union-attr]
    assert _branch_exists(runtime)


async def test_without_self_approval_in_policy_the_human_is_not_asked(tree: Path) -> None:
    runtime = _runtime(tree, self_approval=False)
    human = Human(approve=True)
    try:
        async with Client(build_server(runtime), elicitation_callback=human) as client:
            result = await client.call_tool("repo_delete_branch", DELETE)
    finally:
        runtime.close()
    assert result.is_error is True and human.asked == []
    assert _branch_exists(runtime)


async def test_an_autonomous_agent_always_goes_through_the_queue(tree: Path) -> None:
    runtime = _runtime(tree, self_approval=True, environ={"CEDARGATE_MODE": "autonomous"})
    human = Human(approve=True)
    try:
        async with Client(build_server(runtime), elicitation_callback=human) as client:
            result = await client.call_tool("repo_delete_branch", DELETE)
    finally:
        runtime.close()
    assert result.is_error is True and human.asked == []
    assert _branch_exists(runtime)
    [event] = audit_events(runtime.config.audit.path)
    assert event["approval"]["self_approvable"] is False


async def test_a_client_without_elicitation_gets_the_out_of_band_queue(tree: Path) -> None:
    runtime = _runtime(tree, self_approval=True)
    try:
        async with Client(build_server(runtime)) as client:
            result = await client.call_tool("repo_delete_branch", DELETE)
    finally:
        runtime.close()
    assert result.is_error is True
    assert "cedargate approvals approve" in result.content[0].text  # type: ignore[union-attr]
    assert _branch_exists(runtime)


def _drop_self_approval(tree: Path) -> None:
    policy = tree / "policies" / "staging.cedar"
    policy.write_text(policy.read_text().replace('@self_approval("interactive")\n', ""))


@pytest.mark.parametrize("mode", MODES)
async def test_a_pending_approval_is_not_offered_to_the_human_once_policy_drops_self_approval(
    tree: Path, mode: str
) -> None:
    runtime = _runtime(tree, self_approval=True)
    human = Human(approve=True)
    try:
        async with Client(build_server(runtime), mode=mode, elicitation_callback=Human(approve=False)) as client:
            await client.call_tool("repo_delete_branch", DELETE)
        _drop_self_approval(tree)
        assert (await settled_reload(runtime)) is not None
        async with Client(build_server(runtime), mode=mode, elicitation_callback=human) as client:
            result = await client.call_tool("repo_delete_branch", DELETE)
        assert runtime.store is not None
        pending = ApprovalQueue(runtime.store, runtime.config.approvals).list(ApprovalStatus.PENDING)
    finally:
        runtime.close()
    assert result.is_error is True and human.asked == []
    assert _branch_exists(runtime)
    assert [a.self_approvable for a in pending] == [False]
    assert pending[0].id in result.content[0].text  # type: ignore[union-attr]
    assert audit_events(runtime.config.audit.path)[-1]["approval"]["self_approvable"] is False


async def test_a_self_approved_grant_does_not_lift_the_call_once_policy_drops_self_approval(tree: Path) -> None:
    runtime = _runtime(tree, self_approval=True)
    try:
        async with Client(build_server(runtime), elicitation_callback=Human(approve=False)) as client:
            await client.call_tool("repo_delete_branch", DELETE)
        assert runtime.store is not None
        queue = ApprovalQueue(runtime.store, runtime.config.approvals)
        [pending] = queue.list(ApprovalStatus.PENDING)
        queue.self_approve(pending.id, "codex-demo", "alice")  # her yes, recorded before the reload
        _drop_self_approval(tree)
        assert (await settled_reload(runtime)) is not None
        async with Client(build_server(runtime)) as client:
            result = await client.call_tool("repo_delete_branch", DELETE)
    finally:
        runtime.close()
    assert result.is_error is True
    text = result.content[0].text  # type: ignore[union-attr]
    assert f"approval `{pending.id}` was approved by `alice` themselves" in text
    assert _branch_exists(runtime)
    assert audit_events(runtime.config.audit.path)[-1]["outcome"] == "approval_required"


@pytest.mark.parametrize(
    ("declared", "forms"),
    [({}, True), ({"form": {}}, True), ({"form": {}, "url": {}}, True), ({"url": {}}, False), (None, False)],
    ids=["empty", "form", "form and url", "url only", "none"],
)
def test_a_form_is_asked_only_of_a_client_that_can_show_one(declared: dict[str, Any] | None, forms: bool) -> None:
    capabilities = types.ClientCapabilities.model_validate({} if declared is None else {"elicitation": declared})
    assert asks_in_forms(capabilities) is forms
