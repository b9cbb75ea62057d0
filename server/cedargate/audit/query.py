"""Reading the audit trail back: iterate events, filter them, take the tail.

Filters compare exact values (agent, user, team, tool, decision, outcome, environment, task,
session), look for a path or a path class among a call's ``changes``, and take a half-open
time range ``[since, until)``. A line that is not JSON, or not an
audit event, stops the read with its line number: the trail is evidence, so it is never
skipped silently. Segment records (see ``segments.py``) belong to the chain, not to the
events, and are left out, as are the torn lines they name. A torn last line (a crash no
server has recovered from yet) is what ``audit verify`` accepts too: the events before it
are read, and the torn line is noted (``TornTail``), not skipped unnamed.
"""

from __future__ import annotations

import json
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel, ConfigDict

from cedargate.audit.lines import FileProgress, numbered_lines
from cedargate.audit.segments import TornLine, is_segment_record, is_torn_prefix
from cedargate.errors import CedargateError


class AuditFilter(BaseModel):
    """Which events to keep; every field left ``None`` matches everything."""

    model_config = ConfigDict(frozen=True)

    agent: str | None = None
    user: str | None = None
    team: str | None = None
    tool: str | None = None
    decision: str | None = None
    outcome: str | None = None
    environment: str | None = None
    task: str | None = None
    session: str | None = None
    changed_path: str | None = None
    """Only calls whose ``changes.paths`` hold this repository path (ending in ``/``: a path in that folder)."""
    path_class: str | None = None
    """Only calls whose ``changes.classes`` hold this path class."""
    since: datetime | None = None
    until: datetime | None = None

    def matches(self, event: dict[str, Any]) -> bool:
        principal = event.get("principal") or {}
        decision = event.get("decision") or {}
        pairs = (
            (self.agent, principal.get("agent")),
            (self.user, principal.get("on_behalf_of")),
            (self.team, principal.get("team")),
            (self.tool, event.get("tool")),
            (self.decision, decision.get("effect")),
            (self.outcome, event.get("outcome")),
            (self.environment, event.get("environment")),
            (self.task, event.get("task")),
            (self.session, event.get("session_id")),
        )
        if any(wanted is not None and wanted != actual for wanted, actual in pairs):
            return False
        if self.changed_path is not None or self.path_class is not None:
            changes = event.get("changes") or {}
            if self.changed_path is not None and not _names(self.changed_path, changes.get("paths") or ()):
                return False
            if self.path_class is not None and self.path_class not in (changes.get("classes") or ()):
                return False
        if self.since is None and self.until is None:
            return True
        when = event_time(event)
        return (self.since is None or when >= self.since) and (self.until is None or when < self.until)


def _names(wanted: str, paths: Iterable[str]) -> bool:
    """Whether ``paths`` hold ``wanted``, or with ``wanted`` ending in ``/``, a path in that folder."""
    if wanted.endswith("/"):
        return any(str(path).startswith(wanted) for path in paths)
    return wanted in paths


_REQUIRED: Final[tuple[tuple[str, type], ...]] = (("event_id", str), ("time", str))
"""Fields every event has, with their JSON types: what tells an event from other JSON."""
_OPTIONAL: Final[tuple[tuple[str, type], ...]] = (
    ("tool", str),
    ("outcome", str),
    ("principal", dict),
    ("decision", dict),
    ("resource", dict),
    ("shadow", dict),
)
"""Fields the readers show when present (``null`` or absent reads as unknown), with their JSON types."""
_JSON_NAME: Final[dict[type, str]] = {str: "a string", dict: "an object"}


TornTail = Callable[[Path, int], None]
"""Hears ``(log, line number)`` of a torn last line the readers left out."""


def note_torn_tail(path: Path, line: int) -> None:
    """The readers' default ``TornTail``: one line on standard error, as ``audit verify`` reports it."""
    print(
        f"note: audit log `{path}` line {line} is a torn write (a crash in the middle of an event): "
        "the events before it are shown; a new segment starts when a server next writes to the log",
        file=sys.stderr,
    )


