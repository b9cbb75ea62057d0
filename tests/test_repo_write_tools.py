"""Write tools in task workspaces on real git repositories: branch, diff, commit, push, policy."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tests.conftest import audit_events
from tests.repo_support import Session, client_for, with_remote

from cedargate.config import load_config
from cedargate.git import git_text, run_git
from cedargate.runtime import Runtime, build_runtime
from cedargate.workspaces import WorkspaceStore

pytestmark = pytest.mark.anyio

WEB = {"repository": "acme/web"}
BRANCH = {"repository": "acme/web", "branch": "agent/fix"}
PATCH = """diff --git a/src/app.py b/src/app.py
--- a/src/app.py
+++ b/src/app.py
@@ -1 +1 @@
-TIMEOUT_SECONDS = 5
+TIMEOUT_SECONDS = 30
"""


def _new_file_patch(path: str, text: str = "x") -> str:
    return f"""diff --git a/{path} b/{path}
new file mode 100644
--- /dev/null
+++ b/{path}
@@ -0,0 +1 @@
+{text}
"""


def _web_path(runtime: Runtime) -> Path:
    repo = runtime.config.repository("acme/web")
    assert repo is not None and repo.path is not None
    return repo.path


def _commit_links(web: Path, links: dict[str, str]) -> None:
    """Commit symbolic links (name -> target) onto `main` of the main checkout."""
    for name, target in links.items():
        (web / name).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, web / name)
    run_git(web, ["add", "--", *links])
    run_git(web, ["-c", "user.name=t", "-c", "user.email=t@localhost", "commit", "-q", "-m", "Add links"])


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_a_task_branches_diffs_and_commits_in_its_own_worktree_with_trailers(runtime: Runtime, mode: str) -> None:
    web = _web_path(runtime)
    main_before = git_text(web, ["rev-parse", "main"])
    async with client_for(runtime, mode) as client:
        s = Session(client)
        created = await s.ok("repo_create_branch", BRANCH)
        applied = await s.ok("repo_apply_diff", {**BRANCH, "patch": PATCH})
        status = await s.ok("repo_status", WEB)
        diff = await s.ok("repo_diff", WEB)
        committed = await s.ok("repo_commit", {**BRANCH, "message": "Raise the timeout"})
    create_event, _, _, _, commit_event = audit_events(runtime.config.audit.path)
    assert created["base_commit"] == main_before
    assert applied["files"] == ["src/app.py"]
    assert status["workspace"]["changes"] == [{"status": "M ", "path": "src/app.py"}]
    assert diff["workspace"] == created["workspace"] and "+TIMEOUT_SECONDS = 30" in diff["patch"]
    assert committed["files"] == ["src/app.py"] and committed["parent"] == main_before
    message = git_text(web, ["log", "-1", "--format=%B", "agent/fix"])
    assert message.startswith("Raise the timeout\n")
    assert "Cedargate-Agent: codex-demo" in message
    assert "Cedargate-On-Behalf-Of: alice" in message
    assert "Cedargate-Task: demo-timeout" in message
    assert f"Cedargate-Audit-Event: {commit_event['event_id']}" in message
    assert create_event["execution"] is None
    # The main checkout and its branch are untouched; the work lives in the workspace.
    assert git_text(web, ["rev-parse", "main"]) == main_before
    assert git_text(web, ["status", "--porcelain"]) == ""
    assert (runtime.config.workspaces_dir / "acme/web").is_dir()


async def test_write_file_on_a_workspace_branch_commits_there_and_keeps_it_current(runtime: Runtime) -> None:
    async with client_for(runtime) as client:
        s = Session(client)
        created = await s.ok("repo_create_branch", BRANCH)
        await s.ok("repo_apply_diff", {**BRANCH, "patch": PATCH})
        written = await s.ok("repo_write_file", {**BRANCH, "path": "docs/NOTE.md", "content": "note\n"})
        status = await s.ok("repo_status", WEB)
    assert written["workspace"] == created["workspace"]
    # Only the written file was committed; the staged diff is still waiting for repo_commit.
    assert git_text(_web_path(runtime), ["show", "--name-only", "--format=", "agent/fix"]) == "docs/NOTE.md"
    assert status["workspace"]["commits_since_base"] == 1
    assert status["workspace"]["changes"] == [{"status": "M ", "path": "src/app.py"}]


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        (_new_file_patch("../outside.txt"), "leaves the repository"),
        (_new_file_patch(".git/hooks/post-commit"), "inside `.git`"),
        (_new_file_patch("link/evil.txt"), "`link` is a symbolic link"),
        (
            "diff --git a/ln b/ln\nnew file mode 120000\n--- /dev/null\n+++ b/ln\n@@ -0,0 +1 @@\n+/etc/passwd\n"
            "\\ No newline at end of file\n",
            "creates a symbolic link",
        ),
        ("just some text\n", "not a unified diff"),
    ],
)
async def test_diffs_that_escape_the_worktree_are_refused(runtime: Runtime, patch: str, expected: str) -> None:
    async with client_for(runtime) as client:
        s = Session(client)
        created = await s.ok("repo_create_branch", BRANCH)
        workspace = runtime.config.workspaces_dir / "acme/web" / created["workspace"]
        os.symlink(str(workspace.parent.parent), workspace / "link")
        message = await s.refused("repo_apply_diff", {**BRANCH, "patch": patch})
    assert expected in message
    assert not (workspace.parent / "outside.txt").exists()
    assert not (workspace.parent.parent / "evil.txt").exists()


async def test_write_file_refuses_a_symlink_in_the_workspace(runtime: Runtime) -> None:
    async with client_for(runtime) as client:
        s = Session(client)
        created = await s.ok("repo_create_branch", BRANCH)
        workspace = runtime.config.workspaces_dir / "acme/web" / created["workspace"]
        os.symlink(str(workspace.parent), workspace / "out")
        message = await s.refused("repo_write_file", {**BRANCH, "path": "out/x.txt", "content": "x"})
    assert "`out` is a symbolic link" in message
    assert not (workspace.parent / "x.txt").exists()


@pytest.mark.parametrize(
    ("path", "link"),
    [
        ("passwd_link", "passwd_link"),
        ("etc_dir", "etc_dir"),
        ("sub/up", "sub/up"),
        ("etc_dir/passwd", "etc_dir"),
    ],
)
async def test_write_file_refuses_a_committed_link_and_leaves_it_a_link(runtime: Runtime, path: str, link: str) -> None:
    """Without a workspace the file is committed by plumbing: a link there must not become a regular file."""
    web = _web_path(runtime)
    _commit_links(web, {"passwd_link": "/etc/passwd", "etc_dir": "/etc", "sub/up": ".."})
    before = git_text(web, ["ls-tree", "main", "--", link])
    async with client_for(runtime) as client:
        message = await Session(client).refused("repo_write_file", {**BRANCH, "path": path, "content": "x"})
    assert f"field `path`: `{link}` is a symbolic link" in message
    assert "tools do not follow links" in message
    [event] = audit_events(runtime.config.audit.path)
    assert event["outcome"] == "invalid_arguments"
    assert before.startswith("120000 ")
    assert git_text(web, ["ls-tree", "main", "--", link]) == before
    assert git_text(web, ["branch", "--list", "agent/fix"]) == ""
    assert (web / link).is_symlink()


async def test_a_task_cannot_switch_branches_or_commit_nothing(runtime: Runtime) -> None:
    async with client_for(runtime) as client:
        s = Session(client)
        await s.ok("repo_create_branch", BRANCH)
        other = await s.refused("repo_apply_diff", {**WEB, "branch": "agent/other", "patch": PATCH})
        empty = await s.refused("repo_commit", {**BRANCH, "message": "nothing"})
        again = await s.refused("repo_create_branch", {**WEB, "branch": "agent/second"})
        not_task = await s.refused("repo_create_branch", {**WEB, "branch": "feature/x"})
    assert "is on `agent/fix`, not `agent/other`" in other
    assert "nothing to commit" in empty
    assert "already has workspace" in again
    assert "not a task branch" in not_task


async def test_push_sends_the_task_branch_to_the_configured_remote(tree: Path) -> None:
    runtime, remote = with_remote(tree)
    try:
        async with client_for(runtime) as client:
            s = Session(client)
            await s.ok("repo_create_branch", BRANCH)
            await s.ok("repo_apply_diff", {**BRANCH, "patch": PATCH})
            committed = await s.ok("repo_commit", {**BRANCH, "message": "Raise the timeout"})
            pushed = await s.ok("repo_push", BRANCH)
    finally:
        runtime.close()
    assert pushed["commit"] == committed["commit"]
    assert git_text(remote, ["rev-parse", "refs/heads/agent/fix"]) == committed["commit"]
    assert str(remote) not in str(pushed)
    assert audit_events(runtime.config.audit.path)[-1]["execution"]["pushed"]["commit"] == committed["commit"]


@pytest.mark.parametrize("tool", ["repo_push", "repo_create_branch", "repo_commit", "repo_apply_diff"])
async def test_changing_a_protected_branch_is_denied_by_policy(tree: Path, tool: str) -> None:
    runtime, remote = with_remote(tree)
    arguments = {"repository": "acme/web", "branch": "main", "patch": PATCH, "message": "m"}
    schema = runtime.catalog.tools[tool].input_schema["properties"]
    try:
        async with client_for(runtime) as client:
            message = await Session(client).refused(tool, {k: v for k, v in arguments.items() if k in schema})
    finally:
        runtime.close()
    assert "protected-branches" in message and "reviewed pull requests" in message
    assert git_text(remote, ["for-each-ref"]) == ""
    [event] = audit_events(runtime.config.audit.path)
    assert event["outcome"] == "denied"
    assert event["decision"]["policies"][0]["id"] == "protected-branches"


async def test_push_without_a_configured_remote_fails_clearly(runtime: Runtime) -> None:
    async with client_for(runtime) as client:
        s = Session(client)
        await s.ok("repo_write_file", {**BRANCH, "path": "a.txt", "content": "a"})
        message = await s.refused("repo_push", BRANCH)
    assert "has no `remote` configured" in message


async def test_writes_to_the_prod_repository_are_denied_before_any_worktree_exists(runtime: Runtime) -> None:
    async with client_for(runtime) as client:
        message = await Session(client).refused(
            "repo_create_branch", {"repository": "acme/payments", "branch": "agent/fix"}
        )
    assert "prod-writes-forbidden" in message
    assert not (runtime.config.workspaces_dir / "acme/payments").exists()


async def test_deleting_a_branch_checked_out_in_a_workspace_is_refused(runtime: Runtime) -> None:
    async with client_for(runtime) as client:
        s = Session(client)
        created = await s.ok("repo_create_branch", BRANCH)
        message = await s.refused("repo_delete_branch", BRANCH)
    assert f"checked out in workspace `{created['workspace']}`" in message


async def test_a_task_branch_without_a_workspace_can_be_deleted_after_its_workspace_is_removed(
    runtime: Runtime,
) -> None:
    web = _web_path(runtime)
    async with client_for(runtime) as client:
        s = Session(client)
        created = await s.ok("repo_create_branch", BRANCH)
        repo = runtime.config.repository("acme/web")
        assert repo is not None
        WorkspaceStore(repo, web).remove(created["workspace"])
        deleted = await s.ok("repo_delete_branch", BRANCH)
    assert deleted["deleted_tip"] == created["base_commit"]
    assert git_text(web, ["branch", "--list", "agent/fix"]) == ""


def _other_task(tree: Path) -> Runtime:
    """A second server for another agent's task on the same checkout."""
    environ = {"CEDARGATE_AGENT": "agent-b", "CEDARGATE_TASK": "other-task"}
    return build_runtime(load_config(tree / "cedargate.toml", environ=environ))


