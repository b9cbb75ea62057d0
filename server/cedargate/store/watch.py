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

Closing any descriptor of a file drops every POSIX lock the process holds on it, SQLite's
included (and a memory map holds a descriptor of its own). So a ``-shm`` file is opened and
mapped once per process (``_SHARED_WAL_INDEXES``) and closed only when the last watch on it
closes, which its store does after its own connections.
"""

from __future__ import annotations

import mmap
import os
import sqlite3
import threading
from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Final

FileId = tuple[int, int]
"""A file's device and inode."""

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
        self._borrowed: list[FileId] = []
        """The WAL-indexes this watch mapped, given back by ``close``."""
        self._unmappable = False
        """Set when mapping failed once: ``PRAGMA data_version`` from then on."""
        self._identity: FileId | None = None
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
            for file_id in self._borrowed:
                _SHARED_WAL_INDEXES.give_back(file_id, self)
            self._borrowed.clear()

    def _reopen(self, identity: FileId) -> sqlite3.Connection:
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
        if str(mode).lower() != "wal" or self._unmappable:
            return None
        file_id, wal_index = _SHARED_WAL_INDEXES.borrow(f"{self._path}-shm", self)
        if file_id not in self._borrowed:
            self._borrowed.append(file_id)
        if wal_index is None or not wal_index[_IS_INIT_OFFSET]:
            self._unmappable = True  # this watch asks SQLite from now on; no file is opened again
            return None
        return wal_index

    def _drop(self) -> None:
        self._wal_index = None  # the map itself stays open until ``close`` (module docstring)
        if self._connection is not None:
            self._connection.close()
        self._connection = None
        self._identity = None


@dataclass
class _Shared:
    file: BinaryIO
    wal_index: mmap.mmap | None = None
    users: set[int] = field(default_factory=set)


class _SharedWalIndexes:
    """One open (and, once it can be, mapped) ``-shm`` file per file in the process.

    It is closed when the last watch that borrowed it gives it back.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._shared: dict[FileId, _Shared] = {}
        self._never_closed: list[BinaryIO] = []
        """A second descriptor, from a race with a replaced file: closing it would drop the process's locks."""

    def borrow(self, path: str, user: object) -> tuple[FileId, mmap.mmap | None]:
        """The file's id and its map, ``None`` when it cannot be mapped; the user is registered either way."""
        with self._lock:
            file_id, shared = self._open(path)
            shared.users.add(id(user))
            if shared.wal_index is None:
                try:
                    shared.wal_index = mmap.mmap(
                        shared.file.fileno(), 2 * WAL_INDEX_HEADER_BYTES, access=mmap.ACCESS_READ
                    )
                except (OSError, ValueError):  # too short to be an index yet
                    return file_id, None
            return file_id, shared.wal_index

    def give_back(self, file_id: FileId, user: object) -> None:
        with self._lock:
            shared = self._shared.get(file_id)
            if shared is None:
                return
            shared.users.discard(id(user))
            if shared.users:
                return
            del self._shared[file_id]
        if shared.wal_index is not None:
            shared.wal_index.close()
        shared.file.close()

    def _open(self, path: str) -> tuple[FileId, _Shared]:
        stat = os.stat(path)
        file_id = (stat.st_dev, stat.st_ino)
        shared = self._shared.get(file_id)
        if shared is None:
            shm = open(path, "rb")  # noqa: SIM115 - open until its last watch closes (module docstring)
            opened = os.fstat(shm.fileno())
            file_id = (opened.st_dev, opened.st_ino)  # what was opened, had the path changed meanwhile
            shared = self._shared.get(file_id)
            if shared is not None:
                self._never_closed.append(shm)
            else:
                shared = self._shared[file_id] = _Shared(shm)
        return file_id, shared


_SHARED_WAL_INDEXES: Final = _SharedWalIndexes()
