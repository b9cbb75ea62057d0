"""``cedargate demo``: a scripted agent session through a real MCP client, on the embedded sandbox.

It creates two small git repositories (one in dev, one in prod), writes a config for them,
starts ``cedargate serve`` as a subprocess, connects the SDK's client over stdio and makes
the calls an agent would: reads that are allowed, writes that policy allows or denies, bad
arguments. Then it prints what happened, where the audit trail is, and verifies it.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import anyio
from mcp import Client, StdioServerParameters
from mcp.shared.exceptions import MCPError
from mcp.types import CONNECTION_CLOSED

from cedargate.audit.verify import verify_log
from cedargate.aws_sandbox import PROD_ACCOUNT, STAGING_ACCOUNT
from cedargate.errors import ConfigError
from cedargate.git import run_git

DEV_REPO = "acme/web"
PROD_REPO = "acme/payments"


@dataclass(frozen=True)
class DemoStep:
    title: str
    tool: str
    arguments: dict[str, Any]


@dataclass
class DemoRow:
    step: int
    title: str
    tool: str
    outcome: str
    detail: str
    event_id: str


STEPS = (
    DemoStep("read a file in dev", "repo_read_file", {"repository": DEV_REPO, "path": "README.md"}),
    DemoStep("who am I in AWS (sandbox)", "aws_sts_get_caller_identity", {}),
    DemoStep(
        "write a fix on a task branch in dev",
        "repo_write_file",
        {
            "repository": DEV_REPO,
            "branch": "agent/demo-timeout",
            "path": "src/app.py",
            "content": "TIMEOUT_SECONDS = 30\n",
            "message": "Raise the request timeout",
        },
    ),
    DemoStep(
        "write to a prod repository",
        "repo_write_file",
        {"repository": PROD_REPO, "branch": "agent/hotfix", "path": "src/ledger.py", "content": "# patched\n"},
    ),
    DemoStep(
        "write straight to a protected branch",
        "repo_write_file",
        {"repository": DEV_REPO, "branch": "main", "path": "README.md", "content": "overwritten\n"},
    ),
    DemoStep("delete a branch in prod", "repo_delete_branch", {"repository": PROD_REPO, "branch": "agent/old"}),
    DemoStep("list EC2 instances in prod", "aws_ec2_describe_instances", {"account": PROD_ACCOUNT}),
    DemoStep(
        "stop an EC2 instance in prod",
        "aws_ec2_stop_instances",
        {"account": PROD_ACCOUNT, "InstanceIds": ["i-0a1b2c3d4e5f60718"]},
    ),
    DemoStep(
        "terminate an EC2 instance in staging",
        "aws_ec2_terminate_instances",
        {"account": STAGING_ACCOUNT, "InstanceIds": ["i-0a1b2c3d4e5f60718"]},
    ),
    DemoStep(
        "change a CI workflow in dev",
        "repo_write_file",
        {
            "repository": DEV_REPO,
            "branch": "agent/demo-timeout",
            "path": ".github/workflows/ci.yml",
            "content": "on: push\n",
        },
    ),
    DemoStep("read with a wrongly typed argument", "repo_read_file", {"repository": DEV_REPO, "path": 42}),
    DemoStep("read outside the repository", "repo_read_file", {"repository": DEV_REPO, "path": "../../etc/passwd"}),
)


def project_root() -> Path:
    """The checkout holding ``tools/`` and ``policies/`` (the package lives in ``server/``)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "tools").is_dir() or not (root / "policies").is_dir():
        raise ConfigError(
            f"cannot find the shipped `tools/` and `policies/` next to `{root / 'server'}`: the demo and "
            "`cedargate init` copy them from cedargate's checkout, so install cedargate from one (see the README)"
        )
    return root


def _make_repo(path: Path, files: dict[str, str]) -> None:
    path.mkdir(parents=True, exist_ok=True)
    run_git(path, ["init", "-q", "-b", "main"])
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text, encoding="utf-8")
    run_git(path, ["add", "-A"])
    env = {
        "GIT_AUTHOR_NAME": "demo",
        "GIT_AUTHOR_EMAIL": "demo@localhost",
        "GIT_COMMITTER_NAME": "demo",
        "GIT_COMMITTER_EMAIL": "demo@localhost",
    }
    run_git(path, ["commit", "-q", "-m", "Initial commit"], env=env)


