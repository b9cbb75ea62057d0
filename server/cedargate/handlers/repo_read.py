"""Read-only repository operations: list, tree, search, log, show a commit, diff, status.

Refs are checked by ``safe_ref`` and paths by ``confined_path`` before they reach git, and
every path is passed after ``--``, so nothing an agent sends is read as a git option.
Outputs are capped; a capped field says so (``truncated``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from cedargate.config import RepositoryConfig
from cedargate.errors import HandlerError, ToolInputError
from cedargate.git import git_text, run_git
from cedargate.git_readers import OBJECT_READERS
from cedargate.handlers import Handler, HandlerCall
from cedargate.handlers.repo_common import commit_of, head_commit, refuse_links, repo_of, worktree_status
from cedargate.provenance import AUDIT_EVENT_FORMAT
from cedargate.redact import REDACTED, redacted_head, redacted_lines
from cedargate.repo_paths import confined_path, safe_revision
from cedargate.workspaces import Workspace, WorkspaceStore

MAX_PATCH_BYTES: Final = 256 * 1024
MAX_TREE_ENTRIES: Final = 2000
MAX_LINE_CHARS: Final = 500
_FIELD: Final = "\x1f"


def describe_repository(repo: RepositoryConfig) -> dict[str, Any]:
    """What an agent may know about a configured repository: governance facts, not server paths."""
    return {
        "name": repo.name,
        "environment": repo.environment,
        "owner_team": repo.owner_team,
        "protected_branches": list(repo.protected_branches),
        "task_branch_prefix": repo.task_branch_prefix,
        "remote": repo.remote is not None,
        "forge": repo.forge.kind,
        "test_command": repo.test_command,
    }


def list_tree(call: HandlerCall) -> dict[str, Any]:
    """Entries of a folder at a revision (recursively if asked), capped; a link is refused, not listed as empty."""
    repo, path = repo_of(call)
    ref, commit = _ref_and_commit(call, repo, path)
    spec = [folder + "/" for folder in _linkless_scope(call, path, commit)]
    args = ["ls-tree", "-z", "-l", *(["-r"] if call.args.get("recursive") else []), commit, "--", *spec]
    entries = []
    for record in run_git(path, args).stdout.decode(errors="replace").split("\0"):
        if not record:
            continue
        meta, name = record.split("\t", 1)
        mode, kind, _obj, size = meta.split()
        entry: dict[str, Any] = {"path": name, "type": "symlink" if mode == "120000" else kind, "mode": mode}
        if size != "-":
            entry["size"] = int(size)
        entries.append(entry)
    return {
        "repository": repo.name,
        "ref": ref,
        "commit": commit,
        "entries": entries[:MAX_TREE_ENTRIES],
        "truncated": len(entries) > MAX_TREE_ENTRIES,
    }


def search(call: HandlerCall) -> dict[str, Any]:
    """``git grep`` at a revision: matching lines with file and line number, capped; a link is refused."""
    repo, path = repo_of(call)
    ref, commit = _ref_and_commit(call, repo, path)
    limit = int(call.args.get("max_results", 100))
    flags = ["-F"] if call.args.get("fixed_string") else ["-E"]
    flags += ["-i"] if call.args.get("ignore_case") else []
    scope = _linkless_scope(call, path, commit)
    # `-e` keeps the pattern a pattern even when it starts with `-`.
    args = ["grep", "-z", "-n", "-I", "--no-color", *flags, "-e", str(call.args["pattern"]), commit, "--", *scope]
    result = run_git(path, args, check=False)
    if result.returncode not in (0, 1):
        message = result.stderr.decode(errors="replace").strip()
        raise ToolInputError(f"field `pattern`: git grep refused it: {message}")
    matches = []
    for line in result.stdout.decode(errors="replace").splitlines():
        parts = line.split("\0")
        if len(parts) < 3:
            continue
        matches.append({"path": parts[0].split(":", 1)[1], "line": int(parts[1]), "text": parts[2]})
    shown = _redacted_matches(path, commit, matches[:limit])
    return {
        "repository": repo.name,
        "ref": ref,
        "commit": commit,
        "matches": shown,
        "truncated": len(matches) > limit,
    }


def _redacted_matches(repo_path: Path, commit: str, matches: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each match's text as reading its whole file shows it (redacted first, then cut to ``MAX_LINE_CHARS``).

    A matching line of a private key's body has no secret shape of its own: only the whole
    file shows it is one. Only the files with a match shown are read, each once.
    """
    wanted: dict[str, list[int]] = {}
    for match in matches:
        wanted.setdefault(match["path"], []).append(match["line"])
    lines: dict[str, dict[int, str]] = {}
    with OBJECT_READERS.reader(repo_path) as objects:
        for name, numbers in wanted.items():
            blob = objects.info(f"{commit}:{name}")
            text = objects.contents(blob.oid).decode("utf-8", errors="replace") if blob is not None else ""
            lines[name] = redacted_lines(text, numbers)
    # A line the file does not have (it cannot be read back) is withheld rather than shown unredacted.
    return [{**match, "text": lines[match["path"]].get(match["line"], REDACTED)[:MAX_LINE_CHARS]} for match in matches]


