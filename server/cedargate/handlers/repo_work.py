"""Changing a task's workspace: create its branch, apply a unified diff, commit.

Each task works in its own worktree (see ``cedargate.workspaces``) on a task branch; the
main checkout and other branches are never touched. Every path a patch names is confined
to the worktree before ``git apply`` sees it, and commits carry provenance trailers.
"""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from cedargate.change_paths import patch_lines, unquoted_name
from cedargate.errors import CedargateError, HandlerError, ToolInputError, quoted
from cedargate.git import git_text, run_git
from cedargate.handlers import Handler, HandlerCall
from cedargate.handlers.repo_common import (
    COMMITTER_ENV,
    branch_tip,
    commit_message,
    commit_of,
    head_commit,
    index_changes,
    index_file,
    links_named,
    repo_of,
    task_branch,
    task_workspace,
    trial_index,
    worktree_status,
)
from cedargate.repo_paths import safe_revision, worktree_file
from cedargate.workspaces import Workspace, WorkspaceStore


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
    """Apply a unified diff to the workspace's index and write the patched files out; nothing is committed yet.

    The patch is applied to the index (what ``repo_commit`` commits), never to what a test run
    left in the worktree; the patched paths are then written from the index, so a file a run
    generated or rewrote there gives way to the decided content instead of blocking the diff.
    A folder a run left at a patched path, or a file where one needs a folder, is refused with the
    index as it was: writing would delete it. Other worktree files stay as they are. Held like a
    write: refused while a test run is going.
    """
    repo, path = repo_of(call)
    workspace = task_workspace(call, task_branch(repo, str(call.args["branch"])))
    patch = str(call.args["patch"])
    if not patch.endswith("\n"):
        patch += "\n"
    data = patch.encode()
    with WorkspaceStore(repo, path).changing(workspace.id) as workspace:
        reading = _how_git_reads(workspace.path, data)
        paths = _patch_paths(workspace.path, data, reading) | _renamed_from(patch)
        if not paths:
            raise ToolInputError("field `patch`: no file changes found; give a unified diff (`--- a/...`, `+++ b/...`)")
        for name in paths:
            worktree_file(workspace.path, name, "patch")
        changed = _tried(workspace, data, reading)
        for name in changed - paths:
            worktree_file(workspace.path, name, "patch")
        touched = sorted(paths | changed)
        _refuse_undecided(touched, call.changed_paths)
        _apply_to_index_and_worktree(workspace, data, touched, reading)
    return {
        "repository": repo.name,
        "branch": workspace.branch,
        "workspace": workspace.id,
        "files": touched,
    }


def _how_git_reads(where: Path, patch: bytes) -> list[str]:
    """The ``git apply`` options every step reads this patch with: ``--recount`` unless only exact counts apply.

    ``--recount`` forgives hunks whose line counts are off, as hand-written diffs' often are,
    but reads a diff without ``diff --git`` lines as one file (the next file's ``---``/``+++``
    lines become lines of the hunk before them). Such a diff, with right counts, is read as written.
    """
    recounted = run_git(where, ["apply", "--check", "--cached", "--recount", "-"], input=patch, check=False)
    if recounted.returncode == 0:
        return ["--recount"]
    as_written = run_git(where, ["apply", "--check", "--cached", "-"], input=patch, check=False)
    return [] if as_written.returncode == 0 else ["--recount"]


def _apply_to_index_and_worktree(workspace: Workspace, patch: bytes, touched: list[str], reading: list[str]) -> None:
    """Apply ``patch`` to the index, then make the worktree's ``touched`` paths what the index holds.

    A failure while writing the worktree puts the index back as it was, so the diff is either
    staged and written or not staged at all (a file already written stays as an uncommitted
    leftover, which applying the diff again replaces).
    """
    where = workspace.path
    with trial_index(where) as saved:
        result = run_git(where, ["apply", "--cached", *reading, "-"], input=patch, check=False)
        if result.returncode != 0:
            raise _does_not_apply(workspace.branch, result.stderr)
        try:
            _write_from_index(workspace, touched)
        except BaseException as exc:
            index = index_file(where)
            if saved.exists():
                os.replace(saved, index)
            else:
                index.unlink(missing_ok=True)
            if isinstance(exc, _InTheWay) or not isinstance(exc, (OSError, CedargateError, subprocess.TimeoutExpired)):
                raise
            raise HandlerError(
                f"field `patch`: staged, but writing the patched files into workspace `{workspace.id}` failed "
                f"({exc}), so the diff was unstaged again; fix the cause and apply it again"
            ) from exc


class _InTheWay(HandlerError):
    """A patched path the worktree holds something else at, which writing it would delete: nothing was changed."""


