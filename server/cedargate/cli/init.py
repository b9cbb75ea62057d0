"""``cedargate init [FOLDER]``: a starting config, tool manifests and policies that serve as written."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from cedargate.cli._common import identifier


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    init = commands.add_parser(
        "init",
        help="write a starting cedargate.toml, tools/ and policies/",
        description=(
            "Write a starting project into FOLDER: cedargate.toml (the embedded sandbox for AWS, the git "
            "repository FOLDER is in, you as the human the agent acts for) and copies of the shipped tool "
            "manifests and policies, unless FOLDER has its own tools/ or policies/. The project is loaded "
            "and validated as `cedargate serve` would before anything is kept; an existing cedargate.toml "
            "is never overwritten."
        ),
    )
    init.add_argument("folder", nargs="?", type=Path, default=Path("."), help="where to write (default: here)")
    init.add_argument(
        "--user", type=identifier, metavar="NAME", help="the human the agent acts for (default: your login name)"
    )
    init.add_argument("--json", action="store_true", help="print what was written as JSON")
    init.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from cedargate.project_init import TOOLS_LOCK, init_project

    result = init_project(args.folder, args.user)
    if args.json:
        print(result.model_dump_json(indent=2))
        return 0
    print(f"wrote {result.config}")
    for name in result.copied:
        print(f"copied the shipped {name}/ into {result.config.parent / name}")
    for name in result.kept:
        print(f"kept {result.config.parent / name} as it is")
    if result.unreviewed:
        shown = "; ".join(result.unreviewed[:3]) + ("; ..." if len(result.unreviewed) > 3 else "")
        print(
            f"warning: {result.config.parent / TOOLS_LOCK} no longer holds {len(result.unreviewed)} manifest(s) "
            f"as they are ({shown}): the config leaves `tools_lock` commented out, so they are served unlocked; "
            f"once they are reviewed, uncomment `tools_lock` in {result.config} and run `cedargate tools lock`",
            file=sys.stderr,
        )
    published = f"repository `{result.repository.name}`" if result.repository else "no repository (see the config)"
    print(f"It serves {result.tools} tools under {result.policies} policies, and {published}")
    entry = result.client_entry
    print(f"next: `{shlex.join([entry.command, *entry.args])}` (stdio), or in an MCP client's server list:")
    print(f"  {entry.model_dump_json()}")
    return 0
