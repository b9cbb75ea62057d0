"""Knowing, without a query, that a SQLite store has not changed since it was last read.

The hold check runs on every call and must see a revocation made by any process on its very
next call. Reading the holds table through the pool each time costs more than the rest of
the governance around a trivial call, yet the table almost never changes.

In WAL mode (the store's mode) every commit, by any process, rewrites the WAL-index header
that all connections share in the database's ``-shm`` file (https://www.sqlite.org/walformat.html,
"The WAL-Index Header"; processes running different SQLite versions share it, so its layout
is stable). The header is kept twice; a writer updates the second copy, then the first. Read
through a read-only memory map, the two copies say "nothing changed" with no system call and
no SQLite code; copies that differ mean a commit is under way, and the table is read again.
Where no header can be mapped (another journal mode), ``PRAGMA data_version`` on a
connection that never writes tells the same, at the cost of a query.

A token is that header (or version number) with the database file's identity: a replaced or
removed file changes the identity, so a broken store is still read, and still fails the call.

The ``-shm`` file stays open until the watch is closed, after the store's own connections:
closing any descriptor of a file drops every POSIX lock the process holds on it, SQLite's
included, so it is never closed while SQLite may rely on them.
"""

from __future__ import annotations

import mmap
import os
import sqlite3
import threading
from collections.abc import Hashable
from pathlib import Path
from typing import BinaryIO, Final

WAL_INDEX_HEADER_BYTES: Final = 48
"""One copy of the WAL-index header; the second copy follows it at the start of the ``-shm`` file."""
_IS_INIT_OFFSET: Final = 12
"""The header's ``isInit`` byte: zero until a connection has built the index."""


class SqliteChangeWatch:
    """Reports a new token after any commit to the database file."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None
        self._wal_index: mmap.mmap | None = None
        self._shm_files: list[BinaryIO] = []
        """Every ``-shm`` file opened; closed only by ``close`` (see the module docstring)."""
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
                if self._wal_index is not None:
                    header = self._wal_index[:WAL_INDEX_HEADER_BYTES]
                    if header != self._wal_index[WAL_INDEX_HEADER_BYTES : 2 * WAL_INDEX_HEADER_BYTES]:
                        return None  # a commit is being written: read the table
                    return (self._generation, identity, header)
                (version,) = connection.execute("PRAGMA data_version").fetchone()
            except (OSError, ValueError, sqlite3.Error):
                self._drop()
                return None
            return (self._generation, identity, version)

    @property
    def reads_wal_index(self) -> bool:
        """Whether checks read the shared WAL-index (no query) rather than ``PRAGMA data_version``."""
        return self._wal_index is not None

    def close(self) -> None:
        """Stop watching; call it after the store's other connections to the file are closed."""
        with self._lock:
            self._drop()
            for shm in self._shm_files:
                shm.close()
            self._shm_files.clear()

    def _reopen(self, identity: tuple[int, int]) -> sqlite3.Connection:
        self._drop()
        self._connection = sqlite3.connect(self._path, check_same_thread=False, timeout=30)
        self._identity = identity
        self._generation += 1
        self._wal_index = self._map_wal_index(self._connection)
        return self._connection

    def _map_wal_index(self, connection: sqlite3.Connection) -> mmap.mmap | None:
        """The shared WAL-index, mapped read-only; ``None`` when the database is not in WAL mode.

        The connection reads once first, so SQLite has built the index and this connection's
        hold on it keeps any other from truncating the file while it stays open.
        """
        (mode,) = connection.execute("PRAGMA journal_mode").fetchone()
        connection.execute("PRAGMA data_version").fetchone()
        if str(mode).lower() != "wal":
            return None
        wal_index = mmap.mmap(self._shm_file().fileno(), 2 * WAL_INDEX_HEADER_BYTES, access=mmap.ACCESS_READ)
        if wal_index[_IS_INIT_OFFSET] == 0:
            wal_index.close()
            return None
        return wal_index

    def _shm_file(self) -> BinaryIO:
        """The ``-shm`` file, opened once per file (a retry after a failure reuses it)."""
        path = f"{self._path}-shm"
        current = os.stat(path)
        for kept in self._shm_files:
            opened = os.fstat(kept.fileno())
            if (opened.st_dev, opened.st_ino) == (current.st_dev, current.st_ino):
                return kept
        shm = open(path, "rb")  # noqa: SIM115 - open until ``close`` (module docstring)
        self._shm_files.append(shm)
        return shm

    def _drop(self) -> None:
        if self._wal_index is not None:
            self._wal_index.close()
        self._wal_index = None
        if self._connection is not None:
            self._connection.close()
        self._connection = None
        self._identity = None
