"""The governance store: migrations create the schema on SQLite and PostgreSQL alike."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from sqlalchemy import inspect, text
from tests.governed_tree import store_toml

from cedargate.cli import main
from cedargate.config import StoreConfig
from cedargate.errors import StoreError
from cedargate.store import open_store
from cedargate.store.migrate import current_revision, head_revision
from cedargate.store.tables import metadata


def test_opening_a_store_migrates_it_to_the_newest_revision_with_every_table(store_config: StoreConfig) -> None:
    store = open_store(store_config)
    try:
        assert current_revision(store.engine) == head_revision(store.engine)
        tables = set(inspect(store.engine).get_table_names())
        assert set(metadata.tables) <= tables
        for name, table in metadata.tables.items():
            columns = {c["name"] for c in inspect(store.engine).get_columns(name)}
            assert columns == {c.name for c in table.columns}
    finally:
        store.close()


def test_opening_a_store_twice_leaves_the_migrated_schema_alone(store_config: StoreConfig) -> None:
    open_store(store_config).close()
    store = open_store(store_config)
    try:
        assert current_revision(store.engine) == head_revision(store.engine)
    finally:
        store.close()


def test_db_upgrade_reports_the_backend_and_revision(
    store_config: StoreConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "db.toml"
    config.write_text(store_toml(store_config))
    assert main(["--config", str(config), "db", "upgrade", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["backend"] == ("postgresql" if store_config.url else "sqlite")
    assert report["revision"] == "0005"


def test_an_unreachable_database_stops_start_up_with_the_store_named(tmp_path: Path) -> None:
    with pytest.raises(StoreError) as failed:
        open_store(StoreConfig(url="postgresql+psycopg://nobody@127.0.0.1:1/none"))
    assert "store `postgresql+psycopg://nobody@127.0.0.1:1/none` cannot be opened" in str(failed.value)


def test_a_schema_from_a_newer_cedargate_stops_start_up_with_a_clear_error(store_config: StoreConfig) -> None:
    store = open_store(store_config)
    with store.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    store.close()
    with pytest.raises(StoreError, match=r"at a schema this cedargate does not know \(.*'9999'\): a newer cedargate"):
        open_store(store_config)


def test_servers_starting_together_on_a_new_store_all_start(store_config: StoreConfig) -> None:
    """Two agent sessions on one fresh config start their servers at once: each migrates, one at a time."""
    starting = threading.Barrier(4)
    failures: list[str] = []

    def start() -> None:
        starting.wait()
        try:
            open_store(store_config).close()
        except StoreError as exc:
            failures.append(str(exc))

    servers = [threading.Thread(target=start) for _ in range(4)]
    for server in servers:
        server.start()
    for server in servers:
        server.join(timeout=120)
    assert failures == []
    store = open_store(store_config, migrate=False)
    try:
        assert current_revision(store.engine) == head_revision(store.engine)
    finally:
        store.close()


def test_a_relative_sqlite_url_reaches_the_servers_database_from_any_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An operator's `revoke` run from another folder lands where the server reads, its folder made on demand."""
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    config = project / "cedargate.toml"
    config.write_text('[store]\nurl = "sqlite:///state/gov.db"\n')
    monkeypatch.chdir(elsewhere)
    assert main(["--config", str(config), "revoke", "agent", "codex-ci", "--as", "bob", "--json", "--force"]) == 0
    assert list(elsewhere.iterdir()) == []
    monkeypatch.chdir(project)
    capsys.readouterr()
    assert main(["--config", "cedargate.toml", "holds", "--json"]) == 0
    assert "codex-ci" in capsys.readouterr().out
    assert (project / "state/gov.db").is_file()
