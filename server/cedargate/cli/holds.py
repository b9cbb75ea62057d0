"""``cedargate revoke|reinstate agent ID`` and ``cedargate freeze|unfreeze --environment ENV``: operator holds."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from cedargate.cli._common import config_from, identifier

if TYPE_CHECKING:
    from cedargate.config import Config
    from cedargate.store import Store


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for verb, help_text in (
        ("revoke", "refuse every call of an agent, on every replica, from its next call"),
        ("reinstate", "undo a revocation"),
    ):
        parser = commands.add_parser(verb, help=help_text, description=help_text[:1].upper() + help_text[1:] + ".")
        parser.add_argument("kind", choices=["agent"], help="what to act on")
        parser.add_argument("subject", metavar="ID", type=identifier, help="agent id")
        _common_options(parser)
        if verb == "revoke":
            parser.add_argument(
                "--force",
                action="store_true",
                help="revoke an id no config, store or audit trail names yet (or one differing only in case)",
            )
        parser.set_defaults(run=run_hold, put=verb == "revoke", hold="agent", force=False)
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


def _holds(config: Config) -> tuple[Any, Any]:
    from cedargate.holds import Holds
    from cedargate.store import open_store

    store = open_store(config.store)
    return store, Holds(store)


def _refuse_unknown_environment(args: argparse.Namespace, config: Config) -> None:
    """A freeze of an environment nothing is in (``Prod`` for ``prod``) would leave the real one open."""
    from cedargate.errors import ConfigError

    known = config.environments
    if args.subject not in known:
        listed = ", ".join(f"`{e}`" for e in sorted(known)) or "none"
        raise ConfigError(
            f"no configured repository or AWS account is in environment `{args.subject}` (configured: {listed}); "
            "nothing was frozen"
        )


def _refuse_unseen_agent(args: argparse.Namespace, config: Config, store: Store) -> None:
    """Refuse to revoke an id no agent goes by, unless ``--force``: the real agent would keep running.

    Agents are not listed anywhere in full (over HTTP their tokens name them), so an id counts
    as known when the config, the store or the audit trail names it. One that differs only in
    case from a known id (``Codex-Demo`` for ``codex-demo``) is almost surely a typo: ids are
    case-sensitive, so revoking it would block nobody.
    """
    from cedargate.errors import CedargateError

    known, variants, unread = _agent_sightings(config, store, args.subject)
    if known:
        return
    if variants:
        named = ", ".join(f"`{agent}` ({where})" for agent, where in sorted(variants.items()))
        raise CedargateError(
            f"agent `{args.subject}` is unknown, but {named} differs from it only in case; ids are case-sensitive, "
            f"so revoking `{args.subject}` would block nobody: revoke the id as written there, or pass --force "
            "to revoke this exact id; nothing was revoked"
        )
    checked = "the config, the store" + (f" ({unread})" if unread else " and the audit trail")
    raise CedargateError(
        f"agent `{args.subject}` was never seen: {checked} name no such agent, so the agent you mean may keep "
        "running; check the id (`cedargate audit query` shows who called), or pass --force to revoke it before its "
        "first call; nothing was revoked"
    )


def _agent_sightings(config: Config, store: Store, agent: str) -> tuple[bool, dict[str, str], str | None]:
    """Whether ``agent`` is known; if not, the known ids equal to it but for case, with where each was seen.

    Cheapest first: the config, then indexed lookups in the store, and only then a read of the
    audit log (its whole file). The third value says why the log could not be read, if so.
    """
    from sqlalchemy import func, select

    from cedargate.audit.query import read_events
    from cedargate.errors import CedargateError
    from cedargate.holds import HoldKind
    from cedargate.store.tables import approvals, audit_events, revocations, spend_ledger

    folded = agent.lower()  # ids are ASCII (see `Identifier`), so SQL's lower() folds them alike
    variants: dict[str, str] = {}
    named = [(config.principal.agent, "the config's `[principal]`")] if config.principal else []
    named += [(a, f"`[budgets.agents.{a}]`") for a in config.budgets.agents]
    for seen, where in named:
        if seen == agent:
            return True, {}, None
        if seen.lower() == folded:
            variants.setdefault(seen, where)
    columns = (
        (approvals.c.agent, "approval requests", None),
        (spend_ledger.c.agent, "the spend ledger", None),
        (audit_events.c.agent, "the audit table", None),
        (revocations.c.subject, "holds", revocations.c.kind == HoldKind.AGENT.value),
    )
    with store.engine.connect() as connection:
        for column, where, only in columns:
            scope = () if only is None else (only,)
            if connection.execute(select(column).where(column == agent, *scope).limit(1)).first() is not None:
                return True, {}, None
            query = select(column).distinct().where(func.lower(column) == folded, *scope)
            for (variant,) in connection.execute(query):
                variants.setdefault(variant, where)
    unread = None
    try:
        if config.audit.path.is_file():
            for event in read_events(config.audit.path, torn_tail=lambda _path, _line: None):
                caller = (event.get("principal") or {}).get("agent")
                if caller == agent:
                    return True, {}, None
                if isinstance(caller, str) and caller.lower() == folded:
                    variants.setdefault(caller, f"the audit log `{config.audit.path}`")
    except CedargateError as exc:
        unread = f"the audit log could not be read: {exc}"
    return False, variants, unread


def run_hold(args: argparse.Namespace) -> int:
    from cedargate.holds import HoldKind

    config = config_from(args)
    if args.hold == "environment" and args.put:
        _refuse_unknown_environment(args, config)
    store, holds = _holds(config)
    kind = HoldKind(args.hold)
    retired = None
    try:
        if args.put:
            if kind is HoldKind.AGENT and not args.force:
                _refuse_unseen_agent(args, config, store)
            retired = holds.put(kind, args.subject, args.user, args.reason)
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
    expired = retired if kind is HoldKind.AGENT and args.put else None
    if args.json:
        report: dict[str, Any] = {"kind": args.hold, "subject": args.subject, "status": done, "by": args.user}
        if expired is not None:
            report["approvals_expired"] = expired
        print(json.dumps(report))
    else:
        tail = "" if expired is None else f"; {expired} open approval{'' if expired == 1 else 's'} expired"
        print(f"{args.hold} {args.subject} {done} by {args.user}{tail}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    store, holds = _holds(config_from(args))
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
