"""``cedargate approvals``: the out-of-band queue of calls waiting for a human."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from cedargate.cli._common import config_from, group, identifier


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    approvals = group(commands, "approvals", "list, inspect, approve and deny calls that await approval")
    listing = approvals.add_parser(
        "list", help="list approvals", description="List approvals, newest first (pending ones by default)."
    )
    listing.add_argument(
        "--status",
        choices=["pending", "approved", "denied", "consumed", "expired", "all"],
        default="pending",
        help="which approvals to list (default: pending)",
    )
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(run=run_list)
    show = approvals.add_parser("show", help="show one approval", description="Show one approval in full.")
    show.add_argument("id", help="approval id (apr_...)")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(run=run_show)
    verbs = (
        ("approve", True, "approve a pending approval", "Approve a pending approval"),
        (
            "deny",
            False,
            "deny a pending approval, or withdraw an approved one not yet used",
            "Deny a pending approval, or withdraw an approved one the agent has not used yet,",
        ),
    )
    for verb, approve, summary, what in verbs:
        decide = approvals.add_parser(
            verb,
            help=summary,
            description=f"{what} as USER, who must belong to the approver group; a refused attempt is recorded "
            "(see `cedargate actions`).",
        )
        decide.add_argument("id", help="approval id (apr_...)")
        decide.add_argument(
            "--as", dest="user", required=True, metavar="USER", type=identifier, help="who decides (a user id)"
        )
        decide.add_argument("--note", default="", help="why, kept with the approval")
        decide.add_argument("--json", action="store_true", help="print JSON")
        decide.set_defaults(run=run_decide, approve=approve)


@contextmanager
def _queue(args: argparse.Namespace) -> Iterator[Any]:
    from cedargate.approvals import ApprovalQueue
    from cedargate.store import open_store

    config = config_from(args)
    store = open_store(config.store)
    try:
        yield ApprovalQueue(store, config.approvals)
    finally:
        store.close()


def _print(approvals: list[Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps([a.model_dump(mode="json") for a in approvals], indent=2))
        return
    if not approvals:
        print("no approvals")
    for a in approvals:
        print(
            f"{a.id}  {a.status.value:<9} {a.tool} on {a.resource} by {a.agent} for {a.on_behalf_of}  "
            f"approvers: {','.join(a.approver_groups)}  expires {a.expires_at.isoformat(timespec='seconds')}"
        )


def run_list(args: argparse.Namespace) -> int:
    from cedargate.approvals import ApprovalStatus

    status = None if args.status == "all" else ApprovalStatus(args.status)
    with _queue(args) as queue:
        _print(queue.list(status), args.json)
    return 0


def run_show(args: argparse.Namespace) -> int:
    with _queue(args) as queue:
        approval = queue.get(args.id)
    if args.json:
        print(approval.model_dump_json(indent=2))
    else:
        for key, value in approval.model_dump(mode="json").items():
            # Strings as they are; the rest as JSON (`null`, `false`), not Python's `None`, `False`.
            print(f"{key}: {value if isinstance(value, str) else json.dumps(value)}")
    return 0


def run_decide(args: argparse.Namespace) -> int:
    with _queue(args) as queue:
        approval = queue.decide(args.id, args.user, approve=args.approve, note=args.note)
    if args.json:
        print(approval.model_dump_json(indent=2))
    else:
        print(f"{approval.id} {approval.status.value} by {approval.decided_by}")
    return 0
