"""``cedargate init``: a starting project (config, tool manifests, policies) that serves as written.

The manifests and policies are copies of the ones this checkout ships, for admins and policy
authors to edit; the config names the human running ``init`` and, when the folder is in a git
repository, that repository. The result is loaded and validated exactly as ``serve`` would
before the config appears, and the config appears last and whole (a hard link): a folder either
gets a project that starts, or keeps what it had.
"""

from __future__ import annotations

import getpass
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from cedargate.aws_sandbox import PROD_ACCOUNT, STAGING_ACCOUNT
from cedargate.catalog import load_catalog
from cedargate.config import DEFAULT_CONFIG_NAME, Identifier, load_config
from cedargate.demo import project_root
from cedargate.errors import CedargateError, ConfigError
from cedargate.git import git_answer
from cedargate.runtime import handler_registry
from cedargate.snapshot import Snapshot, build_snapshot
from cedargate.tool_lock import lock_changes, read_lock_or_empty

COPIED_FOLDERS: Final = ("tools", "policies")
"""Copied from the checkout unless the folder already has its own."""
TOOLS_LOCK: Final = "tools/tools.lock"
STATE_FOLDER: Final = ".cedargate"
"""Where the written config keeps the audit log, the store and agent worktrees (ignored by git)."""
_NOT_COPIED: Final = shutil.ignore_patterns("__pycache__", ".*")


class LocalRepository(BaseModel):
    """The git repository the project folder is in, published as a ``dev`` repository."""

    model_config = ConfigDict(frozen=True)

    name: str
    path: str
    """Relative to the config file."""
    branch: str | None
    """The checked-out branch, kept out of direct writes (``protected_branches``)."""


class ClientEntry(BaseModel):
    """An MCP client's server entry: the program and its arguments."""

    model_config = ConfigDict(frozen=True)

    command: str
    args: tuple[str, ...]

    @classmethod
    def serving(cls, config: Path) -> ClientEntry:
        """This cedargate serving ``config``: its console script, else its interpreter."""
        script = Path(sys.executable).with_name("cedargate")
        head = [str(script)] if script.is_file() else [sys.executable, "-m", "cedargate"]
        return cls(command=head[0], args=(*head[1:], "--config", str(config), "serve"))


class InitResult(BaseModel):
    """What ``init`` wrote (``--json`` prints it)."""

    model_config = ConfigDict(frozen=True)

    config: Path
    copied: tuple[str, ...]
    """The folders copied from the checkout; the others were there already and are used as they are."""
    kept: tuple[str, ...]
    tools: int
    policies: int
    repository: LocalRepository | None
    client_entry: ClientEntry
    """How an MCP client starts this server (its ``command`` and ``args``)."""
    unreviewed: tuple[str, ...] = ()
    """Manifests a kept ``tools/tools.lock`` does not hold as they are: the config leaves the lock commented out."""


def init_project(folder: Path, user: str | None = None) -> InitResult:
    """Write a starting project into ``folder`` (created if missing); raises and leaves it as it was on any failure."""
    folder = folder.expanduser().resolve()
    config_path = folder / DEFAULT_CONFIG_NAME
    if config_path.exists():
        raise ConfigError(f"`{config_path}` exists; nothing was written (edit it, or run `cedargate init` elsewhere)")
    source = project_root()
    repository = local_repository(folder)
    user = user or _current_user()
    with _rolled_back_on_failure(folder) as created, _writing_into(folder):
        copied, kept = [], []
        for name in COPIED_FOLDERS:
            if (folder / name).exists():
                kept.append(name)
            else:
                _copy_folder(source / name, folder / name)
                created.append(folder / name)
                copied.append(name)
        state = folder / STATE_FOLDER
        if not state.exists():
            state.mkdir()
            created.append(state)
            # The audit log, the store and agent worktrees never show up as changes to commit.
            (state / ".gitignore").write_text("*\n", encoding="utf-8")
        # Kept manifests nobody has locked yet are not locked here: that is their review.
        lock: LockState = "locked" if (folder / TOOLS_LOCK).is_file() else "none"
        staged = folder / f".{DEFAULT_CONFIG_NAME}.tmp"
        created.append(staged)
        staged.write_text(starting_config(repository, user, lock=lock), encoding="utf-8")
        unreviewed = _unreviewed(staged) if lock == "locked" else ()
        if unreviewed:
            # Refusing would leave no way out: `tools lock` needs the config this writes.
            staged.write_text(starting_config(repository, user, lock="stale"), encoding="utf-8")
        snapshot = _validated(staged, config_path)
        try:
            os.link(staged, config_path)  # unlike a rename, never replaces a config written meanwhile
        except FileExistsError as exc:
            raise ConfigError(f"`{config_path}` appeared while init ran; nothing was written") from exc
        staged.unlink()
    return InitResult(
        config=config_path,
        copied=tuple(copied),
        kept=tuple(kept),
        tools=len(snapshot.catalog),
        policies=len(snapshot.policies.info),
        repository=repository,
        client_entry=ClientEntry.serving(config_path),
        unreviewed=unreviewed,
    )


