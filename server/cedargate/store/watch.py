"""Knowing, without a query, that a SQLite store has not changed since it was last read.

The hold check runs on every call and must see a revocation made by any process on its very
next call. Reading the holds table through the pool each time costs more than the rest of
the governance around a trivial call, yet the table almost never changes. SQLite counts
commits made by other connections (``PRAGMA data_version``); one long-lived connection that
never writes sees every commit of every process as a new number. A token of that number and
the database file's identity says "nothing changed" in a few microseconds; any other answer
means "read again". A replaced or removed file changes the identity, so a broken store is
still read, and still fails the call.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Hashable
from pathlib import Path


class SqliteChangeWatch:
    """A connection that never writes and reports a new token after any commit to the database file."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None
        self._identity: tuple[int, int] | None = None
        self._generation = 0
        """Counts connections opened: a new connection's version numbers start over."""

    def token(self) -> Hashable | None:
        """A value that changes whenever the database may have; ``None`` when that cannot be told."""
        with self._lock:
            try:
                stat = os.stat(self._path)
                identity = (stat.st_dev, stat.st_ino)
                connection = self._connection
                if connection is None or identity != self._identity:
                    connection = self._reopen(identity)
                (version,) = connection.execute("PRAGMA data_version").fetchone()
            except (OSError, sqlite3.Error):
                self._drop()
                return None
            return (self._generation, identity, version)

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _reopen(self, identity: tuple[int, int]) -> sqlite3.Connection:
        self._drop()
        self._connection = sqlite3.connect(self._path, check_same_thread=False, timeout=30)
        self._identity = identity
        self._generation += 1
        return self._connection

    def _drop(self) -> None:
        if self._connection is not None:
            self._connection.close()
        self._connection = None
        self._identity = None
