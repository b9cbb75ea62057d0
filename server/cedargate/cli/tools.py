"""``cedargate tools``: what the manifests publish, and starting a new one."""

from __future__ import annotations

import argparse
import json

from cedargate.cli._common import config_from, group
from cedargate.cli.tools_new import register_new
from cedargate.errors import CedargateError


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    tools = group(commands, "tools", "inspect the published tools")
    listing = tools.add_parser(
        "list",
        help="list tools with risk, handler, manifest hash and whether the tools lock holds them",
        description="List the tools the manifests publish.",
    )
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(run=run_list)
    lock = tools.add_parser(
        "lock",
        help="record the reviewed manifests in the tools lock (or check it with --check)",
        description="Write every manifest's content hash into the configured `tools_lock` file: with it, the "
        "server serves only manifests an admin reviewed and locked. Prints what changed since the last lock.",
    )
    lock.add_argument("--check", action="store_true", help="change nothing; exit 1 when the lock is out of date")
    lock.add_argument("--json", action="store_true", help="print the changes and the outcome as JSON")
    lock.set_defaults(run=run_lock)
    register_new(tools)


def run_list(args: argparse.Namespace) -> int:
    from cedargate.admin import describe_tools

    rows = describe_tools(config_from(args))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    # Columns as wide as their longest entry: a long tool or handler name no longer pushes its row out of line.
    width = {column: max((len(row[column]) for row in rows), default=0) for column in ("name", "risk", "handler")}
    for row in rows:
        unlocked = "  not locked as it is" if row["locked"] is False else ""
        columns = "  ".join(f"{row[column]:<{width[column]}}" for column in width)
        print(f"{columns}  {row['manifest_hash'][:12]}{unlocked}")
    return 0


def run_lock(args: argparse.Namespace) -> int:
    from cedargate.admin import tools_catalog
    from cedargate.tool_lock import lock_changes, read_lock, read_lock_or_empty, write_lock

    config = config_from(args)
    path = config.tools_lock
    if path is None:
        raise CedargateError('no tools lock configured: add `tools_lock = "tools/tools.lock"` to the config')
    catalog = tools_catalog(config)
    # --check reports a missing or unreadable lock; locking writes it afresh from the manifests.
    locked = read_lock(path) if args.check else read_lock_or_empty(path)
    changes = lock_changes(catalog, locked)
    written = bool(changes) and not args.check
    if written:
        write_lock(path, catalog)
    if args.json:
        report = {"lock": str(path), "tools": len(catalog), "written": written}
        print(json.dumps({**report, "changes": [c.model_dump() for c in changes]}, indent=2))
    elif not changes:
        print(f"{path}: all {len(catalog)} manifests are locked as they are")
    else:
        for change in changes:
            print(f"{change.change:<8} {change.describe()}")
        verb = "is out of date" if args.check else f"now locks {len(catalog)} manifests"
        print(f"{path} {verb}")
    return 1 if args.check and changes else 0
