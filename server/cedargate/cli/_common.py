"""Helpers every command group shares."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cedargate.config import Config, load_config


def config_from(args: argparse.Namespace) -> Config:
    """The config named by ``--config`` (or the default lookup), validated."""
    return load_config(args.config)


def group(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help: str
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """A command group (``cedargate NAME ...``) that prints its own help when run bare."""
    parser = commands.add_parser(name, help=help, description=help[:1].upper() + help[1:] + ".")
    parser.set_defaults(group_parser=parser)
    return parser.add_subparsers(title="commands", metavar="COMMAND")


def write_output(text: str, output: Path | None, summary: str) -> None:
    """Write ``text`` to ``--output`` (saying ``summary`` on stderr) or to standard output."""
    if output:
        output.write_text(text, encoding="utf-8")
        print(summary, file=sys.stderr)
    else:
        sys.stdout.write(text)
