"""Task workspaces: one ephemeral git worktree per repository, agent and task.

A workspace is created from a recorded base commit on the task's branch, so a run can be
inspected and reproduced; its facts (who, which task, which branch, which base, the last
sandboxed test run) are kept next to it in ``<id>.json``. Removing a workspace removes the
worktree, never the branch or its commits.
"""

from __future__ import annotations

import fcntl
import hashlib
import re
import shutil
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel, ConfigDict

from cedargate.config import Config, RepositoryConfig
from cedargate.errors import CedargateError, HandlerError
from cedargate.file_lock import exclusively
from cedargate.git import run_git
from cedargate.identity import Principal
from cedargate.sandbox import SandboxRun

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_lock = threading.RLock()
BRANCH_LOCK_SLOTS: Final = 64
"""Branch lock files per repository: a fixed number, so they do not pile up one per branch ever written."""


class TestRun(SandboxRun):
    """The facts of one sandboxed test run, as recorded in the workspace and the audit event."""

    commit: str | None = None
    clean: bool | None = None
    """Whether nothing staged or tracked differed from ``commit``, so ``commit`` is exactly what was tested.

    Untracked files (what earlier runs left: ``__pycache__``, build output) are not counted here:
    no tool commits them, so they are not work; ``untracked_leftovers`` says how many there were.
    """
    untracked_leftovers: int | None = None
    """Untracked files in the worktree when the run started (``None`` on records made before this was kept)."""
    tree: str | None = None
    """The tree the run tested, when the worktree's tracked files were exactly the index: a commit of what
    was staged then (``repo_commit`` after the run) has this tree, so it is what was tested."""
    event_id: str | None = None
    time: str | None = None


class Workspace(BaseModel):
    """One task's worktree and where it came from."""

    model_config = ConfigDict(frozen=True)

    id: str
    repository: str
    agent: str
    on_behalf_of: str
    task: str
    branch: str
    base_commit: str
    path: Path
    created: str
    last_test: TestRun | None = None

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def workspace_id(repository: str, agent: str, task: str) -> str:
    """A filesystem-safe id that names the repository, the agent and the task.

    Plain names read as they are (``acme.web--codex--fix-timeout``). When making a part safe
    changed it, or a part could be mistaken for a separator, a digest of the exact triple is
    appended: two tasks never share a workspace because their names look alike.
    """
    parts = (repository.replace("/", "."), agent, task)
    safe = tuple(_UNSAFE.sub("_", part) for part in parts)
    ident = "--".join(safe)
    if safe != parts or "." in repository or any("--" in part for part in parts):
        digest = hashlib.sha256("\0".join((repository, agent, task)).encode()).hexdigest()[:12]
        ident = f"{ident}--{digest}"
    return ident


