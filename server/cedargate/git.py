"""Running git safely: no shell, options separated from operands, hooks and config neutralised.

Every git call goes through ``run_git`` so option injection (an argument starting with ``-``)
and repository-local hooks cannot change what a governed tool does.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from cedargate.errors import HandlerError

_SERVER_PATH = re.compile(r"'/[^']*'|\"/[^\"]*\"|(?<![\w.:/~-])/[^\s'\"]+")
"""An absolute path in git's message (a worktree, the repository): the agent is not told where they live."""
_MESSAGE_CHARACTERS = 600
"""The most of git's own words a failure passes on: a forge can send pages of ``remote:`` lines."""
_CAUSE_PREFIXES = ("error:", "fatal:", "remote:")
_REF_RACE = re.compile(
    r"cannot lock ref '(?P<ref>[^']+)': (?:reference already exists|.*but expected|unable to resolve reference"
    r"|Unable to create '[^']*\.lock': File exists)"
)
"""What ``update-ref`` says when its compare-and-swap lost: the ref was created, moved, deleted or locked meanwhile."""
_PUSH_REJECTED = re.compile(r"^!\t[^\t]*:(?P<ref>[^\t]+)\t(?P<summary>.+)$")
"""A ``git push --porcelain`` line for a ref the remote refused (git writes these to standard output)."""
_SAFE_CONFIG = ("-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false", "-c", "protocol.file.allow=user")


def git_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A minimal environment: no inherited GIT_* variables, no user or system config."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update({"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"})
    # Paths are paths: pathspec magic (`:(glob)`, `:!x`) in an agent's argument is not interpreted.
    env["GIT_LITERAL_PATHSPECS"] = "1"
    env.update(extra or {})
    return env