def _write_from_index(workspace: Workspace, touched: list[str]) -> None:
    """Write each touched path from the index (``checkout-index``, which replaces a link rather than follow it)
    and remove the ones the patch took out of the index, with folders it left empty.

    Nothing is written or removed while a patched path is blocked by something the patch did not
    decide on (``_refuse_in_the_way``): ``checkout-index --force`` would delete it.
    """
    where = workspace.path
    listed = run_git(where, ["ls-files", "--cached", "-z", "--", *touched]).stdout.split(b"\0")
    kept = {name.decode(errors="surrogateescape") for name in listed if name} & set(touched)
    removed = set(touched) - kept
    for name in sorted(kept):
        _refuse_in_the_way(workspace, name, removed)
    for name in sorted(removed):
        target = worktree_file(where, name, "patch")
        if target.is_symlink() or target.is_file():
            target.unlink()
        folder = target.parent
        while folder != where and folder.is_dir() and not folder.is_symlink() and not any(folder.iterdir()):
            folder.rmdir()
            folder = folder.parent
    if kept:  # after the removals, so a file the patch deleted gives way to a folder it adds there, and back
        names = b"".join(name.encode(errors="surrogateescape") + b"\0" for name in sorted(kept))
        run_git(where, ["checkout-index", "--force", "--quiet", "-z", "--stdin"], input=names)


def _refuse_in_the_way(workspace: Workspace, name: str, removed: set[str]) -> None:
    """Refuse writing ``name`` where ``checkout-index --force`` would delete what a test run left.

    A folder at ``name``, or a file (or FIFO, socket...) where ``name`` needs a folder, would be
    deleted with everything in it; only what the patch itself removes (``removed``) may give
    way. A regular file or link at ``name`` is replaced: that is how a generated file is kept.
    """
    where = workspace.path
    parts = name.split("/")
    for depth in range(1, len(parts)):
        folder = "/".join(parts[:depth])
        try:
            mode = os.lstat(where / folder).st_mode
        except FileNotFoundError:
            return
        if stat.S_ISDIR(mode):
            continue
        if folder in removed:
            return  # the patch deletes that file; the folders below it do not exist yet
        raise _InTheWay(
            f"field `patch`: `{folder}` in workspace `{workspace.id}` is a {_kind(mode)} that is not in the branch "
            f"(a test run left it), where the patch writes `{name}` inside a folder `{folder}`; writing it would "
            f"delete that {_kind(mode)}, so nothing was staged or changed: have the test command remove it or not "
            f"make it, remove the workspace with `cedargate workspaces rm {workspace.id}`, or patch another path"
        )
    target = where / name
    try:
        mode = os.lstat(target).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(mode):
        return
    inside, blocking = _left_inside(where, target, removed)
    if inside and not blocking:
        return  # the patch removes all it holds (a folder turned into a file); the removals empty it first
    if blocking:
        more = f" and {len(blocking) - 3} more" if len(blocking) > 3 else ""
        held = f"holding {', '.join(f'`{path}`' for path in blocking[:3])}{more}"
    else:
        held = "empty"
    raise _InTheWay(
        f"field `patch`: `{name}` in workspace `{workspace.id}` is a folder ({held}) that is not in the branch "
        f"(a test run left it), where the patch writes the file `{name}`; writing it would delete that folder, so "
        f"nothing was staged or changed: have the test command remove it or not make it, remove the workspace "
        f"with `cedargate workspaces rm {workspace.id}`, or patch another path"
    )


def _left_inside(where: Path, folder: Path, removed: set[str]) -> tuple[int, list[str]]:
    """How many entries (but folders) ``folder`` holds, and those the patch does not remove, sorted.

    Links are listed, never followed.
    """
    inside = 0
    left: list[str] = []
    for top, folders, names in os.walk(folder):  # os.walk does not follow symlinked folders by default
        here = Path(top)
        for entry in names + [f for f in folders if (here / f).is_symlink()]:
            inside += 1
            path = (here / entry).relative_to(where).as_posix()
            if path not in removed:
                left.append(path)
    return inside, sorted(left)


def _kind(mode: int) -> str:
    return "file" if stat.S_ISREG(mode) else "link" if stat.S_ISLNK(mode) else "special file (FIFO, socket or device)"


