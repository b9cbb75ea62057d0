"""``cedargate workspaces``: the task worktrees agents work in (list, show, remove).

These are an operator's commands on the local checkouts; they do not go through the agent
pipeline. Removing a workspace removes its worktree only: the task branch and its commits stay.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from cedargate.cli._common import config_from, group
from cedargate.config import Config
from cedargate.errors import CedargateError
from cedargate.workspaces import Workspace, WorkspaceStore, all_workspaces


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
        description="Remove a workspace's worktree and record; the task branch and its commits stay.",
    )
    remove.add_argument("id", help="workspace id (see `cedargate workspaces list`)")
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
    store.remove(workspace.id)
    if args.json:
        print(json.dumps({"removed": workspace.id, "branch_kept": workspace.branch}, indent=2))
    else:
        print(f"removed workspace {workspace.id}; branch {workspace.branch} is kept")
    return 0


def _test_label(row: dict[str, Any]) -> str:
    run = row.get("last_test")
    if not run:
        return "tests not run"
    if run["timed_out"]:
        return "tests timed out"
    return "tests passed" if run["exit_code"] == 0 else f"tests failed (exit {run['exit_code']})"
