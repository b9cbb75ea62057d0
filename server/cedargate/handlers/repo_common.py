"""What every repository handler shares: the repository, task branches, commits and trailers."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Final

from cedargate.checkout import local_repo
from cedargate.config import RepositoryConfig
from cedargate.errors import HandlerError, ToolInputError
from cedargate.git_readers import OBJECT_READERS
from cedargate.handlers import HandlerCall
from cedargate.repo_paths import safe_ref
from cedargate.workspaces import Workspace, WorkspaceStore

COMMITTER_ENV: Final[Mapping[str, str]] = {
    "GIT_AUTHOR_NAME": "cedargate",
    "GIT_AUTHOR_EMAIL": "cedargate@localhost",
    "GIT_COMMITTER_NAME": "cedargate",
    "GIT_COMMITTER_EMAIL": "cedargate@localhost",
}
AUDIT_TRAILER: Final = "Cedargate-Audit-Event"


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


def commit_of(repo: Path, ref: str, field: str) -> str:
    """The commit id a ref names, or an error naming the field (asked of a kept git reader)."""
    found = _commit_named(repo, f"{ref}^{{commit}}")
    if found is None:
        raise not_a_commit(repo, ref, field)
    return found


def head_commit(where: Path) -> str:
    """The commit checked out at ``where``, a repository or a task worktree (asked of a kept reader)."""
    return commit_of(where, "HEAD", "repository")


def not_a_commit(repo: Path, ref: str, field: str) -> HandlerError:
    return HandlerError(f"field `{field}`: `{ref}` is not a commit in `{repo.name}`")


def branch_tip(repo: Path, branch: str) -> str | None:
    return _commit_named(repo, f"refs/heads/{branch}^{{commit}}")


def _commit_named(repo: Path, name: str) -> str | None:
    with OBJECT_READERS.reader(repo) as objects:
        found = objects.info(name)
    return found.oid if found is not None else None


def commit_message(call: HandlerCall, subject: str) -> str:
    """The subject with trailers naming the agent, the human it acts for, the task and the event."""
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
