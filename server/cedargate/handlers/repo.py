"""Repository handlers: built-in git operations on configured local repositories.

Writes never touch a working tree: the file is committed onto the task branch with git's
plumbing and a private index, and the branch moves by compare-and-swap, so a concurrent
writer cannot be overwritten silently.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

from cedargate.config import RepositoryConfig
from cedargate.errors import HandlerError, ToolInputError
from cedargate.git import git_text, run_git
from cedargate.handlers import Handler, HandlerCall, HandlerFamily
from cedargate.manifest import ToolManifest
from cedargate.repo_paths import confined_path, safe_ref

MAX_READ_BYTES: Final = 256 * 1024
_SYMLINK_MODE: Final = "120000"


def _repo(call: HandlerCall) -> RepositoryConfig:
    config = call.resource.config
    if not isinstance(config, RepositoryConfig):  # resolve guarantees this; kept for the type checker
        raise HandlerError(f"tool `{call.manifest.name}` is bound to a repository but got `{call.resource.ref}`")
    return config


def read_file(call: HandlerCall) -> dict[str, Any]:
    """Read one file at a revision, refusing files over the size cap."""
    repo = _repo(call)
    path = confined_path(str(call.args["path"]))
    ref = safe_ref(str(call.args.get("ref", "HEAD")), "ref")
    commit = _commit_of(repo.path, ref, "ref")
    _refuse_symlinked_parents(repo.path, commit, path)
    spec = f"{commit}:{path}"
    kind = run_git(repo.path, ["cat-file", "-t", spec], check=False)
    if kind.returncode != 0 or kind.stdout.strip() != b"blob":
        raise HandlerError(f"field `path`: `{path}` is not a file at `{ref}` in `{repo.name}`")
    size = int(git_text(repo.path, ["cat-file", "-s", spec]))
    if size > MAX_READ_BYTES:
        raise HandlerError(f"field `path`: `{path}` is {size} bytes, over the {MAX_READ_BYTES}-byte read cap")
    data = run_git(repo.path, ["cat-file", "blob", spec]).stdout
    return {
        "repository": repo.name,
        "ref": ref,
        "commit": commit,
        "path": path,
        "size": size,
        "content": data.decode("utf-8", errors="replace"),
    }


def write_file(call: HandlerCall) -> dict[str, Any]:
    """Commit one file onto a task branch, with provenance trailers naming agent, user, task, event."""
    repo = _repo(call)
    path = confined_path(str(call.args["path"]))
    branch = _task_branch(repo, str(call.args["branch"]))
    existing = run_git(repo.path, ["rev-parse", "--verify", "--quiet", f"refs/heads/{branch}^{{commit}}"], check=False)
    base = existing.stdout.decode().strip() if existing.returncode == 0 else None
    parent = base or _commit_of(repo.path, safe_ref(str(call.args.get("base", "HEAD")), "base"), "base")
    _refuse_symlinked_parents(repo.path, parent, path)
    content = str(call.args["content"]).encode()
    commit = _commit_with_file(repo.path, parent, path, content, _message(call))
    # Compare-and-swap: the branch moves only if nobody moved it since we read it.
    run_git(repo.path, ["update-ref", f"refs/heads/{branch}", commit, base or "0" * 40])
    return {"repository": repo.name, "branch": branch, "path": path, "commit": commit, "parent": parent}


def delete_branch(call: HandlerCall) -> dict[str, Any]:
    """Delete a task branch; its commits stay reachable through the reflog until git prunes them."""
    repo = _repo(call)
    branch = _task_branch(repo, str(call.args["branch"]))
    existing = run_git(repo.path, ["rev-parse", "--verify", "--quiet", f"refs/heads/{branch}^{{commit}}"], check=False)
    if existing.returncode != 0:
        raise HandlerError(f"field `branch`: `{branch}` does not exist in `{repo.name}`")
    tip = existing.stdout.decode().strip()
    run_git(repo.path, ["update-ref", "-d", f"refs/heads/{branch}", tip])
    return {"repository": repo.name, "branch": branch, "deleted_tip": tip}


def _task_branch(repo: RepositoryConfig, branch: str) -> str:
    branch = safe_ref(branch, "branch")
    if not branch.startswith(repo.task_branch_prefix):
        raise ToolInputError(
            f"field `branch`: `{branch}` is not a task branch; task branches start with `{repo.task_branch_prefix}`"
        )
    return branch


def _commit_of(repo: Path, ref: str, field: str) -> str:
    result = run_git(repo, ["rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}"], check=False)
    if result.returncode != 0:
        raise HandlerError(f"field `{field}`: `{ref}` is not a commit in `{repo.name}`")
    return result.stdout.decode().strip()


def _refuse_symlinked_parents(repo: Path, commit: str, path: str) -> None:
    """A path whose directory part is a symlink in the tree could lead outside the repository."""
    parts = path.split("/")
    for depth in range(1, len(parts)):
        prefix = "/".join(parts[:depth])
        listing = git_text(repo, ["ls-tree", commit, "--", prefix])
        if listing.startswith(_SYMLINK_MODE):
            raise ToolInputError(f"field `path`: `{prefix}` is a symbolic link; tools do not follow links")


def _message(call: HandlerCall) -> str:
    subject = str(call.args.get("message") or f"Update {call.args['path']}").strip()
    p = call.principal
    trailers = [
        f"Cedargate-Agent: {p.agent}",
        f"Cedargate-On-Behalf-Of: {p.on_behalf_of}",
        f"Cedargate-Task: {p.task}",
        f"Cedargate-Audit-Event: {call.event_id}",
    ]
    return subject + "\n\n" + "\n".join(trailers) + "\n"


def _commit_with_file(repo: Path, parent: str, path: str, content: bytes, message: str) -> str:
    blob = run_git(repo, ["hash-object", "-w", "--stdin"], input=content).stdout.decode().strip()
    with tempfile.TemporaryDirectory(prefix="cedargate-index-") as tmp:
        env = {
            "GIT_INDEX_FILE": os.path.join(tmp, "index"),
            "GIT_AUTHOR_NAME": "cedargate",
            "GIT_AUTHOR_EMAIL": "cedargate@localhost",
            "GIT_COMMITTER_NAME": "cedargate",
            "GIT_COMMITTER_EMAIL": "cedargate@localhost",
        }
        run_git(repo, ["read-tree", parent], env=env)
        run_git(repo, ["update-index", "--add", "--cacheinfo", f"100644,{blob},{path}"], env=env)
        tree = git_text(repo, ["write-tree"], env=env)
        return git_text(repo, ["commit-tree", tree, "-p", parent, "-F", "-"], env=env, input=message.encode())


OPERATIONS: Final[Mapping[str, Callable[[HandlerCall], dict[str, Any]]]] = {
    "read_file": read_file,
    "write_file": write_file,
    "delete_branch": delete_branch,
}


class RepoHandlers(HandlerFamily):
    """The built-in git operations, by the name a manifest gives in ``handler.operation``."""

    kind = "repo"

    def check(self, manifest: ToolManifest) -> None:
        operation = getattr(manifest.handler, "operation", "")
        if operation not in OPERATIONS:
            known = ", ".join(f"`{o}`" for o in OPERATIONS)
            raise ValueError(f"field `handler.operation`: unknown repository operation `{operation}` (known: {known})")
        if manifest.resource.kind != "repository":
            raise ValueError('field `resource.kind`: repository operations need `resource.kind = "repository"`')

    def handler_for(self, manifest: ToolManifest) -> Handler:
        return OPERATIONS[getattr(manifest.handler, "operation", "")]