def log(call: HandlerCall) -> dict[str, Any]:
    """Recent commits at a revision (optionally touching a path), with their cedargate audit trailers."""
    repo, path = repo_of(call)
    ref = revision_to_read(call)
    count = int(call.args.get("max_count", 20))
    scope = _path_scope(call)
    fmt = _FIELD.join(["%H", "%P", "%an", "%aI", "%s", AUDIT_EVENT_FORMAT])
    # One git process: log peels the ref itself; only a failure pays for finding out why.
    args = ["log", "-z", f"--format={fmt}", f"--max-count={count}", "--end-of-options", f"{ref}^{{commit}}"]
    result = run_git(path, [*args, "--", *scope], check=False)
    if result.returncode != 0:
        commit_of(repo, path, ref, "ref")  # names the field when the ref is not a commit
        run_git(path, [*args, "--", *scope])  # otherwise git's own error
    out = result.stdout
    commits = []
    for record in out.decode(errors="replace").split("\0"):
        if not record.strip():
            continue
        sha, parents, author, date, subject, events = record.strip("\n").split(_FIELD)
        commits.append(
            {
                "commit": sha,
                "parents": parents.split(),
                "author": author,
                "date": date,
                "subject": subject,
                "audit_events": events.split(),
            }
        )
    return {"repository": repo.name, "ref": ref, "commits": commits}


def show_commit(call: HandlerCall) -> dict[str, Any]:
    """One commit: its metadata, full message, changed files and (capped) patch."""
    repo, path = repo_of(call)
    ref = safe_revision(str(call.args["commit"]), "commit")
    commit = commit_of(repo, path, ref, "commit")
    fmt = _FIELD.join(["%H", "%P", "%an", "%ae", "%aI", "%cn", "%cI", "%B"])
    sha, parents, author, email, date, committer, cdate, message = git_text(
        path, ["show", "-s", f"--format={fmt}", commit]
    ).split(_FIELD)
    files = _numstat(path, ["diff-tree", "-r", "--root", "--no-commit-id", "--numstat", "-z", commit])
    patch, truncated = _capped(run_git(path, ["show", "--format=", "--patch", "--no-color", commit]).stdout)
    return {
        "repository": repo.name,
        "commit": sha,
        "parents": parents.split(),
        "author": {"name": author, "email": email, "date": date},
        "committer": {"name": committer, "date": cdate},
        "message": message,
        "files": files,
        "patch": patch,
        "truncated": truncated,
    }


def diff(call: HandlerCall) -> dict[str, Any]:
    """Changes between two revisions, or of the task's workspace since its base commit.

    Without ``head``, the task's workspace (committed and uncommitted tracked changes) is
    compared with ``base`` (default: the workspace's recorded base commit); with no
    workspace, ``head`` defaults to ``HEAD``.
    """
    repo, path = repo_of(call)
    workspace = WorkspaceStore(repo, path).for_task(call.principal)
    scope = _path_scope(call)
    head_ref = call.args.get("head")
    default_base = workspace.base_commit if workspace is not None and head_ref is None else "HEAD"
    base_ref = safe_revision(str(call.args.get("base") or default_base), "base")
    if head_ref is None and workspace is not None:
        base = commit_of(repo, path, base_ref, "base")
        where, revs, head = workspace.path, [base], "workspace"
    else:
        try:
            checked_head = safe_revision(str(head_ref or "HEAD"), "head")
        except ToolInputError:
            commit_of(repo, path, base_ref, "base")  # a bad base is reported first, as it always was
            raise
        base, head = commit_of(repo, path, base_ref, "base"), commit_of(repo, path, checked_head, "head")
        where, revs = path, [base, head]
    # One git process for both: the numstat records, an empty record, then the patch.
    out = run_git(where, ["diff", "--numstat", "-z", "--patch", "--no-color", *revs, "--", *scope]).stdout
    stat, _, patch_bytes = out.partition(b"\0\0")
    files = _parse_numstat(stat)
    patch, truncated = _capped(patch_bytes)
    return {
        "repository": repo.name,
        "base": base,
        "head": head,
        "workspace": workspace.id if workspace is not None and head == "workspace" else None,
        "files": files,
        "patch": patch,
        "truncated": truncated,
    }


def status(call: HandlerCall) -> dict[str, Any]:
    """The repository's HEAD and task branches, and the task's workspace if there is one."""
    repo, path = repo_of(call)
    (commit, branch), task_branches = _head_and_task_branches(repo, path)
    workspace = WorkspaceStore(repo, path).for_task(call.principal)
    return {
        "repository": describe_repository(repo),
        "head": {"branch": branch, "commit": commit},
        "task_branches": task_branches,
        "workspace": _workspace_status(workspace) if workspace is not None else None,
    }