def commit(call: HandlerCall) -> dict[str, Any]:
    """Commit what ``repo_apply_diff`` staged in the workspace, with provenance trailers.

    Only the index is committed: each diff is staged there after the policy decided on it, and
    a sandboxed test run cannot touch it (the git folder is read-only in the sandbox). What a
    run left in the worktree (generated files, edits, links) stays out and is named in the
    result, so a run that writes a file cannot carry it past a policy on writes.
    """
    repo, _ = repo_of(call)
    message = commit_message(call, str(call.args["message"]))
    workspace = task_workspace(call, task_branch(repo, str(call.args["branch"])))
    where = workspace.path
    staged = index_changes(where, "HEAD", index_file(where))
    links = links_named(staged)
    if links:
        raise HandlerError(
            f"workspace `{workspace.id}` has links staged that tools never commit: {links}; "
            f"remove the workspace with `cedargate workspaces rm {workspace.id}` and apply the diff again"
        )
    left_out = sorted(path for status, path in worktree_status(where) if status[1] != " ")
    if not staged:
        raise HandlerError(
            f"nothing to commit in workspace `{workspace.id}`: apply a diff with `repo_apply_diff` first"
            + (f"; {_left_out_note(left_out)}" if left_out else "")
        )
    parent = head_commit(workspace)
    run_git(where, ["commit", "--quiet", "-F", "-"], input=message.encode(), env=COMMITTER_ENV)
    sha = head_commit(workspace)
    # `-z`: names as they are, not C-quoted (`"caf\303\251.md"`) nor split at a line break.
    listed = run_git(where, ["diff-tree", "-r", "-z", "--name-only", "--no-commit-id", sha]).stdout
    files = [name.decode(errors="replace") for name in listed.split(b"\0") if name]
    return {
        "repository": repo.name,
        "branch": workspace.branch,
        "workspace": workspace.id,
        "commit": sha,
        "parent": parent,
        "files": files,
        "not_committed": left_out[:MAX_NAMED_LEFT_OUT],
        "not_committed_count": len(left_out),
    }


MAX_NAMED_LEFT_OUT: Final = 50
"""Worktree changes a commit result names (a run may leave thousands); the count says how many."""


def _left_out_note(paths: list[str]) -> str:
    named = ", ".join(f"`{path}`" for path in paths[:10])
    more = f" and {len(paths) - 10} more" if len(paths) > 10 else ""
    return (
        f"the worktree changes {named}{more} were made outside `repo_apply_diff` (by a test run) and are "
        "never committed; to keep one, apply a diff of its full content with `repo_apply_diff` (a new file as "
        "`--- /dev/null`, a changed one against the branch: the diff replaces what the run left) or write it "
        "with `repo_write_file`"
    )


def _tried(workspace: Workspace, patch: bytes, reading: list[str]) -> set[str]:
    """Every path the patch changes in the index, found on a private copy of it (the worktree is not read).

    This is git's own answer, rename sources included, so links are judged on the result: a
    patch may not leave a symbolic link or gitlink anywhere it touched (new, renamed, copied
    or retargeted).
    """
    where = workspace.path
    base = git_text(where, ["write-tree"])
    with trial_index(where) as trial:
        env = {"GIT_INDEX_FILE": str(trial)}
        result = run_git(where, ["apply", "--cached", *reading, "-"], input=patch, env=env, check=False)
        if result.returncode != 0:
            raise _does_not_apply(workspace.branch, result.stderr)
        changes = index_changes(where, base, trial)
    links = links_named(changes)
    if links:
        raise ToolInputError(
            f"field `patch`: creates a symbolic link or embedded repository: {links}; "
            "tools do not create or follow links, so give a diff of regular files"
        )
    return {path for _, path in changes}


def _refuse_undecided(touched: list[str], decided: frozenset[str]) -> None:
    """Refuse a diff that git reads as changing a path the policy decision did not see.

    Policies see the paths ``change_paths`` reads from the diff's headers; git reads the same
    diff on its own. Where they differ, nothing is applied: a path no policy looked at is
    never changed.
    """
    unseen = [name for name in touched if name not in decided]
    if unseen:
        named = ", ".join(quoted(name) for name in unseen[:5]) + (
            f" and {len(unseen) - 5} more" if len(unseen) > 5 else ""
        )
        raise ToolInputError(
            f"field `patch`: git reads the diff as changing {named}, which the policy decision did not see "
            "(it reads the paths from the `diff --git`, `---`/`+++`, rename and copy headers); nothing was "
            "applied: give the diff as `git diff` writes it"
        )


def _does_not_apply(branch: str, stderr: bytes) -> HandlerError:
    reason = stderr.decode(errors="replace").strip().replace("\n", "; ")
    return HandlerError(
        f"field `patch`: does not apply to `{branch}`: {reason}; a diff applies to the branch as committed plus "
        "the diffs staged since, never to what a test run left in the worktree"
    )


def _renamed_from(patch: str) -> set[str]:
    """The sources of renames, which ``git apply --numstat`` does not list (a copy's source stays as it is)."""
    sources = set()
    for line in patch_lines(patch):
        if line.startswith("rename from "):
            sources.add(unquoted_name(line.removeprefix("rename from ")))
    return sources


def _patch_paths(where: Path, patch: bytes, reading: list[str]) -> set[str]:
    """Every path the patch would touch (old and new names), as git itself parses them."""
    result = run_git(where, ["apply", "--numstat", "-z", *reading, "-"], input=patch, check=False)
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
