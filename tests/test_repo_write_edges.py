"""`repo_write_file` at the edges: what a test run leaves in a worktree, paths git or a filesystem
refuses, a person's checkout, and a workspace created while a write is under way.

Each refusal names the field, and nothing is left half-way: the worktree, its index and the
branch are as they were.
"""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from tests.repo_support import Session, client_for

from cedargate.config import load_config
from cedargate.git import git_text, run_git
from cedargate.handlers import repo as repo_handlers
from cedargate.runtime import Runtime, build_runtime
from cedargate.workspaces import Workspace, WorkspaceStore

pytestmark = pytest.mark.anyio

WEB = {"repository": "acme/web"}
BRANCH = {"repository": "acme/web", "branch": "agent/edge"}
PATCH = "--- a/src/app.py\n+++ b/src/app.py\n@@ -1 +1 @@\n-TIMEOUT_SECONDS = 5\n+TIMEOUT_SECONDS = 30\n"
LONG = "d/" + "n" * 300


def _web(runtime: Runtime) -> Path:
    repo = runtime.config.repository("acme/web")
    assert repo is not None and repo.path is not None
    return repo.path


def _store(runtime: Runtime) -> WorkspaceStore:
    repo = runtime.config.repository("acme/web")
    assert repo is not None
    return WorkspaceStore(repo, _web(runtime))


def _workspace(runtime: Runtime, created: dict[str, Any]) -> Workspace:
    workspace = _store(runtime).get(created["workspace"])
    assert workspace is not None
    return workspace


def _commit_all(repo: Path, message: str) -> None:
    run_git(repo, ["add", "--all"])
    run_git(repo, ["-c", "user.name=t", "-c", "user.email=t@localhost", "commit", "-q", "-m", message])


def _state(where: Path, branch: str) -> tuple[str, str, str]:
    """What a refused write must leave unchanged: the branch tip, the index, and the worktree (ignored files too)."""
    return (
        git_text(where, ["rev-parse", branch]),
        git_text(where, ["ls-files", "--stage"]),
        git_text(where, ["status", "--porcelain", "--ignored", "--untracked-files=all"]),
    )


async def test_a_write_is_refused_while_a_test_run_holds_the_workspace(runtime: Runtime) -> None:
    """A run's command could swap a folder for a link while the write walks the path, so they never overlap."""
    async with client_for(runtime) as client:
        s = Session(client)
        created = await s.ok("repo_create_branch", BRANCH)
        with _store(runtime).in_use(created["workspace"]):  # what `repo_run_tests` holds for the run
            refusal = await s.refused("repo_write_file", {**BRANCH, "path": "a.txt", "content": "x\n"})
        written = await s.ok("repo_write_file", {**BRANCH, "path": "a.txt", "content": "x\n"})
    assert f"field `branch`: workspace `{created['workspace']}` is in use (a test run is in progress)" in refusal
    assert "after `repo_run_tests` returns" in refusal
    assert written["workspace"] == created["workspace"]


