"""``cedargate db``: the governance store's schema (migrations run at start-up too)."""

from __future__ import annotations

import argparse
import json

from cedargate.cli._common import config_from, group


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    db = group(commands, "db", "governance store maintenance")
    upgrade = db.add_parser(
        "upgrade",
        help="migrate the store to the newest schema",
        description="Run the store's migrations up to the newest revision (the server also does this at start).",
    )
    upgrade.add_argument("--json", action="store_true", help="print JSON")
    upgrade.set_defaults(run=run_upgrade)


def run_upgrade(args: argparse.Namespace) -> int:
    from cedargate.store import open_store
    from cedargate.store.migrate import current_revision

    store = open_store(config_from(args).store)
    try:
        report = {
            "backend": store.backend,
            "url": store.engine.url.render_as_string(hide_password=True),
            "revision": current_revision(store.engine),
        }
    finally:
        store.close()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"ok: {report['backend']} store at revision {report['revision']} ({report['url']})")
    return 0
