"""``cedargate actions``: what operators did (approvals decided, revocations, freezes), newest first."""

from __future__ import annotations

import argparse
import json

from cedargate.cli._common import config_from, positive_int


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    actions = commands.add_parser(
        "actions",
        help="list what operators did: approvals decided, agents revoked, environments frozen",
        description=(
            "List the operators' actions the store recorded, newest first: who decided which approval, "
            "revoked or reinstated which agent, froze or unfroze which environment, when and why."
        ),
    )
    actions.add_argument("--actor", metavar="USER", help="only this operator's actions")
    actions.add_argument(
        "-n", "--limit", type=positive_int, default=50, metavar="N", help="at most N actions (default 50)"
    )
    actions.add_argument("--json", action="store_true", help="print JSON")
    actions.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from cedargate.admin_actions import recent_actions
    from cedargate.store import open_store

    store = open_store(config_from(args).store)
    try:
        found = recent_actions(store, args.limit, args.actor)
    finally:
        store.close()
    if args.json:
        print(json.dumps([a.model_dump(mode="json") for a in found], indent=2))
        return 0
    if not found:
        print("no actions recorded")
    for action in found:
        print(f"{action.at.isoformat()}  {action.actor}  {action.action} {action.subject}  ({action.reason})")
    return 0
