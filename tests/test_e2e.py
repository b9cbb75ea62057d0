"""End to end: ``cedargate serve`` as a real process, a real SDK client over stdio and over HTTP.

Both protocol generations are exercised on both transports: ``legacy`` (2025-11-25, the
initialize handshake) and ``2026-07-28``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tomllib
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx
import pytest
from mcp import Client, StdioServerParameters
from tests.conftest import ROOT, audit_events

from cedargate.audit.verify import verify_log
from cedargate.git import git_text

pytestmark = pytest.mark.anyio

MODES = ["legacy", "2026-07-28"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _server_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CEDARGATE_")}
    env["PYTHONPATH"] = str(ROOT / "server")
    return env


@pytest.fixture
def http_server(tree: Path) -> Iterator[str]:
    port = _free_port()
    command = [sys.executable, "-m", "cedargate", "--config", str(tree / "cedargate.toml"), "serve"]
    log = tree / "server.log"
    with open(log, "wb") as stderr:
        process = subprocess.Popen(
            [*command, "--transport", "http", "--port", str(port)], env=_server_env(), stderr=stderr
        )
    try:
        _wait_until_listening(port, process, log)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        process.wait(timeout=10)


def _wait_until_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    with anyio.from_thread.start_blocking_portal() as portal:
        portal.call(_poll_port, port, process, log)


async def _poll_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    with anyio.fail_after(30):
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"server exited: {log.read_text()}")
            try:
                async with httpx.AsyncClient() as http:
                    await http.get(f"http://127.0.0.1:{port}/")
                return
            except httpx.TransportError:
                await anyio.sleep(0.05)


@asynccontextmanager
async def connect(transport: str, tree: Path, url: str | None, mode: str) -> AsyncIterator[Client]:
    if transport == "stdio":
        target: StdioServerParameters | str = StdioServerParameters(
            command=sys.executable,
            args=["-m", "cedargate", "--config", str(tree / "cedargate.toml"), "serve"],
            env=_server_env(),
        )
    else:
        assert url is not None
        target = url
    async with Client(target, mode=mode) as client:
        yield client


@pytest.fixture(params=["stdio", "http"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def url(transport: str, request: pytest.FixtureRequest) -> str | None:
    if transport == "http":
        return str(request.getfixturevalue("http_server"))
    return None


async def test_tool_list_is_exactly_the_manifests_with_all_four_annotations(
    tree: Path, transport: str, url: str | None, mode: str
) -> None:
    manifests = {}
    for path in (tree / "tools").rglob("*.toml"):
        data = tomllib.loads(path.read_text())
        for entry in data.get("tool", [data]):
            manifests[entry["name"]] = entry
    with anyio.fail_after(30):
        async with connect(transport, tree, url, mode) as client:
            tools = (await client.list_tools()).tools
            capabilities = client.server_capabilities
    assert sorted(t.name for t in tools) == sorted(manifests)
    if mode == "legacy":  # a handshake tells capabilities; hot reload changes the list on every transport
        assert capabilities.tools is not None and capabilities.tools.list_changed is True
    for tool in tools:
        manifest = manifests[tool.name]
        assert tool.description == manifest["description"]
        if "input_schema" in manifest:  # AWS manifests derive theirs from botocore's model
            assert tool.input_schema["properties"].keys() == manifest["input_schema"]["properties"].keys()
        assert tool.input_schema["additionalProperties"] is False
        hints = tool.annotations
        assert hints is not None
        assert hints.read_only_hint is (manifest["risk"] == "read")
        overwrites = manifest.get("overwrites", False)  # a write that replaces what was there
        assert hints.destructive_hint is (manifest["risk"] in ("destructive", "privileged") or overwrites)
        assert hints.idempotent_hint is not None
        # AWS calls, pushes and pull requests reach beyond the server; the other git tools stay local.
        reaches_out = manifest["handler"]["kind"] == "aws" or manifest["handler"]["operation"] in (
            "push",
            "open_pull_request",
        )
        assert hints.open_world_hint is reaches_out, tool.name


async def test_allowed_denied_and_invalid_calls_each_leave_one_audit_event(
    tree: Path, transport: str, url: str | None, mode: str
) -> None:
    with anyio.fail_after(30):
        async with connect(transport, tree, url, mode) as client:
            allowed = await client.call_tool("repo_read_file", {"repository": "acme/web", "path": "src/app.py"})
            denied = await client.call_tool(
                "repo_write_file",
                {"repository": "acme/payments", "branch": "agent/e2e", "path": "x", "content": "x"},
            )
            invalid = await client.call_tool(
                "repo_write_file",
                {"repository": "acme/web", "branch": "agent/e2e", "path": ["x"], "content": "x"},
            )
    assert allowed.is_error is False
    assert allowed.structured_content is not None
    assert allowed.structured_content["content"] == "TIMEOUT_SECONDS = 5\n"

    assert denied.is_error is True
    denied_text = denied.content[0].text  # type: ignore[union-attr]
    assert "prod-writes-forbidden" in denied_text and "release pipeline" in denied_text

    assert invalid.is_error is True
    assert "field `path`" in invalid.content[0].text  # type: ignore[union-attr]
    assert git_text(tree / "repos/web", ["branch", "--list", "agent/e2e"]) == ""
    assert git_text(tree / "repos/payments", ["branch", "--list", "agent/e2e"]) == ""

    events = audit_events(tree / "audit.jsonl")
    assert [(e["tool"], e["outcome"]) for e in events] == [
        ("repo_read_file", "succeeded"),
        ("repo_write_file", "denied"),
        ("repo_write_file", "invalid_arguments"),
    ]
    assert verify_log(tree / "audit.jsonl").ok


@pytest.fixture
def runs_tests(tree: Path) -> Path:
    """acme/web with a sandboxed test command, configured before any server starts."""
    config = tree / "cedargate.toml"
    anchor = 'owner_team = "storefront"\n'
    settings = 'test_command = "sh ./ci.sh"\ntest_timeout_seconds = 4\ntest_memory_mb = 256\n'
    assert anchor in config.read_text()
    config.write_text(config.read_text().replace(anchor, anchor + settings, 1))
    return tree


async def test_a_test_run_reports_progress_to_a_client_that_asked(
    runs_tests: Path, transport: str, url: str | None, mode: str
) -> None:
    reports: list[tuple[float, float | None, str | None]] = []

    async def heard(progress: float, total: float | None, message: str | None) -> None:
        reports.append((progress, total, message))

    branch = {"repository": "acme/web", "branch": "agent/e2e-tests"}
    with anyio.fail_after(60):
        async with connect(transport, runs_tests, url, mode) as client:
            created = await client.call_tool("repo_create_branch", branch)
            written = await client.call_tool(
                "repo_write_file", {**branch, "path": "ci.sh", "content": "sleep 1.5\necho done\n"}
            )
            run = await client.call_tool("repo_run_tests", {"repository": "acme/web"}, progress_callback=heard)
    assert created.is_error is False and written.is_error is False
    assert run.is_error is False, run.content
    assert run.structured_content is not None and run.structured_content["passed"] is True
    assert len(reports) >= 2
    assert all(total == 4 and 0 < progress < 4 for progress, total, _ in reports)
    assert "`sh ./ci.sh` running for" in (reports[-1][2] or "")
