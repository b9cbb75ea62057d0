"""Section 4: the same operations through other MCP servers people run today, vs cedargate.

Each peer lives in its own virtualenv under ``bench/.peers/`` (they pin other ``mcp``
releases). Both sides are stdio subprocesses driven by the same SDK client, taking turns
call by call. A peer that cannot be installed or refuses to start is reported as such,
never skipped quietly.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from mcp import Client, StdioServerParameters

from bench.procs import free_port
from bench.stats import summarise, time_interleaved
from cedargate.demo import DEV_REPO

PEERS_DIR = Path(__file__).resolve().parent / ".peers"
GIT_PEER = "mcp-server-git"
AWS_PEER = "awslabs-aws-api-mcp-server"
AWS_PEER_RELEASES = (None, "1.0.0")
"""Newest first; 1.0.0 is the last tried because releases before it do not start on current dependencies."""


@dataclass
class Op:
    label: str
    peer_tool: str
    peer_args: dict[str, Any]
    tool: str
    args: dict[str, Any]
    note: str = ""


@dataclass
class PeerReport:
    peer: str
    version: str | None = None
    status: str = "ok"
    rows: list[dict[str, Any]] = field(default_factory=list)


def peer_python(name: str, requirements: list[str]) -> tuple[Path, str]:
    """The peer's virtualenv (created on first use) and the installed version of ``requirements[0]``."""
    env_dir = PEERS_DIR / name
    python = env_dir / "bin" / "python"
    marker = env_dir / ".requirements"
    wanted = "\n".join(requirements)
    if not python.exists() or not marker.exists() or marker.read_text() != wanted:
        venv.create(env_dir, with_pip=True, clear=True)
        # The host's pip constraints are for cedargate's own environment, not a peer's.
        env = {**os.environ, "PIP_CONSTRAINT": ""}
        done = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", *requirements], env=env, capture_output=True, text=True
        )
        if done.returncode != 0:
            raise RuntimeError(f"pip install {' '.join(requirements)} failed: {_last_line(done.stderr)}")
        marker.write_text(wanted)
    package = requirements[0].split("=")[0].split("<")[0]
    shown = subprocess.run([str(python), "-m", "pip", "show", package], capture_output=True, text=True)
    version = next(
        (line.split(":", 1)[1].strip() for line in shown.stdout.splitlines() if line.startswith("Version:")), "?"
    )
    return python, version


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "(no output)"


def _cedargate_params(config_path: Path, env: dict[str, str] | None = None) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "cedargate", "--config", str(config_path), "serve"],
        env={**os.environ, **(env or {})},
    )


async def _compare(
    peer: StdioServerParameters, ours: StdioServerParameters, ops: list[Op], calls: int, runs: int
) -> list[dict[str, Any]]:
    rows = []
    async with AsyncExitStack() as stack:
        peer_client = await stack.enter_async_context(Client(peer, mode="legacy"))
        our_client = await stack.enter_async_context(Client(ours, mode="legacy"))
        for op in ops:
            first_peer = await peer_client.call_tool(op.peer_tool, op.peer_args)
            first_ours = await our_client.call_tool(op.tool, op.args)
            samples: dict[str, list[list[float]]] = {"peer": [], "ours": []}
            for _ in range(runs):

                async def call_peer(o: Op = op) -> object:
                    return await peer_client.call_tool(o.peer_tool, o.peer_args)

                async def call_ours(o: Op = op) -> object:
                    return await our_client.call_tool(o.tool, o.args)

                run = await time_interleaved({"peer": call_peer, "ours": call_ours}, calls, warmup=3)
                for side, timed in run.items():
                    samples[side].append(timed)
            peer_lat, our_lat = summarise(samples["peer"]), summarise(samples["ours"])
            p50, p99 = our_lat.ratio_to(peer_lat)
            rows.append(
                {
                    "operation": op.label,
                    "peer_tool": op.peer_tool,
                    "cedargate_tool": op.tool,
                    "note": op.note,
                    "peer": peer_lat.__dict__,
                    "cedargate": our_lat.__dict__,
                    "ratio_p50": p50,
                    "ratio_p99": p99,
                    "peer_error": _error_text(first_peer),
                    "cedargate_error": _error_text(first_ours),
                }
            )
    return rows


def _error_text(result: Any) -> str | None:
    if not result.is_error:
        return None
    content = result.content[0] if result.content else None
    return str(getattr(content, "text", "error"))[:200]


REPO_OPS = (("git_log", "repo_log"), ("git_diff", "repo_diff"), ("git_status", "repo_status"))


