"""Running git safely: no shell, options separated from operands, hooks and config neutralised.

Every git call goes through ``run_git`` so option injection (an argument starting with ``-``)
and repository-local hooks cannot change what a governed tool does.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from cedargate.errors import HandlerError

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
        message = result.stderr.decode(errors="replace").strip().splitlines()
        raise HandlerError(f"git {args[0]} failed in `{repo.name}`: {message[-1] if message else 'no message'}")
    return result


def git_text(
    repo: Path, args: Sequence[str], *, input: bytes | None = None, env: Mapping[str, str] | None = None
) -> str:
    """``run_git``'s standard output as stripped text."""
    return run_git(repo, args, input=input, env=env).stdout.decode().strip()