def revision_to_read(call: HandlerCall) -> str:
    """The revision a read looks at: ``ref``, default ``HEAD``."""
    return safe_revision(str(call.args.get("ref", "HEAD")), "ref")


def _ref_and_commit(call: HandlerCall, repo: RepositoryConfig, path: Path) -> tuple[str, str]:
    ref = revision_to_read(call)
    return ref, commit_of(repo, path, ref, "ref")


def _path_scope(call: HandlerCall) -> list[str]:
    """The pathspec that narrows a read to ``path`` (none without it)."""
    return [confined_path(str(call.args["path"]))] if call.args.get("path") else []


def _linkless_scope(call: HandlerCall, repo_path: Path, commit: str) -> list[str]:
    """``_path_scope``, refusing a ``path`` that is or passes through a link at ``commit``.

    git neither lists nor greps through a link, so its answer would be empty, which reads
    as an empty folder rather than as a link the tools do not follow.
    """
    scope = _path_scope(call)
    if scope:
        with OBJECT_READERS.reader(repo_path) as objects:
            refuse_links(objects, commit, scope[0])
    return scope


def _head_and_task_branches(repo: RepositoryConfig, path: Path) -> tuple[tuple[str, str | None], list[str]]:
    """HEAD's commit and branch, and the task branches, from one git process.

    ``for-each-ref`` marks the branch HEAD is on with ``*``; only a detached or unborn HEAD
    (no branch marked) costs a second process.
    """
    fields = "--format=%(HEAD)%00%(objectname)%00%(refname)%00%(refname:short)"
    task_prefix = f"refs/heads/{repo.task_branch_prefix}"
    listing = run_git(path, ["for-each-ref", fields, "refs/heads/"]).stdout.decode()
    head: tuple[str, str | None] | None = None
    task_branches = []
    for line in listing.splitlines():
        marker, commit, full, short = line.split("\0")
        if marker == "*":
            head = (commit, short)
        if full.startswith(task_prefix):
            task_branches.append(short)
    return head or _head(repo, path), task_branches


def _head(repo: RepositoryConfig, path: Path) -> tuple[str, str | None]:
    """HEAD's commit and its branch (``None`` when detached), from one git process.

    ``--abbrev-ref`` shortens a branch exactly as ``symbolic-ref --short`` does and prints
    ``HEAD`` when HEAD is detached; ``--`` keeps both arguments revisions.
    """
    result = run_git(path, ["rev-parse", "HEAD^{commit}", "--abbrev-ref", "HEAD", "--"], check=False)
    lines = result.stdout.decode().split()  # the commit, the branch, and `--` echoed back
    if result.returncode != 0 or len(lines) != 3:
        commit_of(repo, path, "HEAD", "repository")  # names what is wrong (an unborn HEAD)
        raise HandlerError(f"git rev-parse failed in `{repo.name}`: {result.stderr.decode(errors='replace').strip()}")
    commit, branch, _ = lines
    return commit, None if branch == "HEAD" else branch


def _workspace_status(workspace: Workspace) -> dict[str, Any]:
    where = workspace.path
    head = head_commit(workspace)
    ahead = int(git_text(where, ["rev-list", "--count", f"{workspace.base_commit}..{head}"]))
    changes = [{"status": status, "path": path} for status, path in worktree_status(where)]
    last = workspace.last_test
    return {
        "id": workspace.id,
        "branch": workspace.branch,
        "base_commit": workspace.base_commit,
        "head": head,
        "commits_since_base": ahead,
        "changes": changes,
        "clean": not changes,
        "last_test": last.model_dump(mode="json") if last is not None else None,
    }


def _numstat(where: Path, args: list[str]) -> list[dict[str, Any]]:
    return _parse_numstat(run_git(where, args).stdout)


def _parse_numstat(output: bytes) -> list[dict[str, Any]]:
    """Parse ``--numstat -z`` output (renames carry an empty path and two names)."""
    fields = output.decode(errors="replace").split("\0")
    files, i = [], 0
    while i < len(fields):
        if not fields[i].strip():
            i += 1
            continue
        added, deleted, name = fields[i].strip("\n").split("\t", 2)
        if name == "":
            name, i = f"{fields[i + 1]} => {fields[i + 2]}", i + 3
        else:
            i += 1
        binary = added == "-"
        files.append(
            {"path": name, "added": None if binary else int(added), "deleted": None if binary else int(deleted)}
        )
    return files


def _capped(data: bytes) -> tuple[str, bool]:
    """The patch cut to ``MAX_PATCH_BYTES``, redacted before the cut (a cut could split a secret's shape)."""
    return redacted_head(data, MAX_PATCH_BYTES)


READ_OPERATIONS: Final[Mapping[str, Handler]] = {
    "list_tree": list_tree,
    "search": search,
    "log": log,
    "show_commit": show_commit,
    "diff": diff,
    "status": status,
}
