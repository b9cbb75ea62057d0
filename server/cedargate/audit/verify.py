"""Checking a whole audit file: every hash recomputed, every link followed.

The report names the first line at fault and what is wrong with it: an edited line fails its
own hash; a removed or reordered line breaks the link from the line after it; a line with a
key written twice is refused (the hash covers the parsed record, where the last one wins, but
a reader that takes the first, such as SQLite's ``json_extract``, would see another event). A
torn write followed by its segment record (see ``segments.py``) is accepted; a torn last line
is reported.

Everything that reads the chain by event number (signed checkpoints, ``audit verify
--database``) takes its events from this walk (``on_event``, ``ChainEvents``): segment
records and torn lines are lines of the file, not events.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from cedargate.audit.canonical import canonical_json
from cedargate.audit.event import GENESIS_HASH, sealed
from cedargate.audit.lines import FileProgress, numbered_lines
from cedargate.audit.segments import TornLine, check_segment, is_segment_record, is_torn_prefix, parse_complete

if TYPE_CHECKING:
    from cedargate.audit.checkpoint import Checkpoint

EventSeen = Callable[[int, dict[str, Any]], None]
"""Hears ``(line number, record)`` for each event whose hash and link verified, in log order."""


class VerifyReport(BaseModel):
    """The verdict on one audit file; ``line`` and ``event_id`` locate the first problem.

    ``segments`` counts the recoveries after a torn write (see ``segments.py``); ``torn_tail``
    is the line number of a torn last line the server has not yet recovered from.
    """

    path: str
    ok: bool
    events: int
    segments: int = 0
    torn_tail: int | None = None
    line: int | None = None
    event_id: str | None = None
    problem: str | None = None
    checkpoints: int | None = None
    """How many signed checkpoints held; ``None`` when none were checked."""


class ChainEvents:
    """The events of a verified walk, in log order: the N-th event is index N - 1 of each list."""

    def __init__(self) -> None:
        self.hashes: list[str] = []
        self.event_ids: list[str] = []
        self.lines: list[int] = []

    def add(self, line: int, record: dict[str, Any]) -> None:
        self.hashes.append(str(record["hash"]))
        self.event_ids.append(str(record.get("event_id")))
        self.lines.append(line)

    def by_hash(self) -> dict[str, str]:
        """Event ids by hash."""
        return dict(zip(self.hashes, self.event_ids, strict=True))


def chain_events(path: Path, progress: FileProgress | None = None) -> tuple[VerifyReport, ChainEvents]:
    """``verify_log``'s verdict and the events it verified (all of them when the report is ok)."""
    events = ChainEvents()
    return verify_log(path, progress, on_event=events.add), events


def verify_log(path: Path, progress: FileProgress | None = None, on_event: EventSeen | None = None) -> VerifyReport:
    """Recompute the chain of ``path`` from genesis; stops at the first problem.

    ``progress`` hears ``(bytes read, file size)`` every ``PROGRESS_EVERY_LINES`` lines;
    ``on_event`` hears each event once its hash and link verified (never a segment record).
    """
    previous = GENESIS_HASH
    count = 0
    segments = 0
    torn: list[TornLine] = []
    torn_first_line = 0
    for number, line_offset, raw in numbered_lines(path, progress):
        line = raw.rstrip(b"\n")
        record = parse_complete(line)
        if record is None:
            if is_torn_prefix(line):
                # Possibly a torn write: acceptable only if a segment record names it next.
                torn_first_line = torn_first_line or number
                torn.append(TornLine(line_offset, line))
                continue
            return _fail(path, count, number, None, _not_an_event(line))
        event_id = record.get("event_id")
        if torn:
            if not is_segment_record(record):
                return _fail(path, count, torn_first_line, None, "line is not valid JSON (torn or edited)")
            problem = check_segment(record, torn, previous) or _key_written_twice(line, canonical_json(record))
            if problem is not None:
                return _fail(path, count, number, None, problem)
            torn, torn_first_line = [], 0
            segments += 1
            previous = record["hash"]
            continue
        digest, written = sealed(record)
        if digest != record["hash"]:
            return _fail(path, count, number, event_id, "event was altered: its hash does not match its content")
        twice = _key_written_twice(line, written)
        if twice is not None:
            return _fail(path, count, number, event_id, twice)
        if record.get("prev_hash") != previous:
            return _fail(
                path,
                count,
                number,
                event_id,
                "chain broken: the previous event was removed, reordered or altered",
            )
        if is_segment_record(record):
            return _fail(path, count, number, None, "segment record without the torn line it names")
        previous = record["hash"]
        count += 1
        if on_event is not None:
            on_event(number, record)
    # A torn last line is a crash, not an edit: every complete event before it verified.
    return VerifyReport(path=str(path), ok=True, events=count, segments=segments, torn_tail=torn_first_line or None)


