"""The ``cedargate`` command line: serve, demo, and the admin, policy and audit tools.

Each command group lives in its own module with a ``register(commands)`` function; adding a
group is one import and one line in ``COMMAND_GROUPS``. Every command has ``--help``;
commands whose output a script would read take ``--json``. Errors print one line naming what
failed and where, and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from cedargate import __version__
from cedargate.cli import (
    actions,
    approvals,
    audit,
    budget,
    db,
    demo,
    doctor,
    holds,
    init,
    policy,
    provenance,
    serve,
    tools,
    workspaces,
)
from cedargate.errors import CedargateError

COMMAND_GROUPS = (
    init,
    serve,
    doctor,
    demo,
    tools,
    policy,
    audit,
    provenance,
    workspaces,
    db,
    approvals,
    actions,
    budget,
    holds,
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        (getattr(args, "group_parser", None) or parser).print_help()
        return 2
    try:
        return int(args.run(args))
    except CedargateError as exc:
        print(f"cedargate: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cedargate", description="An MCP server that governs what coding agents may do."
    )
    parser.add_argument("--version", action="version", version=f"cedargate {__version__}")
    parser.add_argument("--config", metavar="PATH", help="config file (default: $CEDARGATE_CONFIG or ./cedargate.toml)")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    for group in COMMAND_GROUPS:
        group.register(commands)
    return parser