def local_repository(folder: Path) -> LocalRepository | None:
    """The git work tree ``folder`` is (or, not made yet, will be) in; ``None`` when none, or no git."""
    existing = next(p for p in (folder, *folder.parents) if p.is_dir())
    top = git_answer(existing, ["rev-parse", "--show-toplevel"])
    if top is None:
        return None
    top_path = Path(top)
    branch = git_answer(existing, ["symbolic-ref", "--quiet", "--short", "HEAD"])
    name = f"local/{repository_name(top_path.name)}"
    return LocalRepository(name=name, path=os.path.relpath(top_path, folder), branch=branch)


def repository_name(folder_name: str) -> str:
    """A repository name (letters, digits, ``.``, ``_``, ``-``) for any folder name (``My Project``: ``My-Project``)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", folder_name).strip("-.")
    return name or "repository"


def starting_config(repository: LocalRepository | None, user: str, *, lock: LockState = "locked") -> str:
    """The config ``init`` writes: the sandbox AWS estate, the shipped duties, and the local repository.

    ``lock`` says whether the tools folder has a lock to serve by; without one, or with one
    its manifests no longer match, the line is left commented, with what to do.
    """
    return _TEMPLATE.format(
        tools_lock=_LOCK_LINES[lock],
        user=toml_string(user),
        prod=PROD_ACCOUNT,
        staging=STAGING_ACCOUNT,
        repositories=_repository_table(repository),
    )


def _repository_table(repository: LocalRepository | None) -> str:
    if repository is None:
        return _NO_REPOSITORY
    protected = f"[{toml_string(repository.branch)}]" if repository.branch else "[]"
    return (
        "# The git repository this folder is in, so the repository tools have something to work on.\n"
        "[[repositories]]\n"
        f"name = {toml_string(repository.name)}\n"
        f"path = {toml_string(repository.path)}\n"
        'environment = "dev"\n'
        'owner_team = "platform"\n'
        f"protected_branches = {protected}\n"
        '# remote = "/path/to/bare.git"        # where repo_push sends task branches\n'
        '# test_command = "python3 -m pytest -q"   # run by repo_run_tests under bubblewrap\n'
    )


def toml_string(value: str) -> str:
    """``value`` as a TOML basic string.

    Not ``json.dumps``: its ``\\uD83D\\uDE00`` surrogate pairs for characters beyond the BMP
    (a branch named ``feat-😀``) are not valid TOML, and it leaves DEL unescaped. Text is
    written as it is; quotes, backslashes and control characters are escaped.
    """
    out = []
    for char in value:
        code = ord(char)
        if char in '"\\':
            out.append("\\" + char)
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04X}")
        elif 0xD800 <= code <= 0xDFFF:  # a byte that is not UTF-8, kept by os.fsdecode
            raise ConfigError(f"`{value!r}` is not valid UTF-8, so TOML cannot hold it: rename it")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _unreviewed(staged: Path) -> tuple[str, ...]:
    """The manifests the configured lock does not hold as they are, described; none when it holds them all.

    A config or manifest that does not load is left for ``_validated`` to report.
    """
    try:
        config = load_config(staged)
        catalog = load_catalog(config.tools_dir, check=handler_registry(None, config).check)
    except CedargateError:
        return ()
    if config.tools_lock is None:
        return ()
    changes = lock_changes(catalog, read_lock_or_empty(config.tools_lock))
    return tuple(c.describe() for c in changes if c.change != "removed")


def _validated(staged: Path, config_path: Path) -> Snapshot:
    """Load the staged config and build what ``serve`` builds from it (manifests, lock, schema, policies).

    Errors name the config as it would have been written, not the staged copy nobody sees.
    """
    try:
        config = load_config(staged)
        return build_snapshot(config, handler_registry(None, config))
    except CedargateError as exc:
        problem = str(exc).replace(str(staged), str(config_path))
        raise ConfigError(f"the starting project does not load, so nothing was written: {problem}") from exc


def _copy_folder(source: Path, destination: Path) -> None:
    """Copied under a temporary name and renamed: the folder appears whole or not at all."""
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=destination.parent))
    try:
        shutil.copytree(source, staging, ignore=_NOT_COPIED, dirs_exist_ok=True)
        os.replace(staging, destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


@contextmanager
def _writing_into(folder: Path) -> Iterator[None]:
    """Turns the system refusing a write (a read-only folder, a full disk) into an error naming ``folder``."""
    try:
        yield
    except OSError as exc:
        raise ConfigError(f"cannot write into `{folder}`: {exc.strerror or exc}; nothing was written") from exc


@contextmanager
def _rolled_back_on_failure(folder: Path) -> Iterator[list[Path]]:
    """Yields a list for the paths the block creates; removes them (and any folder made for them) if it fails."""
    first_made = next((p for p in reversed((folder, *folder.parents)) if not p.exists()), None)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create `{folder}`: {exc.strerror or exc}") from exc
    created: list[Path] = []
    try:
        yield created
    except BaseException:
        for path in reversed(created):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        if first_made is not None:
            shutil.rmtree(first_made, ignore_errors=True)
        raise


def _current_user() -> str:
    """The login name, checked as ids are: otherwise the config's check blames a field the user never wrote."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):  # no login name (a container with an unnamed uid)
        return "developer"
    try:
        return TypeAdapter(Identifier).validate_python(name)
    except ValidationError:
        raise ConfigError(
            f"your login name `{name}` is not an id (letters, digits and `._@/:-`, starting with a letter or "
            "digit): pass --user NAME"
        ) from None


