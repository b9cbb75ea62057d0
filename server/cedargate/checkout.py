"""Where a configured repository lives on disk, cloning it on first use when only a URL is given.

Every repository handler reaches the repository through ``local_repo`` so a missing
checkout is one clear error, and a clone happens once per process, under a lock. A
``clone_url`` on the forge's host is cloned with the forge token (``forge_auth_env``).
"""

from __future__ import annotations

import threading
from pathlib import Path

from cedargate.config import RepositoryConfig
from cedargate.errors import HandlerError
from cedargate.forge import forge_auth_env
from cedargate.git import run_git
from cedargate.progress import ProgressReport, no_progress

_clone_lock = threading.Lock()


def local_repo(repo: RepositoryConfig, progress: ProgressReport = no_progress) -> Path:
    """The repository's local path; clones ``clone_url`` there when the path does not exist yet."""
    if repo.path is None:  # config loading always sets it; kept for the type checker
        raise HandlerError(f"repository `{repo.name}` has no local path; check its `path` in the config")
    if repo.path.is_dir():
        return repo.path
    if repo.clone_url is None:
        raise HandlerError(
            f"repository `{repo.name}`: local path `{repo.path}` does not exist; fix `path` or set `clone_url`"
        )
    with _clone_lock:
        if not repo.path.is_dir():
            progress(0, None, f"cloning `{repo.name}` on its first use")
            repo.path.parent.mkdir(parents=True, exist_ok=True)
            credentials = forge_auth_env(repo.forge, repo.name, repo.clone_url)
            run_git(repo.path.parent, ["clone", "--quiet", "--", repo.clone_url, str(repo.path)], env=credentials)
    return repo.path
