"""``cedargate demo``: a scripted agent session on the embedded sandbox."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = commands.add_parser(
        "demo",
        help="run a scripted agent session against the embedded sandbox",
        description="Start cedargate, connect a real MCP client and run a short scripted agent session.",
    )
    demo.add_argument(
        "--workdir", type=Path, help="where to create the demo repositories and audit log (default: a new temp dir)"
    )
    demo.add_argument("--json", action="store_true", help="print the session as JSON")
    demo.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from cedargate.demo import run_demo

    return run_demo(args.workdir, as_json=args.json)