def event_time(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(str(event["time"]))


def read_events(
    path: Path, progress: FileProgress | None = None, torn_tail: TornTail = note_torn_tail
) -> Iterator[dict[str, Any]]:
    """Every event of the file, in order; fails naming the line that is not an event.

    ``progress`` hears ``(bytes read, file size)`` every ``PROGRESS_EVERY_LINES`` lines;
    ``torn_tail`` hears of a torn last line, once every event before it was read.
    """
    if not path.is_file():
        raise CedargateError(
            f"audit log `{path}` does not exist: pass --log PATH or check `[audit] path` in the config"
        )
    torn: list[TornLine] = []
    torn_line = 0
    for number, offset, raw in numbered_lines(path, progress):
        where = f"line {number}"
        line = raw.rstrip(b"\n")
        try:
            record = json.loads(line) if line.strip() else None
        except ValueError:
            if not is_torn_prefix(line):
                raise _not_json(path, where) from None
            # A crash's torn write: left out once the segment record after it names it (as verify accepts).
            torn.append(TornLine(offset, line))
            torn_line = torn_line or number
            continue
        if torn:
            if not (isinstance(record, dict) and is_segment_record(record) and record.get("torn") == _named(torn)):
                raise _not_json(path, f"line {torn_line}")
            torn, torn_line = [], 0
            continue
        event = as_event(record, path, where)
        if event is not None:
            yield event
    if torn:  # a crash no server has recovered from yet: noted, never skipped unnamed
        torn_tail(path, torn_line)


def _named(torn: list[TornLine]) -> list[dict[str, Any]]:
    return [t.describe() for t in torn]


def parse_event(line: bytes | str, path: Path, where: str) -> dict[str, Any] | None:
    """The event on one line of ``path``; ``None`` for a blank line or a segment record.

    Fails naming ``where`` (e.g. ``line 7``) and pointing at ``audit verify``, which locates the damage.
    """
    if not line.strip():
        return None
    try:
        record = json.loads(line)
    except ValueError:
        raise _not_json(path, where) from None
    return as_event(record, path, where)


def _not_json(path: Path, where: str) -> CedargateError:
    return CedargateError(f"audit log `{path}` {where} is not JSON: run `cedargate audit verify --log {path}`")


def as_event(record: object, path: Path, where: str) -> dict[str, Any] | None:
    """``record`` as an event; ``None`` for nothing or a segment record; fails naming ``where`` otherwise."""
    verify = f"run `cedargate audit verify --log {path}`"
    if record is None or is_segment_record(record):
        return None
    problem = event_problem(record)
    if problem is not None or not isinstance(record, dict):
        raise CedargateError(f"audit log `{path}` {where} is not an audit event ({problem}): {verify}")
    return record


def event_problem(record: object) -> str | None:
    """What keeps ``record`` from being an audit event the readers can show, or ``None``."""
    if not isinstance(record, dict):
        return "not a JSON object"
    for name, kind in _REQUIRED:
        if not isinstance(record.get(name), kind):
            return f"`{name}` is missing or not {_JSON_NAME[kind]}"
    for name, kind in _OPTIONAL:
        if record.get(name) is not None and not isinstance(record[name], kind):
            return f"`{name}` is not {_JSON_NAME[kind]}"
    try:
        zoned = event_time(record).tzinfo is not None
    except ValueError:
        zoned = False
    return None if zoned else f"`time` `{record['time']}` is not an ISO time with a time zone"


def query(events: Iterable[dict[str, Any]], where: AuditFilter, limit: int | None = None) -> list[dict[str, Any]]:
    """The matching events in log order; with ``limit``, only the last ``limit`` of them."""
    matching = (e for e in events if where.matches(e))
    return list(deque(matching, maxlen=limit)) if limit is not None else list(matching)


def one_line(event: dict[str, Any]) -> str:
    """A compact line for terminals: time, outcome, decision, who, tool, target, event id."""
    principal = event.get("principal") or {}
    resource = event.get("resource") or {}
    decision = str((event.get("decision") or {}).get("effect") or "-")
    shadow = f" (shadow: would {event['shadow'].get('would', '?')})" if event.get("shadow") else ""
    target = f"{resource.get('id', '-')}@{event.get('environment') or '-'}"
    return (
        f"{event.get('time', '?')}  {event.get('outcome') or '?':<17} {decision:<17} "
        f"{principal.get('agent', '?')}/{principal.get('on_behalf_of', '?')}  {event.get('tool', '?')}  "
        f"{target}  {event.get('event_id', '?')}{shadow}"
    )