def run_git(
    repo: Path,
    args: Sequence[str],
    *,
    input: bytes | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``git -C repo args``; raises ``HandlerError`` with git's message when it fails."""
    command = ["git", *_SAFE_CONFIG, "-C", str(repo), *args]
    result = subprocess.run(command, input=input, capture_output=True, env=git_env(env), timeout=60, check=False)
    if check and result.returncode != 0:
        stderr = result.stderr.decode(errors="replace")
        race = _REF_RACE.search(stderr) if args[0] == "update-ref" else None
        if race is not None:
            raise RefMovedError(repo.name, race["ref"])
        said = git_failure(stderr, result.stdout.decode(errors="replace") if args[0] == "push" else "")
        raise HandlerError(f"git {args[0]} failed in `{repo.name}`: {said}")
    return result


class RefMovedError(HandlerError):
    """An ``update-ref`` compare-and-swap lost: another call moved the ref between our read and our write.

    ``run_git`` raises it instead of git's lock message, which reads like a fault; a caller may
    catch it to retry, or to re-raise naming its own field (``ref`` and ``branch`` say which).
    """

    def __init__(self, repo_name: str, ref: str) -> None:
        self.ref = ref
        self.branch = ref.removeprefix("refs/heads/") if ref.startswith("refs/heads/") else None
        what = f"branch `{self.branch}`" if self.branch is not None else f"ref `{ref}`"
        super().__init__(
            f"git update-ref failed in `{repo_name}`: {what} moved concurrently (another call changed it "
            "after this one read it, so this call left it unchanged); retry the call"
        )


def git_failure(stderr: str, porcelain: str = "") -> str:
    """Why git failed, in its own words: its ``error:``/``fatal:``/``remote:`` lines, not its closing ``hint:``.

    Git ends many failures with advice (``hint:``) or the tail of a sentence begun lines
    earlier; the cause is on the lines it marks. Refs a push's remote refused (``porcelain``,
    ``git push --porcelain``'s output) come first. Server paths are hidden, then the text is cut.
    """
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    causes = [_push_rejection(m["ref"], m["summary"]) for m in map(_PUSH_REJECTED.match, porcelain.splitlines()) if m]
    marked = [
        line.removeprefix("error:").removeprefix("fatal:").strip()
        for line in lines
        if line.startswith(_CAUSE_PREFIXES) and line.removeprefix("remote:").strip()
    ]
    unhinted = [line for line in lines if not line.startswith("hint:")]
    causes += marked or unhinted[-3:] or lines[-3:]
    said = "; ".join(dict.fromkeys(_SERVER_PATH.sub("<server path>", line) for line in causes)) or "no message"
    return said if len(said) <= _MESSAGE_CHARACTERS else said[: _MESSAGE_CHARACTERS - 1] + "…"


def _push_rejection(ref: str, summary: str) -> str:
    """A refused ref, with what to do when the remote's branch has moved past ours."""
    name = ref.removeprefix("refs/heads/")
    said = f"the remote refused `{name}`: {summary}"
    if "fetch first" in summary or "non-fast-forward" in summary:
        said += (
            " (the remote branch has commits this one does not, and cedargate pushes only fast-forwards: "
            "push the work on a new branch, or have the remote branch reconciled)"
        )
    return said


def git_text(
    repo: Path, args: Sequence[str], *, input: bytes | None = None, env: Mapping[str, str] | None = None
) -> str:
    """``run_git``'s standard output as stripped text."""
    return run_git(repo, args, input=input, env=env).stdout.decode().strip()


def git_answer(folder: Path, args: Sequence[str]) -> str | None:
    """What ``git -C folder args`` prints, stripped; ``None`` when it fails, prints nothing, or git is missing.

    For questions about the machine and the admin's folders (``init``, ``doctor``), where a
    failure is an answer, not an error.
    """
    try:
        result = run_git(folder, args, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    answer = result.stdout.decode(errors="replace").strip()
    return answer if result.returncode == 0 and answer else None


@dataclass(frozen=True)
class ObjectInfo:
    oid: str
    type: str
    size: int


class ObjectReader:
    """One ``git cat-file --batch-command`` process answering object questions in turn.

    A file read needs the commit a ref names, the blob's type and size, then its content: one
    process answers them all (each git process costs milliseconds), and ``git_readers`` keeps
    it for later calls. Names are sent one per line, so a name with a line break (or a NUL,
    which would cut it short) is refused before it is sent. A reader that lost its place in
    git's answers says so (``usable``).
    """

    def __init__(self, repo: Path) -> None:
        command = ["git", *_SAFE_CONFIG, "-C", str(repo), "cat-file", "--batch-command"]
        self._repo = repo
        # A file, not a pipe: warnings over a long life can never fill a pipe and stall git.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed with the reader
        self._process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, env=git_env()
        )
        self._broken = False

    @property
    def usable(self) -> bool:
        """Whether git still runs and every answer so far was read whole (the next one starts clean)."""
        return not self._broken and self._process.poll() is None

    def kill(self) -> None:
        """Stop git now (it failed, or took too long); the reader is not usable afterwards."""
        self._broken = True
        self._process.kill()

    def info(self, name: str) -> ObjectInfo | None:
        """Type and size of the object ``name`` resolves to, or ``None`` when it names none."""
        self._send("info", name)
        return self._header(name)

    def contents(self, oid: str) -> bytes:
        """The content of an object known to exist (by id, so it cannot change in between)."""
        self._send("contents", oid)
        found = self._header(oid)
        if found is None:
            raise HandlerError(f"git cat-file lost object {oid} in `{self._repo.name}`")
        stdout = self._stdout()
        data = stdout.read(found.size)
        stdout.read(1)  # the line feed after the content
        if len(data) != found.size:
            self._broken = True
            raise HandlerError(f"git cat-file stopped early reading {oid} in `{self._repo.name}`")
        return data

    def close(self) -> None:
        self._broken = True
        if self._process.stdin is not None and not self._process.stdin.closed:
            with contextlib.suppress(BrokenPipeError):  # git has gone; the pipe closes all the same
                self._process.stdin.close()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()
        self._stderr.close()

    def _send(self, command: str, name: str) -> None:
        if "\n" in name or "\r" in name or "\x00" in name:
            # git reads one name per line, and a NUL would end the name early (another object).
            raise HandlerError(f"`{name!r}` contains a line break or NUL, which git's object reader cannot take")
        stdin = self._process.stdin
        if stdin is None:  # pragma: no cover - Popen was asked for a pipe
            raise HandlerError("git cat-file has no input pipe")
        try:
            stdin.write(f"{command} {name}\n".encode())
            stdin.flush()
        except BrokenPipeError as exc:
            raise HandlerError(f"git cat-file exited early in `{self._repo.name}`: {self._stop_for_message()}") from exc

    def _header(self, name: str) -> ObjectInfo | None:
        line = self._stdout().readline().decode(errors="replace").rstrip("\n")
        if not line:
            raise HandlerError(f"git cat-file gave no answer in `{self._repo.name}`: {self._stop_for_message()}")
        if line.endswith((" missing", " ambiguous")):
            return None
        fields = line.rsplit(" ", 2)
        if len(fields) != 3 or not fields[2].isdigit():
            self._broken = True  # not an answer git's protocol gives: where the next one starts is unknown
            return None
        oid, kind, size = fields
        return ObjectInfo(oid, kind, int(size))

    def _stdout(self) -> IO[bytes]:
        if self._process.stdout is None:  # pragma: no cover - Popen was asked for a pipe
            raise HandlerError("git cat-file has no output pipe")
        return self._process.stdout

    def _stop_for_message(self) -> str:
        """Stop git (it has failed) and return what it wrote to stderr."""
        self.kill()
        self._process.wait()
        self._stderr.seek(0)
        err = self._stderr.read()
        return err.decode(errors="replace").strip() or "no message"
