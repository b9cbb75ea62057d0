"""What every repository handler shares: the repository, task branches, commits, links and trailers."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from cedargate.checkout import local_repo
from cedargate.config import RepositoryConfig
from cedargate.errors import HandlerError, ToolInputError, quoted
from cedargate.git import ObjectReader, git_text, run_git
from cedargate.git_readers import OBJECT_READERS
from cedargate.handlers import HandlerCall
from cedargate.provenance import AUDIT_TRAILER
from cedargate.repo_paths import safe_ref
from cedargate.workspaces import Workspace, WorkspaceStore

COMMITTER_ENV: Final[Mapping[str, str]] = {
    "GIT_AUTHOR_NAME": "cedargate",
    "GIT_AUTHOR_EMAIL": "cedargate@localhost",
    "GIT_COMMITTER_NAME": "cedargate",
    "GIT_COMMITTER_EMAIL": "cedargate@localhost",
}
_OWN_TRAILER: Final = re.compile(r"^\s*cedargate-[a-z-]*\s*:", re.IGNORECASE)
"""A line git could read as a ``Cedargate-*`` trailer (keys are case-insensitive)."""
MAX_LINK_BYTES: Final = 4096
"""The longest link target a checkout can hold (``PATH_MAX``); a longer one is not quoted back."""
_SYMLINK_MODE: Final = b"120000"
_TREE_MODE: Final = b"40000"
LINK_KINDS: Final[Mapping[str, str]] = {"120000": "symbolic link", "160000": "embedded repository (gitlink)"}
"""Index modes tools never create or commit: each is a way out of the worktree for later steps."""


def repo_of(call: HandlerCall) -> tuple[RepositoryConfig, Path]:
    """The repository's config and its local path (cloned on first use)."""
    config = call.resource.config
    if not isinstance(config, RepositoryConfig):  # resolve guarantees this; kept for the type checker
        raise HandlerError(f"tool `{call.manifest.name}` is bound to a repository but got `{call.resource.ref}`")
    return config, local_repo(config, call.progress)


def store_of(call: HandlerCall) -> WorkspaceStore:
    repo, path = repo_of(call)
    return WorkspaceStore(repo, path)


def task_branch(repo: RepositoryConfig, branch: str, field: str = "branch") -> str:
    """A branch agents may change: a safe ref that starts with the repository's task prefix."""
    branch = safe_ref(branch, field)
    if not branch.startswith(repo.task_branch_prefix):
        raise ToolInputError(
            f"field `{field}`: `{branch}` is not a task branch; task branches start with `{repo.task_branch_prefix}`"
        )
    return branch


def commit_of(repo: RepositoryConfig, where: Path, ref: str, field: str) -> str:
    """The commit id a ref names at ``where``, or an error naming the field and ``repo`` (asked of a kept reader)."""
    found = _commit_named(where, f"{ref}^{{commit}}")
    if found is None:
        raise not_a_commit(repo.name, ref, field)
    return found


def head_commit(workspace: Workspace) -> str:
    """The commit checked out in a task's worktree (asked of a kept reader)."""
    found = _commit_named(workspace.path, "HEAD^{commit}")
    if found is None:
        raise not_a_commit(workspace.repository, "HEAD", "repository")
    return found


def not_a_commit(repository: str, ref: str, field: str) -> HandlerError:
    """The error for a ref naming no commit, in the repository as the agent knows it (its configured name)."""
    return HandlerError(f"field `{field}`: `{ref}` is not a commit in `{repository}`")


def branch_tip(repo: Path, branch: str) -> str | None:
    return _commit_named(repo, f"refs/heads/{branch}^{{commit}}")


def _commit_named(repo: Path, name: str) -> str | None:
    with OBJECT_READERS.reader(repo) as objects:
        found = objects.info(name)
    return found.oid if found is not None else None


