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

from cedargate.agent_bytes import text_for_agent
from cedargate.config import RepositoryConfig
from cedargate.errors import HandlerError, ToolInputError
from cedargate.git import git_text, run_git
from cedargate.git_readers import OBJECT_READERS
from cedargate.handlers import Handler, HandlerCall, HandlerFamily
from cedargate.handlers.repo_common import (
    COMMITTER_ENV,
    LINK_KINDS,
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
from cedargate.manifest import PathsBinding, ToolManifest
from cedargate.repo_paths import confined_path, file_written, refuse_long_names, safe_revision
from cedargate.workspaces import Workspace, WorkspaceStore, checked_out

MAX_READ_BYTES: Final = 256 * 1024
_TREE: Final = "040000"
_FILE: Final = "100644"
_EXECUTABLE: Final = "100755"


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
    content, encoding = text_for_agent(data)
    return {
        "repository": repo.name,
        "ref": ref,
        "commit": commit,
        "path": path,
        "size": size,
        "content": content,
        "encoding": encoding,
    }


def write_file(call: HandlerCall) -> dict[str, Any]:
    """Commit one file onto a task branch, with provenance trailers naming agent, user, task, event.

    When the branch is checked out in a task workspace the file is written and committed
    there (so the worktree never falls behind its branch); otherwise the commit is made with
    git's plumbing and a private index, and no working tree is touched. Both ways commit the
    same files (an ignored path too) and refuse the same paths, before anything changes.
    """
    repo, repo_path = repo_of(call)
    path = confined_path(str(call.args["path"]))
    refuse_long_names(path)
    branch = task_branch(repo, str(call.args["branch"]))
    content = str(call.args["content"]).encode()
    message = commit_message(call, str(call.args.get("message") or f"Update {path}"))
    store = WorkspaceStore(repo, repo_path)
    # Which way to write is decided and done under the branch's lock, so no workspace appears meanwhile.
    with store.branch_held(branch):
        workspace = store.on_branch(branch)
        if workspace is None:
            return _write_on_branch(call, repo, repo_path, branch, path, content, message)
        if workspace.id != store.id_for(call.principal):
            # Its worktree holds that task's uncommitted work, which a write here would commit or lose.
            raise HandlerError(
                f"field `branch`: `{branch}` is checked out in another task's workspace; "
                "write on your own task's branch, or ask that task to commit and remove its workspace"
            )
        with store.changing(workspace.id) as workspace:
            return _write_in_workspace(repo.name, workspace, path, content, message)


def _write_on_branch(
    call: HandlerCall, repo: RepositoryConfig, repo_path: Path, branch: str, path: str, content: bytes, message: str
) -> dict[str, Any]:
    """Commit the file with plumbing and move the branch by compare-and-swap (the caller holds its lock)."""
    _refuse_checked_out(repo.name, repo_path, branch)
    base = branch_tip(repo_path, branch)
    parent = base or commit_of(repo, repo_path, safe_revision(str(call.args.get("base", "HEAD")), "base"), "base")
    # Writing over a link would turn it into a file; writing through one would change what it points at.
    with OBJECT_READERS.reader(repo_path) as objects:
        refuse_links(objects, parent, path)
    mode = _mode_to_write(repo_path, parent, path, branch)
    commit = _commit_with_file(repo_path, parent, path, mode, content, message)
    # Compare-and-swap: the branch moves only if nobody moved it since we read it.
    run_git(repo_path, ["update-ref", f"refs/heads/{branch}", commit, base or "0" * 40])
    return {"repository": repo.name, "branch": branch, "path": path, "commit": commit, "parent": parent}


def _refuse_checked_out(name: str, repo_path: Path, branch: str) -> None:
    """Refuse a branch a worktree outside the task workspaces has checked out (a person's checkout, say)."""
    where = checked_out(repo_path, branch)
    if where:
        place = "the main checkout" if where[0][1] else "a worktree outside the task workspaces"
        raise HandlerError(
            f"field `branch`: `{branch}` is checked out in {place} of `{name}`; tools do not move or delete a "
            "branch under someone's checkout: switch that checkout to another branch, or use another task branch"
        )


def _mode_to_write(repo_path: Path, parent: str, path: str, branch: str) -> str:
    """The mode to commit ``path`` with (an executable stays executable), refusing a folder or a file on the way.

    ``ls-tree -t`` with every prefix of the path names the entries on the way in one process
    (pathspecs are literal, see ``git_env``).
    """
    parts = path.split("/")
    prefixes = ["/".join(parts[:depth]) for depth in range(1, len(parts) + 1)]
    listed = run_git(repo_path, ["ls-tree", "-t", "-z", "--full-tree", parent, "--", *prefixes]).stdout
    modes: dict[str, str] = {}
    for entry in filter(None, listed.decode(errors="surrogateescape").split("\0")):
        info, _, name = entry.partition("\t")
        modes[name] = info.split(" ", 1)[0]
    for prefix in prefixes[:-1]:
        if modes.get(prefix, _TREE) != _TREE:
            raise _file_on_the_way(prefix, branch)
    mode = modes.get(path, _FILE)
    if mode == _TREE:
        raise _folder_at(path, branch)
    if mode in LINK_KINDS:
        raise HandlerError(f"field `path`: `{path}` is {LINK_KINDS[mode]} on `{branch}`; tools do not replace one")
    return _EXECUTABLE if mode == _EXECUTABLE else _FILE


def _write_in_workspace(name: str, workspace: Workspace, path: str, content: bytes, message: str) -> dict[str, Any]:
    """Write and commit the file in the task's worktree (the caller holds it); a failure leaves it as it was.

    A folder at ``path``, or a file where it needs one, is refused as it is on a branch without a
    workspace: ``git add`` would replace it and the commit would delete files no policy decided
    on (the index is checked, not the worktree a test run may have changed).
    """
    parent = head_commit(workspace)
    _refuse_index_clash(workspace.path, path, workspace.branch)
    with file_written(workspace.path, path, content):
        staged = run_git(workspace.path, ["ls-files", "--stage", "-z", "--", path]).stdout
        try:
            # `--force`: an ignored path is committed, as it is on a branch without a workspace.
            run_git(workspace.path, ["add", "--force", "--", path])
            # A pathspec limits the commit to this file, whatever else is staged in the workspace.
            run_git(
                workspace.path,
                ["commit", "--quiet", "--allow-empty", "-F", "-", "--", path],
                input=message.encode(),
                env=COMMITTER_ENV,
            )
        except BaseException:
            _restore_index_entry(workspace.path, path, staged)
            raise
    commit = head_commit(workspace)
    return {
        "repository": name,
        "branch": workspace.branch,
        "path": path,
        "commit": commit,
        "parent": parent,
        "workspace": workspace.id,
    }


def _refuse_index_clash(where: Path, path: str, branch: str) -> None:
    """Refuse ``path`` where the workspace's index holds a folder, or a file on the way to it.

    Read-only (``cat-file`` and ``ls-files`` take no index lock): the index is what the commit
    takes, whatever a test run did to the worktree.
    """
    parts = path.split("/")
    prefixes = ["/".join(parts[:depth]) for depth in range(1, len(parts))]
    files_on_the_way = _index_files_among(where, prefixes)
    if files_on_the_way:
        raise _file_on_the_way(files_on_the_way[0], branch)
    listed = run_git(where, ["ls-files", "-z", "--", path]).stdout.decode(errors="replace").split("\0")
    if any(name and name != path for name in listed):
        raise _folder_at(path, branch)


def _file_on_the_way(prefix: str, branch: str) -> HandlerError:
    return HandlerError(
        f"field `path`: `{prefix}` is a file on `{branch}`, not a folder, so nothing can be written inside it; "
        "choose another path"
    )


def _folder_at(path: str, branch: str) -> HandlerError:
    return HandlerError(f"field `path`: `{path}` is a folder on `{branch}`; name a file inside it")


def _index_files_among(where: Path, names: list[str]) -> list[str]:
    """Those of ``names`` the index holds as files: one ``cat-file`` asks for each (``:NAME``)."""
    if not names:
        return []
    if any("\n" in name for name in names):  # `--batch-check` reads one name a line
        listed = run_git(where, ["ls-files", "-z", "--", *names]).stdout.decode(errors="replace").split("\0")
        return [name for name in names if name in listed]
    found = run_git(where, ["cat-file", "--batch-check"], input="".join(f":{name}\n" for name in names).encode())
    answers = found.stdout.decode(errors="replace").splitlines()
    return [name for name, answer in zip(names, answers, strict=True) if not answer.endswith(" missing")]


def _restore_index_entry(where: Path, path: str, staged: bytes) -> None:
    """Put ``path``'s index entry back as ``ls-files --stage -z`` showed it (absent when it showed nothing)."""
    if staged:
        run_git(where, ["update-index", "-z", "--index-info"], input=staged, check=False)
    else:
        run_git(where, ["update-index", "--force-remove", "--", path], check=False)


def delete_branch(call: HandlerCall) -> dict[str, Any]:
    """Delete a task branch; its commits stay reachable through the reflog until git prunes them."""
    repo, repo_path = repo_of(call)
    branch = task_branch(repo, str(call.args["branch"]))
    store = WorkspaceStore(repo, repo_path)
    with store.branch_held(branch):
        tip = branch_tip(repo_path, branch)
        if tip is None:
            raise HandlerError(f"field `branch`: `{branch}` does not exist in `{repo.name}`")
        workspace = store.on_branch(branch)
        if workspace is not None:
            raise HandlerError(
                f"field `branch`: `{branch}` is checked out in workspace `{workspace.id}`; "
                f"remove it first with `cedargate workspaces rm {workspace.id}`"
            )
        _refuse_checked_out(repo.name, repo_path, branch)
        run_git(repo_path, ["update-ref", "-d", f"refs/heads/{branch}", tip])
    return {"repository": repo.name, "branch": branch, "deleted_tip": tip}


def _commit_with_file(repo: Path, parent: str, path: str, mode: str, content: bytes, message: str) -> str:
    blob = run_git(repo, ["hash-object", "-w", "--stdin"], input=content).stdout.decode().strip()
    with tempfile.TemporaryDirectory(prefix="cedargate-index-") as tmp:
        env = {"GIT_INDEX_FILE": os.path.join(tmp, "index"), **COMMITTER_ENV}
        run_git(repo, ["read-tree", parent], env=env)
        run_git(repo, ["update-index", "--add", "--cacheinfo", f"{mode},{blob},{path}"], env=env)
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
        _check_changed_paths(operation, manifest.paths)

    def handler_for(self, manifest: ToolManifest) -> Handler:
        operation = getattr(manifest.handler, "operation", "")
        if operation == LIST_OPERATION:
            return self._list
        return OPERATIONS[operation]

    def _list(self, call: HandlerCall) -> dict[str, Any]:
        """The configured repositories and the governance facts policies see about each."""
        return {"repositories": [describe_repository(r) for r in self._repositories]}


CHANGED_PATHS: Final[Mapping[str, PathsBinding]] = {
    "write_file": PathsBinding(argument="path", format="path"),
    "apply_diff": PathsBinding(argument="patch", format="diff"),
}
"""Where each operation that changes files reads its paths: what policies see as ``context.changes``."""


def _check_changed_paths(operation: str, paths: PathsBinding | None) -> None:
    """Refuse a manifest whose ``[paths]`` is not where its operation reads the paths it changes.

    Policies about paths see only what ``[paths]`` names, and ``apply_diff`` refuses a diff that
    changes a path the decision did not see: a missing table would hide changes from policies
    or refuse every diff.
    """
    expected = CHANGED_PATHS.get(operation)
    if paths == expected:
        return
    if expected is None:
        raise ValueError(f"field `paths`: operation `{operation}` changes no file; remove the `[paths]` table")
    raise ValueError(
        f"field `paths`: operation `{operation}` changes the paths its `{expected.argument}` argument names; "
        f'write `[paths]` with `argument = "{expected.argument}"` and `format = "{expected.format}"` '
        "so policies see them as `context.changes`"
    )
