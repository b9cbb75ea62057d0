"""What a sandboxed test run leaves in a workspace: kept by a diff, not held against a run, removed with it.

A run may generate or rewrite files in the worktree; no tool commits them. These tests make
real bubblewrap runs through the MCP client and check that a diff still applies over them
(the decided content replaces the leftover file) but never deletes a folder, or a file in the
way of one, that no policy decided on, that untracked leftovers neither make the next
run unclean nor block `cedargate workspaces rm`, and that branch locks live in the git folder
in a bounded number of files.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from tests.repo_support import Session, client_for, configure_web, with_remote

from cedargate.cli import main
from cedargate.git import git_text
from cedargate.runtime import Runtime

pytestmark = pytest.mark.anyio

BRANCH = {"repository": "acme/web", "branch": "agent/leftovers"}
LOCK_SLOTS = 64
"""``cedargate.workspaces.BRANCH_LOCK_SLOTS``, as documented (spelled out, so this file also runs on older code)."""
SETTINGS = 'test_command = "sh ./ci.sh"\ntest_timeout_seconds = 10'
NEW_FILE = "--- /dev/null\n+++ b/generated.txt\n@@ -0,0 +1 @@\n+kept\n"
RAISE = "--- a/src/app.py\n+++ b/src/app.py\n@@ -1 +1 @@\n-TIMEOUT_SECONDS = 5\n+TIMEOUT_SECONDS = 30\n"


@pytest.fixture
def tested(tree: Path) -> Iterator[Runtime]:
    runtime = configure_web(tree, SETTINGS)
    yield runtime
    runtime.close()


def _worktree(runtime: Runtime, workspace: str) -> Path:
    return runtime.config.workspaces_dir / "acme/web" / workspace


def _repo_path(runtime: Runtime) -> Path:
    repo = runtime.config.repository("acme/web")
    assert repo is not None and repo.path is not None
    return repo.path


async def _ran(s: Session, script: str) -> tuple[str, dict[str, object]]:
    """Create the branch, commit ``ci.sh`` and run it once; the workspace id and the run's result."""
    created = await s.ok("repo_create_branch", BRANCH)
    await s.ok("repo_write_file", {**BRANCH, "path": "ci.sh", "content": script})
    return str(created["workspace"]), await s.ok("repo_run_tests", {"repository": "acme/web"})


async def test_a_file_a_run_generated_is_kept_by_a_diff_of_its_full_content(tested: Runtime) -> None:
    """The diff's content replaces the run's file; a leftover at another path stays as it was, uncommitted."""
    async with client_for(tested) as client:
        s = Session(client)
        ws, _ = await _ran(s, "echo from-run > generated.txt\necho other > other.txt\n")
        applied = await s.ok("repo_apply_diff", {**BRANCH, "patch": NEW_FILE})
        worktree = _worktree(tested, ws)
        assert (worktree / "generated.txt").read_text() == "kept\n"
        assert (worktree / "other.txt").read_text() == "other\n"
        committed = await s.ok("repo_commit", {**BRANCH, "message": "Keep the generated file"})
    assert applied["files"] == ["generated.txt"]
    assert committed["files"] == ["generated.txt"] and committed["not_committed"] == ["other.txt"]
    assert git_text(_repo_path(tested), ["show", "agent/leftovers:generated.txt"]) == "kept"


