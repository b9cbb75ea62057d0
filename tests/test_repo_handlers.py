"""Repository paths stay inside the repository: traversal, absolute paths, .git and symlinks refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from mcp import Client
from tests.conftest import audit_events

from cedargate.errors import HandlerError
from cedargate.git import git_text, run_git
from cedargate.runtime import Runtime
from cedargate.server import build_server

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("../outside.txt", "leaves the repository"),
        ("src/../../outside.txt", "leaves the repository"),
        ("/etc/passwd", "is absolute"),
        (".git/config", "inside `.git`"),
        ("src/.GIT/hooks/pre-commit", "inside `.git`"),
    ],
)
async def test_paths_that_leave_the_repository_are_refused(runtime: Runtime, path: str, problem: str) -> None:
    async with Client(build_server(runtime)) as client:
        result = await client.call_tool("repo_read_file", {"repository": "acme/web", "path": path})
    assert result.is_error is True
    assert problem in result.content[0].text  # type: ignore[union-attr]
    [event] = audit_events(runtime.config.audit.path)
    assert event["outcome"] == "invalid_arguments"


async def test_writing_through_a_symlinked_directory_is_refused(runtime: Runtime, tree: Path) -> None:
    repo = tree / "repos/web"
    os.symlink("/tmp", repo / "escape")
    run_git(repo, ["add", "escape"])
    run_git(
        repo,
        ["commit", "-q", "-m", "add link"],
        env={
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@t",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@t",
        },
    )
    async with Client(build_server(runtime)) as client:
        result = await client.call_tool(
            "repo_write_file",
            {"repository": "acme/web", "branch": "agent/link", "path": "escape/pwned.txt", "content": "x"},
        )
    assert result.is_error is True
    assert "`escape` is a symbolic link" in result.content[0].text  # type: ignore[union-attr]
    assert git_text(repo, ["branch", "--list", "agent/link"]) == ""


async def test_refs_that_look_like_options_are_refused(runtime: Runtime) -> None:
    async with Client(build_server(runtime)) as client:
        result = await client.call_tool(
            "repo_read_file", {"repository": "acme/web", "path": "README.md", "ref": "--output=/tmp/x"}
        )
    assert result.is_error is True
    assert "field `ref`" in result.content[0].text  # type: ignore[union-attr]


async def test_a_write_outside_the_task_branch_prefix_is_refused_by_the_handler(runtime: Runtime) -> None:
    async with Client(build_server(runtime)) as client:
        result = await client.call_tool(
            "repo_write_file", {"repository": "acme/web", "branch": "feature/x", "path": "a", "content": "a"}
        )
    assert result.is_error is True
    assert "is not a task branch" in result.content[0].text  # type: ignore[union-attr]


async def test_deleting_a_task_branch_in_dev_removes_it(runtime: Runtime, tree: Path) -> None:
    repo = tree / "repos/web"
    run_git(repo, ["branch", "agent/done"])
    async with Client(build_server(runtime)) as client:
        result = await client.call_tool("repo_delete_branch", {"repository": "acme/web", "branch": "agent/done"})
    assert result.is_error is False
    assert git_text(repo, ["branch", "--list", "agent/done"]) == ""


def test_a_git_error_names_no_server_path(tmp_path: Path) -> None:
    repo = tmp_path / "server side" / "repo"
    repo.mkdir(parents=True)
    run_git(repo, ["init", "-q", "-b", "main"])
    run_git(repo, ["-c", "user.name=t", "-c", "user.email=t@localhost", "commit", "-q", "--allow-empty", "-m", "x"])
    run_git(repo, ["worktree", "add", "-q", "-b", "agent/x", "--", str(tmp_path / "server side" / "ws-a")])
    with pytest.raises(HandlerError) as refused:  # the branch is checked out in the first worktree
        run_git(repo, ["worktree", "add", "-q", "--", str(tmp_path / "server side" / "ws-b"), "agent/x"])
    message = str(refused.value)
    assert "already" in message and "agent/x" in message
    assert str(tmp_path) not in message and "server side" not in message
