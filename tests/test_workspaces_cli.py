"""``cedargate workspaces list|show|rm`` on workspaces made through a real MCP session."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.repo_support import Session, client_for

from cedargate.cli import main
from cedargate.errors import CedargateError
from cedargate.git import git_text
from cedargate.runtime import Runtime
from cedargate.workspaces import WorkspaceStore, workspace_id

BRANCH = {"repository": "acme/web", "branch": "agent/cli"}


@pytest.fixture
async def workspace(runtime: Runtime) -> dict[str, str]:
    async with client_for(runtime) as client:
        return await Session(client).ok("repo_create_branch", BRANCH)


def _cli(tree: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    status = main(["--config", str(tree / "cedargate.toml"), "workspaces", *args])
    captured = capsys.readouterr()
    return status, captured.out + captured.err


@pytest.mark.anyio
async def test_list_and_show_describe_the_workspace_and_its_base(
    workspace: dict[str, str], tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out = _cli(tree, capsys, "list", "--json")
    assert status == 0
    [row] = json.loads(out)
    assert row["id"] == workspace["workspace"] == "acme.web--codex-demo--demo-timeout"
    assert (row["repository"], row["branch"], row["task"]) == ("acme/web", "agent/cli", "demo-timeout")
    assert row["base_commit"] == workspace["base_commit"]
    status, out = _cli(tree, capsys, "show", row["id"])
    assert status == 0 and "on_behalf_of:  alice" in out and "tests not run" in out
    status, out = _cli(tree, capsys, "list")
    assert status == 0 and out.startswith(row["id"])


@pytest.mark.anyio
async def test_rm_removes_the_worktree_and_keeps_the_branch(
    workspace: dict[str, str], tree: Path, runtime: Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = runtime.config.repository("acme/web")
    assert repo is not None and repo.path is not None
    status, out = _cli(tree, capsys, "rm", workspace["workspace"], "--json")
    assert status == 0 and json.loads(out) == {"removed": workspace["workspace"], "branch_kept": "agent/cli"}
    assert not (runtime.config.workspaces_dir / "acme/web" / workspace["workspace"]).exists()
    assert git_text(repo.path, ["branch", "--list", "agent/cli"]) != ""
    assert "agent/cli" not in git_text(repo.path, ["worktree", "list"])
    assert json.loads(_cli(tree, capsys, "list", "--json")[1]) == []


def test_an_unknown_workspace_is_named_in_the_error(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out = _cli(tree, capsys, "show", "nope")
    assert status == 2 and "no workspace `nope`" in out


def test_removing_an_unknown_workspace_leaves_nothing_behind(runtime: Runtime) -> None:
    repo = runtime.config.repository("acme/web")
    assert repo is not None and repo.path is not None
    store = WorkspaceStore(repo, repo.path)
    with pytest.raises(CedargateError, match="no workspace `nope` in `acme/web`"):
        store.remove("nope")
    assert not (store.root / "nope.lock").exists()


@pytest.mark.parametrize(
    ("one", "other"),
    [
        (("acme/web", "codex", "a b"), ("acme/web", "codex", "a_b")),
        (("acme/web", "x--y", "z"), ("acme/web", "x", "y--z")),
        (("acme/web", "codex", "t"), ("acme.web", "codex", "t")),
    ],
)
def test_tasks_whose_names_look_alike_get_workspaces_of_their_own(
    one: tuple[str, str, str], other: tuple[str, str, str]
) -> None:
    assert workspace_id(*one) != workspace_id(*other)


def test_a_plain_task_name_reads_as_it_is() -> None:
    assert workspace_id("acme/web", "codex-demo", "fix-timeout") == "acme.web--codex-demo--fix-timeout"