async def repo_tools(config_path: Path) -> set[str]:
    async with Client(_cedargate_params(config_path), mode="legacy") as client:
        return {t.name for t in (await client.list_tools()).tools}


async def git_peer(config_path: Path, repo_path: Path, calls: int, runs: int) -> PeerReport:
    """``mcp-server-git`` vs cedargate's ``repo_log``/``repo_diff``/``repo_status`` on the same repository.

    Arguments mean the same on both sides: the last 10 commits; HEAD against HEAD's tree
    (the repository is clean, so both diffs are empty); the repository's state.
    """
    report = PeerReport(GIT_PEER)
    try:
        python, report.version = await anyio.to_thread.run_sync(peer_python, "git", [GIT_PEER])
    except RuntimeError as exc:
        report.status = f"not installed: {exc}"
        return report
    missing = {tool for _, tool in REPO_OPS} - await repo_tools(config_path)
    if missing:
        raise RuntimeError(f"cedargate does not publish {', '.join(sorted(missing))}; check tools/repo/")
    peer_args: dict[str, dict[str, Any]] = {
        "git_log": {"repo_path": str(repo_path), "max_count": 10},
        "git_diff": {"repo_path": str(repo_path), "target": "HEAD"},
        "git_status": {"repo_path": str(repo_path)},
    }
    # Argument names as in tools/repo/log.toml, diff.toml and status.toml.
    ours_args: dict[str, dict[str, Any]] = {
        "repo_log": {"repository": DEV_REPO, "max_count": 10},
        "repo_diff": {"repository": DEV_REPO, "base": "HEAD"},
        "repo_status": {"repository": DEV_REPO},
    }
    ops = [Op(peer_tool, peer_tool, peer_args[peer_tool], tool, ours_args[tool]) for peer_tool, tool in REPO_OPS]
    peer = StdioServerParameters(command=str(python.parent / GIT_PEER), args=["--repository", str(repo_path)])
    report.rows = await _compare(peer, _cedargate_params(config_path), ops, calls, runs)
    return report


def _aws_env(endpoint: str) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
    }


def _preflight(python: Path, env: dict[str, str], workdir: Path) -> str | None:
    """Start the peer with stdin closed: a server that starts exits 0 at end of input; ``None`` if it did."""
    bin_path = python.parent / "awslabs.aws-api-mcp-server"
    try:
        done = subprocess.run(
            [str(bin_path)], stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, timeout=120, cwd=workdir
        )
    except subprocess.TimeoutExpired:
        return None
    if done.returncode == 0:
        return None
    return _last_line(done.stderr)


async def aws_peer(config_path: Path, workdir: Path, calls: int, runs: int) -> PeerReport:
    """``call_aws`` (read-only mode) vs ``aws_sts_get_caller_identity``, both against one moto server."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per request otherwise

    report = PeerReport(AWS_PEER)
    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        aws_env = _aws_env(endpoint)
        peer_env = {
            **os.environ,
            **aws_env,
            "READ_OPERATIONS_ONLY": "true",
            "AWS_API_MCP_WORKING_DIR": str(workdir),
            "AWS_API_MCP_TELEMETRY": "false",
            "FASTMCP_LOG_LEVEL": "ERROR",
        }
        refusals = []
        started: tuple[Path, str] | None = None
        for release in AWS_PEER_RELEASES:
            spec = AWS_PEER if release is None else f"{AWS_PEER}=={release}"
            name = "aws-api" if release is None else f"aws-api-{release}"
            try:
                python, version = await anyio.to_thread.run_sync(peer_python, name, [spec, "mcp<2"])
            except RuntimeError as exc:
                refusals.append(f"{spec}: not installed ({exc})")
                continue
            refusal = await anyio.to_thread.run_sync(_preflight, python, peer_env, workdir)
            if refusal is None:
                started = (python, version)
                break
            refusals.append(f"{AWS_PEER} {version} refused to start ({refusal[:100]})")
        if started is None:
            report.status = "; ".join(refusals)
            return report
        python, report.version = started
        if refusals:
            report.status = "; ".join(refusals) + f"; compared with {report.version}, which starts"
        peer = StdioServerParameters(
            command=str(python.parent / "awslabs.aws-api-mcp-server"), env=peer_env, cwd=str(workdir)
        )
        ops = [
            Op(
                "sts get-caller-identity",
                "call_aws",
                {"cli_command": "aws sts get-caller-identity"},
                "aws_sts_get_caller_identity",
                {},
            )
        ]
        report.rows = await _compare(peer, _cedargate_params(config_path, aws_env), ops, calls, runs)
    finally:
        moto.stop()
    return report