async def test_a_tracked_file_a_run_rewrote_takes_a_diff_and_a_delete_removes_what_the_run_left(
    tested: Runtime,
) -> None:
    """A formatter's rewrite of `src/app.py` and of `docs/old.md` no longer block diffs on them."""
    rewrite = "printf 'TIMEOUT_SECONDS = 5\\n\\n' > src/app.py\necho rewritten > docs/old.md\n"
    delete = "--- a/docs/old.md\n+++ /dev/null\n@@ -1 +0,0 @@\n-old\n"
    async with client_for(tested) as client:
        s = Session(client)
        created = await s.ok("repo_create_branch", BRANCH)
        await s.ok("repo_write_file", {**BRANCH, "path": "docs/old.md", "content": "old\n"})
        await s.ok("repo_write_file", {**BRANCH, "path": "ci.sh", "content": rewrite})
        await s.ok("repo_run_tests", {"repository": "acme/web"})
        worktree = _worktree(tested, str(created["workspace"]))
        assert (worktree / "src/app.py").read_text() == "TIMEOUT_SECONDS = 5\n\n"
        # The workspace's diff names what the run left apart from what is staged: no commit takes it.
        shown = await s.ok("repo_diff", {"repository": "acme/web"})
        await s.ok("repo_apply_diff", {**BRANCH, "patch": RAISE})
        await s.ok("repo_apply_diff", {**BRANCH, "patch": delete})
        staged = await s.ok("repo_diff", {"repository": "acme/web"})
        committed = await s.ok("repo_commit", {**BRANCH, "message": "Raise the timeout"})
        status = await s.ok("repo_status", {"repository": "acme/web"})
    assert (worktree / "src/app.py").read_text() == "TIMEOUT_SECONDS = 30\n"
    assert not (worktree / "docs").exists()  # the file and the folder it left empty, as `git apply` does
    assert sorted(committed["files"]) == ["docs/old.md", "src/app.py"] and committed["not_committed"] == []
    assert status["workspace"]["changes"] == []
    assert shown["not_staged"] == ["docs/old.md", "src/app.py"] and staged["not_staged"] == []


async def test_a_link_a_run_left_at_a_patched_path_is_refused_and_nothing_is_staged(
    tested: Runtime, tree: Path
) -> None:
    outside = tree / "outside.txt"
    outside.write_text("untouched\n")
    async with client_for(tested) as client:
        s = Session(client)
        ws, _ = await _ran(s, f"ln -s {outside} generated.txt\n")
        refusal = await s.refused("repo_apply_diff", {**BRANCH, "patch": NEW_FILE})
        nothing = await s.refused("repo_commit", {**BRANCH, "message": "x"})
    assert "`generated.txt` is a symbolic link; tools do not follow links" in refusal
    assert "nothing to commit" in nothing
    assert outside.read_text() == "untouched\n"
    assert (_worktree(tested, ws) / "generated.txt").is_symlink()


def _staged(worktree: Path) -> str:
    return subprocess.run(
        ["git", "-C", str(worktree), "diff", "--cached", "--name-status"], capture_output=True, text=True, check=True
    ).stdout


async def test_a_folder_a_run_left_at_a_patched_file_is_refused_not_deleted(tested: Runtime) -> None:
    """`checkout-index --force` would delete `generated.txt/inner`, which no policy decided on."""
    async with client_for(tested) as client:
        s = Session(client)
        ws, _ = await _ran(s, "mkdir -p generated.txt && echo from-run > generated.txt/inner\n")
        refusal = await s.refused("repo_apply_diff", {**BRANCH, "patch": NEW_FILE})
        worktree = _worktree(tested, ws)
        assert (worktree / "generated.txt/inner").read_text() == "from-run\n"
        assert _staged(worktree) == ""
        nothing = await s.refused("repo_commit", {**BRANCH, "message": "x"})
        assert "nothing to commit" in nothing
        (worktree / "generated.txt/inner").unlink()  # what the test command would do, told so
        (worktree / "generated.txt").rmdir()
        await s.ok("repo_apply_diff", {**BRANCH, "patch": NEW_FILE})
    assert "field `patch`" in refusal and "`generated.txt`" in refusal and "is a folder" in refusal
    assert "`generated.txt/inner`" in refusal and "nothing was staged" in refusal
    assert f"cedargate workspaces rm {ws}" in refusal and "failed unexpectedly" not in refusal
    assert (worktree / "generated.txt").read_text() == "kept\n"


async def test_a_file_a_run_left_where_a_patch_needs_a_folder_is_refused_and_nothing_is_half_applied(
    tested: Runtime,
) -> None:
    """The first file of the diff is neither staged nor written when the second is blocked."""
    patch = (
        "diff --git a/src/app.py b/src/app.py\n"
        + RAISE
        + "diff --git a/build/out.txt b/build/out.txt\nnew file mode 100644\n"
        "--- /dev/null\n+++ b/build/out.txt\n@@ -0,0 +1 @@\n+kept\n"
    )
    async with client_for(tested) as client:
        s = Session(client)
        ws, _ = await _ran(s, "echo from-run > build\n")
        refusal = await s.refused("repo_apply_diff", {**BRANCH, "patch": patch})
        worktree = _worktree(tested, ws)
        assert _staged(worktree) == ""
    assert "field `patch`" in refusal and "`build` in workspace" in refusal and "is a file" in refusal
    assert "`build/out.txt`" in refusal and "nothing was staged" in refusal
    assert (worktree / "build").read_text() == "from-run\n"
    assert (worktree / "src/app.py").read_text() == "TIMEOUT_SECONDS = 5\n"


