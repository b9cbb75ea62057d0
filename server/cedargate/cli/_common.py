"""Helpers every command group shares: the config, command groups, argument types and output files."""

from __future__ import annotations

import argparse
import math
import sys
import threading
from pathlib import Path

from cedargate.config import Config, load_config
from cedargate.errors import CedargateError

CONFIG_HELP = "config file (default: $CEDARGATE_CONFIG or ./cedargate.toml)"
LARGEST_COUNT = 2**63 - 1
"""The largest count a flag takes: SQLite's integers and Python's sizes stop there."""
LONGEST_SECONDS = min(threading.TIMEOUT_MAX, 365 * 24 * 3600.0)
"""The longest interval a flag takes: a year, well inside what ``time.sleep`` can wait."""


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


def identifier(value: str) -> str:
    """An argparse type for agent, user and environment ids as the config spells them: a typo would act on nobody."""
    from pydantic import TypeAdapter, ValidationError

    from cedargate.config import Identifier

    try:
        return TypeAdapter(Identifier).validate_python(value)
    except ValidationError:
        raise argparse.ArgumentTypeError(
            f"`{value}` is not an id as the config writes them: up to 128 letters, digits and `._@/:-`, "
            "starting with a letter or digit"
        ) from None


def positive_int(text: str) -> int:
    """An argparse type for counts that must be at least 1."""
    value = _count(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"`{text}`: give a whole number of at least 1")
    return value


def non_negative_int(text: str) -> int:
    """An argparse type for counts where 0 means "none" (``tail -n 0 --follow``: only new events)."""
    value = _count(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"`{text}`: give a whole number of 0 or more")
    return value


def positive_seconds(text: str) -> float:
    """An argparse type for intervals: 0 would spin the CPU, a negative or infinite one cannot be slept."""
    value = _real(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"`{text}`: give a number of seconds greater than 0")
    if value > LONGEST_SECONDS:
        raise argparse.ArgumentTypeError(f"`{text}` is too long: give at most {LONGEST_SECONDS:.0f} seconds (a year)")
    return value


def port_number(text: str) -> int:
    """An argparse type for TCP ports; 0 asks the system for any free port."""
    value = _whole(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"`{text}` is not a port: give a number from 1 to 65535 (0 for any free port)")
    return value


def _count(text: str) -> int:
    """A whole number no larger than ``LARGEST_COUNT``: beyond it the readers and the store overflow."""
    value = _whole(text)
    if value > LARGEST_COUNT:
        raise argparse.ArgumentTypeError(f"`{text}` is too large: give a whole number up to {LARGEST_COUNT}")
    return value


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"`{text}` is not a whole number") from None


def _real(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"`{text}` is not a number") from None


def writable_file(path: Path, flag: str, *, create_folder: bool = False) -> Path:
    """``path`` when a file can be written there: not a folder, in a folder that exists.

    Checked before any work is done, so a mistyped path costs no work and leaves no half-written file.
    With ``create_folder``, a missing folder is fine (the writer creates it).
    """
    if path.is_dir():
        raise CedargateError(f"{flag} `{path}` is a folder: name a file, e.g. `{path / 'NAME'}`")
    existing = next((folder for folder in path.parents if folder.exists()), None)
    if existing is not None and not existing.is_dir():
        raise CedargateError(f"{flag} `{path}`: `{existing}` is a file, not a folder; name another path")
    if not create_folder and existing != path.parent:
        raise CedargateError(f"{flag} `{path}`: folder `{path.parent}` does not exist; create it or name another file")
    return path


def write_file(path: Path, text: str, flag: str, *, create_folder: bool = False) -> None:
    """Write ``text`` to ``path`` (checked with ``writable_file``), naming ``flag`` when the system refuses."""
    writable_file(path, flag, create_folder=create_folder)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise CedargateError(f"{flag} `{path}` cannot be written: {exc.strerror or exc}") from exc


def write_output(text: str, output: Path | None, summary: str) -> None:
    """Write ``text`` to ``--output`` (saying ``summary`` on stderr) or to standard output."""
    if output:
        write_file(output, text, "--output")
        print(summary, file=sys.stderr)
    else:
        sys.stdout.write(text)
