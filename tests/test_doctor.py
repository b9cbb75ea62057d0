"""``cedargate doctor``: each thing serving needs is checked, named when missing, and nothing is changed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import text
from tests.conftest import ROOT
from tests.governed_tree import governed_config

from cedargate import doctor
from cedargate.cli import main
from cedargate.config import Config, StoreConfig, load_config
from cedargate.doctor import Finding, Status, run_checks
from cedargate.runtime import build_runtime
from cedargate.store.engine import create_store_engine, store_url
from cedargate.store.migrate import upgrade

APPROVER_GROUPS = '[approvals.groups]\nsre = ["bob"]\nmaintainers = ["bob"]\n'
"""A member for each group the shipped policies ask approvals of."""
NO_AWS_CREDENTIALS = {
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/credentials",
    "AWS_CONFIG_FILE": "/nonexistent/config",
    "AWS_EC2_METADATA_DISABLED": "true",
}


@pytest.fixture(autouse=True)
def no_aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in NO_AWS_CREDENTIALS.items():
        monkeypatch.setenv(name, value)


def _by_check(findings: list[Finding]) -> dict[str, Finding]:
    return {f.check: f for f in findings}


def _edited(tree: Path, old: str, new: str) -> Config:
    path = tree / "cedargate.toml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return load_config(path, environ={})


def _appended(tree: Path, text: str) -> Config:
    path = tree / "cedargate.toml"
    path.write_text(path.read_text() + "\n" + text)
    return load_config(path, environ={})


def test_a_fresh_tree_passes_and_nothing_is_created(tree: Path, config: Config) -> None:
    before = sorted(p.name for p in tree.iterdir())
    found = _by_check(run_checks(config, environ={}))
    assert {name: f.status for name, f in found.items()} == {
        "tools and policies": Status.OK,
        "approval groups": Status.WARN,  # the demo names no SRE: see the approval group test
        "principal": Status.OK,
        "auth": Status.OK,
        "audit log": Status.OK,
        "store": Status.OK,
        "git": Status.OK,
        "repository acme/web": Status.OK,
        "repository acme/payments": Status.OK,
        "test sandbox": Status.OK,
        "aws": Status.OK,
    }
    assert "created and migrated on start-up" in found["store"].detail
    assert "created on start-up" in found["audit log"].detail
    assert "embedded sandbox" in found["aws"].detail
    assert sorted(p.name for p in tree.iterdir()) == before  # no store, no audit log, no var/


def test_a_store_behind_the_schema_is_named_with_the_command_that_upgrades_it(tree: Path, config: Config) -> None:
    build_runtime(config).close()
    assert _by_check(run_checks(config, environ={}))["store"].status is Status.OK
    config.store.path.unlink()
    engine = create_store_engine(store_url(config.store))
    upgrade(engine, "0002")
    engine.dispose()
    store = _by_check(run_checks(config, environ={}))["store"]
    assert store.status is Status.WARN
    assert "schema 0002" in store.detail and "`cedargate db upgrade`" in store.detail


def test_each_store_is_read_for_its_schema_and_an_unknown_one_fails(tree: Path, store_config: StoreConfig) -> None:
    config = load_config(governed_config(tree, store_config), environ={})
    engine = create_store_engine(store_url(config.store))
    try:
        if store_config.url:  # an empty PostgreSQL database: serve creates the schema
            assert "no cedargate schema yet" in _by_check(run_checks(config, environ={}))["store"].detail
        upgrade(engine)
        assert _by_check(run_checks(config, environ={}))["store"].status is Status.OK
        with engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
        store = _by_check(run_checks(config, environ={}))["store"]
    finally:
        engine.dispose()
    assert store.status is Status.FAIL and "schema 9999, which this cedargate does not know" in store.detail


def test_an_unreachable_store_fails_naming_it_without_its_password(tree: Path) -> None:
    url = "postgresql+psycopg://cg:hunter2@127.0.0.1:1/cg"
    config = load_config(governed_config(tree, StoreConfig(url=url)), environ={})
    store = _by_check(run_checks(config, environ={}))["store"]
    assert store.status is Status.FAIL and "127.0.0.1:1/cg` cannot be read" in store.detail
    assert "hunter2" not in store.detail


def test_a_policy_that_does_not_parse_fails_the_check_and_the_command(
    tree: Path, config: Config, capsys: pytest.CaptureFixture[str]
) -> None:
    (tree / "policies" / "typo.cedar").write_text("permit(principal, action, resource) whenn { true };\n")
    found = _by_check(run_checks(config, environ={}))
    assert found["tools and policies"].status is Status.FAIL
    assert "typo.cedar" in found["tools and policies"].detail
    assert main(["--config", str(tree / "cedargate.toml"), "doctor", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["status"] == "fail"
    assert {f["check"] for f in report["findings"] if f["status"] == "fail"} == {"tools and policies"}


def test_a_repository_path_that_is_not_a_repository_is_named(tree: Path) -> None:
    (tree / "not-a-repo").mkdir()
    config = _edited(tree, 'path = "repos/web"', 'path = "not-a-repo"')
    web = _by_check(run_checks(config, environ={}))["repository acme/web"]
    assert web.status is Status.FAIL
    assert "not-a-repo` is not a git repository" in web.detail and "acme/web" in web.detail


def test_a_repository_cloned_on_first_use_is_not_cloned_by_the_check(tree: Path) -> None:
    config = _edited(tree, 'path = "repos/web"', 'clone_url = "https://git.example/acme/web.git"')
    web = _by_check(run_checks(config, environ={}))["repository acme/web"]
    assert web.status is Status.OK and "on first use" in web.detail
    assert not (tree / "var").exists()


def test_a_forge_without_its_token_in_the_environment_is_a_warning(tree: Path) -> None:
    forge = '[repositories.forge]\nkind = "github"\nrepository = "acme/web"\ntoken_env = "WEB_TOKEN"\n'
    _edited(tree, 'owner_team = "storefront"\n', 'owner_team = "storefront"\n' + forge)
    config = _appended(tree, APPROVER_GROUPS)
    without = [f for f in run_checks(config, environ={}) if f.status is Status.WARN]
    assert [f.check for f in without] == ["repository acme/web"]
    assert "$WEB_TOKEN" in without[0].detail
    assert all(f.status is Status.OK for f in run_checks(config, environ={"WEB_TOKEN": "t"}))


def test_test_runs_without_bubblewrap_fail_the_check(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = _edited(tree, 'owner_team = "storefront"\n', 'owner_team = "storefront"\ntest_command = "true"\n')
    monkeypatch.setattr("cedargate.sandbox.BWRAP", "bwrap-not-installed")
    sandbox = _by_check(run_checks(config, environ={}))["test sandbox"]
    assert sandbox.status is Status.FAIL
    assert "needs bubblewrap" in sandbox.detail and "acme/web" in sandbox.detail


def test_real_aws_without_credentials_fails_and_with_them_is_named(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = _edited(tree, 'mode = "sandbox"', 'mode = "real"')
    aws = _by_check(run_checks(config, environ={}))["aws"]
    assert aws.status is Status.FAIL and "no AWS credentials" in aws.detail
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    aws = _by_check(run_checks(config, environ={}))["aws"]
    assert aws.status is Status.OK and "real AWS, credentials from env" in aws.detail


def test_a_check_that_breaks_is_reported_and_the_others_still_run(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> None:
        raise RuntimeError("surprise")

    monkeypatch.setattr(doctor, "_git", broken)
    found = _by_check(run_checks(config, environ={}))
    assert found["git"].status is Status.FAIL and "surprise" in found["git"].detail
    assert found["aws"].status is Status.OK


def test_the_checkout_itself_is_ready_to_serve(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(ROOT / "cedargate.toml"), "doctor"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines and all(line.split()[0] in ("ok", "warn") for line in lines)


def test_an_approval_group_the_config_does_not_fill_is_a_warning_naming_its_policy(tree: Path, config: Config) -> None:
    groups = _by_check(run_checks(config, environ={}))["approval groups"]
    assert groups.status is Status.WARN
    assert "`sre` (asked for by `staging-destructive-needs-sre` in `policies/staging.cedar:" in groups.detail
    assert 'sre = ["user", ...]' in groups.detail
    empty = _by_check(run_checks(_appended(tree, "[approvals.groups]\nsre = []\n"), environ={}))["approval groups"]
    assert empty.status is Status.WARN and "`sre`" in empty.detail


def test_an_approval_group_with_members_passes(tree: Path) -> None:
    groups = _by_check(run_checks(_appended(tree, APPROVER_GROUPS), environ={}))["approval groups"]
    assert groups.status is Status.OK and "`sre`" in groups.detail and "`maintainers`" in groups.detail


def _without_principal(tree: Path, extra: str = "") -> Path:
    path = tree / "cedargate.toml"
    text = path.read_text()
    start, end = text.index("[principal]"), text.index("[audit]")
    path.write_text(text[:start] + text[end:] + extra)
    return path


def test_no_principal_fails_the_check_and_the_command_as_stdio_serving_would(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _without_principal(tree)
    principal = _by_check(run_checks(load_config(path, environ={}), environ={}))["principal"]
    assert principal.status is Status.FAIL
    assert "`serve` refuses to start" in principal.detail and "add a [principal] table" in principal.detail
    assert main(["--config", str(path), "doctor"]) == 1
    assert "fail  principal" in capsys.readouterr().out


def test_a_principal_from_the_environment_passes_and_says_where_it_came_from(tree: Path) -> None:
    env = {"CEDARGATE_AGENT": "codex-ci", "CEDARGATE_TEAM": "storefront", "CEDARGATE_USER": "alice"}
    config = load_config(_without_principal(tree), environ=env)
    principal = _by_check(run_checks(config, environ=env))["principal"]
    assert principal.status is Status.OK
    assert "agent `codex-ci`" in principal.detail and "$CEDARGATE_AGENT" in principal.detail


def test_no_principal_with_bearer_auth_passes_and_says_stdio_would_refuse(tree: Path) -> None:
    auth = (
        '\n[auth]\nissuer = "https://id.example"\njwks_url = "https://id.example/jwks"\n'
        'resource_url = "http://127.0.0.1:8750/mcp"\n'
    )
    config = load_config(_without_principal(tree, auth), environ={})
    principal = _by_check(run_checks(config, environ={}))["principal"]
    assert principal.status is Status.OK
    assert "bearer tokens" in principal.detail and "over stdio `serve` refuses to start" in principal.detail


def test_a_sqlite_url_store_not_yet_created_is_not_created_by_the_check(tree: Path) -> None:
    config = _appended(tree, '[store]\nurl = "sqlite:///state/gov.db"\n')
    store = _by_check(run_checks(config, environ={}))["store"]
    assert store.status is Status.OK and f"`{tree.resolve()}/state/gov.db` is created" in store.detail
    assert not (tree / "state").exists()


def test_auth_over_plain_http_beyond_loopback_is_a_warning_naming_the_urls(tree: Path) -> None:
    auth = (
        '\n[auth]\nissuer = "http://id.example"\njwks_url = "http://id.example/jwks"\n'
        'resource_url = "http://127.0.0.1:8750/mcp"\nadmin_scopes = ["approve"]\n'
    )
    findings = run_checks(load_config(_without_principal(tree, auth), environ={}), environ={})
    auth_findings = [f for f in findings if f.check == "auth"]
    assert [f.status for f in auth_findings] == [Status.WARN, Status.OK]
    assert "`issuer` (`http://id.example`), `jwks_url` (`http://id.example/jwks`) not over https" in (
        auth_findings[0].detail
    )
    assert "/admin needs `approve`" in auth_findings[1].detail


def test_an_auth_url_that_is_not_a_url_fails_the_doctor_naming_the_field(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    auth = '\n[auth]\nissuer = "https://id.example"\njwks_url = "https://id.example/jwks"\nresource_url = "not a url"\n'
    path = _without_principal(tree, auth)
    assert main(["--config", str(path), "doctor"]) == 2
    assert "field `auth.resource_url`: `not a url` is not an http(s) URL with a host" in capsys.readouterr().err
