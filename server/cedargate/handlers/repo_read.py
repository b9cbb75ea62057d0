"""Read-only repository operations: list, tree, search, log, show a commit, diff, status.

Refs are checked by ``safe_ref`` and paths by ``confined_path`` before they reach git, and
every path is passed after ``--``, so nothing an agent sends is read as a git option.
Outputs are capped; a capped field says so (``truncated``).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from cedargate.config import RepositoryConfig
from cedargate.errors import HandlerError, ToolInputError
from cedargate.git import ObjectReader, git_text, run_git
from cedargate.git_readers import OBJECT_READERS
from cedargate.handlers import Handler, HandlerCall
from cedargate.handlers.repo_common import (
    commit_of,
    head_commit,
    refuse_links,
    repo_of,
    tree_entry,
    worktree_status,
)
from cedargate.provenance import AUDIT_EVENT_FORMAT
from cedargate.redact import REDACTED, redacted_head, redacted_lines
from cedargate.repo_paths import confined_path, safe_revision
from cedargate.workspaces import Workspace, WorkspaceStore

MAX_PATCH_BYTES: Final = 256 * 1024
MAX_TREE_ENTRIES: Final = 2000
MAX_LINE_CHARS: Final = 500
MAX_FILES: Final = 2000
"""Changed files a commit or diff names (a vendoring commit can touch tens of thousands)."""
MAX_FILES_JSON_CHARS: Final = 256 * 1024
"""And at most this much of the result's JSON for them, so long names cannot crowd out the rest."""
MAX_MESSAGE_CHARS: Final = 32 * 1024
_TREE_MODE: Final = b"40000"


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
    scope = _linkless_scope(call, path, commit)
    if scope:
        _refuse_non_folder(repo, path, ref, commit, scope[0])
    spec = [folder + "/" for folder in scope]
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
    pattern = str(call.args["pattern"])
    if "\n" in pattern or "\0" in pattern:
        # git grep reads each line of a pattern as a pattern of its own: `a\nb` would match `a` or `b`.
        raise ToolInputError(
            "field `pattern`: contains a line break or NUL; git grep matches one line at a time, "
            "so search for each line separately"
        )
    flags = ["-F"] if call.args.get("fixed_string") else ["-E"]
    flags += ["-i"] if call.args.get("ignore_case") else []
    scope = _linkless_scope(call, path, commit)
    # `-e` keeps the pattern a pattern even when it starts with `-`.
    args = ["grep", "-z", "-n", "-I", "--no-color", *flags, "-e", pattern, commit, "--", *scope]
    result = run_git(path, args, check=False)
    if result.returncode not in (0, 1):
        message = result.stderr.decode(errors="replace").strip()
        raise ToolInputError(f"field `pattern`: git grep refused it: {message}")
    matches = _grep_matches(result.stdout)
    shown = _redacted_matches(path, commit, matches[:limit])
    return {
        "repository": repo.name,
        "ref": ref,
        "commit": commit,
        "matches": shown,
        "truncated": len(matches) > limit,
    }


def _grep_matches(output: bytes) -> list[tuple[bytes, int]]:
    """``(file name, line number)`` of each match in ``git grep -z -n REV`` output.

    Each match is ``REV:NAME\0LINE\0TEXT\n``. A name may hold any byte but NUL (line
    breaks, U+2028 included), so the output is not split into lines. The text never holds
    ``\n`` (it is one line), so the first ``\n`` after the line number ends the match and
    the next name follows it; a NUL in the text (past where git looks for binary files)
    only adds a field before that.
    """
    fields = output.split(b"\0")
    matches = []
    name, i = fields[0], 1
    while i + 1 < len(fields):
        number = fields[i]
        i += 1
        while b"\n" not in fields[i] and i + 1 < len(fields):
            i += 1
        if number.isdigit():
            matches.append((name.split(b":", 1)[-1], int(number)))
        name = fields[i].partition(b"\n")[2]
        i += 1
    return matches


