"""``cedargate policy``: the generated Cedar schema and policy validation."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cedargate.cli._common import config_from, group


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    policy = group(commands, "policy", "Cedar schema and policy checks")
    schema = policy.add_parser(
        "schema",
        help="print the Cedar schema generated from the manifests",
        description="Print (or write) the Cedar schema generated from the manifests.",
    )
    schema.add_argument("--output", type=Path, help="write the schema to this file instead of printing it")
    schema.set_defaults(run=run_schema)
    validate = policy.add_parser(
        "validate",
        help="parse and validate every policy against the schema",
        description="Parse and validate every policy file against the generated schema.",
    )
    validate.add_argument("--json", action="store_true", help="print JSON")
    validate.set_defaults(run=run_validate)


def run_schema(args: argparse.Namespace) -> int:
    from cedargate.admin import generated_schema_text

    text = generated_schema_text(config_from(args))
    if args.output:
        args.output.write_text(text, encoding="utf-8")
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def run_validate(args: argparse.Namespace) -> int:
    from cedargate.admin import validate_policies

    summary = validate_policies(config_from(args))
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        files, tools = len(summary["files"]), summary["tools"]
        print(f"ok: {summary['policies']} policies in {files} files validate against {tools} tools")
    return 0
