"""Recovering an audit log whose last write was torn (a crash in the middle of a line).

A process killed while appending can leave the file ending in bytes that are not a whole
event. Those bytes are never rewritten or truncated (the file stays append-only); instead
the log continues in a new *segment*: a segment record is appended that names each torn
line by byte offset, length and sha256, and links (``prev_hash``) to the last complete
event. Every event after it chains from the segment record's own hash.

``audit verify`` accepts a run of torn lines only when the very next line is a segment
record that names exactly those bytes and links to the event before them, so a torn line
cannot be used to hide an edit: anything else is reported as it always was.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from cedargate.audit.canonical import canonical_json
from cedargate.audit.event import GENESIS_HASH, event_hash
from cedargate.errors import AuditWriteError

SEGMENT_RECORD: Final = "segment"
"""Value of the ``record`` key that marks a segment record (events have no ``record`` key)."""

TAIL_WINDOW: Final = 8 << 20
"""Bytes of a log's end read at start-up for its last complete event (doctor checks the same window)."""
_LAST_LINE_WINDOW: Final = 64 << 10
"""Bytes read back first to find the last line (a record is well under this)."""


@dataclass(frozen=True)
class TornLine:
    """Bytes of one incomplete line, located in the file."""

    offset: int
    data: bytes

    def describe(self) -> dict[str, Any]:
        return {"offset": self.offset, "length": len(self.data), "sha256": hashlib.sha256(self.data).hexdigest()}


def is_segment_record(record: object) -> bool:
    return isinstance(record, dict) and record.get("record") == SEGMENT_RECORD


def is_torn_prefix(line: bytes) -> bool:
    """Whether ``line`` could be what a crash leaves of a record: the start of a JSON object, cut short.

    A record is one canonical JSON object, so its only complete prefix is itself: bytes that
    already hold a whole JSON value (followed by anything) were not torn, they were edited.
    """
    if not line.startswith(b"{"):
        return False
    try:
        json.JSONDecoder().raw_decode(line.decode("utf-8", errors="replace"))
    except ValueError:
        return True
    return False


def parse_complete(line: bytes) -> dict[str, Any] | None:
    """The line as a chained record, or ``None`` when it is not one (torn, foreign or empty)."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) and isinstance(record.get("hash"), str) else None


def last_record_hash(fd: int, size: int) -> str | None:
    """The hash of the last record in the file's first ``size`` bytes, reading back from there.

    For the common case (another server appended whole records): only the last line is read.
    ``None`` when that line is not a whole record (a torn or foreign tail, for ``recover_tail``).
    """
    if size == 0:
        return GENESIS_HASH
    window = _LAST_LINE_WINDOW
    while True:
        start = max(0, size - window)
        data = os.pread(fd, size - start, start)
        if not data.endswith(b"\n"):
            return None
        newline = data.rfind(b"\n", 0, len(data) - 1)
        if newline >= 0 or start == 0:
            record = parse_complete(data[newline + 1 : -1])
            return str(record["hash"]) if record is not None else None
        if window >= TAIL_WINDOW:
            return None
        window *= 8


def recover_tail(path: Path) -> str:
    """The hash the next event must link to; appends a segment record first if the tail is torn.

    Fails closed (``AuditWriteError``) when the file ends in a line that is valid JSON but not
    a chained record (someone else's file), or when no complete record is found in the tail.
    """
    if not path.exists() or path.stat().st_size == 0:
        return GENESIS_HASH
    with open(path, "rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        start = max(0, size - TAIL_WINDOW)
        handle.seek(start)
        tail = handle.read()
    lines = _lines_with_offsets(tail, start)
    torn: list[TornLine] = []
    for offset, line in reversed(lines):
        record = parse_complete(line)
        if record is not None:
            if not torn:
                if not tail.endswith(b"\n"):  # a whole record whose newline was cut off
                    _append(path, b"\n")
                return str(record["hash"])
            return _start_segment(path, str(record["hash"]), torn[::-1], ends_with_newline=tail.endswith(b"\n"))
        if not is_torn_prefix(line):
            raise AuditWriteError(
                f"audit log `{path}` has a foreign or edited line at byte {offset}; "
                f"run `cedargate audit verify --log {path}` and move the file aside before serving"
            )
        torn.append(TornLine(offset, line))
    if start > 0:
        raise AuditWriteError(
            f"audit log `{path}`: no complete event in its last {TAIL_WINDOW} bytes; move the file aside before serving"
        )
    # Nothing complete at all: the file held only torn bytes; the segment links to genesis.
    return _start_segment(path, GENESIS_HASH, torn[::-1], ends_with_newline=tail.endswith(b"\n"))


def segment_record(prev_hash: str, torn: list[TornLine]) -> dict[str, Any]:
    """A chained record that names the torn lines and links to the last complete record."""
    record: dict[str, Any] = {
        "record": SEGMENT_RECORD,
        "time": datetime.now(UTC).isoformat(timespec="microseconds"),
        "torn": [t.describe() for t in torn],
        "prev_hash": prev_hash,
    }
    record["hash"] = event_hash(record)
    return record


def check_segment(record: dict[str, Any], torn: list[TornLine], previous: str) -> str | None:
    """Why ``record`` does not legitimately close the torn run ``torn``; ``None`` when it does."""
    if event_hash(record) != record.get("hash"):
        return "segment record was altered: its hash does not match its content"
    if record.get("prev_hash") != previous:
        return "segment record does not link to the last complete event before the torn line"
    if record.get("torn") != [t.describe() for t in torn]:
        return "segment record does not name the torn bytes before it (they were altered or moved)"
    return None


def _start_segment(path: Path, prev_hash: str, torn: list[TornLine], *, ends_with_newline: bool) -> str:
    record = segment_record(prev_hash, torn)
    prefix = b"" if ends_with_newline else b"\n"
    _append(path, prefix + (canonical_json(record) + "\n").encode())
    return str(record["hash"])


def _append(path: Path, data: bytes) -> None:
    try:
        with open(path, "ab", buffering=0) as handle:
            handle.write(data)
            os.fsync(handle.fileno())
    except OSError as exc:
        raise AuditWriteError(
            f"audit log `{path}` ends with a torn line and the recovery record could not be written: "
            f"{exc.strerror or exc}"
        ) from exc


def _lines_with_offsets(data: bytes, base: int) -> list[tuple[int, bytes]]:
    """Lines of ``data`` with their absolute offsets; a partial first line is dropped when ``base > 0``."""
    out: list[tuple[int, bytes]] = []
    position = 0
    if base > 0:
        first_newline = data.find(b"\n")
        position = len(data) if first_newline < 0 else first_newline + 1
    while position < len(data):
        end = data.find(b"\n", position)
        end = len(data) if end < 0 else end
        out.append((base + position, data[position:end]))
        position = end + 1
    return out