class WorkspaceStore:
    """The workspaces of one repository, under its ``workspaces_dir``."""

    def __init__(self, repo: RepositoryConfig, repo_path: Path) -> None:
        if repo.workspaces_dir is None:  # config loading always sets it
            raise HandlerError(f"repository `{repo.name}` has no workspaces folder; check the config")
        self.repo = repo
        self.repo_path = repo_path
        self.root = repo.workspaces_dir
        self._git_dir: Path | None = None

    def _meta(self, ws_id: str) -> Path:
        return self.root / f"{ws_id}.json"

    def __iter__(self) -> Iterator[Workspace]:
        if not self.root.is_dir():
            return iter(())
        return iter(
            sorted(
                (Workspace.model_validate_json(p.read_text(encoding="utf-8")) for p in self.root.glob("*.json")),
                key=lambda w: w.id,
            )
        )

    def get(self, ws_id: str) -> Workspace | None:
        meta = self._meta(ws_id)
        return Workspace.model_validate_json(meta.read_text(encoding="utf-8")) if meta.is_file() else None

    def id_for(self, principal: Principal) -> str:
        """The id of the principal's task workspace in this repository, whether or not it exists."""
        return workspace_id(self.repo.name, principal.agent, principal.task)

    def for_task(self, principal: Principal) -> Workspace | None:
        return self.get(self.id_for(principal))

    def on_branch(self, branch: str) -> Workspace | None:
        return next((w for w in self if w.branch == branch), None)

    @contextmanager
    def branch_held(self, branch: str) -> Iterator[None]:
        """An exclusive lock on one branch of this repository, across processes (two servers may share it).

        Taken by every step that checks which workspace (if any) has the branch and then moves
        or checks it out: a write without a workspace cannot move the branch between a new
        workspace's check and its checkout, which would leave that worktree behind its branch.
        The lock lives in the repository's git folder, which any write needs anyway (not under
        ``workspaces_dir``, which a plain write does not touch), in one of ``BRANCH_LOCK_SLOTS``
        files chosen by the branch name: their number stays bounded however many branches come
        and go, and two branches sharing a slot only wait for each other briefly. Never nested.
        """
        folder = self._branch_lock_folder()
        digest = hashlib.sha256(branch.encode(errors="surrogateescape")).digest()
        slot = folder / f"slot-{int.from_bytes(digest[:4], 'big') % BRANCH_LOCK_SLOTS:02d}.lock"
        try:
            folder.mkdir(exist_ok=True)
            handle = open(slot, "ab")  # noqa: SIM115 - closed below, after the lock is released
        except OSError as exc:
            raise HandlerError(
                f"cannot open the branch lock `{slot}` ({exc.strerror or exc}): the server's user must be able to "
                f"create files in `{folder.parent}` (the git folder of `{self.repo.name}`, which writes change "
                "anyway); fix its owner or permissions"
            ) from exc
        with handle, exclusively(handle):
            yield

    def _branch_lock_folder(self) -> Path:
        """``cedargate-branch-locks`` in the repository's common git folder (shared by all its worktrees)."""
        if self._git_dir is None:
            found = run_git(self.repo_path, ["rev-parse", "--path-format=absolute", "--git-common-dir"])
            self._git_dir = Path(found.stdout.decode(errors="surrogateescape").strip())
        return self._git_dir / "cedargate-branch-locks"

    def create(self, principal: Principal, branch: str, base_commit: str, *, new_branch: bool) -> Workspace:
        """Add a worktree for the principal's task on ``branch`` (created at ``base_commit`` if new)."""
        with _lock, self.branch_held(branch):
            ws_id = workspace_id(self.repo.name, principal.agent, principal.task)
            if self.get(ws_id) is not None:
                raise HandlerError(f"workspace `{ws_id}` already exists; remove it with `cedargate workspaces rm`")
            path = self.root / ws_id
            self.root.mkdir(parents=True, exist_ok=True)
            # Refs and paths were checked by the caller; `--` keeps the path an operand.
            target = ["-b", branch, "--", str(path), base_commit] if new_branch else ["--", str(path), branch]
            run_git(self.repo_path, ["worktree", "add", "--quiet", *target])
            workspace = Workspace(
                id=ws_id,
                repository=self.repo.name,
                agent=principal.agent,
                on_behalf_of=principal.on_behalf_of,
                task=principal.task,
                branch=branch,
                base_commit=base_commit,
                path=path,
                created=datetime.now(UTC).isoformat(timespec="seconds"),
            )
            self.save(workspace)
            return workspace

    def save(self, workspace: Workspace) -> None:
        tmp = self._meta(workspace.id).with_suffix(".json.tmp")
        tmp.write_text(workspace.model_dump_json(indent=2), encoding="utf-8")
        tmp.replace(self._meta(workspace.id))

    @contextmanager
    def in_use(self, ws_id: str) -> Iterator[Workspace]:
        """Hold a workspace through a long step (a test run): ``remove`` refuses it meanwhile.

        Yields the workspace as recorded now; one removed before the hold began is an error, so
        the step never recreates the record of a workspace that no longer exists.
        """
        with self._held(ws_id, busy=None):
            yield self._still_there(ws_id)

    @contextmanager
    def changing(self, ws_id: str) -> Iterator[Workspace]:
        """Hold a workspace for a short change (a file write), refusing rather than waiting while a step holds it.

        A test run holds it for minutes, and its command could swap what a write is about to
        touch; the write is refused with that said, so the agent retries after the run.
        """
        busy = HandlerError(
            f"field `branch`: workspace `{ws_id}` is in use (a test run is in progress); "
            "write after `repo_run_tests` returns"
        )
        with self._held(ws_id, busy=busy):
            yield self._still_there(ws_id)

    def _still_there(self, ws_id: str) -> Workspace:
        """The workspace as recorded now; one removed before the hold began is an error, never recreated."""
        workspace = self.get(ws_id)
        if workspace is None:
            raise HandlerError(f"workspace `{ws_id}` was removed; create it again with `repo_create_branch`")
        return workspace

    @contextmanager
    def _held(self, ws_id: str, *, busy: CedargateError | None) -> Iterator[None]:
        """An exclusive lock on the workspace, across processes (the CLI is one); the OS drops it with its holder.

        With ``busy``, the lock is not waited for: ``busy`` is raised while another holds it.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / f"{ws_id}.lock", "ab") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX if busy is None else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if busy is None:  # only a lock not waited for answers this
                    raise
                raise busy from None
            yield

    def remove(self, ws_id: str) -> Workspace:
        """Remove the worktree and its record, unless a step holds it; the branch and its commits stay."""
        with _lock:
            self._known(ws_id)  # before its lock file is made: an unknown id leaves nothing behind
            busy = CedargateError(
                f"workspace `{ws_id}` is in use (a test run or a write is in progress); remove it after it finishes"
            )
            with self._held(ws_id, busy=busy):
                return self._remove(self._known(ws_id))

    def _known(self, ws_id: str) -> Workspace:
        workspace = self.get(ws_id)
        if workspace is None:
            raise CedargateError(f"no workspace `{ws_id}` in `{self.repo.name}`")
        return workspace

    def _remove(self, workspace: Workspace) -> Workspace:
        result = run_git(self.repo_path, ["worktree", "remove", "--force", "--", str(workspace.path)], check=False)
        if result.returncode != 0 and workspace.path.exists():
            shutil.rmtree(workspace.path)
        run_git(self.repo_path, ["worktree", "prune"], check=False)
        self._meta(workspace.id).unlink()
        # A step waiting on the old lock finds no record once it gets it, and stops.
        (self.root / f"{workspace.id}.lock").unlink(missing_ok=True)
        return workspace


def checked_out(repo_path: Path, branch: str) -> list[tuple[Path, bool]]:
    """Every worktree of the repository with ``branch`` checked out, and whether it is the main checkout.

    git refuses to move or delete a branch a worktree has checked out; tools that change
    branches with plumbing ask this first, so a person's checkout never changes under them.
    """
    fields = run_git(repo_path, ["worktree", "list", "--porcelain", "-z"]).stdout.decode(errors="replace").split("\0")
    found: list[tuple[Path, bool]] = []
    current: Path | None = None
    main = True  # git lists the main worktree first
    for line in fields:
        if line.startswith("worktree "):
            current = Path(line.removeprefix("worktree "))
        elif line == f"branch refs/heads/{branch}" and current is not None:
            found.append((current, main))
        elif not line and current is not None:  # an empty field ends a worktree's block
            current, main = None, False
    return found


def all_workspaces(config: Config) -> Iterable[tuple[WorkspaceStore, Workspace]]:
    """Every workspace of every configured repository whose checkout exists."""
    for repo in config.repositories:
        if repo.path is not None and repo.path.is_dir():
            store = WorkspaceStore(repo, repo.path)
            for workspace in store:
                yield store, workspace
