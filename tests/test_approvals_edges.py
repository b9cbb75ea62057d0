"""Approvals at their edges: withdrawn grants, refused decisions, denials, floods, shadowed and outdated grants."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert, select, update
from tests.conftest import audit_events, settled_reload
from tests.governed_tree import DELETE, cli_on, delete_branch, governed_config

from cedargate.approvals import ApprovalQueue, ApprovalStatus
from cedargate.config import StoreConfig, load_config
from cedargate.git import git_text
from cedargate.runtime import Runtime, build_runtime
from cedargate.store import open_store
from cedargate.store.migrate import current_revision, upgrade
from cedargate.store.tables import approvals

pytestmark = pytest.mark.anyio

MAX_PENDING_PER_AGENT = 10  # the default cap (``cedargate.approvals.MAX_PENDING_PER_AGENT``)


def _runtime(tree: Path, store_config: StoreConfig, groups: str | None = None) -> Runtime:
    """The governed tree (deletes in staging need `sre`), with `[approvals.groups]` replaced when given."""
    path = governed_config(tree, store_config)
    if groups is not None:
        path.write_text(path.read_text().replace('sre = ["bob", "erin", "alice"]\n', groups))
    runtime = build_runtime(load_config(path, environ={}))
    repo = runtime.config.repository("acme/web")
    assert repo is not None
    git_text(repo.path, ["branch", "agent/old"])
    return runtime


@pytest.fixture
def governed(tree: Path, store_config: StoreConfig) -> Iterator[Runtime]:
    runtime = _runtime(tree, store_config)
    yield runtime
    runtime.close()


def _queue(runtime: Runtime) -> ApprovalQueue:
    assert runtime.store is not None
    return ApprovalQueue(runtime.store, runtime.config.approvals)


def _branch_exists(runtime: Runtime, branch: str = "agent/old") -> bool:
    repo = runtime.config.repository("acme/web")
    assert repo is not None
    return git_text(repo.path, ["branch", "--list", branch]) != ""


def _pending(runtime: Runtime) -> list[str]:
    return [a.id for a in _queue(runtime).list(ApprovalStatus.PENDING)]


def _actions(runtime: Runtime, capsys: pytest.CaptureFixture[str]) -> list[tuple[str, str, str, str]]:
    capsys.readouterr()
    assert cli_on(runtime, "actions", "--json") == 0
    return [(a["actor"], a["action"], a["subject"], a["reason"]) for a in json.loads(capsys.readouterr().out)]


async def test_an_approver_withdraws_an_unused_grant_and_the_retry_is_told_who_denied_it(
    governed: Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    await delete_branch(governed)
    [approval_id] = _pending(governed)
    assert cli_on(governed, "approvals", "approve", approval_id, "--as", "bob") == 0
    assert cli_on(governed, "approvals", "deny", approval_id, "--as", "bob", "--note", "approved by mistake") == 0
    assert _queue(governed).get(approval_id).status is ApprovalStatus.DENIED
    assert _actions(governed, capsys)[0] == ("bob", "approval_denied", approval_id, "approved by mistake")
    is_error, text = await delete_branch(governed)
    assert is_error and _branch_exists(governed)
    assert f"approval `{approval_id}` for this exact call was denied by `bob`" in text
    assert "approved by mistake" in text and "change the request" in text
    # Nothing waits for anyone: the text says what the call needs, not that it awaits it.
    assert "call needs approval by `sre`" in text and "no request was opened" in text and "awaits" not in text
    assert _pending(governed) == []


async def test_a_used_grant_cannot_be_withdrawn(governed: Runtime, capsys: pytest.CaptureFixture[str]) -> None:
    await delete_branch(governed)
    [approval_id] = _pending(governed)
    assert cli_on(governed, "approvals", "approve", approval_id, "--as", "bob") == 0
    assert not (await delete_branch(governed))[0]
    capsys.readouterr()
    assert cli_on(governed, "approvals", "deny", approval_id, "--as", "bob") == 2
    assert f"approval `{approval_id}` is consumed, not pending or approved" in capsys.readouterr().err
    assert _queue(governed).get(approval_id).status is ApprovalStatus.CONSUMED


@pytest.mark.parametrize(("user", "why"), [("codex-demo", "own request"), ("alice", "own request"), ("carol", "sre")])
async def test_a_refused_attempt_to_decide_is_recorded_with_who_and_why(
    governed: Runtime, user: str, why: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await delete_branch(governed)
    [approval_id] = _pending(governed)
    assert cli_on(governed, "approvals", "approve", approval_id, "--as", user) == 2
    [(actor, action, subject, reason)] = _actions(governed, capsys)
    assert (actor, action, subject) == (user, "approval_refused", approval_id)
    assert reason.startswith(f"tried to approve: `{user}` may not decide approval `{approval_id}`")
    assert why in reason
    assert _pending(governed) == [approval_id]


async def test_a_denied_call_retried_is_refused_naming_the_approver_and_opens_nothing(governed: Runtime) -> None:
    await delete_branch(governed)
    [approval_id] = _pending(governed)
    assert cli_on(governed, "approvals", "deny", approval_id, "--as", "erin", "--note", "not during the freeze") == 0
    for _ in range(2):
        is_error, text = await delete_branch(governed)
        assert is_error and _branch_exists(governed)
        assert "denied by `erin`" in text and "not during the freeze" in text
        assert "no new request was opened" in text
    assert _pending(governed) == []
    last = audit_events(governed.config.audit.path)[-1]
    assert last["outcome"] == "approval_required"
    assert (last["approval"]["id"], last["approval"]["status"], last["approval"]["approver"]) == (
        approval_id,
        "denied",
        "erin",
    )
    # Other arguments are another request; the same one may be asked again once the TTL has passed.
    assert (await delete_branch(governed, "agent/other"))[0]
    assert len(_pending(governed)) == 1
    assert governed.store is not None
    with governed.store.engine.begin() as connection:
        long_ago = datetime.now(UTC) - timedelta(minutes=governed.config.approvals.ttl_minutes + 1)
        connection.execute(update(approvals).where(approvals.c.id == approval_id).values(decided_at=long_ago))
    is_error, text = await delete_branch(governed)
    assert is_error and "is pending" in text
    assert len(_pending(governed)) == 2


async def test_one_agent_cannot_open_more_pending_approvals_than_the_cap(governed: Runtime) -> None:
    for n in range(MAX_PENDING_PER_AGENT):
        await delete_branch(governed, f"agent/flood-{n}")
    assert len(_pending(governed)) == MAX_PENDING_PER_AGENT
    is_error, text = await delete_branch(governed, "agent/flood-extra")
    assert is_error
    assert f"already has {MAX_PENDING_PER_AGENT} pending approvals" in text
    assert f"the most one agent may have open at once is {MAX_PENDING_PER_AGENT}" in text
    assert "cedargate approvals list" in text
    assert len(_pending(governed)) == MAX_PENDING_PER_AGENT
    is_error, text = await delete_branch(governed, "agent/flood-0")  # a call already waiting still gets its request
    assert is_error and "is pending" in text
    first = _queue(governed).list(ApprovalStatus.PENDING)[-1]
    assert cli_on(governed, "approvals", "deny", first.id, "--as", "bob") == 0
    assert (await delete_branch(governed, "agent/flood-extra"))[0]
    assert len(_pending(governed)) == MAX_PENDING_PER_AGENT


async def test_an_older_grant_the_policies_accept_is_used_when_a_newer_one_is_not(
    tree: Path, store_config: StoreConfig
) -> None:
    runtime = _runtime(tree, store_config, 'sre = ["bob"]\nsecurity = ["erin"]\n')
    policy = tree / "policies" / "staging.cedar"
    try:
        queue = _queue(runtime)
        await delete_branch(runtime)
        [by_bob] = _pending(runtime)
        queue.decide(by_bob, "bob", approve=True)
        policy.write_text(policy.read_text().replace('@approval("sre")', '@approval("security")'))
        assert (await settled_reload(runtime)) is not None
        is_error, _ = await delete_branch(runtime)  # bob's grant does not count for `security`: erin is asked
        assert is_error
        [by_erin] = _pending(runtime)
        queue.decide(by_erin, "erin", approve=True)
        policy.write_text(policy.read_text().replace('@approval("security")', '@approval("sre")'))
        assert (await settled_reload(runtime)) is not None
        is_error, text = await delete_branch(runtime)
        assert not is_error, text
        assert not _branch_exists(runtime)
        assert queue.get(by_bob).status is ApprovalStatus.CONSUMED
        assert queue.get(by_erin).status is ApprovalStatus.APPROVED
    finally:
        runtime.close()
    assert audit_events(tree / "audit.jsonl")[-1]["approval"]["approver"] == "bob"


async def test_a_grant_does_not_lift_the_call_once_the_tools_manifest_changed(governed: Runtime, tree: Path) -> None:
    await delete_branch(governed)
    [approval_id] = _pending(governed)
    assert cli_on(governed, "approvals", "approve", approval_id, "--as", "bob") == 0
    manifest = tree / "tools/repo/delete_branch.toml"
    manifest.write_text(manifest.read_text().replace('description = "', 'description = "CHANGED: ', 1))
    assert (await settled_reload(governed)) is not None
    for named in (approval_id, None):
        is_error, text = await delete_branch(governed, approval=named)
        assert is_error and _branch_exists(governed)
        assert f"approval `{approval_id}` was granted for tool `{DELETE}`" in text
        assert "the tool changed since" in text
    assert _queue(governed).get(approval_id).status is ApprovalStatus.APPROVED
    [fresh] = _pending(governed)
    assert fresh != approval_id and fresh in text
    assert cli_on(governed, "approvals", "approve", fresh, "--as", "bob") == 0
    is_error, text = await delete_branch(governed)
    assert not is_error, text
    assert audit_events(governed.config.audit.path)[-1]["approval"]["id"] == fresh


async def test_a_grant_without_a_recorded_manifest_never_lifts_a_call(governed: Runtime) -> None:
    """Rows from before the migration that added ``manifest_hash`` fail closed."""
    await delete_branch(governed)
    [approval_id] = _pending(governed)
    assert cli_on(governed, "approvals", "approve", approval_id, "--as", "bob") == 0
    assert governed.store is not None
    with governed.store.engine.begin() as connection:
        connection.execute(update(approvals).where(approvals.c.id == approval_id).values(manifest_hash=None))
    is_error, text = await delete_branch(governed)
    assert is_error and _branch_exists(governed)
    assert "was granted before cedargate recorded which version of a tool an approver saw" in text


def test_the_manifest_hash_migration_keeps_earlier_approvals(store_config: StoreConfig) -> None:
    store = open_store(store_config, migrate=False)
    try:
        upgrade(store.engine, "0004")
        now = datetime.now(UTC)
        row = {
            "id": "apr_old",
            "tool": DELETE,
            "agent": "codex",
            "team": "web",
            "on_behalf_of": "alice",
            "task": "t",
            "args_digest": "d",
            "arguments": "{}",
            "resource": "Repository::acme/web",
            "environment": "staging",
            "policies": "[]",
            "reason": "r",
            "approver_group": "sre",
            "status": "approved",
            "created_at": now,
            "expires_at": now + timedelta(minutes=5),
            "request_event_id": "e",
            "self_approvable": False,
        }
        with store.engine.begin() as connection:
            connection.execute(insert(approvals).values(**row))  # the 0004 columns only
        upgrade(store.engine)
        assert current_revision(store.engine) == "0005"
        with store.engine.connect() as connection:
            migrated = connection.execute(select(approvals).where(approvals.c.id == "apr_old")).mappings().one()
        assert (migrated["status"], migrated["manifest_hash"]) == ("approved", None)
    finally:
        store.close()


def test_replicas_opening_requests_at_once_never_pass_the_pending_cap(store_config: StoreConfig, tree: Path) -> None:
    """Each opener counts and inserts under a per-agent lock, so racing replicas cannot both take the last slot."""
    from cedargate.approvals import ApprovalRequest, RequestRefused

    config = load_config(governed_config(tree, store_config), environ={})
    stores = [open_store(config.store) for _ in range(6)]
    outcomes: list[str] = []
    barrier = threading.Barrier(len(stores))

    def open_one(n: int) -> None:
        queue = ApprovalQueue(stores[n], config.approvals, max_pending=2)
        request = ApprovalRequest(
            tool=DELETE,
            agent="codex",
            team="web",
            on_behalf_of="alice",
            task="t",
            arguments={"branch": f"agent/{n}"},
            args_digest=f"digest-{n}",
            resource="Repository::acme/web",
            environment="staging",
            policies=["p"],
            reason="r",
            approver_groups=["sre"],
            request_event_id=f"e{n}",
        )
        barrier.wait()
        try:
            queue.open(request)
            outcomes.append("opened")
        except RequestRefused:
            outcomes.append("refused")

    threads = [threading.Thread(target=open_one, args=(n,)) for n in range(len(stores))]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert sorted(outcomes) == ["opened"] * 2 + ["refused"] * 4
        assert len(ApprovalQueue(stores[0], config.approvals).list(ApprovalStatus.PENDING)) == 2
    finally:
        for store in stores:
            store.close()