def _redacted_matches(repo_path: Path, commit: str, matches: list[tuple[bytes, int]]) -> list[dict[str, Any]]:
    """Each match with its text as reading its whole file shows it (redacted first, then cut to ``MAX_LINE_CHARS``).

    A matching line of a private key's body has no secret shape of its own: only the whole
    file shows it is one. Only the files with a match shown are read, each once, found by
    their exact bytes (a name that is not UTF-8 still finds its file).
    """
    wanted: dict[bytes, list[int]] = {}
    for name, number in matches:
        wanted.setdefault(name, []).append(number)
    lines: dict[bytes, dict[int, str]] = {}
    with OBJECT_READERS.reader(repo_path) as objects:
        for name, numbers in wanted.items():
            found = _object_at(objects, commit, name)
            text = objects.contents(found[1]).decode("utf-8", errors="replace") if found is not None else ""
            lines[name] = redacted_lines(text, numbers)
    # A line the file does not have (it cannot be read back) is withheld rather than shown unredacted.
    return [
        {
            "path": name.decode(errors="replace"),
            "line": number,
            "text": lines[name].get(number, REDACTED)[:MAX_LINE_CHARS],
        }
        for name, number in matches
    ]


def _object_at(objects: ObjectReader, commit: str, name: bytes) -> tuple[bytes, str] | None:
    """The mode and object id at path ``name`` in ``commit``, or ``None`` when nothing is there.

    A name that is UTF-8 with no line break is asked of git directly; any other (git's object
    reader takes one UTF-8 name a line) is found by walking the trees from the root.
    """
    try:
        text = name.decode()
    except UnicodeDecodeError:
        text = None
    if text is not None and not any(c in text for c in "\n\r\0"):
        found = objects.info(f"{commit}:{text}")
        if found is None:
            return None
        return (_TREE_MODE if found.type == "tree" else b"100644"), found.oid
    tree = objects.info(f"{commit}^{{tree}}")
    if tree is None:
        return None
    entry: tuple[bytes, str] | None = (_TREE_MODE, tree.oid)
    for part in name.split(b"/"):
        if entry is None or entry[0] != _TREE_MODE:
            return None
        entry = tree_entry(objects.contents(entry[1]), part, len(commit) // 2)
    return entry


def _refuse_non_folder(repo: RepositoryConfig, repo_path: Path, ref: str, commit: str, folder: str) -> None:
    """Refuse a ``path`` that is a file or missing: git would list nothing, which reads as an empty folder."""
    with OBJECT_READERS.reader(repo_path) as objects:
        found = _object_at(objects, commit, folder.encode(errors="surrogatepass"))
    if found is None:
        raise HandlerError(
            f"field `path`: `{folder}` does not exist at `{ref}` in `{repo.name}`; "
            "list its parent folder to see what does"
        )
    if found[0] != _TREE_MODE:
        raise HandlerError(f"field `path`: `{folder}` is a file, not a folder; read it with `repo_read_file`")


def log(call: HandlerCall) -> dict[str, Any]:
    """Recent commits at a revision (optionally touching a path), with their cedargate audit trailers."""
    repo, path = repo_of(call)
    ref = revision_to_read(call)
    count = int(call.args.get("max_count", 20))
    scope = _path_scope(call)
    records = LogRecords(["%H", "%P", "%an", "%aI", "%s", AUDIT_EVENT_FORMAT])
    # One git process: log peels the ref itself; only a failure pays for finding out why.
    args = ["log", records.format, f"--max-count={count}", "--end-of-options", f"{ref}^{{commit}}"]
    result = run_git(path, [*args, "--", *scope], check=False)
    if result.returncode != 0:
        commit_of(repo, path, ref, "ref")  # names the field when the ref is not a commit
        run_git(path, [*args, "--", *scope])  # otherwise git's own error
    commits = []
    for sha, parents, author, date, subject, events in records.parse(result.stdout):
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
    records = LogRecords(["%H", "%P", "%an", "%ae", "%aI", "%cn", "%cI", "%B"])
    [[sha, parents, author, email, date, committer, cdate, message]] = records.parse(
        run_git(path, ["show", "-s", records.format, commit]).stdout
    )
    message = message.rstrip()
    files = _numstat(path, ["diff-tree", "-r", "--root", "--no-commit-id", "--numstat", "-z", commit])
    patch, truncated = _capped(run_git(path, ["show", "--format=", "--patch", "--no-color", commit]).stdout)
    return {
        "repository": repo.name,
        "commit": sha,
        "parents": parents.split(),
        "author": {"name": author, "email": email, "date": date},
        "committer": {"name": committer, "date": cdate},
        "message": message[:MAX_MESSAGE_CHARS],
        "message_truncated": len(message) > MAX_MESSAGE_CHARS,
        **_capped_files(files),
        "patch": patch,
        "truncated": truncated,
    }


def diff(call: HandlerCall) -> dict[str, Any]:
    """Changes between two revisions, or of the task's workspace since its base commit.

    Without ``head``, the task's workspace (committed and uncommitted tracked changes) is
    compared with ``base`` (default: the workspace's recorded base commit), and ``not_staged``
    names the tracked files whose worktree content is not what is staged (a test run's
    leftovers, which ``repo_commit`` never takes); with no workspace, ``head`` defaults to ``HEAD``.
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
    in_workspace = workspace if head == "workspace" else None
    return {
        "repository": repo.name,
        "base": base,
        "head": head,
        "workspace": in_workspace.id if in_workspace is not None else None,
        **_capped_files(files),
        "not_staged": _not_staged(where, scope) if in_workspace is not None else None,
        "patch": patch,
        "truncated": truncated,
    }


def _not_staged(where: Path, scope: list[str]) -> list[str]:
    """Tracked files whose worktree content differs from the index (at most ``MAX_FILES``)."""
    out = run_git(where, ["diff", "--name-only", "-z", "--", *scope]).stdout.decode(errors="replace")
    return [name for name in out.split("\0") if name][:MAX_FILES]


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
        added, deleted, name = fields[i].split("\t", 2)  # a name may start or end with a line break
        if name == "":
            name, i = f"{fields[i + 1]} => {fields[i + 2]}", i + 3
        else:
            i += 1
        binary = added == "-"
        files.append(
            {"path": name, "added": None if binary else int(added), "deleted": None if binary else int(deleted)}
        )
    return files


def _capped_files(files: list[dict[str, Any]]) -> dict[str, Any]:
    """``files`` cut to ``MAX_FILES`` entries and ``MAX_FILES_JSON_CHARS`` of JSON, with how many there are.

    Without a cap a commit touching 30,000 files is over the result cap, and so cannot be
    read at all; the patch is capped the same way.
    """
    shown, size = [], 0
    for entry in files[:MAX_FILES]:
        size += len(json.dumps(entry)) + 2  # and the `, ` before the next
        if size > MAX_FILES_JSON_CHARS:
            break
        shown.append(entry)
    return {"files": shown, "files_count": len(files), "files_truncated": len(shown) < len(files)}


class LogRecords:
    """A ``--format`` for ``git log``/``git show`` whose records and fields can be told apart, and its parser.

    Names, subjects, messages and trailers are free text an agent can write (``\x1f``, line
    breaks, U+2028): no fixed separator can be trusted not to occur in one. Records and
    fields are marked with a random token made for this call instead, which no commit holds.
    """

    def __init__(self, fields: Sequence[str]) -> None:
        token = secrets.token_hex(12)
        self._record, self._field = f"\x1e{token}\x1e", f"\x1f{token}\x1f"
        self._count = len(fields)
        self.format = f"--format={self._record}{self._field.join(fields)}"

    def parse(self, output: bytes) -> list[list[str]]:
        """The fields of each record, in order (``tformat`` ends each with a line feed, dropped here)."""
        records = []
        for chunk in output.decode(errors="replace").split(self._record)[1:]:
            fields = chunk.removesuffix("\n").split(self._field)
            if len(fields) != self._count:  # pragma: no cover - only a commit holding this call's token
                raise HandlerError("git log output could not be read: a record is damaged")
            records.append(fields)
        return records


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
