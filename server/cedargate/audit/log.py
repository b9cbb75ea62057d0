"""The JSONL audit file: append-only, hash-chained, fail-closed, shared by the servers on one host.

``ready()`` is asked before any handler runs; if the file cannot take a line, the call is
refused. A failed append marks the log broken, so every later call is refused too until the
server restarts on a writable file.

Several servers may append to one file (two agent sessions each start ``cedargate serve``
on the same config): each append holds an exclusive ``flock`` on the file, and a server
that finds the file longer than it left it links to the last record there, so the servers
write one chain. A tail torn by a server that died mid-write is recovered under the same
lock (see ``segments.py``). A file deleted while a server writes to it breaks that server's
log: what it appended would be lost with the file. So does a file found shorter than this
server left it (truncated, or rotated with ``copytruncate``): servers only ever append, so
events were cut out of the trail, and linking to whatever is last now would hide the cut.
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path
from typing import BinaryIO, Protocol

from cedargate.audit.event import GENESIS_HASH, WrittenEvent, sealed
from cedargate.audit.probe import unwritable_reason
from cedargate.audit.record import EventRecord
from cedargate.audit.segments import last_record_hash, recover_tail
from cedargate.errors import AuditWriteError
from cedargate.file_lock import exclusively


class AuditSink(Protocol):
    """Where audit events go; the pipeline asks ``ready`` before running and ``append`` after."""

    def ready(self) -> None: ...

    def append(self, record: EventRecord) -> WrittenEvent: ...


class JsonlAuditLog:
    """A hash-chained JSON Lines file; the servers on one host may share it (see the module docstring)."""

    def __init__(self, path: Path, *, fsync: bool = False) -> None:
        self.path = path
        self._fsync = fsync
        self._lock = threading.Lock()
        self._broken: str | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Unbuffered: a failed write raises here and now, and nothing is left to flush later.
            # Read too: another server's last record is read back through it (``last_record_hash``).
            self._file = open(path, "a+b", buffering=0)  # noqa: SIM115 - held for the log's lifetime
        except OSError as exc:
            raise AuditWriteError(f"audit log `{path}` cannot be opened for appending: {exc.strerror or exc}") from exc
        self._last_hash = GENESIS_HASH
        self._end = -1
        """The file's size after this server's last write; larger means another server wrote, smaller a cut."""
        try:
            with exclusively(self._file):
                self._catch_up(os.fstat(self._file.fileno()).st_size)
        except AuditWriteError:
            self._file.close()
            raise
        except OSError as exc:
            self._file.close()
            raise AuditWriteError(f"audit log `{path}` cannot be read: {exc.strerror or exc}") from exc

    def ready(self) -> None:
        """Raise unless the next event can be written (fail closed)."""
        self._still_open()
        end = self._end  # read before the size: an append in between only makes the file longer than this
        size = os.fstat(self._file.fileno()).st_size
        if size < end:
            self._broken = self._shrunk(size, end)
            raise AuditWriteError(f"audit log `{self.path}` was {self._broken}")
        reason = unwritable_reason(self._file.fileno())
        if reason is not None:
            raise AuditWriteError(f"audit log `{self.path}` could not be written: {reason}")

    def _still_open(self) -> None:
        if self._broken is not None:
            raise AuditWriteError(f"audit log `{self.path}` is not writable ({self._broken}); no call runs until it is")
        if self._file.closed:
            raise AuditWriteError(f"audit log `{self.path}` is closed")

    def append(self, record: EventRecord) -> WrittenEvent:
        """Chain, write and flush one event; returns its record with the ``prev_hash`` and ``hash`` written.

        The probe ``ready`` runs is not repeated here: the call this event records already
        happened, so a line that still fits is written even when little space is left.
        """
        with self._lock:
            self._still_open()
            fd = self._file.fileno()
            try:
                # ``exclusively``'s lock as two plain calls, not a context manager: this runs on every call.
                fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    status = os.fstat(fd)
                    if status.st_nlink == 0:  # what it writes now would be lost with the file: fail closed
                        raise AuditWriteError(
                            f"audit log `{self.path}` was deleted while the server ran; restart it to begin a new log"
                        )
                    if status.st_size < self._end:  # cut: linking to what is last now would hide it
                        raise AuditWriteError(f"audit log `{self.path}` was {self._shrunk(status.st_size, self._end)}")
                    if status.st_size != self._end:
                        self._catch_up(status.st_size)
                    chained = {**record.fields, "prev_hash": self._last_hash}
                    digest, line = sealed(chained)
                    data = (line + "\n").encode()
                    _write_all(self._file, data)
                    if self._fsync:
                        os.fsync(fd)
                    self._end += len(data)
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
            except AuditWriteError as exc:
                self._broken = str(exc)
                raise
            except OSError as exc:
                self._broken = exc.strerror or str(exc)
                raise AuditWriteError(f"audit log `{self.path}` could not be written: {self._broken}") from exc
            chained["hash"] = self._last_hash = digest
            return WrittenEvent(chained)

    def _shrunk(self, size: int, end: int) -> str:
        return (
            f"cut to {size} bytes, shorter than the {end} this server left it (truncated, or rotated with "
            "copytruncate): events are missing from the trail; keep what is left for `cedargate audit verify`, "
            "rotate by moving the file aside (not copytruncate), and restart the server"
        )

    def _catch_up(self, size: int) -> None:
        """Link to the file's last record: someone else wrote since this server's last write (lock held)."""
        last = last_record_hash(self._file.fileno(), size)
        if last is None:  # a torn or foreign tail: recovered into a new segment, or refused
            last = recover_tail(self.path)
            size = os.fstat(self._file.fileno()).st_size
        self._last_hash, self._end = last, size

    def close(self) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.close()


def _write_all(file: BinaryIO, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = file.write(view)
        if not written:
            raise OSError("short write to the audit log")
        view = view[written:]
