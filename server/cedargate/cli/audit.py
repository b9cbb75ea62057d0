"""``cedargate audit``: checking the audit trail."""

from __future__ import annotations

import argparse
from pathlib import Path

from cedargate.cli._common import config_from, group
from cedargate.errors import CedargateError


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    audit = group(commands, "audit", "audit trail tools")
    verify = audit.add_parser(
        "verify",
        help="check the hash chain of an audit log",
        description="Recompute the hash chain; name the first event altered, removed or reordered.",
    )
    verify.add_argument("--log", type=Path, help="audit log file (default: the configured one)")
    verify.add_argument("--json", action="store_true", help="print JSON")
    verify.set_defaults(run=run_verify)


def run_verify(args: argparse.Namespace) -> int:
    from cedargate.audit.verify import verify_log

    path = args.log or config_from(args).audit.path
    if not path.is_file():
        raise CedargateError(
            f"audit log `{path}` does not exist: pass --log PATH or check `[audit] path` in the config"
        )
    report = verify_log(path)
    if args.json:
        print(report.model_dump_json(indent=2))
    elif report.ok:
        notes = f", {report.segments} segment(s) after torn writes" if report.segments else ""
        if report.torn_tail is not None:
            notes += f"; line {report.torn_tail} is a torn write (a new segment starts when the server restarts)"
        print(f"ok: {report.events} events, chain intact{notes} ({report.path})")
    else:
        print(f"FAILED at line {report.line} (event {report.event_id or 'unknown'}): {report.problem} ({report.path})")
    return 0 if report.ok else 1
