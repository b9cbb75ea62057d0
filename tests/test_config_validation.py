"""Config mistakes that used to load and then fail on every call are refused at load, naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from cedargate.config import load_config
from cedargate.errors import ConfigError
from cedargate.store.engine import store_url

PROD_ACCOUNT = "482910375516"


def _appended(tree: Path, text: str) -> Path:
    path = tree / "cedargate.toml"
    path.write_text(path.read_text() + "\n" + text)
    return path


def _replaced(tree: Path, old: str, new: str) -> Path:
    path = tree / "cedargate.toml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return path


def test_two_accounts_with_one_id_are_refused_naming_both_entries(tree: Path) -> None:
    path = _appended(tree, f'[[aws.accounts]]\nid = "{PROD_ACCOUNT}"\nenvironment = "dev"\n')
    with pytest.raises(ConfigError) as refused:
        load_config(path, environ={})
    assert f"field `aws.accounts.2.id`: `{PROD_ACCOUNT}` is already the id of `aws.accounts.0`" in str(refused.value)


def test_two_repositories_with_one_name_are_refused_naming_both_entries(tree: Path) -> None:
    path = _appended(tree, '[[repositories]]\nname = "acme/web"\npath = "repos/payments"\nenvironment = "prod"\n'
                           'owner_team = "payments"\n')  # fmt: skip
    with pytest.raises(ConfigError) as refused:
        load_config(path, environ={})
    assert "field `repositories.2.name`: `acme/web` is already the name of `repositories.0`" in str(refused.value)


def test_a_default_account_that_is_not_configured_is_refused_naming_the_configured_ones(tree: Path) -> None:
    path = _replaced(tree, 'default_account = "739164028253"', 'default_account = "111111111111"')
    with pytest.raises(ConfigError) as refused:
        load_config(path, environ={})
    message = str(refused.value)
    assert "field `aws.default_account`: `111111111111` is not among `[[aws.accounts]]`" in message
    assert f"(configured: `{PROD_ACCOUNT}`, `739164028253`)" in message


def test_a_duty_whose_role_is_in_one_account_of_several_is_refused_naming_both(tree: Path) -> None:
    """A fixed role would run staging's calls in prod, where the policy never decided."""
    role = f"arn:aws:iam::{PROD_ACCOUNT}:role/cedargate-infra"
    path = _replaced(tree, "infra-operator = {}", f'infra-operator = {{ role_arn = "{role}" }}')
    with pytest.raises(ConfigError) as refused:
        load_config(path, environ={})
    message = str(refused.value)
    assert f"field `aws.duties.infra-operator.role_arn`: `arn:aws:iam::{PROD_ACCOUNT}:role/cedargate-infra`" in message
    assert "so calls to account `739164028253` would run there" in message
    assert "arn:aws:iam::{account}:role/NAME" in message


@pytest.mark.parametrize(
    ("url", "said"),
    [
        (
            "mysql://app:hunter2@db.example/gov",
            "`mysql://app:***@db.example/gov`: the store supports SQLite and PostgreSQL",
        ),
        ("not a url", "`not a url` is not a database URL: give `postgresql+psycopg://"),
        ("postgresql://app:hunter2@db.example/gov", "`postgresql://app:***@db.example/gov` names a PostgreSQL driver"),
    ],
)
def test_a_store_url_the_store_cannot_open_is_refused_at_load_with_what_to_write(
    tree: Path, url: str, said: str
) -> None:
    path = _appended(tree, f'[store]\nurl = "{url}"\n')
    with pytest.raises(ConfigError) as refused:
        load_config(path, environ={})
    message = str(refused.value)
    assert f"field `store.url`: {said}" in message
    assert "hunter2" not in message


def test_a_relative_sqlite_url_is_the_file_beside_the_config_wherever_it_is_loaded_from(
    tree: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _appended(tree, '[store]\nurl = "sqlite:///state/gov.db?timeout=5"\n')
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    config = load_config(path, environ={})
    assert store_url(config.store) == f"sqlite:///{tree.resolve()}/state/gov.db?timeout=5"


def test_a_config_path_that_is_a_folder_says_so_and_names_the_file_in_it(tree: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"is a folder, not a file: pass the path of the config file in it: `.*cedargate.toml`"
    ):
        load_config(tree)
    empty = tree / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match=r"is a folder, not a file: .*run `cedargate init .*empty`"):
        load_config(empty)


AUTH = '[auth]\nissuer = "https://id.example"\njwks_url = "https://id.example/jwks"\nresource_url = "https://cg.example/mcp"\n'


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('resource_url = "not a url"', "field `auth.resource_url`: `not a url` is not an http(s) URL with a host"),
        ('issuer = "id.example"', "field `auth.issuer`: `id.example` is not an http(s) URL with a host"),
        ('jwks_url = "file:///keys.json"', "field `auth.jwks_url`: `file:///keys.json` is not an http(s) URL"),
        ("algorithms = []", "field `auth.algorithms`: no algorithm would check a token against the issuer's public"),
        ('algorithms = ["RS256", "HS256"]', "field `auth.algorithms`: `HS256` cannot check a token against"),
        ('algorithms = ["none"]', "field `auth.algorithms`: `none` cannot check a token against"),
        ("admin_scopes = []", "field `auth.admin_scopes`: empty: the admin API would take any valid token"),
        ('required_scopes = ["mcp tools"]', "field `auth.required_scopes`: `mcp tools` is not one scope"),
    ],
    ids=["resource-url", "issuer", "jwks-url", "no-algorithm", "symmetric", "none", "no-admin-scope", "scope"],
)
def test_an_auth_table_that_would_fail_on_the_first_request_is_refused_at_load_naming_the_field(
    tree: Path, line: str, message: str
) -> None:
    key = line.split(" = ")[0]
    kept = "".join(f"{entry}\n" for entry in AUTH.splitlines() if not entry.startswith(f"{key} ="))
    path = _appended(tree, kept + line + "\n")
    with pytest.raises(ConfigError) as refused:
        load_config(path, environ={})
    assert message in str(refused.value)


@pytest.mark.parametrize(
    ("table", "setting", "field"),
    [
        ("[approvals]", "ttl_minutes = 999999999999999", "approvals.ttl_minutes"),
        ("[budgets.teams.platform]", "day_cents = 99999999999999999999", "budgets.teams.platform.day_cents"),
    ],
)
def test_a_setting_too_large_for_the_clock_or_the_store_is_refused_at_load_naming_the_field(
    tree: Path, table: str, setting: str, field: str
) -> None:
    """Both loaded and passed doctor, then crashed the first call that needed an approval or a budget."""
    path = _appended(tree, f"{table}\n{setting}\n")
    with pytest.raises(ConfigError) as refused:
        load_config(path, environ={})
    assert f"field `{field}`" in str(refused.value) and "less than or equal to" in str(refused.value)