async def test_a_folder_swapped_for_a_link_after_the_check_is_not_written_through(
    runtime: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The swap happens inside the write, where a path checked first and opened later would follow it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    async with client_for(runtime) as client:
        s = Session(client)
        created = await s.ok("repo_create_branch", BRANCH)
        worktree = _workspace(runtime, created).path
        (worktree / "d").mkdir()
        head_commit = repo_handlers.head_commit

        def swapping(workspace: Workspace) -> str:
            (worktree / "d").rmdir()
            os.symlink(outside, worktree / "d")
            return head_commit(workspace)

        monkeypatch.setattr(repo_handlers, "head_commit", swapping)
        refusal = await s.refused("repo_write_file", {**BRANCH, "path": "d/pwned.txt", "content": "x\n"})
    assert "field `path`: `d` is a symbolic link; tools do not follow links" in refusal
    assert list(outside.iterdir()) == []


async def test_a_fifo_a_test_run_left_is_refused_without_blocking(runtime: Runtime) -> None:
    async with client_for(runtime) as client:
        s = Session(client)
        created = await s.ok("repo_create_branch", BRANCH)
        fifo = _workspace(runtime, created).path / "notes.txt"
        os.mkfifo(fifo)
        # Should the write block in open(), a reader after 10 s lets it finish (and the test fail) rather than hang.
        unstick = threading.Timer(10, lambda: fifo.open("rb").close())
        unstick.start()
        try:
            refusal = await s.refused("repo_write_file", {**BRANCH, "path": "notes.txt", "content": "hi\n"})
        finally:
            unstick.cancel()
    assert "field `path`: `notes.txt` is a FIFO, not a regular file" in refusal
    assert fifo.is_fifo()


@pytest.mark.parametrize("in_workspace", [True, False], ids=["workspace", "plain"])
async def test_an_ignored_path_is_committed_the_same_way_with_or_without_a_workspace(
    runtime: Runtime, in_workspace: bool
) -> None:
    web = _web(runtime)
    (web / ".gitignore").write_text("*.log\n")
    _commit_all(web, "Ignore logs")
    async with client_for(runtime) as client:
        s = Session(client)
        created = await s.ok("repo_create_branch", BRANCH) if in_workspace else None
        written = await s.ok("repo_write_file", {**BRANCH, "path": "debug.log", "content": "trace\n"})
    assert git_text(web, ["show", f"{written['commit']}:debug.log"]) == "trace"
    if created is not None:
        worktree = _workspace(runtime, created).path
        assert git_text(worktree, ["status", "--porcelain"]) == ""


@pytest.mark.parametrize("in_workspace", [True, False], ids=["workspace", "plain"])
@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("README.md/inner.txt", "`README.md` is a file"),
        ("src", "`src` is a folder"),
        (LONG, "is 300 bytes, over the 255-byte limit"),
    ],
)
async def test_a_path_that_cannot_be_written_is_refused_before_anything_changes(
    runtime: Runtime, in_workspace: bool, path: str, problem: str
) -> None:
    web = _web(runtime)
    async with client_for(runtime) as client:
        s = Session(client)
        if in_workspace:
            where = _workspace(runtime, await s.ok("repo_create_branch", BRANCH)).path
        else:
            run_git(web, ["branch", "agent/edge"])
            where = web
        before = _state(where, "agent/edge")
        refusal = await s.refused("repo_write_file", {**BRANCH, "path": path, "content": "x\n"})
    assert refusal.startswith("field `path`: ") and problem in refusal
    assert "failed unexpectedly" not in refusal
    assert _state(where, "agent/edge") == before
    assert not (where / "d").exists()


async def test_a_write_git_cannot_stage_leaves_the_worktree_as_it_was(runtime: Runtime) -> None:
    """The file is written before `git add`; when git then fails, the old file is back and new folders gone."""
    async with client_for(runtime) as client:
        s = Session(client)
        worktree = _workspace(runtime, await s.ok("repo_create_branch", BRANCH)).path
        (worktree / "README.md").chmod(0o751)
        before = _state(worktree, "agent/edge")
        readme = (worktree / "README.md").read_bytes()
        lock = Path(git_text(worktree, ["rev-parse", "--path-format=absolute", "--git-path", "index.lock"]))
        lock.write_bytes(b"")  # another git process is changing the index
        try:
            new = await s.refused("repo_write_file", {**BRANCH, "path": "new/deep/file.txt", "content": "x\n"})
            old = await s.refused("repo_write_file", {**BRANCH, "path": "README.md", "content": "gone\n"})
        finally:
            lock.unlink()
    assert "git add failed" in new and "git add failed" in old
    assert not (worktree / "new").exists()
    assert (worktree / "README.md").read_bytes() == readme
    assert (worktree / "README.md").stat().st_mode & 0o777 == 0o751
    assert _state(worktree, "agent/edge") == before
    assert sorted(p.name for p in worktree.iterdir() if p.name.startswith(".cedargate")) == []


