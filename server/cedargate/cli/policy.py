"""``cedargate policy``: the generated Cedar schema, validation, test cases and explanations."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cedargate.cli._common import config_from, group, writable_file, write_output


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
    test = policy.add_parser(
        "test",
        help="run the policy test cases in policies/tests/*.toml",
        description="Decide every case in policies/tests/*.toml and compare with the expected decision and policies.",
    )
    test.add_argument("--cases", type=Path, help="folder of case files (default: <policies_dir>/tests)")
    test.add_argument("--json", action="store_true", help="print JSON")
    test.set_defaults(run=run_test)
    explain = policy.add_parser(
        "explain",
        help="show the decision on one request and the policies that made it",
        description="Decide one request against the policies on disk and show the determining policies, "
        "their @reason, and any policy that failed to evaluate.",
    )
    explain.add_argument("--tool", required=True, help="tool name, for example `repo_write_file`")
    explain.add_argument("--agent", required=True, help="the calling agent")
    explain.add_argument("--resource", required=True, help="repository name or AWS account id")
    explain.add_argument("--team", help="the agent's team (default: the configured principal's)")
    explain.add_argument("--user", help="the human the agent acts for (default: the configured principal's)")
    explain.add_argument("--mode", choices=["interactive", "autonomous"], help="default: the configured principal's")
    explain.add_argument("--task", help="task id (default: the configured principal's)")
    explain.add_argument(
        "--arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help='a tool argument (repeatable); the value is read as JSON when it is JSON (7, true, ["a"]), '
        "else as text; quote it to keep it text (path='\"123\"')",
    )
    explain.add_argument(
        "--approved-by",
        metavar="GROUP",
        action="append",
        help="decide as if an approval from GROUP were granted (repeatable); as when served, it lifts the call "
        "only if the decision waits for an approval and GROUP includes every group the policies name",
    )
    explain.add_argument(
        "--remaining-cents",
        type=_cents,
        metavar="CENTS",
        help="context.budget.remaining_cents (default: what a call sees before anything is spent, "
        "the smallest spend cap of the team and agent, or uncapped)",
    )
    explain.add_argument("--json", action="store_true", help="print JSON")
    explain.set_defaults(run=run_explain)


def run_schema(args: argparse.Namespace) -> int:
    from cedargate.admin import generated_schema_text

    if args.output is not None:
        writable_file(args.output, "--output")
    text = generated_schema_text(config_from(args))
    write_output(text, args.output, f"wrote {args.output}")
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


def run_test(args: argparse.Namespace) -> int:
    from cedargate.policy_tests import run_policy_tests
    from cedargate.runtime import handler_registry

    config = config_from(args)
    report = run_policy_tests(config, handler_registry(None, config), args.cases)
    if args.json:
        print(report.model_dump_json(indent=2))
        return 0 if report.ok else 1
    for case in report.failed:
        print(f"FAIL {case.file}: {case.name}")
        print(f"  request:  {case.request}")
        print(f"  expected: {case.expected}")
        print(f"  actual:   {case.actual}")
        print(f"  problem:  {case.problem}")
        if case.changes is not None:
            classes = ", ".join(case.changes["classes"]) or "none"
            print(f"  changes:  {', '.join(case.changes['paths'])} (path classes: {classes})")
    total, failed = len(report.cases), len(report.failed)
    if report.ok:
        print(f"ok: {total} cases passed in {report.files} files")
    else:
        print(f"FAILED: {failed} of {total} cases in {report.files} files")
    return 0 if report.ok else 1


def run_explain(args: argparse.Namespace) -> int:
    from cedargate.errors import ToolInputError
    from cedargate.explain import explain_request, render
    from cedargate.policy_request import ApprovalFacts, PolicyRequest
    from cedargate.runtime import handler_registry

    config = config_from(args)
    principal = config.principal
    request = PolicyRequest(
        tool=args.tool,
        agent=args.agent,
        resource=args.resource,
        team=args.team or (principal.team if principal else "unknown"),
        user=args.user or (principal.on_behalf_of if principal else "unknown"),
        mode=args.mode or (principal.mode if principal else "interactive"),
        task=args.task or (principal.task if principal else "adhoc"),
        args=dict(_key_value(item) for item in args.arg),
        approval=ApprovalFacts(approver="cli", groups=tuple(args.approved_by)) if args.approved_by else None,
        remaining_cents=args.remaining_cents,
    )
    try:
        explanation = explain_request(request, config, handler_registry(None, config))
    except ToolInputError as exc:
        raise ToolInputError(f"cannot explain: {exc}") from exc
    print(explanation.model_dump_json(indent=2) if args.json else render(explanation))
    return 0


def _cents(text: str) -> int:
    from cedargate.budget import UNCAPPED_CENTS

    try:
        cents = int(text)
    except ValueError:
        cents = -1
    if not 0 <= cents <= UNCAPPED_CENTS:
        raise argparse.ArgumentTypeError(f"`{text}` is not a whole number of cents from 0 to {UNCAPPED_CENTS}")
    return cents


def _key_value(item: str) -> tuple[str, object]:
    """``KEY=VALUE`` with the value as JSON when it parses (``max_count=7`` is a number), else as text."""
    from cedargate.errors import ToolInputError

    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ToolInputError(f"--arg `{item}`: write it as KEY=VALUE")
    try:
        return key, json.loads(value)
    except ValueError as exc:
        if value[:1] in ("[", "{"):  # meant as a list or object: text would hide the typo
            raise ToolInputError(f"--arg `{item}`: the value is not valid JSON ({exc})") from exc
        return key, value
