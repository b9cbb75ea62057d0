"""``cedargate revoke|reinstate agent ID`` and ``cedargate freeze|unfreeze --environment ENV``: operator holds."""

from __future__ import annotations

import argparse
import json
from typing import Any

from cedargate.cli._common import config_from, identifier


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for verb, help_text in (
        ("revoke", "refuse every call of an agent, on every replica, from its next call"),
        ("reinstate", "undo a revocation"),
    ):
        parser = commands.add_parser(verb, help=help_text, description=help_text[:1].upper() + help_text[1:] + ".")
        parser.add_argument("kind", choices=["agent"], help="what to act on")
        parser.add_argument("subject", metavar="ID", type=identifier, help="agent id")
        _common_options(parser)
        parser.set_defaults(run=run_hold, put=verb == "revoke", hold="agent")
    for verb, help_text in (
        ("freeze", "let only read-risk tools run in an environment"),
        ("unfreeze", "undo a freeze"),
    ):
        parser = commands.add_parser(verb, help=help_text, description=help_text[:1].upper() + help_text[1:] + ".")
        parser.add_argument(
            "--environment", dest="subject", required=True, metavar="ENV", type=identifier, help="environment id"
        )
        _common_options(parser)
        parser.set_defaults(run=run_hold, put=verb == "freeze", hold="environment")
    holds = commands.add_parser(
        "holds", help="list revoked agents and frozen environments", description="List revocations and freezes."
    )
    holds.add_argument("--json", action="store_true", help="print JSON")
    holds.set_defaults(run=run_list)


def _common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--as", dest="user", required=True, metavar="USER", type=identifier, help="who acts (recorded)")
    parser.add_argument("--reason", default="no reason given", help="why (recorded, shown to refused agents)")
    parser.add_argument("--json", action="store_true", help="print JSON")


def _holds(args: argparse.Namespace) -> tuple[Any, Any]:
    from cedargate.holds import Holds
    from cedargate.store import open_store

    store = open_store(config_from(args).store)
    return store, Holds(store)


def _refuse_unknown_environment(args: argparse.Namespace) -> None:
    """A freeze of an environment nothing is in (``Prod`` for ``prod``) would leave the real one open."""
    from cedargate.errors import ConfigError

    known = config_from(args).environments
    if args.subject not in known:
        listed = ", ".join(f"`{e}`" for e in sorted(known)) or "none"
        raise ConfigError(
            f"no configured repository or AWS account is in environment `{args.subject}` (configured: {listed}); "
            "nothing was frozen"
        )


def run_hold(args: argparse.Namespace) -> int:
    from cedargate.holds import HoldKind

    if args.hold == "environment" and args.put:
        _refuse_unknown_environment(args)
    store, holds = _holds(args)
    kind = HoldKind(args.hold)
    try:
        if args.put:
            holds.put(kind, args.subject, args.user, args.reason)
        else:
            holds.lift(kind, args.subject, args.user, args.reason)
    finally:
        store.close()
    done = {
        ("agent", True): "revoked",
        ("agent", False): "reinstated",
        ("environment", True): "frozen",
        ("environment", False): "unfrozen",
    }[(args.hold, args.put)]
    if args.json:
        print(json.dumps({"kind": args.hold, "subject": args.subject, "status": done, "by": args.user}))
    else:
        print(f"{args.hold} {args.subject} {done} by {args.user}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    store, holds = _holds(args)
    try:
        found = holds.list()
    finally:
        store.close()
    if args.json:
        print(json.dumps([h.model_dump(mode="json") for h in found], indent=2))
        return 0
    if not found:
        print("no holds")
    for h in found:
        print(f"{h.kind.value} {h.subject}: by {h.by_user} at {h.at.isoformat()} ({h.reason})")
    return 0
