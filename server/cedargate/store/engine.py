"""Opening the store: the engine for the configured database, upgraded to the newest schema."""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path
from typing import Any

from alembic.util.exc import CommandError
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import SQLAlchemyError

from cedargate.config import StoreConfig, sqlite_database
from cedargate.errors import StoreError
from cedargate.store.migrate import upgrade
from cedargate.store.watch import SqliteChangeWatch


class Store:
    """One engine on the governance database; every replica opens its own on the same database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        database = engine.url.database
        on_file = engine.dialect.name == "sqlite" and database not in (None, "", ":memory:")
        self._watch = SqliteChangeWatch(Path(database)) if on_file and database else None

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    def change_token(self) -> Hashable | None:
        """Equal tokens mean no commit reached the database in between; ``None``: read it to know.

        Only a SQLite file can tell cheaply; on PostgreSQL every caller reads.
        """
        return self._watch.token() if self._watch is not None else None

    def close(self) -> None:
        self.engine.dispose()
        if self._watch is not None:  # after the pool: the watch's last close may drop the process's file locks
            self._watch.close()


def store_url(config: StoreConfig) -> str:
    """The SQLAlchemy URL: the configured one, or the SQLite file."""
    if config.url:
        return config.url
    return f"sqlite+pysqlite:///{config.path}"


def sqlite_file(config: StoreConfig) -> Path | None:
    """The file a SQLite store lives in (from ``path`` or a ``sqlite:///`` ``url``); ``None`` for any other store."""
    return sqlite_database(config.url) if config.url else Path(config.path)


def create_store_engine(url: str) -> Engine:
    """An engine with the settings the store relies on (waits for locks rather than failing)."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def store_name(engine: Engine) -> str:
    """The database's URL as an error may show it: without its password."""
    return engine.url.render_as_string(hide_password=True)


def database_error(exc: SQLAlchemyError) -> object:
    """The driver's own error under SQLAlchemy's wrapper: what the database said."""
    return getattr(exc, "orig", None) or exc


def open_store(config: StoreConfig, *, migrate: bool = True) -> Store:
    """The store named by the config, migrated to the newest revision; fails with the database named."""
    file = sqlite_file(config)
    if file is not None:  # SQLite creates the file, not its folder (nor the migration lock beside it)
        file.parent.mkdir(parents=True, exist_ok=True)
    url = store_url(config)
    engine = create_store_engine(url)
    try:
        if migrate:
            upgrade(engine)
    except (SQLAlchemyError, CommandError) as exc:
        engine.dispose()
        if isinstance(exc, CommandError):  # a revision this cedargate has no migration for: a newer one made it
            problem = (
                f"is at a schema this cedargate does not know ({exc}): a newer cedargate migrated it; "
                "serve it with that version (`cedargate doctor` shows the revisions)"
            )
        else:
            problem = f"cannot be opened or migrated: {database_error(exc)}; check `[store]` in the config"
        raise StoreError(f"store `{store_name(engine)}` {problem}") from exc
    return Store(engine)
