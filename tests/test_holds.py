"""Revocation and freeze take effect on the next call of a running session, and are undone."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from sqlalchemy import select
from tests.conftest import audit_events
from tests.governed_tree import governed_config

from cedargate.approvals import ApprovalQueue, ApprovalStatus
from cedargate.cli import main
from cedargate.config import StoreConfig, load_config
from cedargate.runtime import Runtime, build_runtime
from cedargate.server import build_server
from cedargate.store.tables import admin_actions

pytestmark = pytest.mark.anyio

READ = {"repository": "acme/web", "path": "README.md"}


def _write(branch: str) -> dict[str, str]:
    return {"repository": "acme/web", "branch": branch, "path": "a.txt", "content": branch}


@pytest.fixture
def dev(tree: Path, store_config: StoreConfig) -> Iterator[Runtime]:
    runtime = build_runtime(load_config(governed_config(tree, store_config, staging=False), environ={}))
    yield runtime
    runtime.close()


def _cli(runtime: Runtime, *args: str) -> int:
    return main(["--config", str(runtime.config.base_dir / "cedargate.toml"), *args])


async def test_a_revoked_agent_is_refused_mid_session_until_reinstated(dev: Runtime) -> None:
    async with Client(build_server(dev)) as client:
        before = await client.call_tool("repo_read_file", READ)
        assert _cli(dev, "revoke", "agent", "codex-demo", "--as", "olga", "--reason", "leaked token") == 0
        during = await client.call_tool("repo_read_file", READ)
        assert _cli(dev, "reinstate", "agent", "codex-demo", "--as", "olga") == 0
        after = await client.call_tool("repo_read_file", READ)
    assert before.is_error is False and after.is_error is False
    assert during.is_error is True
    text = during.content[0].text  # type: ignore[union-attr]
    assert "agent `codex-demo` was revoked by `olga` (leaked token)" in text
    assert [e["outcome"] for e in audit_events(dev.config.audit.path)] == ["succeeded", "revoked", "succeeded"]
    assert dev.store is not None
    with dev.store.engine.connect() as connection:
        actions = connection.execute(select(admin_actions.c.action, admin_actions.c.actor)).all()
    assert [tuple(a) for a in actions] == [("revoke_agent", "olga"), ("reinstate_agent", "olga")]


async def test_a_frozen_environment_runs_reads_only_until_unfrozen(dev: Runtime) -> None:
    assert _cli(dev, "freeze", "--environment", "dev", "--as", "olga", "--reason", "incident 42") == 0
    async with Client(build_server(dev)) as client:
        read = await client.call_tool("repo_read_file", READ)
        write = await client.call_tool("repo_write_file", _write("agent/f1"))
        assert _cli(dev, "unfreeze", "--environment", "dev", "--as", "olga") == 0
        thawed = await client.call_tool("repo_write_file", _write("agent/f2"))
    assert read.is_error is False
    assert write.is_error is True
    assert "environment `dev` is frozen by `olga` (incident 42)" in write.content[0].text  # type: ignore[union-attr]
    assert thawed.is_error is False
    assert [e["outcome"] for e in audit_events(dev.config.audit.path)] == ["succeeded", "frozen", "succeeded"]


async def _only_write(runtime: Runtime, branch: str) -> tuple[str, dict[str, Any]]:
    """The refusal text of one write to ``branch``, and the one audit event it left."""
    async with Client(build_server(runtime)) as client:
        result = await client.call_tool("repo_write_file", _write(branch))
    assert result.is_error is True
    [event] = audit_events(runtime.config.audit.path)
    return result.content[0].text, event  # type: ignore[union-attr]


async def test_a_revoked_agent_whose_call_policy_denies_is_recorded_as_revoked(dev: Runtime) -> None:
    assert _cli(dev, "revoke", "agent", "codex-demo", "--as", "olga", "--reason", "leaked token") == 0
    text, event = await _only_write(dev, "main")  # `protected-branches` forbids it whoever asks
    assert "was revoked by `olga`" in text
    assert event["outcome"] == "revoked"
    assert event["decision"]["effect"] == "deny"  # what policy said is kept beside why nothing ran


async def test_a_frozen_environment_opens_no_approval_for_a_call_that_would_need_one(
    tree: Path, store_config: StoreConfig
) -> None:
    runtime = build_runtime(load_config(governed_config(tree, store_config), environ={}))  # acme/web in staging
    try:
        assert _cli(runtime, "freeze", "--environment", "staging", "--as", "olga", "--reason", "incident 7") == 0
        async with Client(build_server(runtime)) as client:
            result = await client.call_tool("repo_delete_branch", {"repository": "acme/web", "branch": "agent/old"})
        assert result.is_error is True
        assert "environment `staging` is frozen" in result.content[0].text  # type: ignore[union-attr]
        assert runtime.store is not None
        assert ApprovalQueue(runtime.store, runtime.config.approvals).list(ApprovalStatus.PENDING) == []
        assert [e["outcome"] for e in audit_events(runtime.config.audit.path)] == ["frozen"]
    finally:
        runtime.close()


async def test_lifting_a_hold_that_does_not_exist_fails_with_a_hint(
    dev: Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _cli(dev, "unfreeze", "--environment", "prod", "--as", "olga") == 2
    assert "environment `prod` has no hold to lift" in capsys.readouterr().err


async def test_a_freeze_of_an_environment_nothing_is_in_is_refused(
    dev: Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _cli(dev, "freeze", "--environment", "Prod", "--as", "olga") == 2
    error = capsys.readouterr().err
    assert "no configured repository or AWS account is in environment `Prod`" in error and "`prod`" in error
    assert _cli(dev, "holds", "--json") == 0
    assert capsys.readouterr().out.strip() == "[]"


@pytest.mark.parametrize(
    "command",
    [["revoke", "agent", ""], ["revoke", "agent", "bad agent"], ["freeze", "--environment", "a b"]],
    ids=["empty-agent", "agent-with-a-space", "environment-with-a-space"],
)
async def test_an_id_the_config_could_not_hold_is_refused_by_the_parser(
    dev: Runtime, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        _cli(dev, *command, "--as", "olga")
    assert stopped.value.code == 2
    assert "is not an id" in capsys.readouterr().err


async def test_an_empty_actor_is_refused_by_the_parser(dev: Runtime, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _cli(dev, "revoke", "agent", "codex", "--as", "")
    assert "`` is not an id" in capsys.readouterr().err


async def test_a_second_revocation_keeps_the_first_record(dev: Runtime, capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli(dev, "revoke", "agent", "codex-demo", "--as", "olga", "--reason", "leaked a token") == 0
    assert _cli(dev, "revoke", "agent", "codex-demo", "--as", "piet") == 2
    assert "agent `codex-demo` is already revoked (by `olga` at " in capsys.readouterr().err
    assert _cli(dev, "holds", "--json") == 0
    [held] = json.loads(capsys.readouterr().out)
    assert (held["by_user"], held["reason"]) == ("olga", "leaked a token")


async def test_a_call_whose_store_is_unreachable_fails_closed_and_is_audited(dev: Runtime) -> None:
    assert dev.store is not None
    dev.store.engine.dispose()
    broken = dev.store.engine
    if broken.dialect.name == "sqlite":
        (dev.config.store.path).unlink()
        (dev.config.store.path).mkdir()  # a directory where the database file was: every connection fails
    else:
        with broken.connect() as connection:
            connection.exec_driver_sql("DROP TABLE revocations")
            connection.commit()
    text, event = await _only_write(dev, "agent/s1")
    assert "the governance store failed during the revocation check" in text
    assert event["outcome"] == "failed"
