"""The server's configuration: who the stdio principal is, which repositories and accounts exist.

Loaded from a TOML file (``cedargate.toml``); relative paths are resolved against the file's
folder so a config can be moved with its tree. Environment variables override the principal
so one config serves several agents launched by different clients. The config is read once,
at start-up: hot reload watches the file only to say that an edit needs a restart.
"""

from __future__ import annotations

import hashlib
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from cedargate.errors import ConfigError, describe_validation_error, quoted
from cedargate.path_classes import Patterns
from cedargate.text_file import read_text_file

CONFIG_ENV = "CEDARGATE_CONFIG"
DEFAULT_CONFIG_NAME = "cedargate.toml"

Identifier = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._@/:-]*$")]
Mode = Literal["interactive", "autonomous"]
PathClasses = dict[Identifier, Patterns]

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


class ForgeConfig(_Strict):
    """Where pull requests are opened: GitHub's REST API, or none (the branch is only pushed).

    The token is never in the config itself: ``token_env`` names the environment variable
    that holds it, read when a pull request is opened and never logged or audited.
    """

    kind: Literal["github", "none"] = "none"
    api_url: str = "https://api.github.com"
    repository: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]+/[A-Za-z0-9._-]+$")] | None = None
    token_env: Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] | None = None


_A_YEAR_S: Final = 366 * 24 * 3600
"""The longest interval a setting takes: more overflows the clock arithmetic it feeds (a crash on first use)."""
_MOST_CENTS: Final = 2**62
"""The largest cap the store's integer columns hold with room for sums."""


class RepositoryConfig(_Strict):
    """A git repository agents may reach, and the governance facts policies see about it.

    ``path`` is a local repository; with only ``clone_url`` the repository is cloned on first
    use into ``var/repos/<org>/<name>`` and fetched again on the first use ``refresh_seconds``
    after the last fetch (a repository that must stay as it is is given by ``path``).
    ``remote`` (a URL or absolute path) receives pushed task branches. Task workspaces live
    under ``workspaces_dir`` (by default the config's ``workspaces_dir/<org>/<name>``).
    """

    name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]+/[A-Za-z0-9._-]+$")]
    path: Path | None = None
    clone_url: str | None = None
    refresh_seconds: Annotated[int, Field(ge=0, le=_A_YEAR_S)] = 300
    environment: Identifier
    owner_team: Identifier
    protected_branches: tuple[str, ...] = ("main",)
    task_branch_prefix: str = "agent/"
    remote: str | None = None
    forge: ForgeConfig = ForgeConfig()
    test_command: str | None = None
    test_timeout_seconds: Annotated[int, Field(ge=1, le=3600)] = 300
    test_memory_mb: Annotated[int, Field(ge=64, le=65536)] = 2048
    workspaces_dir: Path | None = None
    path_classes: PathClasses = Field(default_factory=dict)
    """Classes of this repository's own: each widens the config's class of its name, never narrows it
    (matched on its own; see ``change_paths.path_classes_of``)."""

    @model_validator(mode="after")
    def _has_a_source(self) -> RepositoryConfig:
        if self.path is None and self.clone_url is None:
            raise ValueError(f"repository `{self.name}` needs `path` (a local repository) or `clone_url`")
        return self


class AwsAccountConfig(_Strict):
    """An AWS account and the environment it belongs to."""

    id: Annotated[str, StringConstraints(pattern=r"^[0-9]{12}$")]
    environment: Identifier
    alias: str = ""


_ROLE_ARN_TEMPLATE = r"^arn:aws[a-z-]*:iam::(\{account\}|[0-9]{12}):role/[\w+=,.@/{}-]+$"


class AwsDutyConfig(_Strict):
    """A duty identity: the role an AWS tool's calls run as, assumed per account and principal.

    ``role_arn`` may name ``{account}`` (the account the call targets) and ``{duty}`` (the
    duty's name), so one duty spans accounts that each carry the same role.
    """

    role_arn: Annotated[str, StringConstraints(pattern=_ROLE_ARN_TEMPLATE)] = (
        "arn:aws:iam::{account}:role/cedargate-{duty}"
    )
    session_seconds: Annotated[int, Field(ge=900, le=43200)] = 900
    external_id: str | None = None
    description: str = ""

    def role_for(self, duty: str, account: str) -> str:
        return self.role_arn.replace("{duty}", duty).replace("{account}", account)