def write_demo_tree(workdir: Path, *, approvers: str = "") -> Path:
    """Create the demo repositories and config under ``workdir``; returns the config path.

    ``approvers`` is TOML appended to the config (the demo's ``[approvals.groups]``); tests
    add their own approval settings.
    """
    root = project_root()
    _make_repo(
        workdir / "repos/web", {"README.md": "# acme/web\n\nThe storefront.\n", "src/app.py": "TIMEOUT_SECONDS = 5\n"}
    )
    _make_repo(workdir / "repos/payments", {"README.md": "# acme/payments\n", "src/ledger.py": "BALANCE = 0\n"})
    config = workdir / "cedargate.toml"
    config.write_text(
        f"""tools_dir = {json.dumps(str(root / "tools"))}
policies_dir = {json.dumps(str(root / "policies"))}

[path_classes]
ci = [".github/workflows/"]

[principal]
agent = "codex-demo"
team = "storefront"
on_behalf_of = "alice"
mode = "interactive"
task = "demo-timeout"

[audit]
path = "audit.jsonl"

[aws]
mode = "sandbox"
default_account = "{STAGING_ACCOUNT}"

[[aws.accounts]]
id = "{PROD_ACCOUNT}"
environment = "prod"
alias = "acme-prod"

[[aws.accounts]]
id = "{STAGING_ACCOUNT}"
environment = "staging"
alias = "acme-staging"

[aws.duties]
aws-reader = {{}}
logs-reader = {{}}
infra-operator = {{}}
data-operator = {{}}
secrets-reader = {{}}

[[repositories]]
name = "{DEV_REPO}"
path = "repos/web"
environment = "dev"
owner_team = "storefront"

[[repositories]]
name = "{PROD_REPO}"
path = "repos/payments"
environment = "prod"
owner_team = "payments"
{approvers}""",
        encoding="utf-8",
    )
    return config


DEMO_APPROVERS: Final = """
# Who may approve what policy holds for approval (never the agent, nor the human it acts for).
[approvals.groups]
sre = ["bob"]
maintainers = ["bob"]
"""


