"""Running a repository's test command under bubblewrap, and only there.

The sandbox: no network (a private network namespace with only its own loopback), of the host
only the system folders read-only (``system_mounts``: not the server's home, config, audit log,
store, other worktrees or sockets), a private ``/tmp``, only the worktree writable, the
worktree's ``.git`` and the repository's git directory read-only, no environment of the
server's (bwrap's own included), every capability dropped, and wall-time, memory and file-size
limits. If ``bwrap`` is missing or cannot build a
sandbox on this machine, the run is refused: there is no unsandboxed fallback.

The memory limit is on data (``RLIMIT_DATA``: the heap and every private writable mapping),
not on address space: runtimes that reserve large address ranges up front and use a little
of them (the JVM, Go) start under it, while memory a test actually allocates still counts.
Files in memory are not data: the private ``/tmp`` and ``/dev/shm`` are tmpfs mounts each
capped at the same limit, so a run cannot fill the host's memory through them either. A
bubblewrap that cannot size a tmpfs (before 0.7.0, or installed setuid) still sandboxes the
run, without that cap; the log says so once and the audit event records it.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final

from pydantic import BaseModel, ConfigDict

from cedargate.errors import HandlerError
from cedargate.redact import WINDOW_MARGIN, redacted_tail

logger = logging.getLogger(__name__)

BWRAP: str = "bwrap"
"""The bubblewrap executable looked up on ``PATH`` (a name, so tests can point it elsewhere)."""

TAIL_BYTES: Final = 4096
PROGRESS_EVERY_S: Final = 5.0
"""The longest gap between two reports of a running test run (ten over a shorter limit)."""
SANDBOX_TMP: Final = "/tmp"  # noqa: S108 - a private tmpfs inside the sandbox, not the host /tmp
SANDBOX_SHM: Final = "/dev/shm"  # noqa: S108 - likewise private to the sandbox
SANDBOX_PATH: Final = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SYSTEM_FOLDERS: Final = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt")
"""What a run sees of the host, read-only: the toolchains and their configuration."""
HIDDEN_SYSTEM_FILES: Final = ("/etc/shadow", "/etc/gshadow")
"""Files under ``/etc`` a run sees empty: password hashes (a server run as root could read them)."""
MAX_FILE_BLOCKS: Final = 2 * 1024 * 1024
"""Largest file (the captured output included) a run may write, in the shell's 512-byte blocks: 1 GiB."""
# Inside the sandbox: set the data (memory) and file-size limits (soft and hard), then run the command.
_LIMITS_THEN_RUN: Final = 'ulimit -d "$1" && ulimit -f "$2" || exit 125; exec /bin/sh -c "$3"'


@dataclass(frozen=True)
class SandboxLimits:
    wall_seconds: int
    memory_mb: int


class SandboxRun(BaseModel):
    """What a run produced; the output itself is kept only as a digest and a redacted tail."""

    model_config = ConfigDict(frozen=True)

    command: str
    exit_code: int | None
    timed_out: bool
    duration_ms: float
    output_bytes: int
    output_sha256: str
    output_tail: str


def bwrap_executable() -> str:
    """The bwrap path, or a refusal that says what to install."""
    found = shutil.which(BWRAP)
    if found is None:
        raise HandlerError(
            f"the test sandbox needs bubblewrap (`{BWRAP}`), which is not installed on this server; "
            "install the `bubblewrap` package — tests are never run outside the sandbox"
        )
    return found


def bwrap_arguments(bwrap: str, worktree: Path, git_dirs: tuple[Path, ...], in_memory_mb: int | None) -> list[str]:
    """The bwrap command line up to (not including) the command; mount order matters.

    ``in_memory_mb`` caps each in-memory filesystem (``/tmp``, ``/dev/shm``): their files are
    memory that ``RLIMIT_DATA`` does not count. ``None``: the tmpfs default (this bwrap cannot size one).
    """
    args = [bwrap, "--die-with-parent", "--new-session", "--unshare-all", "--cap-drop", "ALL", "--clearenv"]
    args += [*system_mounts(), "--dev", "/dev", "--proc", "/proc"]
    for in_memory in (SANDBOX_TMP, SANDBOX_SHM):
        size = [] if in_memory_mb is None else ["--size", str(in_memory_mb * 1024 * 1024)]
        args += [*size, "--tmpfs", in_memory]
    args += ["--bind", str(worktree), str(worktree)]
    # The worktree's `.git` (a file pointing into the repository) and the git directory stay read-only.
    if (worktree / ".git").exists():
        args += ["--ro-bind", str(worktree / ".git"), str(worktree / ".git")]
    for git_dir in git_dirs:
        args += ["--ro-bind", str(git_dir), str(git_dir)]
    env = {"PATH": SANDBOX_PATH, "HOME": SANDBOX_TMP, "TMPDIR": SANDBOX_TMP, "LANG": "C.UTF-8", "CI": "1"}
    for name, value in env.items():
        args += ["--setenv", name, value]
    return [*args, "--chdir", str(worktree)]


