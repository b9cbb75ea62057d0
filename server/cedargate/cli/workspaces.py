"""``cedargate workspaces``: the task worktrees agents work in (list, show, remove).

These are an operator's commands on the local checkouts; they do not go through the agent
pipeline. Removing a workspace removes its worktree only: the task branch and its commits stay,
so a worktree with uncommitted changes is removed only with ``--force``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path
from typing import Any, Final

from cedargate.cli._common import config_from, group
from cedargate.config import Config
from cedargate.errors import CedargateError
from cedargate.git import git_failure, run_git
from cedargate.workspaces import Workspace, WorkspaceStore, all_workspaces

LISTED_FILES: Final = 10
"""How many changed files the refusal to remove a workspace names."""


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    workspaces = group(commands, "workspaces", "inspect and remove task workspaces (git worktrees)")
    listing = workspaces.add_parser(
        "list", help="list task workspaces", description="List every task workspace of every configured repository."
    )
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(run=run_list)
    show = workspaces.add_parser(
        "show",
        help="show one workspace and its last test run",
        description="Show a workspace: who and which task, branch, base commit, and the last sandboxed test run.",
    )
    show.add_argument("id", help="workspace id (see `cedargate workspaces list`)")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(run=run_show)
    remove = workspaces.add_parser(
        "rm",
        help="remove a workspace (its branch stays)",
        description="Remove a workspace's worktree and record; the task branch and its commits stay. A "
        "worktree with uncommitted changes (edited or new files) is refused unless --force is given.",
    )
    remove.add_argument("id", help="workspace id (see `cedargate workspaces list`)")
    remove.add_argument("--force", action="store_true", help="remove it even with uncommitted changes (they are lost)")
    remove.add_argument("--json", action="store_true", help="print JSON")
    remove.set_defaults(run=run_remove)


def _find(config: Config, ws_id: str) -> tuple[WorkspaceStore, Workspace]:
    for store, workspace in all_workspaces(config):
        if workspace.id == ws_id:
            return store, workspace
    raise CedargateError(f"no workspace `{ws_id}`: run `cedargate workspaces list` to see the ids")


def run_list(args: argparse.Namespace) -> int:
    rows = [w.to_json() for _, w in all_workspaces(config_from(args))]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no workspaces")
    for row in rows:
        print(f"{row['id']:<48} {row['branch']:<32} base {row['base_commit'][:12]}  {_test_label(row)}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    _, workspace = _find(config_from(args), args.id)
    row = workspace.to_json()
    if args.json:
        print(json.dumps(row, indent=2))
        return 0
    for key in ("id", "repository", "agent", "on_behalf_of", "task", "branch", "base_commit", "path", "created"):
        print(f"{key + ':':<14} {row[key]}")
    print(f"{'last test:':<14} {_test_label(row)}")
    return 0


def run_remove(args: argparse.Namespace) -> int:
    store, workspace = _find(config_from(args), args.id)
    if not args.force:
        _refuse_uncommitted(workspace)
    store.remove(workspace.id)
    if args.json:
        print(json.dumps({"removed": workspace.id, "branch_kept": workspace.branch}, indent=2))
    else:
        print(f"removed workspace {workspace.id}; branch {workspace.branch} is kept")
    return 0


def _refuse_uncommitted(workspace: Workspace) -> None:
    """Refuse to remove a worktree holding work its branch does not: only the branch survives removal."""
    if not workspace.path.is_dir():
        return  # gone already: nothing to lose
    changed = _uncommitted(workspace.path)
    if not changed:
        return
    named = ", ".join(f"`{name}`" for name in changed[:LISTED_FILES])
    if len(changed) > LISTED_FILES:
        named += f" and {len(changed) - LISTED_FILES} more"
    raise CedargateError(
        f"workspace `{workspace.id}` has uncommitted changes in `{workspace.path}`: {named}; "
        "commit or copy them first, or pass --force to remove them with the worktree"
    )


def _uncommitted(path: Path) -> list[str]:
    """The files ``git status`` shows as changed or new in the worktree at ``path``."""
    try:
        result = run_git(path, ["status", "--porcelain", "--untracked-files=all"], check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        said = str(exc)
    else:
        if result.returncode == 0:
            return [line[3:] for line in result.stdout.decode(errors="replace").splitlines() if line.strip()]
        said = git_failure(result.stderr.decode(errors="replace"))
    raise CedargateError(
        f"cannot tell whether workspace `{path}` has uncommitted changes (git status failed: {said}); "
        "pass --force to remove it anyway"
    )


def _test_label(row: dict[str, Any]) -> str:
    run = row.get("last_test")
    if not run:
        return "tests not run"
    if run["timed_out"]:
        return "tests timed out"
    return "tests passed" if run["exit_code"] == 0 else f"tests failed (exit {run['exit_code']})"