def _key_written_twice(line: bytes, written: str) -> str | None:
    """Why ``line`` holds a key twice at some depth, or ``None``.

    A line as the log writes it (``written``, or a segment record's canonical form) cannot:
    only other lines, an older writer's or an edited one, are parsed again to look.
    """
    if line == written.encode():
        return None
    repeated: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        record = dict(items)
        if len(record) < len(items):
            seen: set[str] = set()
            for key, _ in items:
                if key in seen:
                    repeated.append(key)
                seen.add(key)
        return record

    json.loads(line, object_pairs_hook=pairs)
    if not repeated:
        return None
    return (
        f"key `{repeated[0]}` is written twice: the hash covers the last value, a reader that takes the "
        "first would see another event (the line was edited)"
    )


def _not_an_event(line: bytes) -> str:
    try:
        json.loads(line)
    except ValueError:
        return "line is not valid JSON (torn or edited)"
    return "line is not an audit event"


def _fail(path: Path, count: int, line: int, event_id: str | None, problem: str) -> VerifyReport:
    return VerifyReport(path=str(path), ok=False, events=count, line=line, event_id=event_id, problem=problem)


def verify_checkpoints(report: VerifyReport, events: ChainEvents, checkpoints: Path, public_key: Path) -> VerifyReport:
    """Add the signed checkpoints' verdict to an intact chain's report: this is what catches a cut-off tail.

    ``events`` are the ones ``verify_log`` walked (``chain_events``). A log with events and no
    checkpoint fails, whether the file is missing or empty: that is what someone cutting the
    tail would leave.
    """
    from cedargate.audit.checkpoint import check_checkpoints, load_public_key

    if not checkpoints.is_file():
        # Removing the file must not turn "checkpoints hold" into "nothing to check": that is what it guards.
        what = "is a folder, not a checkpoint file" if checkpoints.is_dir() else "does not exist"
        missing = (
            f"checkpoint file `{checkpoints}` {what}: no signed checkpoint vouches for this log "
            "(sign one with `cedargate audit checkpoint`, or restore the file)"
        )
        return report.model_copy(update={"ok": False, "checkpoints": 0, "problem": missing})
    check = check_checkpoints(events.hashes, checkpoints, load_public_key(public_key))
    if check.problem is None and check.held == 0 and report.events > 0:
        empty = (
            f"checkpoint file `{checkpoints}` holds no checkpoint: none vouches for this log's {report.events} "
            "events (sign one with `cedargate audit checkpoint`, or restore the file)"
        )
        return report.model_copy(update={"ok": False, "checkpoints": 0, "problem": empty})
    if check.problem is None:
        return report.model_copy(update={"checkpoints": check.held})
    line, event_id = _where_checkpoint_fails(events, check.checkpoint)
    failed = {"ok": False, "checkpoints": check.held, "problem": check.problem, "line": line, "event_id": event_id}
    return report.model_copy(update=failed)


def _where_checkpoint_fails(events: ChainEvents, checkpoint: Checkpoint | None) -> tuple[int | None, str | None]:
    """The line and event a failed checkpoint names: the event it vouched for, or (cut off) only its id."""
    if checkpoint is None:
        return None, None
    if checkpoint.events > len(events.hashes):
        return None, checkpoint.event_id
    return events.lines[checkpoint.events - 1], events.event_ids[checkpoint.events - 1]