class AwsConfig(_Strict):
    """Where AWS calls go (the embedded sandbox or the real cloud), which accounts, which duties."""

    mode: Literal["sandbox", "real", "auto"] = "auto"
    region: str = "us-east-1"
    default_account: str | None = None
    accounts: tuple[AwsAccountConfig, ...] = ()
    duties: dict[Identifier, AwsDutyConfig] = Field(default_factory=dict)
    # How long an AWS call may take before it is a (audited) tool error; ``endpoint_url``
    # points every client at one endpoint (a VPC endpoint, a local stand-in).
    endpoint_url: str | None = None
    connect_timeout: Annotated[float, Field(gt=0, le=300)] = 5
    read_timeout: Annotated[float, Field(gt=0, le=900)] = 20
    max_attempts: Annotated[int, Field(ge=0, le=10)] = 2
    """Retries after the first attempt (botocore's `retries.max_attempts`)."""


class CheckpointConfig(_Strict):
    """Signed checkpoints of the chain head: where they are kept and the public key that checks them.

    The private key stays with the signer (``cedargate audit checkpoint --key``); the serving
    process reads only ``public_key``, and refuses to start on a log its checkpoints contradict.
    """

    path: Path = Path("var/audit.checkpoints.jsonl")
    public_key: Path


class CloudWatchSinkConfig(_Strict):
    """Copy every audit event to a CloudWatch Logs stream (created if missing), with the server's AWS access."""

    kind: Literal["cloudwatch"]
    log_group: Annotated[str, StringConstraints(min_length=1, max_length=512)]
    log_stream: Annotated[str, StringConstraints(min_length=1, max_length=512)] = "cedargate-audit"


class OpenTelemetrySinkConfig(_Strict):
    """Record every call as a span through the process's OpenTelemetry tracer provider."""

    kind: Literal["opentelemetry"]


class DatabaseSinkConfig(_Strict):
    """Copy every audit event into the ``audit_events`` table of the ``[store]`` database, for SQL queries."""

    kind: Literal["database"]


SinkConfig = Annotated[CloudWatchSinkConfig | OpenTelemetrySinkConfig | DatabaseSinkConfig, Field(discriminator="kind")]


class AuditConfig(_Strict):
    """Where the audit trail goes and how hard each line is pushed to disk.

    ``path`` is the primary, fail-closed log; ``sinks`` are secondary copies that retry and
    report when they fail, and never stop a call.
    """

    path: Path = Path("var/audit.jsonl")
    fsync: bool = False
    checkpoints: CheckpointConfig | None = None
    sinks: tuple[SinkConfig, ...] = ()


class PolicyConfig(_Strict):
    """How the policy set is enforced and refreshed.

    ``shadow_files`` (names under ``policies_dir``) are evaluated on every call but never
    enforced: what they would change is audited. In ``shadow_environments`` no decision is
    enforced at all: a deny is audited as "would deny" and the call runs. Meant for rolling
    out a new policy; a shadow environment is not governed, so keep it to sandboxes.
    """

    shadow_files: tuple[str, ...] = ()
    shadow_environments: tuple[Identifier, ...] = ()
    reload_interval_seconds: Annotated[float, Field(ge=0, le=3600)] = 2.0
    """How often ``tools/`` and ``policies/`` are checked for changes while serving; 0 turns reload off."""


STORE_URL_EXAMPLES = "`postgresql+psycopg://user@host/db` or `sqlite:///PATH` (or `[store] path` in place of `url`)"
STORE_DRIVERS = frozenset({"sqlite", "sqlite+pysqlite", "postgresql+psycopg"})
"""The SQLAlchemy drivers the store ships with; any other would fail on first use (its module is not installed)."""


class StoreConfig(_Strict):
    """Where governance state lives: a SQLite file, or PostgreSQL when ``url`` is set (several replicas).

    A relative SQLite path, in ``path`` or in a ``sqlite:///`` ``url``, is under the config's folder.
    """

    path: Path = Path("var/cedargate.db")
    url: str | None = None

    @field_validator("url")
    @classmethod
    def _a_supported_database(cls, url: str | None) -> str | None:
        """Refuse at load a URL the store cannot open, rather than a traceback from the first command that opens it."""
        problem = store_url_problem(url) if url else None
        if problem is not None:
            raise PydanticCustomError("store_url", "{problem}", {"problem": problem})
        return url


def store_url_problem(url: str) -> str | None:
    """Why the store cannot open ``url`` (never echoing its password), or ``None`` when it can."""
    from sqlalchemy.engine import make_url  # only configs with a `url` pay for SQLAlchemy here
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return f"{quoted(url)} is not a database URL: give {STORE_URL_EXAMPLES}"
    if parsed.drivername in STORE_DRIVERS:
        return None
    shown = quoted(parsed.render_as_string(hide_password=True))
    if parsed.get_backend_name() in ("postgresql", "postgres"):
        return (
            f"{shown} names a PostgreSQL driver this cedargate does not have: "
            f"write `postgresql+psycopg://` in place of `{parsed.drivername}://`"
        )
    return (
        f"{shown}: the store supports SQLite and PostgreSQL (through psycopg), not `{parsed.drivername}`; "
        f"give {STORE_URL_EXAMPLES}"
    )


