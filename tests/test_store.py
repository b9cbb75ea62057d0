"""The governance store: migrations create the schema on SQLite and PostgreSQL alike."""

from __future__ import annotations

from sqlalchemy import inspect

from cedargate.config import StoreConfig
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
