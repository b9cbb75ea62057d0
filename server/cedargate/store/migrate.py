"""Running the Alembic migrations shipped in the package, without an ``alembic.ini``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

from cedargate.file_lock import exclusively

SCRIPT_LOCATION = "cedargate.store:migrations"
_MIGRATION_LOCK_KEY: Final = 0x63656461  # "ceda": the advisory lock cedargate's migrators share


def alembic_config(engine: Engine) -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database to ``revision``; a database already there is left as it is.

    Servers starting together on one new database (two agent sessions on one config) would
    each create the schema; one at a time, the later ones find it done.
    """
    with _one_migrator_at_a_time(engine):
        command.upgrade(alembic_config(engine), revision)


@contextmanager
def _one_migrator_at_a_time(engine: Engine) -> Iterator[None]:
    """A lock every migrator of this database takes: a PostgreSQL advisory lock, or a file lock beside SQLite's file.

    SQLite's own file is not locked with ``flock``: the lock file is separate, so closing it
    can never drop the POSIX locks SQLite holds on the database.
    """
    database = engine.url.database
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _MIGRATION_LOCK_KEY})
    elif engine.dialect.name == "sqlite" and database not in (None, "", ":memory:"):
        with open(f"{database}.migration-lock", "a+b") as lock, exclusively(lock):
            yield
    else:
        yield


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision(engine: Engine) -> str | None:
    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()


def known_revisions(engine: Engine) -> frozenset[str]:
    """Every schema revision this cedargate ships a migration for."""
    return frozenset(script.revision for script in ScriptDirectory.from_config(alembic_config(engine)).walk_revisions())
