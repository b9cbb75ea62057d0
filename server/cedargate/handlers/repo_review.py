"""Getting work reviewed: push the task branch, open a pull request, run the tests in the sandbox.

Pushes go only to task branches (whether a branch is protected is Cedar's decision, made
before any of this runs). A pull request body carries the provenance summary; test runs
happen only under bubblewrap and their facts are kept in the workspace and the audit event.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from cedargate.config import RepositoryConfig
from cedargate.errors import HandlerError, ToolInputError
from cedargate.forge import PullRequest, forge_auth_env, forge_token, open_github_pull_request
from cedargate.git import git_text, run_git
from cedargate.handlers import Handler, HandlerCall
from cedargate.handlers.repo_common import (
    branch_tip,
    commit_of,
    head_commit,
    repo_of,
    task_branch,
    task_workspace,
    worktree_status,
)
from cedargate.handlers.repo_read import LogRecords
from cedargate.provenance import AUDIT_EVENT_FORMAT, audit_event_of
from cedargate.pull_request_body import Provenance, WriteRecord, agent_body
from cedargate.repo_paths import safe_ref
from cedargate.sandbox import SandboxLimits, in_memory_files_mb, run_sandboxed
from cedargate.workspaces import TestRun, Workspace, WorkspaceStore


def push(call: HandlerCall) -> dict[str, Any]:
    """Push the task branch to the repository's configured remote (fast-forward only)."""
    repo, path = repo_of(call)
    branch = task_branch(repo, str(call.args["branch"]))
    _own_branch_workspace(call, repo, path, branch)
    commit = _push(repo, path, branch, _tip(repo, path, branch))
    call.execution.update({"pushed": {"branch": branch, "commit": commit}})
    return {"repository": repo.name, "branch": branch, "commit": commit, "remote": "configured remote"}


def _own_branch_workspace(call: HandlerCall, repo: RepositoryConfig, path: Path, branch: str) -> Workspace | None:
    """The workspace checked out on ``branch``, refused when it is another task's.

    A task changes only its own workspace (``repo_apply_diff`` and ``repo_commit`` refuse
    another's branch); pushing or proposing that branch would publish the other task's work
    under this task's name.
    """
    store = WorkspaceStore(repo, path)
    workspace = store.on_branch(branch)
    if workspace is not None and workspace.id != store.id_for(call.principal):
        raise ToolInputError(
            f"field `branch`: `{branch}` is checked out in workspace `{workspace.id}` of task `{workspace.task}` "
            f"(agent `{workspace.agent}`), not this task's; push or propose only this task's own branch"
        )
    return workspace


def _tip(repo: RepositoryConfig, path: Path, branch: str) -> str:
    tip = branch_tip(path, branch)
    if tip is None:
        raise HandlerError(f"field `branch`: `{branch}` does not exist in `{repo.name}`")
    return tip


def _remote(repo: RepositoryConfig) -> str:
    remote = repo.remote
    if remote is None:
        raise HandlerError(f"repository `{repo.name}` has no `remote` configured; an admin must set one to push")
    if remote.startswith("-"):
        raise HandlerError(f"repository `{repo.name}`: configured `remote` starts with `-`; fix the config")
    return remote


def _push(repo: RepositoryConfig, path: Path, branch: str, tip: str) -> str:
    """Push exactly ``tip`` to ``branch`` on the remote: what was checked and described, even if the branch moved."""
    remote = _remote(repo)
    credentials = forge_auth_env(repo.forge, repo.name, remote)
    # No force: the remote accepts the branch only as a fast-forward of what it holds.
    refspec = f"{tip}:refs/heads/{branch}"
    run_git(path, ["push", "--quiet", "--porcelain", remote, refspec], env=credentials)
    return tip


def open_pull_request(call: HandlerCall) -> dict[str, Any]:
    """Push the branch, then open a pull request whose body carries the provenance summary.

    Everything that can fail for a reason known beforehand (the branch, its workspace, the
    base, the token, the provenance) is settled before the push, so such a failure leaves
    the remote as it was; the commit pushed is the one the body describes.
    """
    repo, path = repo_of(call)
    branch = task_branch(repo, str(call.args["branch"]))
    workspace = _own_branch_workspace(call, repo, path, branch)
    base = safe_ref(str(call.args.get("base") or _default_branch(path)), "base")
    body = agent_body(str(call.args.get("body") or ""))
    # The token is checked before anything is pushed, so a missing token changes nothing.
    token = forge_token(repo.forge, repo.name) if repo.forge.kind == "github" else None
    _remote(repo)
    tip = _tip(repo, path, branch)
    base_tip = commit_of(repo, path, base, "base")
    if not run_git(path, ["rev-list", "-n", "1", f"{base_tip}..{tip}", "--"]).stdout.strip():
        # A forge refuses such a request ("no commits between"), after the push would have happened.
        raise HandlerError(
            f"field `branch`: `{branch}` has no commit that `{base}` lacks, so there is nothing to propose; "
            "commit the work first (`repo_commit` or `repo_write_file`); nothing was pushed"
        )
    provenance = _provenance(call, path, workspace, branch, base, base_tip, tip)
    head = _push(repo, path, branch, tip)
    # Recorded before the forge is asked, so a failed request's event still says what reached the remote.
    call.execution.update({"pushed": {"branch": branch, "commit": head}})
    full_body = (body + "\n\n" if body else "") + provenance.markdown()
    result: dict[str, Any] = {
        "repository": repo.name,
        "branch": branch,
        "base": base,
        "commit": head,
        "pushed": True,
        "forge": repo.forge.kind,
        "pull_request": None,
        "body": full_body,
    }
    if token is not None:
        pr = _open_after_push(call, repo, token, branch=branch, base=base, head=head, body=full_body)
        result["pull_request"] = {"number": pr.number, "url": pr.url}
    else:
        result["note"] = "this repository has no forge API configured: the branch was pushed; open the request there"
    call.execution.update({"forge": repo.forge.kind, "pull_request": result["pull_request"], "commit": head})
    return result