async def run_session(config: Path, progress: bool = True) -> tuple[int, list[DemoRow]]:
    """Serve over stdio in a subprocess and run ``STEPS`` through a real client session."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for var in ("CEDARGATE_AGENT", "CEDARGATE_TEAM", "CEDARGATE_USER", "CEDARGATE_MODE", "CEDARGATE_TASK"):
        env.pop(var, None)
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "cedargate", "--config", str(config), "serve"], env=env
    )
    rows: list[DemoRow] = []
    tools: list[Any] | None = None
    try:
        async with Client(params, mode="legacy") as client:
            tools = (await client.list_tools()).tools
            await _play(client, rows, progress)
    except Exception as exc:
        if not _server_lost(exc):
            raise
        what = "did not start" if tools is None else f"stopped after {len(rows)} of {len(STEPS)} calls"
        raise ConfigError(
            f"`cedargate serve` {what}: its error is printed above (run "
            f"`cedargate --config {shlex.quote(str(config))} serve` to see it again)"
        ) from None
    return len(tools), rows


_PIPE_GONE: Final = (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream)


def _server_lost(exc: BaseException) -> bool:
    """Whether ``exc`` (or every error of a task group's) is the client losing the server, not a bug here.

    The client reports a server process that exits (or never comes up) as a closed connection,
    often wrapped in nested task groups; the server's own error went to standard error already.
    """
    if isinstance(exc, BaseExceptionGroup):
        return all(_server_lost(inner) for inner in exc.exceptions)
    if isinstance(exc, MCPError):
        return exc.code == CONNECTION_CLOSED
    return isinstance(exc, _PIPE_GONE)


async def _play(client: Client, rows: list[DemoRow], progress: bool) -> None:
    """Make ``STEPS``' calls, appending what each returned to ``rows``."""
    for number, step in enumerate(STEPS, start=1):
        if progress:
            print(f"  [{number}/{len(STEPS)}] {step.title} ...", file=sys.stderr)
        result = await client.call_tool(step.tool, step.arguments)
        text = result.content[0].text if result.content else ""  # type: ignore[union-attr]
        rows.append(
            DemoRow(number, step.title, step.tool, "", _detail(result.is_error, text, result.structured_content), "")
        )


def _detail(is_error: bool, text: str, structured: dict[str, Any] | None) -> str:
    if is_error:
        return text.split(" (audit event")[0]
    data = structured or {}
    if "commit" in data and "branch" in data:
        return f"committed {str(data['commit'])[:10]} on {data['branch']}"
    if "content" in data:
        return f"read {data.get('size')} bytes at {str(data.get('commit'))[:10]}"
    result = data.get("result")
    if isinstance(result, dict) and "Arn" in result:
        return f"arn {result['Arn']}"
    if isinstance(result, list):
        return f"{len(result)} items in account {data.get('account')}"
    return json.dumps(data)[:100]


def _attach_audit(rows: list[DemoRow], audit_path: Path) -> None:
    events = [json.loads(line) for line in audit_path.read_text(encoding="utf-8").splitlines()]
    for row, event in zip(rows, events[-len(rows) :], strict=True):
        row.outcome = event["outcome"]
        row.event_id = event["event_id"]


def _table(rows: list[DemoRow]) -> str:
    header = ("#", "what the agent tried", "tool", "outcome", "why / result")
    cells = [header] + [(str(r.step), r.title, r.tool, r.outcome, r.detail) for r in rows]
    widths = [min(max(len(c[i]) for c in cells), 60 if i == 4 else 40) for i in range(len(header))]
    lines = []
    for n, cell in enumerate(cells):
        lines.append("  ".join(_fit(v, widths[i]) if i < 4 else v for i, v in enumerate(cell)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fit(value: str, width: int) -> str:
    return (value[: width - 1] + "…") if len(value) > width else value.ljust(width)


def run_demo(workdir: Path | None, as_json: bool = False) -> int:
    """Set up, run the session, print the table and the audit verdict; 0 when all went as scripted."""
    if workdir is not None:  # absolute: the "see it yourself" commands must work wherever they are pasted
        workdir = workdir.expanduser().resolve()
    if workdir is not None and workdir.exists() and (not workdir.is_dir() or any(workdir.iterdir())):
        # The demo writes a config, repositories and an audit log: never over someone's own.
        raise ConfigError(f"`{workdir}` is not an empty folder: give the demo a new or empty --workdir")
    base = workdir or Path(tempfile.mkdtemp(prefix="cedargate-demo-")).resolve()
    base.mkdir(parents=True, exist_ok=True)
    print(f"cedargate demo: setting up two repositories and a config in {base}", file=sys.stderr)
    config = write_demo_tree(base, approvers=DEMO_APPROVERS)
    print("cedargate demo: starting `cedargate serve` (stdio) and connecting an MCP client session", file=sys.stderr)
    tool_count, rows = anyio.run(run_session, config, not as_json)
    audit_path = base / "audit.jsonl"
    _attach_audit(rows, audit_path)
    report = verify_log(audit_path)
    if as_json:
        print(
            json.dumps(
                {
                    "tools": tool_count,
                    "calls": [asdict(r) for r in rows],
                    "audit": report.model_dump(),
                    "audit_log": str(audit_path),
                    "config": str(config),
                },
                indent=2,
            )
        )
    else:
        print(f"\ncedargate published {tool_count} tools; the agent made {len(rows)} calls:\n")
        print(_table(rows))
        print(f"\naudit trail: {audit_path} ({report.events} events)")
        print(f"audit verify: {'chain intact' if report.ok else 'FAILED: ' + str(report.problem)}")
        print(f"see it yourself: cedargate audit verify --log {shlex.quote(str(audit_path))}")
        print(f"what waits for approval (bob may decide): cedargate --config {shlex.quote(str(config))} approvals list")
    return 0 if report.ok else 1