class ApprovalsConfig(_Strict):
    """How long an approval request stays open, and which users belong to each approver group."""

    ttl_minutes: Annotated[int, Field(gt=0, le=_A_YEAR_S // 60)] = 60
    groups: dict[Identifier, tuple[Identifier, ...]] = {}


class CapsConfig(_Strict):
    """Caps of one team or agent; ``None`` means no cap of that kind."""

    day_cents: Annotated[int, Field(ge=0, le=_MOST_CENTS)] | None = None
    month_cents: Annotated[int, Field(ge=0, le=_MOST_CENTS)] | None = None
    calls_per_minute: Annotated[int, Field(ge=0, le=_MOST_CENTS)] | None = None


class BudgetsConfig(_Strict):
    """Spend and rate caps per team and per agent (keys are team and agent ids)."""

    teams: dict[Identifier, CapsConfig] = {}
    agents: dict[Identifier, CapsConfig] = {}


class ClaimsConfig(_Strict):
    """Which JWT claim carries each part of the principal."""

    agent: str = "sub"
    team: str = "team"
    on_behalf_of: str = "on_behalf_of"
    mode: str = "mode"
    task: str = "task"
    user: str = "sub"
    """The claim naming the human in an approver's token (admin API)."""


ASYMMETRIC_JWS_ALGORITHMS: Final = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)
"""Signatures a JWKS's public keys can check. ``HS*`` would need a secret shared with every client, ``none`` no key."""
ADMIN_SCOPE: Final = "cedargate:admin"

_SCOPE_TOKEN: Final = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]+$")
"""An OAuth scope (RFC 6749 §3.3): printable ASCII without spaces, quotes or backslashes."""


