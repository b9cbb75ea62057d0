"""Changing a task's workspace: create its branch, apply a unified diff, commit.

Each task works in its own worktree (see ``cedargate.workspaces``) on a task branch; the
main checkout and other branches are never touched. Every path a patch names is confined
to the worktree before ``git apply`` sees it, and commits carry provenance trailers.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from cedargate.errors import HandlerError, ToolInputError
from cedargate.git import git_text, run_git
from cedargate.handlers import Handler, HandlerCall
from cedargate.handlers.repo_common import (
    COMMITTER_ENV,
    branch_tip,
    commit_message,
    commit_of,
    head_commit,
    repo_of,
    task_branch,
    task_workspace,
)
from cedargate.repo_paths import safe_revision, worktree_file
from cedargate.workspaces import WorkspaceStore


def create_branch(call: HandlerCall) -> dict[str, Any]:
    """Create a task branch at ``base`` and the task's workspace on it, recording the base commit."""
    repo, path = repo_of(call)
    branch = task_branch(repo, str(call.args["branch"]))
    if branch_tip(path, branch) is not None:
        raise HandlerError(f"field `branch`: `{branch}` already exists in `{repo.name}`; pick a new task branch name")
    base_ref = safe_revision(str(call.args.get("base", "HEAD")), "base")
    base = commit_of(repo, path, base_ref, "base")
    store = WorkspaceStore(repo, path)
    existing = store.for_task(call.principal)
    if existing is not None:
        raise HandlerError(
            f"task `{call.principal.task}` already has workspace `{existing.id}` on `{existing.branch}`; "
            f"keep working there or remove it with `cedargate workspaces rm {existing.id}`"
        )
    workspace = store.create(call.principal, branch, base, new_branch=True)
    return {
        "repository": repo.name,
        "branch": branch,
        "base": base_ref,
        "base_commit": base,
        "workspace": workspace.id,
    }


def apply_diff(call: HandlerCall) -> dict[str, Any]:
    """Apply a unified diff to the workspace and stage it; nothing is committed yet."""
    repo, _ = repo_of(call)
    workspace = task_workspace(call, task_branch(repo, str(call.args["branch"])))
    patch = str(call.args["patch"])
    if not patch.endswith("\n"):
        patch += "\n"
    data = patch.encode()
    paths = _patch_paths(workspace.path, data)
    if not paths:
        raise ToolInputError("field `patch`: no file changes found; give a unified diff (`--- a/...`, `+++ b/...`)")
    for name in paths:
        worktree_file(workspace.path, name, "patch")
    _refuse_symlink_modes(workspace.path, data)
    check = run_git(workspace.path, ["apply", "--check", "--index", "--recount", "-"], input=data, check=False)
    if check.returncode != 0:
        reason = check.stderr.decode(errors="replace").strip().replace("\n", "; ")
        raise HandlerError(f"field `patch`: does not apply to `{workspace.branch}`: {reason}")
    run_git(workspace.path, ["apply", "--index", "--recount", "-"], input=data)
    return {"repository": repo.name, "branch": workspace.branch, "workspace": workspace.id, "files": sorted(paths)}


def commit(call: HandlerCall) -> dict[str, Any]:
    """Commit every change in the workspace with provenance trailers."""
    repo, _ = repo_of(call)
    workspace = task_workspace(call, task_branch(repo, str(call.args["branch"])))
    where = workspace.path
    run_git(where, ["add", "--all"])
    if run_git(where, ["diff", "--cached", "--quiet"], check=False).returncode == 0:
        raise HandlerError(f"nothing to commit in workspace `{workspace.id}`: apply a diff or write a file first")
    parent = head_commit(workspace)
    message = commit_message(call, str(call.args["message"]))
    run_git(where, ["commit", "--quiet", "-F", "-"], input=message.encode(), env=COMMITTER_ENV)
    sha = head_commit(workspace)
    files = git_text(where, ["diff-tree", "-r", "--name-only", "--no-commit-id", sha]).splitlines()
    return {
        "repository": repo.name,
        "branch": workspace.branch,
        "workspace": workspace.id,
        "commit": sha,
        "parent": parent,
        "files": files,
    }


def _refuse_symlink_modes(where: Path, patch: bytes) -> None:
    """A patch may not create symbolic links: a link is a way out of the worktree for later steps."""
    summary = run_git(where, ["apply", "--summary", "--recount", "-"], input=patch).stdout.decode(errors="replace")
    if " 120000" in summary or "=> 120000" in summary:
        raise ToolInputError("field `patch`: creates a symbolic link; tools do not create or follow links")


def _patch_paths(where: Path, patch: bytes) -> set[str]:
    """Every path the patch would touch (old and new names), as git itself parses them."""
    result = run_git(where, ["apply", "--numstat", "-z", "--recount", "-"], input=patch, check=False)
    if result.returncode != 0:
        reason = result.stderr.decode(errors="replace").strip().replace("\n", "; ")
        raise ToolInputError(f"field `patch`: not a unified diff git can read: {reason}")
    fields = result.stdout.decode(errors="replace").split("\0")
    paths: set[str] = set()
    i = 0
    while i < len(fields):
        if not fields[i].strip():
            i += 1
            continue
        name = fields[i].strip("\n").split("\t", 2)[2]
        if name == "":
            paths.update((fields[i + 1], fields[i + 2]))
            i += 3
        else:
            paths.add(name)
            i += 1
    return paths


WORK_OPERATIONS: Final[Mapping[str, Handler]] = {
    "create_branch": create_branch,
    "apply_diff": apply_diff,
    "commit": commit,
}
