"""Sandboxed test runs under bubblewrap: pass, fail, no network, no writes outside, time limit, refusal."""

from __future__ import annotations

import base64
import socket
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from tests.conftest import ROOT, audit_events
from tests.repo_support import Session, client_for, configure_web

from cedargate import sandbox
from cedargate.cli import main
from cedargate.runtime import Runtime
from cedargate.workspaces import WorkspaceStore

pytestmark = pytest.mark.anyio

BRANCH = {"repository": "acme/web", "branch": "agent/tests"}


@pytest.fixture
def tested(tree: Path) -> Iterator[Runtime]:
    runtime = configure_web(tree, 'test_command = "sh ./ci.sh"\ntest_timeout_seconds = 2\ntest_memory_mb = 256')
    yield runtime
    runtime.close()


async def _run(runtime: Runtime, script: str) -> dict[str, object]:
    async with client_for(runtime) as client:
        s = Session(client)
        await s.ok("repo_create_branch", BRANCH)
        await s.ok("repo_write_file", {**BRANCH, "path": "ci.sh", "content": script})
        return await s.ok("repo_run_tests", {"repository": "acme/web"})


def _workspace(runtime: Runtime, result: dict[str, object]) -> Path:
    return runtime.config.workspaces_dir / "acme/web" / str(result["workspace"])


async def test_a_passing_run_is_reported_and_recorded_in_the_audit_event(tested: Runtime) -> None:
    result = await _run(tested, "echo all good\nexit 0\n")
    assert result["passed"] is True and result["exit_code"] == 0
    assert result["output_tail"] == "all good\n"
    event = audit_events(tested.config.audit.path)[-1]
    run = event["execution"]["test_run"]
    assert run["command"] == "sh ./ci.sh"
    assert run["exit_code"] == 0 and run["output_sha256"] == result["output_sha256"]
    assert run["commit"] == result["commit"]
    sandboxed = {"kind": "bubblewrap", "wall_seconds": 2, "memory_mb": 256, "in_memory_files_mb": 256}
    assert event["execution"]["sandbox"] == sandboxed


