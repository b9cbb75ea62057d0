"""``cedargate tools``: what the manifests publish, and starting a new one."""

from __future__ import annotations

import argparse
import json

from cedargate.cli._common import config_from, group
from cedargate.cli.tools_new import register_new


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    tools = group(commands, "tools", "inspect the published tools")
    listing = tools.add_parser(
        "list",
        help="list tools with risk, handler and manifest hash",
        description="List the tools the manifests publish.",
    )
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(run=run_list)
    register_new(tools)


def run_list(args: argparse.Namespace) -> int:
    from cedargate.admin import describe_tools

    rows = describe_tools(config_from(args))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        print(f"{row['name']:<32} {row['risk']:<12} {row['handler']:<34} {row['manifest_hash'][:12]}")
    return 0
