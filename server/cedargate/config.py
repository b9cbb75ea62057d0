"""The server's configuration: who the stdio principal is, which repositories and accounts exist.

Loaded from a TOML file (``cedargate.toml``); relative paths are resolved against the file's
folder so a config can be moved with its tree. Environment variables override the principal
so one config serves several agents launched by different clients.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from cedargate.errors import ConfigError, describe_validation_error

CONFIG_ENV = "CEDARGATE_CONFIG"
DEFAULT_CONFIG_NAME = "cedargate.toml"

Identifier = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._@/:-]*$")]
Mode = Literal["interactive", "autonomous"]

PRINCIPAL_ENV_OVERRIDES: Mapping[str, str] = {
    "CEDARGATE_AGENT": "agent",
    "CEDARGATE_TEAM": "team",
    "CEDARGATE_USER": "on_behalf_of",
    "CEDARGATE_MODE": "mode",
    "CEDARGATE_TASK": "task",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PrincipalConfig(_Strict):
    """Who calls over stdio: the agent, its team, the human it acts for, how, and for which task."""

    agent: Identifier
    team: Identifier
    on_behalf_of: Identifier
    mode: Mode = "interactive"
    task: Identifier = "adhoc"


class RepositoryConfig(_Strict):
    """A git repository agents may reach, and the governance facts policies see about it."""

    name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]+/[A-Za-z0-9._-]+$")]
    path: Path
    environment: Identifier
    owner_team: Identifier
    protected_branches: tuple[str, ...] = ("main",)
    task_branch_prefix: str = "agent/"


class AwsAccountConfig(_Strict):
    """An AWS account and the environment it belongs to."""

    id: Annotated[str, StringConstraints(pattern=r"^[0-9]{12}$")]
    environment: Identifier
    alias: str = ""


class AwsConfig(_Strict):
    """Where AWS calls go: the embedded sandbox (moto) or the real cloud."""

    mode: Literal["sandbox", "real", "auto"] = "auto"
    region: str = "us-east-1"
    default_account: str | None = None
    accounts: tuple[AwsAccountConfig, ...] = ()


class AuditConfig(_Strict):
    """Where the audit trail goes and how hard each line is pushed to disk."""

    path: Path = Path("var/audit.jsonl")
    fsync: bool = False


class Config(_Strict):
    """The whole configuration, with every path already absolute."""

    tools_dir: Path = Path("tools")
    policies_dir: Path = Path("policies")
    principal: PrincipalConfig | None = None
    audit: AuditConfig = AuditConfig()
    aws: AwsConfig = AwsConfig()
    repositories: tuple[RepositoryConfig, ...] = ()
    base_dir: Path = Field(default=Path("."), exclude=True)

    def repository(self, name: str) -> RepositoryConfig | None:
        repositories, index = self.repository_index
        if repositories is not self.repositories:  # a model_copy carried an index of other repositories
            del self.__dict__["repository_index"]
            repositories, index = self.repository_index
        return index.get(name)

    @cached_property
    def repository_index(self) -> tuple[tuple[RepositoryConfig, ...], dict[str, RepositoryConfig]]:
        """Repositories by name (the first of a name wins), built once: every call looks one up."""
        index: dict[str, RepositoryConfig] = {}
        for repo in self.repositories:
            index.setdefault(repo.name, repo)
        return self.repositories, index

    def aws_account(self, account_id: str) -> AwsAccountConfig | None:
        return next((a for a in self.aws.accounts if a.id == account_id), None)


def find_config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Pick the config file: the explicit path, then ``$CEDARGATE_CONFIG``, then ``./cedargate.toml``."""
    candidate = explicit or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_NAME
    path = Path(candidate).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"config file `{path}` not found: pass --config PATH, set ${CONFIG_ENV}, "
            f"or run `cedargate init` to write a starting {DEFAULT_CONFIG_NAME}"
        )
    return path.resolve()


def load_config(path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Read, override and validate the config; fails with the file and the field at fault."""
    config_path = find_config_path(path)
    try:
        raw = tomllib.loads(config_path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file `{config_path}` is not valid TOML: {exc}") from exc
    raw = _apply_principal_overrides(raw, os.environ if environ is None else environ)
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"config file `{config_path}`: {describe_validation_error(exc)}") from exc
    return _resolve_paths(config, config_path.parent)


def _apply_principal_overrides(raw: dict[str, object], environ: Mapping[str, str]) -> dict[str, object]:
    overrides = {field: environ[var] for var, field in PRINCIPAL_ENV_OVERRIDES.items() if environ.get(var)}
    if not overrides:
        return raw
    principal = dict(raw.get("principal") or {})  # type: ignore[call-overload]
    principal.update(overrides)
    return {**raw, "principal": principal}


def _resolve_paths(config: Config, base: Path) -> Config:
    def absolute(p: Path) -> Path:
        return p if p.is_absolute() else (base / p).resolve()

    return config.model_copy(
        update={
            "base_dir": base,
            "tools_dir": absolute(config.tools_dir),
            "policies_dir": absolute(config.policies_dir),
            "audit": config.audit.model_copy(update={"path": absolute(config.audit.path)}),
            "repositories": tuple(r.model_copy(update={"path": absolute(r.path)}) for r in config.repositories),
        }
    )
