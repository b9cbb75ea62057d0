"""The JSONL audit file: append-only, hash-chained, fail-closed.

``ready()`` is asked before any handler runs; if the file cannot take a line, the call is
refused. A failed append marks the log broken, so every later call is refused too until the
server restarts on a writable file.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import BinaryIO, Protocol

from cedargate.audit.event import WrittenEvent, sealed
from cedargate.audit.probe import unwritable_reason
from cedargate.audit.record import EventRecord
from cedargate.audit.segments import recover_tail
from cedargate.errors import AuditWriteError


class AuditSink(Protocol):
    """Where audit events go; the pipeline asks ``ready`` before running and ``append`` after."""

    def ready(self) -> None: ...

    def append(self, record: EventRecord) -> WrittenEvent: ...


class JsonlAuditLog:
    """A hash-chained JSON Lines file; one instance per file per process."""

    def __init__(self, path: Path, *, fsync: bool = False) -> None:
        self.path = path
        self._fsync = fsync
        self._lock = threading.Lock()
        self._broken: str | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._last_hash = _last_hash(path)
            # Unbuffered: a failed write raises here and now, and nothing is left to flush later.
            self._file = open(path, "ab", buffering=0)  # noqa: SIM115 - held for the log's lifetime
        except OSError as exc:
            raise AuditWriteError(f"audit log `{path}` cannot be opened for appending: {exc.strerror or exc}") from exc

    def ready(self) -> None:
        """Raise unless the next event can be written (fail closed)."""
        self._still_open()
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
            chained = {**record.fields, "prev_hash": self._last_hash}
            digest, line = sealed(chained)
            try:
                _write_all(self._file, (line + "\n").encode())
                if self._fsync:
                    os.fsync(self._file.fileno())
            except OSError as exc:
                self._broken = exc.strerror or str(exc)
                raise AuditWriteError(f"audit log `{self.path}` could not be written: {self._broken}") from exc
            chained["hash"] = self._last_hash = digest
            return WrittenEvent(chained)

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


def _last_hash(path: Path) -> str:
    """The hash of the file's last record; a torn tail is recovered into a new segment first."""
    return recover_tail(path)