def system_mounts() -> list[str]:
    """The host's toolchain read-only, and nothing else of the host.

    Not the whole filesystem: a run reads what its test command's toolchain needs, never the
    server's home (cloud and forge credentials), its config, audit log and store, other tasks'
    worktrees or the sockets under ``/run`` (a database the server uses among them). A folder
    that is a link (``/bin`` on a merged-``/usr`` system) is the same link inside.
    """
    mounts: list[str] = []
    for folder in SYSTEM_FOLDERS:
        path = Path(folder)
        if path.is_symlink():
            mounts += ["--symlink", os.readlink(path), folder]
        elif path.is_dir():
            mounts += ["--ro-bind", folder, folder]
    for secret in HIDDEN_SYSTEM_FILES:
        if Path(secret).exists():
            mounts += ["--ro-bind", os.devnull, secret]
    return mounts


def probe(bwrap: str) -> None:
    """Refuse unless bwrap can build a sandbox here (user namespaces may be disabled)."""
    result = subprocess.run(
        [bwrap, "--ro-bind", "/", "/", "--unshare-all", "--cap-drop", "ALL", "--", "/bin/true"],
        capture_output=True,
        timeout=30,
        check=False,
    )
    if result.returncode != 0:
        reason = result.stderr.decode(errors="replace").strip() or f"exit status {result.returncode}"
        raise HandlerError(
            f"bubblewrap cannot create a sandbox on this server ({reason}); "
            "tests are never run outside the sandbox: enable unprivileged user namespaces or run as a user that may"
        )


@functools.cache
def sizes_tmpfs(bwrap: str) -> bool:
    """Whether this bwrap can cap a tmpfs (``--size``: bubblewrap 0.7.0 or later, not setuid); asked once."""
    sized_tmp = ["--size", str(1024 * 1024), "--tmpfs", SANDBOX_TMP]
    result = subprocess.run(
        [bwrap, "--ro-bind", "/", "/", "--unshare-all", "--cap-drop", "ALL", *sized_tmp, "--", "/bin/true"],
        capture_output=True,
        timeout=30,
        check=False,
    )
    if result.returncode != 0:
        reason = result.stderr.decode(errors="replace").strip() or f"exit status {result.returncode}"
        logger.warning(
            "bubblewrap `%s` cannot size a tmpfs (%s): test runs are sandboxed, but files they write to /tmp and "
            "/dev/shm are not capped at the memory limit; install bubblewrap 0.7.0 or later, not setuid",
            bwrap,
            reason,
        )
    return result.returncode == 0


def in_memory_files_mb(limits: SandboxLimits, bwrap: str | None = None) -> int | None:
    """The cap on each in-memory filesystem a run gets, ``None`` when this server's bwrap cannot set one."""
    return limits.memory_mb if sizes_tmpfs(bwrap or bwrap_executable()) else None


def run_sandboxed(
    worktree: Path,
    git_dirs: tuple[Path, ...],
    command: str,
    limits: SandboxLimits,
    still_running: Callable[[float], None] | None = None,
) -> SandboxRun:
    """Run ``command`` with ``/bin/sh -c`` in the sandbox; kills the whole run at the wall-time limit.

    ``still_running`` hears the seconds elapsed, ten times over the limit or every
    ``PROGRESS_EVERY_S`` if that is sooner, while the run goes on.
    """
    bwrap = bwrap_executable()
    probe(bwrap)
    in_memory_mb = in_memory_files_mb(limits, bwrap)
    argv = [*bwrap_arguments(bwrap, worktree, git_dirs, in_memory_mb), "--", "/bin/sh", "-c", _LIMITS_THEN_RUN]
    argv += ["cedargate-sandbox", str(limits.memory_mb * 1024), str(MAX_FILE_BLOCKS), command]
    with tempfile.TemporaryFile(prefix="cedargate-test-output-") as output:
        started = time.perf_counter()
        # bwrap itself (pid 1 inside, its environment readable there) gets none of the server's environment.
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={"PATH": SANDBOX_PATH},
        )
        exit_code = _wait(process, started, limits.wall_seconds, still_running)
        timed_out = exit_code is None
        if timed_out:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        duration_ms = round((time.perf_counter() - started) * 1000, 3)
        return _summarise(command, exit_code, timed_out, duration_ms, output)


def _wait(
    process: subprocess.Popen[bytes], started: float, wall_seconds: float, still_running: Callable[[float], None] | None
) -> int | None:
    """The exit code, or ``None`` once the wall-time limit passed; ``still_running`` hears the time so far."""
    deadline = started + wall_seconds
    every = min(PROGRESS_EVERY_S, wall_seconds / 10)
    while (remaining := deadline - time.perf_counter()) > 0:
        try:
            return process.wait(timeout=min(remaining, every))
        except subprocess.TimeoutExpired:
            if still_running is not None:
                still_running(time.perf_counter() - started)
    return None


def _summarise(
    command: str, exit_code: int | None, timed_out: bool, duration_ms: float, output: IO[bytes]
) -> SandboxRun:
    digest = hashlib.sha256()
    output.seek(0)
    size = 0
    while chunk := output.read(1 << 16):
        digest.update(chunk)
        size += len(chunk)
    # Redacted before it is cut: a tail starting inside a private key would show its body.
    window = TAIL_BYTES + WINDOW_MARGIN
    output.seek(max(0, size - window))
    tail = redacted_tail(output.read(), TAIL_BYTES, whole=size <= window)
    return SandboxRun(
        command=command,
        exit_code=exit_code,
        timed_out=timed_out,
        duration_ms=duration_ms,
        output_bytes=size,
        output_sha256=digest.hexdigest(),
        output_tail=tail,
    )