async def test_a_diff_may_turn_a_file_into_a_folder_and_back(tested: Runtime) -> None:
    """What stands in the way is a file the patch itself deletes: it gives way."""
    to_folder = (
        "diff --git a/docs/old.md b/docs/old.md\ndeleted file mode 100644\n--- a/docs/old.md\n+++ /dev/null\n"
        "@@ -1 +0,0 @@\n-old\n"
        "diff --git a/docs/old.md/new.md b/docs/old.md/new.md\nnew file mode 100644\n--- /dev/null\n"
        "+++ b/docs/old.md/new.md\n@@ -0,0 +1 @@\n+new\n"
    )
    to_file = (
        "diff --git a/docs/old.md/new.md b/docs/old.md/new.md\ndeleted file mode 100644\n--- a/docs/old.md/new.md\n"
        "+++ /dev/null\n@@ -1 +0,0 @@\n-new\n"
        "diff --git a/docs/old.md b/docs/old.md\nnew file mode 100644\n--- /dev/null\n+++ b/docs/old.md\n"
        "@@ -0,0 +1 @@\n+back\n"
    )
    async with client_for(tested) as client:
        s = Session(client)
        created = await s.ok("repo_create_branch", BRANCH)
        await s.ok("repo_write_file", {**BRANCH, "path": "docs/old.md", "content": "old\n"})
        worktree = _worktree(tested, str(created["workspace"]))
        await s.ok("repo_apply_diff", {**BRANCH, "patch": to_folder})
        assert (worktree / "docs/old.md/new.md").read_text() == "new\n"
        await s.ok("repo_apply_diff", {**BRANCH, "patch": to_file})
    assert (worktree / "docs/old.md").read_text() == "back\n"


async def test_a_diff_waits_for_no_test_run_it_is_refused_during_one(tested: Runtime) -> None:
    """Applying writes the worktree, which a running command may be changing: refused, as a write is."""
    async with client_for(tested) as client:
        s = Session(client)
        created = await s.ok("repo_create_branch", BRANCH)
        await s.ok("repo_write_file", {**BRANCH, "path": "ci.sh", "content": "touch started\nsleep 1\n"})
        started = _worktree(tested, str(created["workspace"])) / "started"
        async with anyio.create_task_group() as group:
            group.start_soon(s.ok, "repo_run_tests", {"repository": "acme/web"})
            with anyio.fail_after(10):
                while not started.exists():
                    await anyio.sleep(0.05)
            refusal = await s.refused("repo_apply_diff", {**BRANCH, "patch": RAISE})
        await s.ok("repo_apply_diff", {**BRANCH, "patch": RAISE})
    assert "is in use (a test run is in progress)" in refusal


async def test_untracked_leftovers_do_not_make_a_run_unclean_and_the_pull_request_says_the_head_was_tested(
    tree: Path,
) -> None:
    runtime, _ = with_remote(tree, SETTINGS)
    try:
        async with client_for(runtime) as client:
            s = Session(client)
            _, first = await _ran(s, "mkdir -p __pycache__ && echo x > __pycache__/app.cpython-311.pyc\n")
            second = await s.ok("repo_run_tests", {"repository": "acme/web"})
            proposed = await s.ok("repo_open_pull_request", {**BRANCH, "title": "Leftovers"})
            await s.ok("repo_apply_diff", {**BRANCH, "patch": RAISE})
            staged = await s.ok("repo_run_tests", {"repository": "acme/web"})
    finally:
        runtime.close()
    assert (first["clean"], first["untracked_leftovers"]) == (True, 0)
    assert (second["clean"], second["untracked_leftovers"]) == (True, 1)
    tested_line = next(line for line in str(proposed["body"]).splitlines() if line.startswith("- tested "))
    assert tested_line.startswith("- tested the branch head;"), tested_line
    assert (staged["clean"], staged["untracked_leftovers"]) == (False, 1)  # a staged diff is not the head