async def test_a_failing_run_reports_its_exit_code_and_tail_and_the_environment_is_cleared(
    tested: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CEDARGATE_SECRET_PROBE", "leaked")
    result = await _run(tested, 'echo "probe=${CEDARGATE_SECRET_PROBE:-unset}"\necho boom >&2\nexit 3\n')
    assert result["passed"] is False and result["exit_code"] == 3
    assert result["output_tail"] == "probe=unset\nboom\n"
    async with client_for(tested) as client:
        status = await Session(client).ok("repo_status", {"repository": "acme/web"})
    assert status["workspace"]["last_test"]["exit_code"] == 3


async def test_the_sandbox_cannot_reach_a_listener_on_the_hosts_loopback(tested: Runtime) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setblocking(False)
        port = listener.getsockname()[1]
        probe = (
            "import socket\n"
            "try:\n"
            f"    socket.create_connection(('127.0.0.1', {port}), timeout=1)\n"
            "    print('connected')\n"
            "except OSError as exc:\n"
            "    print('blocked', type(exc).__name__)\n"
        )
        result = await _run(tested, f"python3 - <<'EOF'\n{probe}EOF\n")
        with pytest.raises(BlockingIOError):
            listener.accept()
    assert str(result["output_tail"]).startswith("blocked ")


async def test_the_sandbox_writes_only_inside_the_worktree(tested: Runtime, tree: Path) -> None:
    repo = tested.config.repository("acme/web")
    assert repo is not None and repo.path is not None
    outside = tree / "escaped.txt"
    git_file = repo.path / ".git" / "escaped"
    script = "\n".join(
        [
            "echo inside > made-inside.txt",
            f"echo x > {outside} && echo wrote-tmp-view",
            f"echo x > {git_file} 2>/dev/null || echo git-dir-read-only",
            "echo x > .git 2>/dev/null || echo dot-git-read-only",
            "echo x > /etc/cedargate-escape 2>/dev/null || echo system-read-only",
            "",
        ]
    )
    result = await _run(tested, script)
    assert (_workspace(tested, result) / "made-inside.txt").read_text() == "inside\n"
    assert not outside.exists()  # /tmp inside the sandbox is private: the write landed nowhere on the host
    assert not git_file.exists()
    assert not Path("/etc/cedargate-escape").exists()
    tail = str(result["output_tail"])
    assert "git-dir-read-only" in tail and "dot-git-read-only" in tail and "system-read-only" in tail


async def test_what_a_run_writes_is_never_committed_and_the_commit_names_it(tested: Runtime) -> None:
    """A run cannot carry a file past a policy on writes: the commit takes only what a diff staged."""
    script = (
        "mkdir -p .github/workflows && echo 'on: push' > .github/workflows/deploy.yml\n"
        "echo extra >> README.md\n"
        "git add --all 2>/dev/null || echo index-read-only\n"
    )
    note = "--- /dev/null\n+++ b/docs/NOTE.md\n@@ -0,0 +1 @@\n+note\n"
    async with client_for(tested) as client:
        s = Session(client)
        await s.ok("repo_create_branch", BRANCH)
        await s.ok("repo_write_file", {**BRANCH, "path": "ci.sh", "content": script})
        run = await s.ok("repo_run_tests", {"repository": "acme/web"})
        await s.ok("repo_apply_diff", {**BRANCH, "patch": note})
        committed = await s.ok("repo_commit", {**BRANCH, "message": "Add a note"})
    assert "index-read-only" in str(run["output_tail"])
    assert committed["files"] == ["docs/NOTE.md"]
    assert committed["not_committed"] == [".github/workflows/deploy.yml", "README.md"]


async def test_a_run_sees_the_hosts_toolchain_but_none_of_the_servers_files_or_environment(
    tested: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checkout, the server's home and its sockets are outside /tmp, where the private /tmp hides nothing."""
    monkeypatch.setenv("CEDARGATE_TEST_FORGE_TOKEN", "ghp_sandboxprobe0123456789")
    script = "\n".join(
        [
            f"test -e {ROOT / 'README.md'} && echo checkout-visible || echo checkout-hidden",
            f"ls -A {Path.home()} 2>/dev/null | head -1 | grep -q . && echo home-visible || echo home-hidden",
            "ls -A /run 2>/dev/null | head -1 | grep -q . && echo run-visible || echo run-hidden",
            "test -s /etc/shadow && echo shadow-visible || echo shadow-hidden",
            # bwrap is pid 1 inside: its environment is what the server gave it; base64 passes redaction.
            "cat /proc/1/environ 2>/dev/null | tr '\\0' '\\n' | base64 | tr -d '\\n'; echo",
            "python3 -c 'print(\"toolchain-runs\")'",
            "",
        ]
    )
    result = await _run(tested, script)
    tail = str(result["output_tail"])
    lines = tail.splitlines()
    for hidden in ("checkout-hidden", "home-hidden", "run-hidden", "shadow-hidden", "toolchain-runs"):
        assert hidden in lines, tail
    pid1_environment = base64.b64decode(lines[4]).decode()
    assert "ghp_sandboxprobe" not in pid1_environment and "CEDARGATE" not in pid1_environment


async def test_a_run_past_its_time_limit_is_killed_and_reported(tested: Runtime) -> None:
    result = await _run(tested, "echo started\nsleep 37.25\necho never\n")
    assert result["timed_out"] is True and result["exit_code"] is None and result["passed"] is False
    assert result["output_tail"] == "started\n"
    assert float(result["duration_ms"]) < 15000  # type: ignore[arg-type]
    leftovers = [p for p in Path("/proc").glob("[0-9]*/cmdline") if _cmdline(p) == "sleep 37.25"]
    assert leftovers == []


async def test_a_run_over_its_memory_limit_fails(tested: Runtime) -> None:
    result = await _run(tested, 'python3 -c "x = bytearray(512 * 1024 * 1024)" 2>&1 | tail -1\nexit 1\n')
    assert "MemoryError" in str(result["output_tail"])


@pytest.fixture
def roomy(tree: Path) -> Iterator[Runtime]:
    """The same limits with time to spare: filling memory takes seconds on a busy machine."""
    runtime = configure_web(tree, 'test_command = "sh ./ci.sh"\ntest_timeout_seconds = 60\ntest_memory_mb = 256')
    yield runtime
    runtime.close()


async def test_files_in_memory_count_against_the_memory_limit(roomy: Runtime) -> None:
    """/tmp and /dev/shm are memory, not data: each is capped at the 256 MiB limit, not the host's RAM."""
    fill = "head -c {mib}M /dev/zero > {dir}/fill 2>/dev/null && echo {dir} {mib} ok || echo {dir} {mib} refused\n"
    script = (
        "".join(fill.format(dir=d, mib=m) for d in ("/tmp", "/dev/shm") for m in (64, 300)) + "df -m /tmp /dev/shm\n"
    )
    result = await _run(roomy, script)
    lines = str(result["output_tail"]).splitlines()
    assert lines[:4] == ["/tmp 64 ok", "/tmp 300 refused", "/dev/shm 64 ok", "/dev/shm 300 refused"], lines


async def test_a_bubblewrap_that_cannot_size_a_tmpfs_still_sandboxes_the_run_and_the_event_says_so(
    tested: Runtime, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """As bubblewrap before 0.7.0 (or setuid) answers: `--size` refused, everything else as the real one."""
    real = sandbox.bwrap_executable()
    older = tmp_path / "bwrap"
    older.write_text(
        '#!/bin/sh\nfor a in "$@"; do [ "$a" = --size ] && { echo "bwrap: Unknown option --size" >&2; exit 1; }; done\n'
        f'exec {real} "$@"\n'
    )
    older.chmod(0o755)
    monkeypatch.setattr(sandbox, "BWRAP", str(older))
    script = (
        "head -c 300M /dev/zero > /tmp/fill && echo 300 MiB in /tmp\n"
        "touch /usr/cedargate-escape 2>/dev/null && echo escaped || echo system read-only\n"
    )
    with caplog.at_level("WARNING", logger="cedargate.sandbox"):
        result = await _run(tested, script)
    assert result["output_tail"] == "300 MiB in /tmp\nsystem read-only\n"  # uncapped, still sandboxed
    event = audit_events(tested.config.audit.path)[-1]
    assert event["execution"]["sandbox"]["in_memory_files_mb"] is None
    assert "cannot size a tmpfs" in caplog.text and "0.7.0" in caplog.text
    assert not Path("/usr/cedargate-escape").exists()


RESERVE_THEN_ALLOCATE = """\
import mmap
# As the JVM and Go do at start: reserve far more address space than the limit, use none of it.
mmap.mmap(-1, 4 << 30, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, prot=0)
print("reserved 4 GiB")
try:
    bytearray(512 * 1024 * 1024)
    print("allocated 512 MiB")
except MemoryError:
    print("512 MiB refused")
"""


async def test_the_memory_limit_counts_what_a_run_uses_not_what_it_reserves(tested: Runtime) -> None:
    """Under a 256 MiB limit a 4 GiB reservation starts (runtimes need that) and a 512 MiB allocation fails."""
    script = f"cat > reserve.py <<'EOF'\n{RESERVE_THEN_ALLOCATE}EOF\npython3 reserve.py 2>&1\n"
    result = await _run(tested, script)
    assert result["passed"] is True, result["output_tail"]
    assert result["output_tail"] == "reserved 4 GiB\n512 MiB refused\n"


async def test_without_bubblewrap_the_run_is_refused_and_nothing_runs(
    tested: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sandbox, "BWRAP", "cedargate-no-such-bwrap")
    async with client_for(tested) as client:
        s = Session(client)
        created = await s.ok("repo_create_branch", BRANCH)
        await s.ok("repo_write_file", {**BRANCH, "path": "ci.sh", "content": "touch ran-unsandboxed\n"})
        message = await s.refused("repo_run_tests", {"repository": "acme/web"})
    assert "needs bubblewrap" in message and "never run outside the sandbox" in message
    assert not (tested.config.workspaces_dir / "acme/web" / created["workspace"] / "ran-unsandboxed").exists()
    assert audit_events(tested.config.audit.path)[-1]["outcome"] == "failed"


async def test_a_bubblewrap_that_cannot_build_a_sandbox_is_refused(
    tested: Runtime, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(sandbox, "BWRAP", str(fake))
    async with client_for(tested) as client:
        s = Session(client)
        await s.ok("repo_create_branch", BRANCH)
        message = await s.refused("repo_run_tests", {"repository": "acme/web"})
    assert "cannot create a sandbox" in message and "No permissions" in message


async def test_a_repository_without_a_test_command_refuses(runtime: Runtime) -> None:
    async with client_for(runtime) as client:
        s = Session(client)
        await s.ok("repo_create_branch", BRANCH)
        message = await s.refused("repo_run_tests", BRANCH)
    assert "no `test_command` configured" in message


def _cmdline(path: Path) -> str:
    try:
        return path.read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


async def test_a_long_run_tells_a_client_that_asked_how_long_it_has_been_going(tested: Runtime) -> None:
    reports: list[tuple[float, float | None, str | None]] = []

    async def heard(progress: float, total: float | None, message: str | None) -> None:
        reports.append((progress, total, message))

    async with client_for(tested) as client:
        s = Session(client)
        await s.ok("repo_create_branch", BRANCH)
        await s.ok("repo_write_file", {**BRANCH, "path": "ci.sh", "content": "sleep 1.2\nexit 0\n"})
        quiet = await client.call_tool("repo_run_tests", {"repository": "acme/web"})  # asks for no progress
        assert quiet.is_error is False
        result = await client.call_tool("repo_run_tests", {"repository": "acme/web"}, progress_callback=heard)
    assert result.is_error is False
    assert len(reports) >= 2
    assert [p for p, _, _ in reports] == sorted(p for p, _, _ in reports)
    assert all(total == 2 and 0 < p < 2 for p, total, _ in reports)
    assert "`sh ./ci.sh` running for" in (reports[-1][2] or "")


async def test_a_workspace_cannot_be_removed_while_its_test_run_is_in_progress(
    tested: Runtime, tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Removed mid-run, the run would save its record again: a workspace record without a worktree."""
    cli = ["--config", str(tree / "cedargate.toml"), "workspaces", "rm"]
    async with client_for(tested) as client:
        s = Session(client)
        created = await s.ok("repo_create_branch", BRANCH)
        await s.ok("repo_write_file", {**BRANCH, "path": "ci.sh", "content": "touch started\nsleep 1\n"})
        started = _workspace(tested, created) / "started"
        async with anyio.create_task_group() as group:
            group.start_soon(s.ok, "repo_run_tests", {"repository": "acme/web"})
            with anyio.fail_after(10):
                while not started.exists():
                    await anyio.sleep(0.05)
            refused = main([*cli, created["workspace"]])
            refusal = capsys.readouterr().err
        status = await s.ok("repo_status", {"repository": "acme/web"})
    assert refused == 2 and f"workspace `{created['workspace']}` is in use" in refusal
    assert status["workspace"]["last_test"]["exit_code"] == 0
    assert main([*cli, created["workspace"]]) == 0
    assert not _workspace(tested, created).exists()
    repo = tested.config.repository("acme/web")
    assert repo is not None and repo.path is not None
    assert WorkspaceStore(repo, repo.path).get(created["workspace"]) is None
