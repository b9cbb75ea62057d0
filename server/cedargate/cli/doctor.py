"""``cedargate doctor``: check what serving this config needs, without changing anything."""

from __future__ import annotations

import argparse
import json

from cedargate.cli._common import config_from
from cedargate.errors import CedargateError


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    doctor = commands.add_parser(
        "doctor",
        help="check what serving this config needs (principal, git, repositories, sandbox, store, audit log, AWS)",
        description=(
            "Check what serving this config needs and what its tools need on their first call: the "
            "manifests, lock and policies, members for the approver groups policies name, the principal "
            "stdio serving needs, the audit log, the store's schema, git, each repository and its "
            "forge token, bubblewrap for test runs, and where AWS calls go. Nothing is created or changed; "
            "no network request is made. Exits 1 when a check fails."
        ),
    )
    doctor.add_argument("--json", action="store_true", help="print the findings as JSON")
    doctor.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from cedargate.doctor import Finding, Status, run_checks, worst

    try:
        config = config_from(args)
    except CedargateError as exc:
        if args.json:  # a script reads standard output: the config is one more failed check there
            failed = Finding(check="config", status=Status.FAIL, detail=str(exc))
            print(json.dumps({"status": Status.FAIL.value, "findings": [failed.model_dump(mode="json")]}, indent=2))
        raise
    findings = run_checks(config)
    verdict = worst(findings)
    if args.json:
        print(
            json.dumps({"status": verdict.value, "findings": [f.model_dump(mode="json") for f in findings]}, indent=2)
        )
    else:
        width = max(len(f.check) for f in findings)
        for finding in findings:
            print(f"{finding.status.value:<4}  {finding.check:<{width}}  {finding.detail}")
    return 1 if verdict is Status.FAIL else 0
