"""Where a configured repository lives on disk, cloning it on first use when only a URL is given.

Every repository handler reaches the repository through ``local_repo`` so a missing
checkout is one clear error, and a clone happens once per process, under that repository's
lock (a slow forge delays only the calls on the repository it serves), into a temporary
folder renamed into place, so a clone cut short is never read. A ``clone_url`` on
the forge's host is cloned with the forge token (``forge_auth_env``).

A clone is cedargate's own copy, so it is kept current: on the first use ``refresh_seconds``
after the last fetch (and on the first use after a restart) it is fetched again and the
branch it has checked out is fast-forwarded to its upstream, so reads of ``HEAD`` see what
was merged upstream. Task branches are local and untouched. A fetch that fails (the forge
is unreachable) is logged and the call goes on with the clone as it is; the next use after
``refresh_seconds`` tries again. A repository given by ``path`` is the admin's checkout and
is never fetched.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from cedargate.config import RepositoryConfig
from cedargate.errors import CedargateError, HandlerError
from cedargate.forge import forge_auth_env
from cedargate.git import run_git
from cedargate.progress import ProgressReport, no_progress

logger = logging.getLogger(__name__)

_locks_guard = threading.Lock()
_clone_locks: dict[Path, threading.Lock] = {}
"""One lock per clone directory: its first clone and its refreshes happen one at a time."""
_fetched_at: dict[Path, float] = {}
"""When each clone was last fetched (or cloned), on this process's monotonic clock."""


def local_repo(repo: RepositoryConfig, progress: ProgressReport = no_progress) -> Path:
    """The repository's local path; clones ``clone_url`` there when the path does not exist yet."""
    if repo.path is None:  # config loading always sets it; kept for the type checker
        raise HandlerError(f"repository `{repo.name}` has no local path; check its `path` in the config")
    if repo.clone_url is None:
        if repo.path.is_dir():
            return repo.path
        raise HandlerError(
            f"repository `{repo.name}`: local path `{repo.path}` does not exist; fix `path` or set `clone_url`"
        )
    if repo.path.is_dir() and not _refresh_due(repo, repo.path):
        return repo.path
    with _clone_lock(repo.path):
        if not repo.path.is_dir():
            progress(0, None, f"cloning `{repo.name}` on its first use")
            _clone(repo, repo.clone_url, repo.path)
            _fetched_at[repo.path] = time.monotonic()
        elif _refresh_due(repo, repo.path):
            progress(0, None, f"fetching `{repo.name}` from its clone_url")
            _refresh(repo, repo.path)
    return repo.path


def _clone(repo: RepositoryConfig, url: str, path: Path) -> None:
    """Clone beside ``path`` and rename into place: a clone cut short (a stopped server) is never used.

    Another server on this host may clone the same repository at the same time; whichever
    renames first wins and the other's copy is dropped.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.clone-", dir=path.parent))
    try:
        run_git(
            path.parent, ["clone", "--quiet", "--", url, str(staging)], env=forge_auth_env(repo.forge, repo.name, url)
        )
        try:
            os.rename(staging, path)
        except OSError:
            if not path.is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _clone_lock(path: Path) -> threading.Lock:
    with _locks_guard:
        return _clone_locks.setdefault(path, threading.Lock())


def _refresh_due(repo: RepositoryConfig, path: Path) -> bool:
    last = _fetched_at.get(path)
    return last is None or time.monotonic() - last >= repo.refresh_seconds


def _refresh(repo: RepositoryConfig, path: Path) -> None:
    """Fetch the clone's origin and fast-forward its checked-out branch; a failure is logged, not raised."""
    _fetched_at[path] = time.monotonic()  # a failing forge is tried again after the interval, not on every call
    try:
        credentials = forge_auth_env(repo.forge, repo.name, repo.clone_url or "")
        run_git(path, ["fetch", "--quiet", "--prune", "origin"], env=credentials)
        upstream = run_git(path, ["rev-parse", "--abbrev-ref", "--symbolic-full-name", "@{upstream}"], check=False)
        if upstream.returncode == 0:
            # Only a fast-forward: the checked-out branch is never rewritten (agents commit on task branches).
            run_git(path, ["merge", "--ff-only", "--quiet", upstream.stdout.decode().strip()])
    except (CedargateError, subprocess.TimeoutExpired) as exc:
        logger.warning(
            "repository `%s` could not be refreshed from its clone_url; reads see the clone as it is: %s",
            repo.name,
            exc,
        )