class AuthConfig(_Strict):
    """Streamable HTTP as an OAuth 2.1 resource server: bearer JWTs from ``issuer``, for ``resource_url``.

    Checked at load, so ``doctor`` and ``serve`` refuse what would otherwise fail on the first
    request or refuse every token: URLs that are not http(s) URLs, no algorithm, an algorithm
    without a public key (``HS256``, ``none``), or an admin API any agent's token could use.
    """

    issuer: str
    jwks_url: str
    resource_url: str
    algorithms: tuple[str, ...] = ("RS256", "ES256")
    required_scopes: tuple[str, ...] = ()
    """Scopes every ``/mcp`` request's token must carry."""
    admin_scopes: tuple[str, ...] = (ADMIN_SCOPE,)
    """Scopes every ``/admin`` request's token must carry: what an approver has and an agent's token does not."""
    claims: ClaimsConfig = ClaimsConfig()

    @field_validator("issuer", "jwks_url", "resource_url")
    @classmethod
    def _an_http_url(cls, value: str) -> str:
        problem = http_url_problem(value)
        if problem is not None:
            raise PydanticCustomError("http_url", "{problem}", {"problem": problem})
        return value

    @field_validator("algorithms")
    @classmethod
    def _asymmetric_algorithms(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [name for name in value if name not in ASYMMETRIC_JWS_ALGORITHMS]
        if not value or unknown:
            found = f"{', '.join(f'`{name}`' for name in unknown)} cannot" if unknown else "no algorithm would"
            raise PydanticCustomError(
                "jws_algorithms",
                "{found} check a token against the issuer's public keys; list one or more of {known}",
                {"found": found, "known": ", ".join(ASYMMETRIC_JWS_ALGORITHMS)},
            )
        return value

    @field_validator("required_scopes", "admin_scopes")
    @classmethod
    def _scope_tokens(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for scope in value:
            if not _SCOPE_TOKEN.match(scope):
                raise PydanticCustomError(
                    "scope", "`{scope}` is not one scope: printable ASCII without spaces or quotes", {"scope": scope}
                )
        return value

    @field_validator("admin_scopes")
    @classmethod
    def _admin_needs_a_scope(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise PydanticCustomError(
                "admin_scopes",
                "empty: the admin API would take any valid token, an agent's too, as an approver's; "
                "name the scope your issuer grants approvers only (default `{scope}`)",
                {"scope": ADMIN_SCOPE},
            )
        return value


def http_url_problem(value: str) -> str | None:
    """Why ``value`` is no absolute http(s) URL with a host (as the MCP SDK parses it), or ``None``."""
    from pydantic import AnyHttpUrl

    try:
        AnyHttpUrl(value)
    except ValidationError:
        return f"`{value}` is not an http(s) URL with a host; write it as `https://host/path`"
    return None


class Config(_Strict):
    """The whole configuration, with every path already absolute."""

    tools_dir: Path = Path("tools")
    tools_lock: Path | None = None
    """The reviewed manifests' hashes (``cedargate tools lock``); when set, only locked manifests are served."""
    policies_dir: Path = Path("policies")
    principal: PrincipalConfig | None = None
    audit: AuditConfig = AuditConfig()
    policy: PolicyConfig = PolicyConfig()
    aws: AwsConfig = AwsConfig()
    repositories: tuple[RepositoryConfig, ...] = ()
    path_classes: PathClasses = Field(default_factory=dict)
    """Named sets of gitignore patterns; policies see the classes a call's changed paths fall in."""
    workspaces_dir: Path = Path("var/workspaces")
    store: StoreConfig = StoreConfig()
    approvals: ApprovalsConfig = ApprovalsConfig()
    budgets: BudgetsConfig = BudgetsConfig()
    auth: AuthConfig | None = None
    base_dir: Path = Field(default=Path("."), exclude=True)
    source: Path | None = Field(default=None, exclude=True)
    """The config file this was read from (``None`` when built in code); hot reload watches it."""
    source_sha256: str | None = Field(default=None, exclude=True)
    """sha256 of the file's bytes as read: hot reload compares the file on disk against it."""

    @model_validator(mode="after")
    def _each_name_once(self) -> Config:
        """Refuse an account id or a repository name given twice.

        Cedar refuses two entities of one id, so every call would be denied at runtime; a second
        repository of one name would never be reached.
        """
        _refuse_repeats("aws.accounts", "id", [account.id for account in self.aws.accounts])
        _refuse_repeats("repositories", "name", [repo.name for repo in self.repositories])
        return self

    @model_validator(mode="after")
    def _default_account_is_configured(self) -> Config:
        """Refuse a default account that is not configured: every AWS call that omits `account` would fail."""
        default = self.aws.default_account
        if default is not None and self.aws_account(default) is None:
            known = ", ".join(f"`{a.id}`" for a in self.aws.accounts) or "none"
            raise ValueError(
                f"field `aws.default_account`: {quoted(default)} is not among `[[aws.accounts]]` "
                f"(configured: {known}); set it to one of them, or add an `[[aws.accounts]]` entry with that id"
            )
        return self

    @model_validator(mode="after")
    def _duties_run_in_the_calls_account(self) -> Config:
        """Refuse a duty whose role, for some configured account, is in another account.

        A fixed ``role_arn`` would run every call of the duty in its one account, whatever account
        the policy decided on (a staging call stopping a prod instance). The call-time check in
        ``aws_duty`` fails closed as well.
        """
        for duty, spec in sorted(self.aws.duties.items()):
            for account in self.aws.accounts:
                role = spec.role_for(duty, account.id)
                role_account = role.split(":")[4]
                if role_account != account.id:
                    raise ValueError(
                        f"field `aws.duties.{duty}.role_arn`: `{role}` is in account `{role_account}`, so calls "
                        f"to account `{account.id}` would run there, not where the policy decided; write the "
                        "role as `arn:aws:iam::{account}:role/NAME`"
                    )
        return self

    @property
    def defined_path_classes(self) -> frozenset[str]:
        """Every path class the config or one of its repositories defines."""
        return frozenset(self.path_classes).union(*(r.path_classes for r in self.repositories))

    @property
    def environments(self) -> frozenset[str]:
        """Every environment a configured repository or AWS account is in."""
        return frozenset({r.environment for r in self.repositories} | {a.environment for a in self.aws.accounts})

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


def _refuse_repeats(table: str, key: str, values: Sequence[str]) -> None:
    """Fail naming the second entry of ``table`` whose ``key`` repeats an earlier one, and that earlier one."""
    first: dict[str, int] = {}
    for index, value in enumerate(values):
        if value in first:
            raise ValueError(
                f"field `{table}.{index}.{key}`: {quoted(value)} is already the {key} of `{table}.{first[value]}`; "
                f"give each entry its own {key}, or remove one of them"
            )
        first.setdefault(value, index)


def find_config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Pick the config file: the explicit path, then ``$CEDARGATE_CONFIG``, then ``./cedargate.toml``."""
    candidate = explicit or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_NAME
    path = Path(candidate).expanduser()
    if path.is_dir():
        inside = path / DEFAULT_CONFIG_NAME
        what = (
            f"pass the path of the config file in it: `{inside}`"
            if inside.is_file()
            else f"pass the path of a config file, or run `cedargate init {path}` to write `{inside}`"
        )
        raise ConfigError(f"config path `{path}` is a folder, not a file: {what}")
    if not path.is_file():
        raise ConfigError(
            f"config file `{path}` not found: pass --config PATH, set ${CONFIG_ENV}, "
            f"or run `cedargate init` to write a starting {DEFAULT_CONFIG_NAME}"
        )
    return path.resolve()


def load_config(path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Read, override and validate the config; fails with the file and the field at fault."""
    config_path = find_config_path(path)
    digest = config_file_sha256(config_path)
    try:
        raw = tomllib.loads(read_text_file(config_path, ConfigError))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file `{config_path}` is not valid TOML: {exc}") from exc
    env = os.environ if environ is None else environ
    raw = _apply_principal_overrides(raw, env)
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(
            f"config file `{config_path}`: {describe_validation_error(exc)}{_principal_note(exc, env)}"
        ) from exc
    return _resolve_paths(config, config_path.parent).model_copy(
        update={"source": config_path, "source_sha256": digest}
    )


def config_file_sha256(path: Path) -> str | None:
    """sha256 of the file's bytes, ``None`` when it cannot be read (reading it again says why)."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _principal_note(exc: ValidationError, environ: Mapping[str, str]) -> str:
    """Which environment variables filled the [principal] table, when that table is at fault."""
    if not any(error["loc"][:1] == ("principal",) for error in exc.errors()):
        return ""
    used = [f"${var}" for var in PRINCIPAL_ENV_OVERRIDES if environ.get(var)]
    if not used:
        return ""
    unset = [f"${var}" for var in PRINCIPAL_ENV_OVERRIDES if not environ.get(var)]
    others = f"the config's [principal] or {', '.join(unset)}" if unset else "nowhere else"
    return f" ([principal] took {', '.join(used)} from the environment; the other fields come from {others})"


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

    def watched(p: Path) -> Path:
        """Absolute, symlinks kept: each reload poll follows a link (``policies -> v2``) as it is then."""
        return p if p.is_absolute() else base / p

    return config.model_copy(
        update={
            "base_dir": base,
            "tools_dir": watched(config.tools_dir),
            "tools_lock": config.tools_lock and watched(config.tools_lock),
            "policies_dir": watched(config.policies_dir),
            "audit": config.audit.model_copy(
                update={
                    "path": absolute(config.audit.path),
                    "checkpoints": config.audit.checkpoints
                    and config.audit.checkpoints.model_copy(
                        update={
                            "path": absolute(config.audit.checkpoints.path),
                            "public_key": absolute(config.audit.checkpoints.public_key),
                        }
                    ),
                }
            ),
            "workspaces_dir": absolute(config.workspaces_dir),
            "repositories": tuple(
                _resolve_repository(r, base, absolute(config.workspaces_dir)) for r in config.repositories
            ),
            "store": _resolve_store(config.store, base),
        }
    )


def _resolve_store(store: StoreConfig, base: Path) -> StoreConfig:
    """Absolute SQLite paths, in ``path`` and in a ``sqlite:///`` ``url`` alike.

    A relative path left to the working directory would let a command run from another folder
    (``cedargate revoke``) write into a database the server never reads.
    """
    url = store.url and _sqlite_url_under(base, store.url)
    return store.model_copy(update={"path": path_under(base, store.path), "url": url})


def _sqlite_url_under(base: Path, url: str) -> str:
    from sqlalchemy.engine import make_url

    database = sqlite_database(url)
    if database is None:
        return url
    return make_url(url).set(database=str(path_under(base, database))).render_as_string(hide_password=False)


def sqlite_database(url: str) -> Path | None:
    """The file of a ``sqlite:///`` URL; ``None`` for PostgreSQL, in-memory and SQLite URI filenames (own syntax)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def _resolve_repository(repo: RepositoryConfig, base: Path, workspaces: Path) -> RepositoryConfig:
    """Absolute paths for a repository: its checkout, its workspaces, and a path-like remote."""
    path = repo.path if repo.path is not None else Path("var/repos") / repo.name
    remote = repo.remote
    if remote is not None and "://" not in remote and not remote.startswith("git@"):
        remote = str(path_under(base, Path(remote)))
    return repo.model_copy(
        update={
            "path": path_under(base, path),
            "remote": remote,
            "workspaces_dir": path_under(base, repo.workspaces_dir) if repo.workspaces_dir else workspaces / repo.name,
        }
    )


def path_under(base: Path, p: Path) -> Path:
    return p if p.is_absolute() else (base / p).resolve()
