"""The ``cedargate`` command line: serve, demo, and the admin, policy and audit tools.

Every command has ``--help``; commands whose output a script would read take ``--json``.
Errors print one line naming what failed and where, and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import anyio

from cedargate import __version__
from cedargate.config import Config, load_config
from cedargate.errors import CedargateError

Command = Callable[[argparse.Namespace], int]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    try:
        return int(args.run(args))
    except CedargateError as exc:
        print(f"cedargate: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cedargate", description="An MCP server that governs what coding agents may do.")
    parser.add_argument("--version", action="version", version=f"cedargate {__version__}")
    parser.add_argument("--config", metavar="PATH", help="config file (default: $CEDARGATE_CONFIG or ./cedargate.toml)")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    serve = commands.add_parser("serve", help="serve the governed tools over MCP", description="Serve the governed tools over MCP.")
    serve.add_argument("--transport", choices=["stdio", "http"], default="stdio", help="stdio (default) or streamable HTTP")
    serve.add_argument("--host", default="127.0.0.1", help="HTTP bind address (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8750, help="HTTP port (default: 8750)")
    serve.set_defaults(run=_serve)

    demo = commands.add_parser(
        "demo",
        help="run a scripted agent session against the embedded sandbox",
        description="Start cedargate, connect a real MCP client and run a short scripted agent session.",
    )
    demo.add_argument("--workdir", type=Path, help="where to create the demo repositories and audit log (default: a new temp dir)")
    demo.add_argument("--json", action="store_true", help="print the session as JSON")
    demo.set_defaults(run=_demo)

    tools = commands.add_parser("tools", help="inspect published tools", description="Inspect the published tools.")
    tools_commands = tools.add_subparsers(title="commands", metavar="COMMAND")
    tools_list = tools_commands.add_parser("list", help="list tools with risk, annotations and manifest hash", description="List the tools the manifests publish.")
    tools_list.add_argument("--json", action="store_true", help="print JSON")
    tools_list.set_defaults(run=_tools_list)

    policy = commands.add_parser("policy", help="Cedar schema and policy checks", description="Cedar schema and policy checks.")
    policy_commands = policy.add_subparsers(title="commands", metavar="COMMAND")
    schema = policy_commands.add_parser("schema", help="print the Cedar schema generated from the manifests", description="Print (or write) the Cedar schema generated from the manifests.")
    schema.add_argument("--output", type=Path, help="write the schema to this file instead of printing it")
    schema.set_defaults(run=_policy_schema)
    validate = policy_commands.add_parser("validate", help="parse and validate every policy against the schema", description="Parse and validate every policy file against the generated schema.")
    validate.add_argument("--json", action="store_true", help="print JSON")
    validate.set_defaults(run=_policy_validate)

    audit = commands.add_parser("audit", help="audit trail tools", description="Audit trail tools.")
    audit_commands = audit.add_subparsers(title="commands", metavar="COMMAND")
    verify = audit_commands.add_parser("verify", help="check the hash chain of an audit log", description="Recompute the hash chain; name the first event altered, removed or reordered.")
    verify.add_argument("--log", type=Path, help="audit log file (default: the configured one)")
    verify.add_argument("--json", action="store_true", help="print JSON")
    verify.set_defaults(run=_audit_verify)
    return parser


def _config(args: argparse.Namespace) -> Config:
    return load_config(args.config)


def _serve(args: argparse.Namespace) -> int:
    from cedargate.runtime import build_runtime
    from cedargate.server import build_server
    from cedargate.transport import serve_http, serve_stdio

    runtime = build_runtime(_config(args))
    try:
        server = build_server(runtime)
        if args.transport == "http":
            print(f"cedargate: serving streamable HTTP on http://{args.host}:{args.port}/mcp", file=sys.stderr)
            anyio.run(serve_http, server, args.host, args.port)
        else:
            anyio.run(serve_stdio, server)
    finally:
        runtime.close()
    return 0


def _demo(args: argparse.Namespace) -> int:
    from cedargate.demo import run_demo

    return run_demo(args.workdir, as_json=args.json)


def _tools_list(args: argparse.Namespace) -> int:
    from cedargate.admin import describe_tools

    rows = describe_tools(_config(args))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        print(f"{row['name']:<32} {row['risk']:<12} {row['handler']:<34} {row['manifest_hash'][:12]}")
    return 0


def _policy_schema(args: argparse.Namespace) -> int:
    from cedargate.admin import generated_schema_text

    text = generated_schema_text(_config(args))
    if args.output:
        args.output.write_text(text, encoding="utf-8")
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _policy_validate(args: argparse.Namespace) -> int:
    from cedargate.admin import validate_policies

    summary = validate_policies(_config(args))
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"ok: {summary['policies']} policies in {len(summary['files'])} files validate against {summary['tools']} tools")
    return 0


def _audit_verify(args: argparse.Namespace) -> int:
    from cedargate.audit.verify import verify_log

    path = args.log or _config(args).audit.path
    if not path.is_file():
        raise CedargateError(f"audit log `{path}` does not exist")
    report = verify_log(path)
    if args.json:
        print(report.model_dump_json(indent=2))
    elif report.ok:
        print(f"ok: {report.events} events, chain intact ({report.path})")
    else:
        print(f"FAILED at line {report.line} (event {report.event_id or 'unknown'}): {report.problem} ({report.path})")
    return 0 if report.ok else 1
