"""``cedargate workspaces``: the task worktrees agents work in (list, show, remove).

These are an operator's commands on the local checkouts; they do not go through the agent
pipeline. Removing a workspace removes its worktree only: the task branch and its commits stay,
so a worktree with staged changes or changed tracked files (work the agent decided on) is
removed only with ``--force``; untracked files (what test runs leave) go with the worktree.
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
from cedargate.handlers.repo_common import worktree_status
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
        "worktree with staged changes or changed tracked files is refused unless --force is given; untracked "
        "files (what test runs leave, which no tool commits) are removed with it.",
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
    untracked: list[str] = []
    if not args.force:
        untracked = _refuse_uncommitted(workspace)
    store.remove(workspace.id)
    if args.json:
        row: dict[str, Any] = {"removed": workspace.id, "branch_kept": workspace.branch}
        if untracked:  # counted only when there were some, so the usual answer keeps its shape
            row["untracked_removed"] = len(untracked)
        print(json.dumps(row, indent=2))
    else:
        gone = f" and its {len(untracked)} untracked files ({_named(untracked)})" if untracked else ""
        print(f"removed workspace {workspace.id}{gone}; branch {workspace.branch} is kept")
    return 0


def _refuse_uncommitted(workspace: Workspace) -> list[str]:
    """Refuse to remove a worktree holding work its branch does not; return its untracked files.

    Only staged changes and changed tracked files are work: ``repo_apply_diff`` stages what
    policy decided, and no tool commits an untracked file (those are what test runs leave,
    ``__pycache__`` and the like), so they are removed with the worktree, and named.
    """
    if not workspace.path.is_dir():
        return []  # gone already: nothing to lose
    decided, untracked = _uncommitted(workspace.path)
    if not decided:
        return untracked
    also = f"; its untracked files ({_named(untracked)}) are not work and go with it either way" if untracked else ""
    raise CedargateError(
        f"workspace `{workspace.id}` has uncommitted changes in `{workspace.path}`: {_named(decided)}; "
        f"commit or copy them first, or pass --force to remove them with the worktree{also}"
    )


def _named(paths: list[str]) -> str:
    named = ", ".join(f"`{name}`" for name in paths[:LISTED_FILES])
    if len(paths) > LISTED_FILES:
        named += f" and {len(paths) - LISTED_FILES} more"
    return named


def _uncommitted(path: Path) -> tuple[list[str], list[str]]:
    """The staged or changed tracked files, and the untracked files, of the worktree at ``path``."""
    try:
        entries = worktree_status(path)
    except (CedargateError, OSError, subprocess.TimeoutExpired) as exc:
        raise CedargateError(
            f"cannot tell whether workspace `{path}` has uncommitted changes ({exc}); pass --force to remove it anyway"
        ) from exc
    decided = [name for status, name in entries if status != "??"]
    untracked = [name for status, name in entries if status == "??"]
    return decided, untracked


def _test_label(row: dict[str, Any]) -> str:
    run = row.get("last_test")
    if not run:
        return "tests not run"
    if run["timed_out"]:
        return "tests timed out"
    return "tests passed" if run["exit_code"] == 0 else f"tests failed (exit {run['exit_code']})"