def refuse_links(objects: ObjectReader, commit: str, path: str, field: str = "path") -> None:
    """Refuse ``path`` when it, or a folder on the way to it, is a symbolic link at ``commit``.

    Links are refused, never resolved (``worktree_file`` does the same on disk): a link that
    points inside today can point outside after the next commit, and writing over one would
    silently turn it into a file. The walk starts at the root tree and goes by object id, so
    no name an agent sent reaches git; it stops where the path stops existing.
    """
    tree = objects.info(f"{commit}^{{tree}}")
    if tree is None:  # callers pass a commit they resolved; only a damaged repository gets here
        raise HandlerError(f"git found no tree for commit `{commit}`")
    oid = tree.oid
    parts = path.split("/")
    for depth, name in enumerate(parts, 1):
        entry = tree_entry(objects.contents(oid), name.encode(), len(commit) // 2)
        if entry is None:
            return
        mode, oid = entry
        if mode == _SYMLINK_MODE:
            link = "/".join(parts[:depth])
            raise ToolInputError(
                f"field `{field}`: `{link}` is a symbolic link{_quoted_target(objects, oid)}; tools do not follow links"
            )
        if mode != _TREE_MODE:
            return


def tree_entry(tree: bytes, name: bytes, oid_bytes: int) -> tuple[bytes, str] | None:
    """The mode and object id of ``name`` in a raw tree object, or ``None`` when it has no such entry."""
    at = 0
    # Entries are `MODE NAME\0` then the raw object id; ids are binary, so walk entry by entry.
    while at < len(tree):
        space = tree.index(b" ", at)
        end = tree.index(b"\0", space)
        if tree[space + 1 : end] == name:
            return tree[at:space], tree[end + 1 : end + 1 + oid_bytes].hex()
        at = end + 1 + oid_bytes
    return None


def _quoted_target(objects: ObjectReader, link: str) -> str:
    """`` (to `TARGET`)`` for a link blob a checkout could hold; nothing for a longer one."""
    found = objects.info(link)
    if found is None or found.size > MAX_LINK_BYTES:
        return ""
    return f" (to `{objects.contents(link).decode(errors='replace')}`)"


def commit_message(call: HandlerCall, subject: str) -> str:
    """The subject with trailers naming the agent, the human it acts for, the task and the event.

    The agent's text may not carry ``Cedargate-`` trailer lines of its own: provenance reads
    only cedargate's block, but a reader of ``git log`` would see two conflicting claims.
    """
    claimed = next((line for line in subject.splitlines() if _OWN_TRAILER.match(line)), None)
    if claimed is not None:
        raise ToolInputError(
            f"field `message`: {quoted(claimed.strip())} reads as one of cedargate's provenance trailers, "
            "which cedargate alone writes; remove that line"
        )
    p = call.principal
    trailers = [
        f"Cedargate-Agent: {p.agent}",
        f"Cedargate-On-Behalf-Of: {p.on_behalf_of}",
        f"Cedargate-Task: {p.task}",
        f"{AUDIT_TRAILER}: {call.event_id}",
    ]
    return subject.strip() + "\n\n" + "\n".join(trailers) + "\n"


def task_workspace(call: HandlerCall, branch: str | None) -> Workspace:
    """The principal's workspace, checked out on ``branch`` when one is named.

    A missing workspace is created on an existing task branch; a branch that does not exist
    yet is created by ``repo_create_branch`` (or ``repo_write_file``), never implicitly here.
    """
    repo, path = repo_of(call)
    store = WorkspaceStore(repo, path)
    workspace = store.for_task(call.principal)
    if workspace is not None:
        if branch is not None and branch != workspace.branch:
            raise ToolInputError(
                f"field `branch`: this task's workspace `{workspace.id}` is on `{workspace.branch}`, not `{branch}`; "
                "use that branch or remove the workspace with `cedargate workspaces rm`"
            )
        return workspace
    if branch is None:
        raise HandlerError(
            f"no workspace for task `{call.principal.task}` in `{repo.name}`: create one with `repo_create_branch`"
        )
    tip = branch_tip(path, task_branch(repo, branch))
    if tip is None:
        raise HandlerError(
            f"field `branch`: `{branch}` does not exist in `{repo.name}`; create it with `repo_create_branch`"
        )
    return store.create(call.principal, branch, tip, new_branch=False)


def index_file(where: Path) -> Path:
    """The index of the worktree at ``where`` (a linked worktree keeps its own in the common git folder)."""
    return Path(git_text(where, ["rev-parse", "--path-format=absolute", "--git-path", "index"]))


@contextmanager
def trial_index(where: Path) -> Iterator[Path]:
    """A private copy of the worktree's index, to try a change on before the real index sees it.

    It lives beside the real index, so a caller may ``os.replace`` it into place; otherwise it
    is deleted on the way out and the real index is as it was.
    """
    index = index_file(where)
    handle, name = tempfile.mkstemp(prefix="index.cedargate-", dir=index.parent)
    os.close(handle)
    trial = Path(name)
    try:
        if index.exists():
            shutil.copyfile(index, trial)
        else:  # git reads a missing index as empty, an empty file as damaged
            trial.unlink()
        yield trial
    finally:
        trial.unlink(missing_ok=True)


def index_changes(where: Path, base: str, index: Path) -> list[tuple[str, str]]:
    """``(new mode, path)`` of every entry ``index`` changes against the tree ``base`` (renames as delete and add)."""
    args = ["diff-index", "--cached", "--raw", "-z", "--no-renames", base, "--"]
    fields = run_git(where, args, env={"GIT_INDEX_FILE": str(index)}).stdout.split(b"\0")
    # `:old new oid oid status` then the path, each ended by NUL.
    return [
        (fields[i].split()[1].decode(), fields[i + 1].decode(errors="replace")) for i in range(0, len(fields) - 1, 2)
    ]


def worktree_status(where: Path) -> list[tuple[str, str]]:
    """``(XY, path)`` of every change ``git status`` shows in the worktree at ``where``, untracked files included.

    A rename or copy is one entry under its new name (``-z`` gives its source as a field of its own).
    """
    fields = run_git(where, ["status", "--porcelain=v1", "-z", "--untracked-files=all"]).stdout.split(b"\0")
    entries: list[tuple[str, str]] = []
    i = 0
    while i < len(fields):
        entry = fields[i]
        i += 1
        if len(entry) < 4:
            continue
        status = entry[:2].decode()
        entries.append((status, entry[3:].decode(errors="replace")))
        if status[0] in "RC":
            i += 1  # the source path
    return entries


def links_named(changes: list[tuple[str, str]]) -> str:
    """The links and gitlinks among ``changes``, named for a message (empty when there are none)."""
    return ", ".join(f"`{path}` ({LINK_KINDS[mode]})" for mode, path in changes if mode in LINK_KINDS)