async def test_write_file_refuses_a_branch_checked_out_in_another_tasks_workspace(runtime: Runtime, tree: Path) -> None:
    """Writing there would commit inside that task's worktree and lose its staged work."""
    other = _other_task(tree)
    try:
        async with client_for(runtime) as client:
            a = Session(client)
            created = await a.ok("repo_create_branch", BRANCH)
            await a.ok("repo_apply_diff", {**BRANCH, "patch": PATCH})
            async with client_for(other) as other_client:
                message = await Session(other_client).refused(
                    "repo_write_file", {**BRANCH, "path": "docs/NOTE.md", "content": "note\n"}
                )
            status = await a.ok("repo_status", WEB)
            committed = await a.ok("repo_commit", {**BRANCH, "message": "Raise the timeout"})
    finally:
        other.close()
    assert "field `branch`: `agent/fix` is checked out in another task's workspace" in message
    assert str(runtime.config.workspaces_dir) not in message
    assert status["workspace"]["changes"] == [{"status": "M ", "path": "src/app.py"}]
    assert committed["files"] == ["src/app.py"] and committed["parent"] == created["base_commit"]


RENAME_LINK = """diff --git a/docs_link b/newlink
similarity index 0%
{kind} from docs_link
{kind} to newlink
--- a/docs_link
+++ b/newlink
@@ -1 +1 @@
-README.md
\\ No newline at end of file
+/etc/passwd
\\ No newline at end of file
"""
GITLINK = """diff --git a/.gitmodules b/.gitmodules
new file mode 100644
--- /dev/null
+++ b/.gitmodules
@@ -0,0 +1,3 @@
+[submodule "sub"]
+\tpath = sub
+\turl = https://example.invalid/sub.git
diff --git a/sub b/sub
new file mode 160000
index 0000000..{commit}
--- /dev/null
+++ b/sub
@@ -0,0 +1 @@
+Subproject commit {commit}
"""


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("rename", "`docs_link` is a symbolic link"),
        # A copy leaves its source alone; the link it would create is what is refused.
        ("copy", "creates a symbolic link or embedded repository: `newlink` (symbolic link)"),
        ("gitlink", "creates a symbolic link or embedded repository: `sub` (embedded repository (gitlink))"),
    ],
)
async def test_a_diff_that_leaves_a_link_or_gitlink_is_refused_and_changes_nothing(
    runtime: Runtime, kind: str, expected: str
) -> None:
    """Rename sources are confined too, and the result may hold no link where the diff touched."""
    web = _web_path(runtime)
    _commit_links(web, {"docs_link": "README.md"})
    head = git_text(web, ["rev-parse", "HEAD"])
    patch = GITLINK.format(commit=head) if kind == "gitlink" else RENAME_LINK.format(kind=kind)
    async with client_for(runtime) as client:
        s = Session(client)
        created = await s.ok("repo_create_branch", BRANCH)
        message = await s.refused("repo_apply_diff", {**BRANCH, "patch": patch})
        status = await s.ok("repo_status", WEB)
    workspace = runtime.config.workspaces_dir / "acme/web" / created["workspace"]
    assert f"field `patch`: {expected}" in message
    assert status["workspace"]["changes"] == []
    assert os.readlink(workspace / "docs_link") == "README.md" and (workspace / "README.md").is_file()
    assert not (workspace / "newlink").exists() and not (workspace / ".gitmodules").exists()