async def test_a_plain_write_keeps_an_executable_file_executable(runtime: Runtime) -> None:
    web = _web(runtime)
    (web / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (web / "run.sh").chmod(0o755)
    _commit_all(web, "Add a script")
    async with client_for(runtime) as client:
        await Session(client).ok("repo_write_file", {**BRANCH, "path": "run.sh", "content": "#!/bin/sh\necho bye\n"})
    assert git_text(web, ["ls-tree", "agent/edge", "--", "run.sh"]).startswith("100755 blob ")


async def test_a_branch_checked_out_in_the_main_checkout_is_neither_moved_nor_deleted(runtime: Runtime) -> None:
    """A person reviewing the branch in the main checkout would find their files and HEAD changed under them."""
    web = _web(runtime)
    async with client_for(runtime) as client:
        s = Session(client)
        await s.ok("repo_write_file", {**BRANCH, "path": "a.txt", "content": "1\n"})
        run_git(web, ["checkout", "-q", "agent/edge"])
        tip = git_text(web, ["rev-parse", "agent/edge"])
        write = await s.refused("repo_write_file", {**BRANCH, "path": "a.txt", "content": "2\n"})
        delete = await s.refused("repo_delete_branch", BRANCH)
    for refusal in (write, delete):
        assert "field `branch`: `agent/edge` is checked out in the main checkout of `acme/web`" in refusal
        assert str(web) not in refusal
    assert git_text(web, ["rev-parse", "agent/edge"]) == tip
    assert git_text(web, ["status", "--porcelain"]) == ""


@pytest.mark.parametrize("branch", ["agent/.hidden", "agent/a.lock/b", "agent/./x"])
async def test_branch_names_git_refuses_are_refused_naming_the_field(runtime: Runtime, branch: str) -> None:
    async with client_for(runtime) as client:
        s = Session(client)
        write = await s.refused("repo_write_file", {**WEB, "branch": branch, "path": "f.txt", "content": "x"})
        create = await s.refused("repo_create_branch", {**WEB, "branch": branch})
    for refusal in (write, create):
        assert refusal.startswith(f"field `branch`: `{branch}` is not an acceptable git ref name")
    assert git_text(_web(runtime), ["for-each-ref", "--format=%(refname)", "refs/heads/agent"]) == ""


async def test_a_plain_write_racing_a_new_workspace_on_its_branch_is_never_lost(tree: Path) -> None:
    """Task B's workspace is created on the branch while task A writes to it without one.

    Either A's commit is on the branch before B's worktree checks it out, or A is told the
    branch is in B's workspace; B's next commit never silently reverts A's.
    """
    a_side = build_runtime(load_config(tree / "cedargate.toml", environ={"CEDARGATE_TASK": "task-a"}))
    b_side = build_runtime(load_config(tree / "cedargate.toml", environ={"CEDARGATE_TASK": "task-b"}))
    lost: list[int] = []
    try:
        async with client_for(a_side) as ca, client_for(b_side) as cb:
            a, b = Session(ca), Session(cb)
            for i in range(15):
                branch = {**WEB, "branch": f"agent/race{i}"}
                await a.ok("repo_write_file", {**branch, "path": "seed.txt", "content": "seed\n"})

                async def write(i: int = i, branch: dict[str, str] = branch) -> tuple[bool, Any]:
                    await asyncio.sleep(0.005 * (i % 8))
                    return await a.call("repo_write_file", {**branch, "path": f"a{i}.txt", "content": "from A\n"})

                (wrote, _), (applied, _) = await asyncio.gather(
                    write(), b.call("repo_apply_diff", {**branch, "patch": PATCH})
                )
                if wrote and applied:
                    await b.ok("repo_commit", {**branch, "message": "B's change"})
                    files = git_text(_web(a_side), ["ls-tree", "--name-only", f"agent/race{i}"]).split()
                    if f"a{i}.txt" not in files:
                        lost.append(i)
                store = _store(b_side)
                for workspace in list(store):
                    store.remove(workspace.id)
    finally:
        a_side.close()
        b_side.close()
    assert lost == []
