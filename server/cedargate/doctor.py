"""``cedargate doctor``: what would stop this config from serving, found before an agent finds it.

``serve`` refuses a config, a manifest or a policy that is wrong, but much of what a call
needs is only met on the call that needs it: git on the path, a repository's checkout, a
forge token in the environment, bubblewrap allowed to build a sandbox, a writable audit
log, a store at the current schema, members for the approver groups policies name, a
principal for stdio serving, and what HTTP serving trusts ([auth]). Each check here looks
at one of them without changing anything (no file, database or clone is created) and says
what to do when it fails.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from enum import StrEnum
from pathlib import Path
from urllib.parse import urlsplit

import boto3
from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError

from cedargate.audit.checkpoint import require_consistent
from cedargate.audit.log import JsonlAuditLog
from cedargate.audit.probe import unwritable_reason
from cedargate.audit.segments import TAIL_WINDOW as TAIL_READ_AT_START
from cedargate.aws_session import choose_backend
from cedargate.config import PRINCIPAL_ENV_OVERRIDES, Config, RepositoryConfig
from cedargate.errors import CedargateError, ConfigError
from cedargate.git import git_answer
from cedargate.http_app import MCP_PATH, is_loopback
from cedargate.identity import principal_from_config
from cedargate.policy_set import PolicyInfo, PolicySet
from cedargate.runtime import handler_registry
from cedargate.sandbox import bwrap_executable, probe, sizes_tmpfs
from cedargate.snapshot import build_snapshot
from cedargate.store.engine import create_store_engine, database_error, sqlite_file, store_name, store_url
from cedargate.store.migrate import current_revision, head_revision, known_revisions


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"
    """Serves, but something will not work or is not as expected."""
    FAIL = "fail"
    """Does not serve, or a configured tool cannot work."""


class Finding(BaseModel):
    check: str
    status: Status
    detail: str
    """What was found and, unless it is fine, what to do."""


def run_checks(config: Config, environ: Mapping[str, str] | None = None) -> list[Finding]:
    """Every check on ``config``; a check that raises unexpectedly is reported as failed, not raised."""
    env = os.environ if environ is None else environ
    checks: list[tuple[str, Callable[[], Iterator[Finding]]]] = [
        ("tools and policies", lambda: _tools_and_policies(config)),
        ("principal", lambda: _principal(config, env)),
        ("auth", lambda: _auth(config)),
        ("audit log", lambda: _audit_log(config)),
        ("store", lambda: _store(config)),
        ("git", _git),
        ("repositories", lambda: _repositories(config, env)),
        ("test sandbox", lambda: _test_sandbox(config)),
        ("aws", lambda: _aws(config)),
    ]
    findings: list[Finding] = []
    for name, check in checks:
        try:
            findings.extend(check())
        except Exception as exc:  # boundary: one broken check must not hide the others
            findings.append(Finding(check=name, status=Status.FAIL, detail=f"the check itself failed: {exc}"))
    return findings


def _tools_and_policies(config: Config) -> Iterator[Finding]:
    try:
        snapshot = build_snapshot(config, handler_registry(None, config))
    except CedargateError as exc:
        yield Finding(check="tools and policies", status=Status.FAIL, detail=str(exc))
        return
    files = len(snapshot.policies.files)
    locked = "locked" if config.tools_lock is not None else "not locked (no `tools_lock` in the config)"
    detail = f"{len(snapshot.catalog)} tools ({locked}), {len(snapshot.policies.info)} policies in {files} files"
    yield Finding(check="tools and policies", status=Status.OK, detail=detail)
    yield _approval_groups(config, snapshot.policies)


def _approval_groups(config: Config, policies: PolicySet) -> Finding:
    """Every group an ``@approval`` names needs members, or its approvals stay pending until they expire."""
    asking: dict[str, list[PolicyInfo]] = {}
    for info in policies.info.values():
        if info.approval_group:
            asking.setdefault(info.approval_group, []).append(info)
    if not asking:
        return Finding(check="approval groups", status=Status.OK, detail="no policy asks for an approval")
    empty = {group: infos for group, infos in sorted(asking.items()) if not config.approvals.groups.get(group)}
    if not empty:
        names = ", ".join(f"`{group}`" for group in sorted(asking))
        return Finding(check="approval groups", status=Status.OK, detail=f"{names} in `[approvals.groups]`")
    found = "; ".join(f"`{group}` (asked for by {_policies_named(infos, config)})" for group, infos in empty.items())
    example = "; ".join(f'{group} = ["user", ...]' for group in empty)
    detail = (
        f"no members in `[approvals.groups]` for {found}: nobody can decide those approvals; "
        f"add `[approvals.groups] {example}` to the config"
    )
    return Finding(check="approval groups", status=Status.WARN, detail=detail)


def _policies_named(infos: list[PolicyInfo], config: Config) -> str:
    def place(info: PolicyInfo) -> Path:
        return info.file.relative_to(config.base_dir) if info.file.is_relative_to(config.base_dir) else info.file

    return ", ".join(f"`{info.display_id}` in `{place(info)}:{info.line}`" for info in infos)


def _principal(config: Config, env: Mapping[str, str]) -> Iterator[Finding]:
    """What ``serve`` makes of the principal, decided as ``build_runtime`` decides it.

    Over stdio it is the config's (with environment overrides); over HTTP with ``[auth]`` each
    call brings its own from its bearer token, so only stdio serving needs one then.
    """
    try:
        p = principal_from_config(config)
    except ConfigError as exc:
        if config.auth is not None:
            detail = f"HTTP calls take theirs from bearer tokens ([auth]); over stdio `serve` refuses to start: {exc}"
            yield Finding(check="principal", status=Status.OK, detail=detail)
        else:
            detail = (
                f"`serve` refuses to start (over stdio, and over HTTP without [auth]): {exc} (this check sees "
                "this shell's environment; an MCP client may set them in the `env` it starts `serve` with)"
            )
            yield Finding(check="principal", status=Status.FAIL, detail=detail)
        return
    taken = [f"${var}" for var in PRINCIPAL_ENV_OVERRIDES if env.get(var)]
    source = f"; {', '.join(taken)} from this environment" if taken else ""
    detail = f"agent `{p.agent}` of team `{p.team}` for `{p.on_behalf_of}` ({p.mode}, task `{p.task}`{source})"
    yield Finding(check="principal", status=Status.OK, detail=detail)


def _auth(config: Config) -> Iterator[Finding]:
    """What HTTP serving trusts: the issuer and the scopes each route needs (URLs and algorithms are checked at load).

    Warns where a token would be accepted but travel or be fetched in the clear, or where the
    audience tokens must carry is not the ``/mcp`` endpoint clients reach.
    """
    auth = config.auth
    if auth is None:
        yield Finding(check="auth", status=Status.OK, detail="no [auth]: HTTP serves only on loopback, as stdio does")
        return
    plain = [
        f"`{name}` (`{url}`)"
        for name, url in (("issuer", auth.issuer), ("jwks_url", auth.jwks_url), ("resource_url", auth.resource_url))
        if urlsplit(url).scheme == "http" and not is_loopback(urlsplit(url).hostname or "")
    ]
    if plain:
        detail = f"{', '.join(plain)} not over https: tokens or keys would cross the network in the clear; use https"
        yield Finding(check="auth", status=Status.WARN, detail=detail)
    if urlsplit(auth.resource_url).path.rstrip("/") != MCP_PATH:
        detail = (
            f"`resource_url` (`{auth.resource_url}`) is not this server's `{MCP_PATH}` endpoint: tokens carry it as "
            f"their audience and clients find the server by it; set it to the URL clients reach, ending in {MCP_PATH}"
        )
        yield Finding(check="auth", status=Status.WARN, detail=detail)
    mcp_scopes = ", ".join(f"`{s}`" for s in auth.required_scopes) or "no scope"
    admin_scopes = ", ".join(f"`{s}`" for s in auth.admin_scopes)
    detail = (
        f"tokens from `{auth.issuer}` for `{auth.resource_url}` ({', '.join(auth.algorithms)}); "
        f"/mcp needs {mcp_scopes}, /admin needs {admin_scopes}"
    )
    yield Finding(check="auth", status=Status.OK, detail=detail)


def _audit_log(config: Config) -> Iterator[Finding]:
    path = config.audit.path
    if path.exists():
        try:
            with open(path, "ab", buffering=0) as log:
                reason = unwritable_reason(log.fileno())
        except OSError as exc:
            reason = exc.strerror or str(exc)
        if reason is not None:
            yield Finding(check="audit log", status=Status.FAIL, detail=f"`{path}` cannot be written: {reason}")
            return
        try:
            torn = _torn_at_start(path)
        except (CedargateError, OSError) as exc:
            detail = str(exc) if isinstance(exc, CedargateError) else f"`{path}` cannot be read: {exc.strerror or exc}"
            yield Finding(check="audit log", status=Status.FAIL, detail=detail)
            return
        if (contradiction := _checkpoint_contradiction(config)) is not None:
            yield Finding(check="audit log", status=Status.FAIL, detail=contradiction)
        elif torn:
            detail = f"`{path}` takes new events; its last line is a torn write, which `serve` closes on start-up"
            yield Finding(check="audit log", status=Status.OK, detail=detail)
        else:
            yield Finding(check="audit log", status=Status.OK, detail=f"`{path}` takes new events")
        return
    existing = next(p for p in path.parents if p.exists())
    if not os.access(existing, os.W_OK | os.X_OK):
        detail = f"`{path}` cannot be created: `{existing}` is not writable by this user"
        yield Finding(check="audit log", status=Status.FAIL, detail=detail)
        return
    yield Finding(check="audit log", status=Status.OK, detail=f"`{path}` is created on start-up")


def _torn_at_start(path: Path) -> bool:
    """Open the log as ``serve`` does at start-up (the same code), raising what it would refuse the log with.

    That check reads only the file's tail but appends to it when the tail is torn, and doctor
    changes nothing: it runs on a sparse copy holding the same tail at the same offsets (the
    messages name ``path``). Returns whether the tail was torn (``serve`` closes it on start-up).
    """
    with tempfile.TemporaryDirectory(prefix="cedargate-doctor-") as scratch, open(path, "rb") as log:
        size = os.fstat(log.fileno()).st_size
        start = max(0, size - TAIL_READ_AT_START)
        copy = Path(scratch) / path.name
        with open(copy, "wb") as out:
            out.truncate(start)  # a hole: no disk used for what the check does not read
            out.seek(start)
            out.write(os.pread(log.fileno(), size - start, start))
        try:
            JsonlAuditLog(copy).close()
        except CedargateError as exc:
            raise CedargateError(str(exc).replace(str(copy), str(path))) from exc
        return copy.stat().st_size != size


def _checkpoint_contradiction(config: Config) -> str | None:
    """Why ``serve`` would refuse the log its signed checkpoints contradict (the same check), or ``None``."""
    checkpoints = config.audit.checkpoints
    if checkpoints is None:
        return None
    try:
        require_consistent(config.audit.path, checkpoints.path, checkpoints.public_key)
    except (CedargateError, OSError, ValueError) as exc:
        return str(exc)
    return None


def _store(config: Config) -> Iterator[Finding]:
    file = sqlite_file(config.store)
    if file is not None and not file.exists():  # opening it would create it
        detail = f"SQLite `{file}` is created and migrated on start-up"
        yield Finding(check="store", status=Status.OK, detail=detail)
        return
    engine = create_store_engine(store_url(config.store))
    where = store_name(engine)
    try:
        current, head, known = current_revision(engine), head_revision(engine), known_revisions(engine)
    except SQLAlchemyError as exc:
        detail = f"`{where}` cannot be read: {database_error(exc)}; check `[store]` in the config"
        yield Finding(check="store", status=Status.FAIL, detail=detail)
        return
    finally:
        engine.dispose()
    if current == head:
        yield Finding(check="store", status=Status.OK, detail=f"`{where}` is at the current schema")
    elif current is None:
        detail = f"`{where}` has no cedargate schema yet: `serve` creates it on start-up"
        yield Finding(check="store", status=Status.OK, detail=detail)
    elif current not in known:
        detail = (
            f"`{where}` is at schema {current}, which this cedargate does not know (it knows up to {head}): "
            "a newer cedargate migrated it; serve it with that version"
        )
        yield Finding(check="store", status=Status.FAIL, detail=detail)
    else:
        detail = (
            f"`{where}` is at schema {current}, this cedargate needs {head}: "
            "`serve` upgrades it on start-up, or run `cedargate db upgrade` first"
        )
        yield Finding(check="store", status=Status.WARN, detail=detail)


def _git() -> Iterator[Finding]:
    version = git_answer(Path("."), ["--version"])
    if version is None:
        yield Finding(check="git", status=Status.FAIL, detail="git is not on the PATH: install git")
    else:
        yield Finding(check="git", status=Status.OK, detail=version)


def _repositories(config: Config, env: Mapping[str, str]) -> Iterator[Finding]:
    if not config.repositories:
        yield Finding(check="repositories", status=Status.WARN, detail="none configured: repository tools refuse")
    for repo in config.repositories:
        yield _repository(repo)
        token = repo.forge.token_env
        if repo.forge.kind != "none" and (token is None or not env.get(token)):
            needs = f"${token} set in `serve`'s environment" if token else "`forge.token_env` in the config"
            detail = f"pull requests to {repo.forge.kind} need {needs}; the branch is pushed either way"
            yield Finding(check=f"repository {repo.name}", status=Status.WARN, detail=detail)


def _repository(repo: RepositoryConfig) -> Finding:
    check, path = f"repository {repo.name}", repo.path  # a loaded config names a clone's path too
    if path is not None and path.is_dir() and git_answer(path, ["rev-parse", "--git-dir"]):
        if git_answer(path, ["rev-parse", "--verify", "--quiet", "HEAD^{commit}"]) is None:
            detail = (
                f"`{path}` ({repo.environment}) has no commits yet: repository tools refuse until the first "
                "commit; commit something there"
            )
            return Finding(check=check, status=Status.WARN, detail=detail)
        return Finding(check=check, status=Status.OK, detail=f"`{path}` ({repo.environment})")
    if repo.clone_url is not None and (path is None or not path.exists()):
        detail = f"cloned from `{repo.clone_url}` on first use ({repo.environment})"
        return Finding(check=check, status=Status.OK, detail=detail)
    detail = f"`{path}` is not a git repository: fix `path` for `{repo.name}` in the config"
    return Finding(check=check, status=Status.FAIL, detail=detail)


def _test_sandbox(config: Config) -> Iterator[Finding]:
    running = [repo.name for repo in config.repositories if repo.test_command]
    if not running:
        yield Finding(check="test sandbox", status=Status.OK, detail="no repository has a `test_command`")
        return
    try:
        bwrap = bwrap_executable()
        probe(bwrap)
    except CedargateError as exc:
        yield Finding(check="test sandbox", status=Status.FAIL, detail=f"{exc} (for {', '.join(running)})")
        return
    if not sizes_tmpfs(bwrap):
        detail = (
            f"`{bwrap}` sandboxes test runs but cannot cap their in-memory files: "
            "install bubblewrap 0.7.0 or later, not setuid"
        )
        yield Finding(check="test sandbox", status=Status.WARN, detail=detail)
        return
    yield Finding(check="test sandbox", status=Status.OK, detail=f"`{bwrap}` builds sandboxes here")


def _aws(config: Config) -> Iterator[Finding]:
    aws = config.aws
    if choose_backend(aws) == "sandbox":
        why = "as configured" if aws.mode == "sandbox" else "no AWS credentials found"
        detail = f"the embedded sandbox account ({why}); {len(aws.accounts)} accounts seeded on the first AWS call"
        yield Finding(check="aws", status=Status.OK, detail=detail)
        return
    credentials = boto3.Session().get_credentials()
    if credentials is None:
        detail = '`aws.mode = "real"` but no AWS credentials were found: every AWS tool call will fail'
        yield Finding(check="aws", status=Status.FAIL, detail=detail)
        return
    detail = f"real AWS, credentials from {credentials.method}; {len(aws.accounts)} accounts, region {aws.region}"
    yield Finding(check="aws", status=Status.OK, detail=detail)


def worst(findings: list[Finding]) -> Status:
    order = [Status.OK, Status.WARN, Status.FAIL]
    return max((f.status for f in findings), key=order.index, default=Status.OK)
