"""Opening the store: the engine for the configured database, upgraded to the newest schema."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Hashable
from pathlib import Path
from typing import Any, Final

import psycopg
from alembic.util.exc import CommandError
from psycopg import capabilities
from sqlalchemy import Engine, create_engine, event, make_url
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


CONNECT_TIMEOUT_S: Final = 5
"""Seconds to open a PostgreSQL connection (a postmaster that accepts TCP but never answers)."""
STATEMENT_TIMEOUT_MS: Final = 5000
"""The server cancels a statement running longer (a governance read or write takes milliseconds)."""
LOCK_TIMEOUT_MS: Final = 4000
"""The server gives up a lock wait sooner, so a contended lock says so rather than "statement timeout"."""
ANSWER_MARGIN_S: Final = 3.0
"""Seconds the client waits for an answer beyond the connection's ``statement_timeout``: by then
the server has cancelled the statement and said so, unless it is hung (stopped, or a network
that drops packets), and a hung server cannot cancel its own statements, so the client cancels
the statement and closes the connection instead (the pool then opens a fresh one)."""
ANSWER_TIMEOUT_S: Final = STATEMENT_TIMEOUT_MS / 1000 + ANSWER_MARGIN_S
"""The answer limit under the default ``statement_timeout`` (a URL's own setting moves it)."""
CANCEL_TIMEOUT_S: Final = 2.0
"""Seconds to send a cancel request for the statement of a connection that gave up waiting."""
POOL_TIMEOUT_S: Final = 5
"""Seconds a call waits for a pooled connection before the store fails."""


class _AnswerBoundedConnection(psycopg.Connection[Any]):
    """A psycopg connection whose every wait on the server ends within ``answer_timeout``.

    libpq has no client-side query timeout; ``statement_timeout`` only works while the server
    runs, and TCP keepalives and ``tcp_user_timeout`` are answered by a live kernel whose
    database processes are stuck. Without this a call would wait forever, unaudited.
    ``answer_timeout`` follows the connection's own ``statement_timeout``, read once after
    connecting (``follow_statement_timeout``), plus ``ANSWER_MARGIN_S``; ``None`` (no limit)
    only when that timeout is 0, as the operator then asked for statements without a limit.
    """

    answer_timeout: float | None = ANSWER_TIMEOUT_S

    def follow_statement_timeout(self) -> None:
        """Set ``answer_timeout`` from the ``statement_timeout`` in force on this connection."""
        row = self.execute("SELECT setting FROM pg_settings WHERE name = 'statement_timeout'").fetchone()
        self.rollback()  # a fresh connection goes to the pool idle, outside a transaction
        milliseconds = int(row[0]) if row is not None else STATEMENT_TIMEOUT_MS  # pg_settings: always ms
        self.answer_timeout = milliseconds / 1000 + ANSWER_MARGIN_S if milliseconds > 0 else None

    def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
        limit = timeout or self.answer_timeout
        try:
            return super().wait(gen, interval=interval, timeout=limit)
        except psycopg.errors._WaitTimeout as exc:
            # The protocol stopped mid-exchange: the connection's state is unknown, so it is closed
            # (SQLAlchemy sees a closed connection and drops it from the pool). A statement still
            # running would go on after the close (a backend notices a gone client only when it
            # writes), so it is cancelled first.
            self._cancel_statement()
            self.pgconn.finish()
            raise psycopg.OperationalError(
                f"the database did not answer within {limit:g} s; its statement was cancelled and the connection closed"
            ) from exc

    def _cancel_statement(self) -> None:
        """Ask the server to cancel this connection's statement, waiting at most ``CANCEL_TIMEOUT_S``."""
        with contextlib.suppress(Exception):  # best effort: a server that cannot take the cancel is hung anyway
            if capabilities.has_cancel_safe():
                self.cancel_safe(timeout=CANCEL_TIMEOUT_S)
            else:  # libpq < 17 blocks on a hung postmaster: the request goes from a thread of its own
                cancel = self.pgconn.get_cancel()
                threading.Thread(target=cancel.cancel, name="store-cancel", daemon=True).start()


def postgres_connect_args(url: str, *, bounded_statements: bool = True) -> dict[str, Any]:
    """libpq settings that bound every wait on the database; a setting in the URL's query wins.

    ``bounded_statements=False`` leaves statements unbounded (schema migrations, whose index
    builds may run long); connecting and a dead peer stay bounded.
    """
    query = make_url(url).query
    args: dict[str, Any] = {
        "connect_timeout": CONNECT_TIMEOUT_S,
        "keepalives": 1,
        "keepalives_idle": 5,
        "keepalives_interval": 2,
        "keepalives_count": 3,
        "tcp_user_timeout": int(ANSWER_TIMEOUT_S * 1000),  # ms of unacknowledged data before TCP gives up
    }
    if bounded_statements:
        timeouts = f"-c statement_timeout={STATEMENT_TIMEOUT_MS} -c lock_timeout={LOCK_TIMEOUT_MS}"
        own = query.get("options")
        args["options"] = f"{timeouts} {own}" if isinstance(own, str) else timeouts  # the URL's later `-c` wins
    return {key: value for key, value in args.items() if key == "options" or key not in query}


def create_store_engine(url: str, *, bounded_statements: bool = True) -> Engine:
    """An engine with the settings the store relies on.

    SQLite waits for locks rather than failing. PostgreSQL fails within seconds when the
    database is unreachable or stops answering, so a call is refused and audited instead of
    hanging; ``bounded_statements=False`` is for migrations only.
    """
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    engine = create_engine(
        url,
        pool_pre_ping=True,
        pool_timeout=POOL_TIMEOUT_S,
        connect_args=postgres_connect_args(url, bounded_statements=bounded_statements),
    )
    if make_url(url).drivername == "postgresql+psycopg" and bounded_statements:
        event.listen(engine, "do_connect", _bounded_connection)
    return engine


def _bounded_connection(_dialect: Any, _record: Any, cargs: tuple[Any, ...], cparams: dict[str, Any]) -> Any:
    connection = _AnswerBoundedConnection.connect(*cargs, **cparams)
    try:
        connection.follow_statement_timeout()
    except BaseException:
        connection.close()
        raise
    return connection


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
            _migrate(url)
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


def _migrate(url: str) -> None:
    """Upgrade on an engine of its own whose statements are not cut short: an index build may take a while."""
    engine = create_store_engine(url, bounded_statements=False)
    try:
        upgrade(engine)
    finally:
        engine.dispose()