async def test_a_rename_reports_its_source_and_its_new_name(runtime: Runtime) -> None:
    patch = "diff --git a/README.md b/GUIDE.md\nsimilarity index 100%\nrename from README.md\nrename to GUIDE.md\n"
    async with client_for(runtime) as client:
        s = Session(client)
        await s.ok("repo_create_branch", BRANCH)
        applied = await s.ok("repo_apply_diff", {**BRANCH, "patch": patch})
    assert applied["files"] == ["GUIDE.md", "README.md"]


async def test_a_commit_carries_only_what_diffs_staged_and_names_what_else_the_worktree_holds(
    runtime: Runtime,
) -> None:
    """As a sandboxed test run can leave them: a workflow file, an edit, a deletion, a link, an embedded repository."""
    async with client_for(runtime) as client:
        s = Session(client)
        created = await s.ok("repo_create_branch", BRANCH)
        await s.ok("repo_apply_diff", {**BRANCH, "patch": PATCH})
        workspace = runtime.config.workspaces_dir / "acme/web" / created["workspace"]
        (workspace / ".github/workflows").mkdir(parents=True)
        (workspace / ".github/workflows/deploy.yml").write_text("on: push\n")
        (workspace / "src/app.py").write_text("TIMEOUT_SECONDS = 999\n")  # after the diff was staged
        (workspace / "README.md").unlink()
        os.symlink("/etc/passwd", workspace / "lnk")
        run_git(workspace, ["init", "-q", "sub"])
        run_git(
            workspace / "sub", ["-c", "user.name=t", "-c", "user.email=t@x", "commit", "-q", "--allow-empty", "-m", "x"]
        )
        committed = await s.ok("repo_commit", {**BRANCH, "message": "Raise the timeout"})
        nothing = await s.refused("repo_commit", {**BRANCH, "message": "again"})
    web = _web_path(runtime)
    assert committed["files"] == ["src/app.py"]
    assert git_text(web, ["show", "agent/fix:src/app.py"]) == "TIMEOUT_SECONDS = 30"
    assert git_text(web, ["ls-tree", "--name-only", "agent/fix", "README.md"]) == "README.md"
    left_out = [".github/workflows/deploy.yml", "README.md", "lnk", "src/app.py", "sub/"]
    assert committed["not_committed"] == left_out and committed["not_committed_count"] == 5
    assert "nothing to commit" in nothing and "`.github/workflows/deploy.yml`" in nothing
    assert "never committed; to keep one, apply a diff of its full content with `repo_apply_diff`" in nothing
    assert "or write it with `repo_write_file`" in nothing


async def test_status_lists_a_staged_rename_once_under_its_new_name(runtime: Runtime) -> None:
    patch = "diff --git a/README.md b/GUIDE.md\nsimilarity index 100%\nrename from README.md\nrename to GUIDE.md\n"
    async with client_for(runtime) as client:
        s = Session(client)
        await s.ok("repo_create_branch", BRANCH)
        await s.ok("repo_apply_diff", {**BRANCH, "patch": patch})
        status = await s.ok("repo_status", WEB)
    assert status["workspace"]["changes"] == [{"status": "R ", "path": "GUIDE.md"}]
