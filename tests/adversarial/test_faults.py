"""Faults around the pipeline: the audit file goes read-only or full, the AWS endpoint is down
or hangs. Calls are refused or fail with an audited error; nothing hangs; nothing runs unseen."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from mcp import Client
from tests.adversarial.harness import governed, make_tree
from tests.conftest import audit_events

from cedargate.audit.event import Outcome
from cedargate.audit.verify import verify_log
from cedargate.config import load_config
from cedargate.errors import AuditWriteError
from cedargate.git import git_text
from cedargate.runtime import build_runtime
from cedargate.server import build_server

pytestmark = pytest.mark.anyio

WRITE = {"repository": "acme/web", "branch": "agent/ro", "path": "a.txt", "content": "a"}
READ = {"repository": "acme/web", "path": "README.md"}


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    return make_tree(tmp_path)


def _set_audit_path(config_path: Path, value: str) -> None:
    config_path.write_text(config_path.read_text().replace('path = "audit.jsonl"', f"path = {value!r}"))


def _can_make_immutable(path: Path) -> bool:
    if shutil.which("chattr") is None:
        return False
    path.touch()
    made = subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False).returncode == 0
    if made:
        subprocess.run(["chattr", "-i", str(path)], check=True)
    return made


@pytest.fixture
def immutable(tmp_path: Path) -> Iterator[list[Path]]:
    """Files made immutable (``chattr +i``: read-only even for root) are made mutable again after."""
    if not _can_make_immutable(tmp_path / "probe"):
        pytest.skip("chattr +i is not available on this filesystem (needs e2fsprogs and CAP_LINUX_IMMUTABLE)")
    made: list[Path] = []
    yield made
    for path in made:
        subprocess.run(["chattr", "-i", str(path)], check=False)


@pytest.mark.parametrize("where", ["a directory", "under a regular file", "/proc/version"])
def test_an_audit_path_that_cannot_be_written_stops_start_up_with_the_path_named(config_path: Path, where: str) -> None:
    tree = config_path.parent
    if where == "a directory":
        (tree / "audit-dir").mkdir()
        _set_audit_path(config_path, str(tree / "audit-dir"))
    elif where == "under a regular file":
        _set_audit_path(config_path, str(tree / "repos/web/README.md/audit.jsonl"))
    else:
        _set_audit_path(config_path, "/proc/version")
    with pytest.raises(AuditWriteError, match="cannot be opened for appending"):
        build_runtime(load_config(config_path, environ={}))


async def test_when_the_audit_file_turns_read_only_calls_are_refused_and_nothing_runs(
    config_path: Path, immutable: list[Path]
) -> None:
    audit = config_path.parent / "audit.jsonl"
    g = governed(config_path)
    try:
        async with Client(build_server(g.runtime)) as client:
            first = await client.call_tool("repo_read_file", READ)
            subprocess.run(["chattr", "+i", str(audit)], check=True)
            immutable.append(audit)
            runs_before = len(g.runs)
            second = await client.call_tool("repo_read_file", READ)
            third = await client.call_tool("repo_write_file", WRITE)
    finally:
        g.close()
    assert first.is_error is False
    assert second.is_error is True and "could not be written" in second.content[0].text  # type: ignore[union-attr]
    assert "nothing was run" in second.content[0].text  # type: ignore[union-attr]
    assert third.is_error is True and "nothing was run" in third.content[0].text  # type: ignore[union-attr]
    assert len(g.runs) == runs_before
    assert git_text(config_path.parent / "repos/web", ["branch", "--list", "agent/ro"]) == ""
    assert len(audit_events(audit)) == 1 and verify_log(audit).ok


async def test_no_handler_runs_once_the_audit_file_cannot_take_its_event(
    config_path: Path, immutable: list[Path]
) -> None:
    audit = config_path.parent / "audit.jsonl"
    g = governed(config_path)
    try:
        await g.acall("repo_read_file", READ)
        subprocess.run(["chattr", "+i", str(audit)], check=True)
        immutable.append(audit)
        await g.acall("repo_write_file", WRITE)
    finally:
        g.close()
    assert git_text(config_path.parent / "repos/web", ["branch", "--list", "agent/ro"]) == ""


def _aws_config(config_path: Path, endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    text = config_path.read_text().replace(
        'mode = "sandbox"',
        f'mode = "real"\nendpoint_url = "{endpoint}"\nconnect_timeout = 1\nread_timeout = 1\nmax_attempts = 0',
    )
    config_path.write_text(text)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-a-real-secret")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")


@pytest.fixture
def dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed on exit: nothing listens there


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield int(sock.getsockname()[1])


@pytest.mark.parametrize("endpoint", ["down", "silent"])
async def test_an_aws_endpoint_that_is_down_or_hangs_gives_an_audited_tool_error_in_bounded_time(
    config_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest, endpoint: str
) -> None:
    port = request.getfixturevalue("dead_port" if endpoint == "down" else "silent_port")
    _aws_config(config_path, f"http://127.0.0.1:{port}", monkeypatch)
    g = governed(config_path)
    # Every AWS tool an agent can call with no arguments (the others stop at validation first).
    aws_tools = [m.name for m in g.runtime.catalog if m.handler.kind == "aws" and not m.input_schema.get("required")]
    try:
        with anyio.fail_after(30):
            async with Client(build_server(g.runtime)) as client:
                results = [await client.call_tool(tool, {}) for tool in aws_tools]
    finally:
        g.close()
    assert aws_tools
    for result in results:
        assert result.is_error is True
        text = result.content[0].text  # type: ignore[union-attr]
        assert "endpoint URL" in text and ("Could not connect" in text or "timeout" in text)
        assert ("timeout" in text.lower()) if endpoint == "silent" else ("connect" in text.lower())
    assert [e.outcome for e in g.events] == [Outcome.FAILED] * len(aws_tools)
    assert all(e.decision is not None and e.decision.allowed for e in g.events)
    assert verify_log(config_path.parent / "audit.jsonl").ok


def test_an_audit_filesystem_nearly_full_refuses_calls_before_they_run(
    config_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from cedargate.audit import probe

    real = os.fstatvfs

    def nearly_full(fd: int) -> os.statvfs_result:
        stats = list(real(fd))
        stats[3] = 1  # f_bfree: one block left
        return os.statvfs_result(stats)

    g = governed(config_path)
    try:
        monkeypatch.setattr(probe.os, "fstatvfs", nearly_full)
        refused = anyio.run(g.acall, "repo_write_file", WRITE)
        monkeypatch.setattr(probe.os, "fstatvfs", real)
        served = anyio.run(g.acall, "repo_read_file", READ)
    finally:
        g.close()
    assert refused.is_error and "bytes free" in (refused.message or "") and refused.event is None
    assert [r.tool for r in g.runs] == ["repo_read_file"]
    assert served.is_error is False  # space came back: calls are served again
