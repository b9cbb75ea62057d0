"""Checking a whole audit file: every hash recomputed, every link followed.

The report names the first line at fault and what is wrong with it: an edited line fails its
own hash; a removed or reordered line breaks the link from the line after it. A torn write
followed by its segment record (see ``segments.py``) is accepted; a torn last line is reported.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from cedargate.audit.event import GENESIS_HASH, event_hash
from cedargate.audit.lines import FileProgress, numbered_lines
from cedargate.audit.segments import TornLine, check_segment, is_segment_record, is_torn_prefix, parse_complete


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


def verify_log(path: Path, progress: FileProgress | None = None) -> VerifyReport:
    """Recompute the chain of ``path`` from genesis; stops at the first problem.

    ``progress`` hears ``(bytes read, file size)`` every ``PROGRESS_EVERY_LINES`` lines.
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
            problem = check_segment(record, torn, previous)
            if problem is not None:
                return _fail(path, count, number, None, problem)
            torn, torn_first_line = [], 0
            segments += 1
            previous = record["hash"]
            continue
        if event_hash(record) != record["hash"]:
            return _fail(path, count, number, event_id, "event was altered: its hash does not match its content")
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
    # A torn last line is a crash, not an edit: every complete event before it verified.
    return VerifyReport(path=str(path), ok=True, events=count, segments=segments, torn_tail=torn_first_line or None)


def _not_an_event(line: bytes) -> str:
    try:
        json.loads(line)
    except ValueError:
        return "line is not valid JSON (torn or edited)"
    return "line is not an audit event"


def _fail(path: Path, count: int, line: int, event_id: str | None, problem: str) -> VerifyReport:
    return VerifyReport(path=str(path), ok=False, events=count, line=line, event_id=event_id, problem=problem)


def verify_checkpoints(report: VerifyReport, path: Path, checkpoints: Path, public_key: Path) -> VerifyReport:
    """Add the signed checkpoints' verdict to an intact chain's report: this is what catches a cut-off tail."""
    from cedargate.audit.checkpoint import check_checkpoints, event_hashes, load_public_key

    if not checkpoints.is_file():
        # Removing the file must not turn "checkpoints hold" into "nothing to check": that is what it guards.
        what = "is a folder, not a checkpoint file" if checkpoints.is_dir() else "does not exist"
        missing = (
            f"checkpoint file `{checkpoints}` {what}: no signed checkpoint vouches for this log "
            "(sign one with `cedargate audit checkpoint`, or restore the file)"
        )
        return report.model_copy(update={"ok": False, "checkpoints": 0, "problem": missing})
    count, problem = check_checkpoints(event_hashes(path), checkpoints, load_public_key(public_key))
    if problem is None:
        return report.model_copy(update={"checkpoints": count})
    return report.model_copy(update={"ok": False, "checkpoints": count, "problem": problem})