async def test_workspaces_rm_removes_untracked_leftovers_but_refuses_staged_work(
    tested: Runtime, tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli = ["--config", str(tree / "cedargate.toml"), "workspaces", "rm"]
    async with client_for(tested) as client:
        s = Session(client)
        ws, _ = await _ran(s, "mkdir -p __pycache__ && echo x > __pycache__/app.cpython-311.pyc\n")
        await s.ok("repo_apply_diff", {**BRANCH, "patch": RAISE})
    capsys.readouterr()
    assert main([*cli, ws]) == 2
    err = capsys.readouterr().err
    assert "has uncommitted changes" in err and "`src/app.py`" in err and "--force" in err
    assert "`__pycache__/app.cpython-311.pyc`" in err and "go with it either way" in err
    async with client_for(tested) as client:
        await Session(client).ok("repo_commit", {**BRANCH, "message": "Raise"})
    assert main([*cli, ws]) == 0
    out = capsys.readouterr().out
    assert "and its 1 untracked files (`__pycache__/app.cpython-311.pyc`)" in out and "is kept" in out
    assert not _worktree(tested, ws).exists()


async def test_plain_writes_and_deletes_need_no_writable_workspaces_folder(tree: Path) -> None:
    """Branch locks live in the git folder, which a write changes anyway; `workspaces_dir` is not touched."""
    folder = tree / "var" / "workspaces"
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o555)
    made_immutable = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, check=False).returncode == 0
    try:
        probe = folder / "probe"
        try:
            probe.mkdir()
        except OSError:
            pass
        else:
            probe.rmdir()
            pytest.skip("cannot make a folder read-only here (root, and no chattr)")
        runtime = configure_web(tree, "")
        try:
            async with client_for(runtime) as client:
                s = Session(client)
                plain = {"repository": "acme/web", "branch": "agent/plain"}
                await s.ok("repo_write_file", {**plain, "path": "notes.txt", "content": "n\n"})
                await s.ok("repo_delete_branch", plain)
        finally:
            runtime.close()
    finally:
        if made_immutable:
            subprocess.run(["chattr", "-i", str(folder)], check=False)
        folder.chmod(0o755)
    assert list(folder.iterdir()) == []


async def test_branch_locks_are_a_bounded_set_of_files_in_the_git_folder(runtime: Runtime) -> None:
    cycles = LOCK_SLOTS + 6
    async with client_for(runtime) as client:
        s = Session(client)
        for i in range(cycles):
            branch = {"repository": "acme/web", "branch": f"agent/tmp-{i}"}
            await s.ok("repo_write_file", {**branch, "path": "x.txt", "content": "x\n"})
            await s.ok("repo_delete_branch", branch)
    git_dir = Path(git_text(_repo_path(runtime), ["rev-parse", "--path-format=absolute", "--git-common-dir"]))
    folder = git_dir / "cedargate-branch-locks"
    locks = [*folder.glob("*.lock"), *(runtime.config.workspaces_dir / "acme/web" / ".branch-locks").glob("*.lock")]
    assert 0 < len(locks) <= LOCK_SLOTS, f"{len(locks)} lock files after {cycles} branches"
    assert {lock.parent for lock in locks} == {folder}


async def test_a_branch_lock_that_cannot_be_made_names_the_folder_and_changes_nothing(runtime: Runtime) -> None:
    repo_path = _repo_path(runtime)
    git_dir = Path(git_text(repo_path, ["rev-parse", "--path-format=absolute", "--git-common-dir"]))
    (git_dir / "cedargate-branch-locks").write_text("in the way\n")
    async with client_for(runtime) as client:
        refusal = await Session(client).refused(
            "repo_write_file", {"repository": "acme/web", "branch": "agent/blocked", "path": "x.txt", "content": "x"}
        )
    assert f"cannot open the branch lock `{git_dir / 'cedargate-branch-locks'}/slot-" in refusal
    assert "failed unexpectedly" not in refusal and "permissions" in refusal
    assert git_text(repo_path, ["branch", "--list", "agent/blocked"]) == ""