_NO_REPOSITORY: Final = """\
# No git repository was found around this folder. Publish one for the repository tools:
# [[repositories]]
# name = "acme/web"
# path = "../web"                     # a local checkout (or clone_url = "https://..." for a clone)
# environment = "dev"
# owner_team = "platform"
# protected_branches = ["main"]
"""

LockState = Literal["locked", "none", "stale"]
"""The kept tools folder's lock: holds its manifests, is missing, or no longer matches them."""

_LOCK_LINES: Final[dict[LockState, str]] = {
    "locked": (
        f'tools_lock = "{TOOLS_LOCK}"   # served only as reviewed: after editing a manifest, run `cedargate tools lock`'
    ),
    "none": (
        "# The tools folder has no lock yet. Once its manifests are reviewed, uncomment the next line\n"
        "# and run `cedargate tools lock`: from then on only the manifests as locked are served.\n"
        f'# tools_lock = "{TOOLS_LOCK}"'
    ),
    "stale": (
        f"# {TOOLS_LOCK} no longer holds the manifests as they are, so for now they are served unlocked.\n"
        "# Uncomment the next line, review what `cedargate tools lock --check` lists, then run\n"
        "# `cedargate tools lock`: from then on only the manifests as locked are served.\n"
        f'# tools_lock = "{TOOLS_LOCK}"'
    ),
}

_TEMPLATE: Final = """\
# cedargate's configuration, written by `cedargate init`. Paths are relative to this file.
# Environment variables CEDARGATE_AGENT, CEDARGATE_TEAM, CEDARGATE_USER, CEDARGATE_MODE and
# CEDARGATE_TASK override the [principal] table.

tools_dir = "tools"
{tools_lock}
policies_dir = "policies"
workspaces_dir = ".cedargate/workspaces"   # agents' task worktrees; .cedargate/ is ignored by git

# Path classes: gitignore patterns for files policies treat alike; a policy sees the classes a
# change touches as `context.changes.classes` (a repository may add its own `path_classes`).
[path_classes]
ci = [".github/workflows/", ".gitlab-ci.yml", "Jenkinsfile", ".circleci/"]

# Who calls over stdio: the agent, its team, the human it acts for, and the task.
[principal]
agent = "local-agent"
team = "platform"
on_behalf_of = {user}
mode = "interactive"
task = "adhoc"

[audit]
path = ".cedargate/audit.jsonl"

[store]
path = ".cedargate/cedargate.db"

# Who may approve what the shipped policies hold back (never the agent, nor the human it acts
# for); until a group has members, what waits for it waits for nobody (`cedargate doctor` says so).
# [approvals.groups]
# maintainers = ["a-maintainer"]   # ci-changes-need-approval: changes to CI configuration
# sre = ["an-sre"]                 # staging-destructive-needs-sre

[aws]
mode = "auto"              # sandbox (embedded account) | real | auto (sandbox without credentials)
region = "us-east-1"
default_account = "{staging}"

# The sandbox seeds these two accounts; with real credentials, list your own.
[[aws.accounts]]
id = "{prod}"
environment = "prod"
alias = "sandbox-prod"

[[aws.accounts]]
id = "{staging}"
environment = "staging"
alias = "sandbox-staging"

# Duty identities: the role each AWS tool's calls run as (default role_arn:
# "arn:aws:iam::{{account}}:role/cedargate-{{duty}}", assumed in the account the call targets).
[aws.duties.aws-reader]
description = "read-only view of compute, storage and metrics"
[aws.duties.logs-reader]
description = "CloudWatch Logs and CloudTrail reads"
[aws.duties.infra-operator]
description = "start, stop and terminate instances; tune functions"
[aws.duties.data-operator]
description = "write and delete objects and parameters"
[aws.duties.secrets-reader]
description = "read parameters (values redacted unless policy allows)"

{repositories}"""
