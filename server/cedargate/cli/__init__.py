"""The ``cedargate`` command line: serve, demo, and the admin, policy and audit tools.

Each command group lives in its own module with a ``register(commands)`` function; adding a
group is one import and one line in ``COMMAND_GROUPS``. Every command has ``--help``;
commands whose output a script would read take ``--json``, and every command takes
``--config`` before or after its name. Errors print one line naming what failed and where,
and exit with status 2.
"""

from __future__ import annotations

import argparse
import os
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
from cedargate.cli._common import CONFIG_HELP
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
    try:
        return _run(argv)
    except BrokenPipeError:
        # The reader went away (`tools list` piped into `head -1`): stop quietly, as `cat` would.
        # Standard output points at /dev/null so the interpreter's final flush cannot fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


def _run(argv: Sequence[str] | None) -> int:
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
    parser.add_argument("--config", metavar="PATH", help=CONFIG_HELP)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    for group in COMMAND_GROUPS:
        group.register(commands)
    for sub in _subparsers(parser):
        _accept_config(sub)
    return parser


def _subparsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """Every parser below ``parser``, groups and their commands alike."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):  # an alias maps to the same parser
                found += [sub, *_subparsers(sub)]
    return found


def _accept_config(parser: argparse.ArgumentParser) -> None:
    """``cedargate doctor --config PATH`` as well as ``cedargate --config PATH doctor``.

    ``SUPPRESS`` leaves the attribute unset unless the flag follows the command, so the value
    given before the command is not overwritten with a default.
    """
    if "--config" not in parser._option_string_actions:
        parser.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS, help=CONFIG_HELP)
