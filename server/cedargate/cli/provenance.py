"""``cedargate provenance``: the chain of calls that led to a commit or a change."""

from __future__ import annotations

import argparse
from pathlib import Path

from cedargate.cli._common import config_from
from cedargate.errors import CedargateError


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    provenance = commands.add_parser(
        "provenance",
        help="show the calls that led to a commit or an audit event",
        description="Print the chain of calls behind a change: the write event (found from a commit's "
        "Cedargate-Audit-Event trailer, or given by id), the reads its session made since its previous change, "
        "then each earlier change of the session (N back) with its own reads: flat, however long the session.",
    )
    provenance.add_argument("target", metavar="COMMIT|EVENT_ID", help="a commit (with --repo) or an audit event id")
    provenance.add_argument("--repo", help="the configured repository name (or a path) the commit is in")
    provenance.add_argument("--log", type=Path, help="audit log file (default: the configured one)")
    provenance.add_argument(
        "--json",
        action="store_true",
        help="print the chain as JSON: the change, its `sources` its reads then the earlier changes",
    )
    provenance.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from cedargate.audit.query import read_events
    from cedargate.checkout import local_repo
    from cedargate.provenance import event_id_of_commit, render, trace

    config = config_from(args) if args.log is None or args.repo else None
    event_id = args.target
    if args.repo:
        repo = config.repository(args.repo) if config else None
        path = local_repo(repo) if repo else Path(args.repo)
        if not (path / ".git").exists() and not (path / "HEAD").exists():
            raise CedargateError(f"--repo `{args.repo}` is neither a configured repository nor a git repository path")
        event_id = event_id_of_commit(path, args.target)
    log = args.log or (config.audit.path if config else None)
    if log is None:  # pragma: no cover - config_from raises first
        raise CedargateError("no audit log: pass --log PATH")
    chain = trace(event_id, read_events(log))
    print(chain.model_dump_json(indent=2) if args.json else "\n".join(render(chain)))
    return 0
