"""Repository handlers: built-in git operations on configured local repositories.

This module holds the original three operations and the table of all of them; reads,
workspace changes and review (push, pull request, tests) live in their own modules.
``repo_write_file`` without a workspace never touches a working tree: the file is committed
onto the task branch with git's plumbing and a private index, and the branch moves by
compare-and-swap, so a concurrent writer cannot be overwritten silently.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from cedargate.config import RepositoryConfig
from cedargate.errors import HandlerError, ToolInputError
from cedargate.git import git_text, run_git
from cedargate.git_readers import OBJECT_READERS
from cedargate.handlers import Handler, HandlerCall, HandlerFamily
from cedargate.handlers.repo_common import (
    COMMITTER_ENV,
    branch_tip,
    commit_message,
    commit_of,
    head_commit,
    not_a_commit,
    refuse_links,
    repo_of,
    task_branch,
)
from cedargate.handlers.repo_read import READ_OPERATIONS, describe_repository, revision_to_read
from cedargate.handlers.repo_review import REVIEW_OPERATIONS
from cedargate.handlers.repo_work import WORK_OPERATIONS
from cedargate.manifest import ToolManifest
from cedargate.repo_paths import confined_path, safe_revision, worktree_file
from cedargate.workspaces import Workspace, WorkspaceStore

MAX_READ_BYTES: Final = 256 * 1024


def read_file(call: HandlerCall) -> dict[str, Any]:
    """Read one file at a revision, refusing symbolic links and files over the size cap."""
    repo, repo_path = repo_of(call)
    path = confined_path(str(call.args["path"]))
    if "\n" in path or "\r" in path:
        raise ToolInputError(f"field `path`: `{path!r}` contains a line break; such files cannot be read")
    ref = revision_to_read(call)
    # One git reader answers every question (which commit, any link on the way, which blob, what content).
    with OBJECT_READERS.reader(repo_path) as objects:
        found = objects.info(f"{ref}^{{commit}}")
        if found is None:
            raise not_a_commit(repo.name, ref, "ref")
        commit = found.oid
        # git names a link's own blob at `commit:path`, and nothing through one: refuse both first.
        refuse_links(objects, commit, path)
        blob = objects.info(f"{commit}:{path}")
        if blob is None or blob.type != "blob":
            raise HandlerError(f"field `path`: `{path}` is not a file at `{ref}` in `{repo.name}`")
        size = blob.size
        if size > MAX_READ_BYTES:
            raise HandlerError(f"field `path`: `{path}` is {size} bytes, over the {MAX_READ_BYTES}-byte read cap")
        data = objects.contents(blob.oid)
    return {
        "repository": repo.name,
        "ref": ref,
        "commit": commit,
        "path": path,
        "size": size,
        "content": data.decode("utf-8", errors="replace"),
    }


def write_file(call: HandlerCall) -> dict[str, Any]:
    """Commit one file onto a task branch, with provenance trailers naming agent, user, task, event.

    When the branch is checked out in a task workspace the file is written and committed
    there (so the worktree never falls behind its branch); otherwise the commit is made with
    git's plumbing and a private index, and no working tree is touched.
    """
    repo, repo_path = repo_of(call)
    path = confined_path(str(call.args["path"]))
    branch = task_branch(repo, str(call.args["branch"]))
    content = str(call.args["content"]).encode()
    message = commit_message(call, str(call.args.get("message") or f"Update {path}"))
    store = WorkspaceStore(repo, repo_path)
    workspace = store.on_branch(branch)
    if workspace is not None:
        if workspace.id != store.id_for(call.principal):
            # Its worktree holds that task's uncommitted work, which a write here would commit or lose.
            raise HandlerError(
                f"field `branch`: `{branch}` is checked out in another task's workspace; "
                "write on your own task's branch, or ask that task to commit and remove its workspace"
            )
        return _write_in_workspace(repo.name, workspace, path, content, message)
    base = branch_tip(repo_path, branch)
    parent = base or commit_of(repo, repo_path, safe_revision(str(call.args.get("base", "HEAD")), "base"), "base")
    # Writing over a link would turn it into a file; writing through one would change what it points at.
    with OBJECT_READERS.reader(repo_path) as objects:
        refuse_links(objects, parent, path)
    commit = _commit_with_file(repo_path, parent, path, content, message)
    # Compare-and-swap: the branch moves only if nobody moved it since we read it.
    run_git(repo_path, ["update-ref", f"refs/heads/{branch}", commit, base or "0" * 40])
    return {"repository": repo.name, "branch": branch, "path": path, "commit": commit, "parent": parent}


def _write_in_workspace(name: str, workspace: Workspace, path: str, content: bytes, message: str) -> dict[str, Any]:
    target = worktree_file(workspace.path, path)
    parent = head_commit(workspace)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(content)
    run_git(workspace.path, ["add", "--", path])
    # A pathspec limits the commit to this file, whatever else is staged in the workspace.
    run_git(
        workspace.path,
        ["commit", "--quiet", "--allow-empty", "-F", "-", "--", path],
        input=message.encode(),
        env=COMMITTER_ENV,
    )
    commit = head_commit(workspace)
    return {
        "repository": name,
        "branch": workspace.branch,
        "path": path,
        "commit": commit,
        "parent": parent,
        "workspace": workspace.id,
    }


def delete_branch(call: HandlerCall) -> dict[str, Any]:
    """Delete a task branch; its commits stay reachable through the reflog until git prunes them."""
    repo, repo_path = repo_of(call)
    branch = task_branch(repo, str(call.args["branch"]))
    tip = branch_tip(repo_path, branch)
    if tip is None:
        raise HandlerError(f"field `branch`: `{branch}` does not exist in `{repo.name}`")
    workspace = WorkspaceStore(repo, repo_path).on_branch(branch)
    if workspace is not None:
        raise HandlerError(
            f"field `branch`: `{branch}` is checked out in workspace `{workspace.id}`; "
            f"remove it first with `cedargate workspaces rm {workspace.id}`"
        )
    run_git(repo_path, ["update-ref", "-d", f"refs/heads/{branch}", tip])
    return {"repository": repo.name, "branch": branch, "deleted_tip": tip}


def _commit_with_file(repo: Path, parent: str, path: str, content: bytes, message: str) -> str:
    blob = run_git(repo, ["hash-object", "-w", "--stdin"], input=content).stdout.decode().strip()
    with tempfile.TemporaryDirectory(prefix="cedargate-index-") as tmp:
        env = {"GIT_INDEX_FILE": os.path.join(tmp, "index"), **COMMITTER_ENV}
        run_git(repo, ["read-tree", parent], env=env)
        run_git(repo, ["update-index", "--add", "--cacheinfo", f"100644,{blob},{path}"], env=env)
        tree = git_text(repo, ["write-tree"], env=env)
        return git_text(repo, ["commit-tree", tree, "-p", parent, "-F", "-"], env=env, input=message.encode())


OPERATIONS: Final[Mapping[str, Handler]] = {
    "read_file": read_file,
    "write_file": write_file,
    "delete_branch": delete_branch,
    **READ_OPERATIONS,
    **WORK_OPERATIONS,
    **REVIEW_OPERATIONS,
}
LIST_OPERATION: Final = "list"


class RepoHandlers(HandlerFamily):
    """The built-in git operations, by the name a manifest gives in ``handler.operation``.

    ``list`` is the one operation about the configuration rather than one repository, so it
    is bound to the configured repositories here.
    """

    kind = "repo"

    def __init__(self, repositories: Sequence[RepositoryConfig] = ()) -> None:
        self._repositories = tuple(repositories)

    def check(self, manifest: ToolManifest) -> None:
        operation = getattr(manifest.handler, "operation", "")
        if operation not in OPERATIONS and operation != LIST_OPERATION:
            known = ", ".join(f"`{o}`" for o in (*OPERATIONS, LIST_OPERATION))
            raise ValueError(f"field `handler.operation`: unknown repository operation `{operation}` (known: {known})")
        if manifest.resource.kind != "repository":
            raise ValueError('field `resource.kind`: repository operations need `resource.kind = "repository"`')

    def handler_for(self, manifest: ToolManifest) -> Handler:
        operation = getattr(manifest.handler, "operation", "")
        if operation == LIST_OPERATION:
            return self._list
        return OPERATIONS[operation]

    def _list(self, call: HandlerCall) -> dict[str, Any]:
        """The configured repositories and the governance facts policies see about each."""
        return {"repositories": [describe_repository(r) for r in self._repositories]}