def _open_after_push(
    call: HandlerCall, repo: RepositoryConfig, token: str, *, branch: str, base: str, head: str, body: str
) -> PullRequest:
    """Ask the forge for the pull request; a failure says the push already happened, so only the request is retried."""
    try:
        return open_github_pull_request(
            repo.forge, repo.name, token, head=branch, base=base, title=str(call.args["title"]), body=body
        )
    except HandlerError as exc:
        raise HandlerError(
            f"{exc}; the branch `{branch}` was pushed at `{head[:12]}` but the pull request was not opened: "
            "once the cause is fixed, call `repo_open_pull_request` again (the branch is already on the remote)"
        ) from exc


def _default_branch(path: Path) -> str:
    head = run_git(path, ["symbolic-ref", "--quiet", "--short", "HEAD"], check=False).stdout.decode().strip()
    return head or "main"


def _provenance(
    call: HandlerCall,
    path: Path,
    workspace: Workspace | None,
    branch: str,
    base: str,
    base_tip: str,
    head: str,
) -> Provenance:
    """The body's provenance summary of the commits from the task's base (or the merge base) to ``head``."""
    if workspace is not None:
        base_commit = workspace.base_commit
    else:
        found = run_git(path, ["merge-base", base_tip, head], check=False).stdout.decode().strip()
        if not found:
            raise HandlerError(
                f"field `base`: `{base}` shares no history with `{branch}`; name the branch it was made from"
            )
        base_commit = found
    records = LogRecords(["%H", "%s", AUDIT_EVENT_FORMAT])
    out = run_git(path, ["log", "--reverse", records.format, f"{base_commit}..{head}", "--"]).stdout
    writes = [
        WriteRecord(commit=sha, subject=subject, audit_event=audit_event_of(event))
        for sha, subject, event in records.parse(out)
    ]
    return Provenance(
        principal=call.principal,
        branch=branch,
        base=base,
        base_commit=base_commit,
        head_commit=head,
        head_tree=git_text(path, ["rev-parse", f"{head}^{{tree}}"]),
        writes=writes,
        context_sources=call.context_sources,
        last_test=workspace.last_test if workspace is not None else None,
        event_id=call.event_id,
    )


def run_tests(call: HandlerCall) -> dict[str, Any]:
    """Run the repository's configured test command in the task's workspace, under bubblewrap."""
    repo, path = repo_of(call)
    branch = call.args.get("branch")
    workspace = task_workspace(call, task_branch(repo, str(branch)) if branch else None)
    if repo.test_command is None:
        raise HandlerError(f"repository `{repo.name}` has no `test_command` configured; an admin must set one")
    git_dir = Path(git_text(path, ["rev-parse", "--path-format=absolute", "--git-common-dir"]))
    store = WorkspaceStore(repo, path)
    # Held for the whole run, so `cedargate workspaces rm` cannot remove the worktree under it.
    with store.in_use(workspace.id) as workspace:
        commit = head_commit(workspace)
        clean, untracked, tree = _worktree_state(workspace.path)
        limits = SandboxLimits(wall_seconds=repo.test_timeout_seconds, memory_mb=repo.test_memory_mb)

        def still_running(elapsed: float) -> None:
            message = f"`{repo.test_command}` running for {elapsed:.0f} s (limit {limits.wall_seconds} s)"
            call.progress(elapsed, limits.wall_seconds, message)

        run = run_sandboxed(workspace.path, (git_dir,), repo.test_command, limits, still_running)
        call.execution["sandbox"] = {
            "kind": "bubblewrap",
            "wall_seconds": limits.wall_seconds,
            "memory_mb": limits.memory_mb,
            "in_memory_files_mb": in_memory_files_mb(limits),
        }
        facts = run.model_dump()
        call.execution["test_run"] = {**facts, "commit": commit, "clean": clean, "untracked_leftovers": untracked}
        record = TestRun(
            **facts,
            commit=commit,
            clean=clean,
            untracked_leftovers=untracked,
            tree=tree,
            event_id=call.event_id,
            time=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        store.save(workspace.model_copy(update={"last_test": record}))
    passed = run.exit_code == 0 and not run.timed_out
    return {
        "repository": repo.name,
        "workspace": workspace.id,
        "branch": workspace.branch,
        "commit": commit,
        "clean": clean,
        "untracked_leftovers": untracked,
        "passed": passed,
        **facts,
    }


def _worktree_state(where: Path) -> tuple[bool, int, str | None]:
    """Whether nothing staged or tracked differs from the head, how many untracked files there are,
    and the index's tree when the tracked files are exactly the index (what a commit would hold).

    Only what could be committed makes a run unclean: ``repo_commit`` takes what diffs staged,
    and a tracked file a run rewrote changes what the next run tests. Untracked files (an
    earlier run's ``__pycache__``) are never committed, so they are counted, not held against it.
    """
    statuses = [status for status, _ in worktree_status(where)]
    untracked = statuses.count("??")
    as_staged = all(status == "??" or status[1] == " " for status in statuses)
    return len(statuses) == untracked, untracked, git_text(where, ["write-tree"]) if as_staged else None


REVIEW_OPERATIONS: Final[Mapping[str, Handler]] = {
    "push": push,
    "open_pull_request": open_pull_request,
    "run_tests": run_tests,
}
