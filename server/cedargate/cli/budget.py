"""``cedargate budget``: spend and call-rate caps, and what each team and agent has used."""

from __future__ import annotations

import argparse
import json

from cedargate.cli._common import config_from, group


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    budget = group(commands, "budget", "spend and call-rate caps")
    show = budget.add_parser(
        "show",
        help="show spend and caps per team and agent",
        description="Show cents spent today and this month and calls this minute, per team and agent, with caps.",
    )
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(run=run_show)


def run_show(args: argparse.Namespace) -> int:
    from cedargate.budget_report import budget_report
    from cedargate.store import open_store

    config = config_from(args)
    store = open_store(config.store)
    try:
        lines = budget_report(store, config.budgets)
    finally:
        store.close()
    if args.json:
        print(json.dumps([line.model_dump() for line in lines], indent=2))
        return 0
    if not lines:
        print("no caps configured and nothing spent yet")
    for line in lines:
        cells = []
        for label, usage in (
            ("day", line.day_cents),
            ("month", line.month_cents),
            ("calls/min", line.calls_this_minute),
        ):
            cap = "no cap" if usage.cap is None else f"cap {usage.cap}"
            cells.append(f"{label} {usage.used} ({cap}, resets {usage.resets_at})")
        print(f"{line.scope} {line.subject}: " + "; ".join(cells))
    return 0
