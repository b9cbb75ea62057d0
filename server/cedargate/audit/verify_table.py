"""Checking the `database` sink's copy of the trail against itself and against the file.

The table is a secondary copy: rows arrive after the file has the event, at least once, and
never the file's segment records, so it is not a chain of its own. What can be checked is
that every row still hashes to the hash it was stored with, that its columns agree with its
event, and that the file (verified first) holds an event with that hash: a row edited in the
table, or added to it, is named. Events of the file not in the table yet are counted, not
failed: delivery to a secondary sink may lag or have been lost while the store was down.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from cedargate.audit.database_query import table_unreadable
from cedargate.audit.event import event_hash
from cedargate.audit.segments import is_segment_record, parse_complete
from cedargate.store import Store
from cedargate.store.tables import audit_events


class TableReport(BaseModel):
    """The verdict on the ``audit_events`` table; ``event_id`` names the first row at fault."""

    ok: bool
    rows: int
    """Rows checked before the first problem (all of them when ``ok``)."""
    not_in_table: int = 0
    """Events of the file the table does not hold (yet)."""
    event_id: str | None = None
    problem: str | None = None


def file_events(path: Path) -> dict[str, str]:
    """The file's events by hash (segment records and torn lines left out)."""
    events: dict[str, str] = {}
    with open(path, "rb") as handle:
        for raw in handle:
            record = parse_complete(raw.rstrip(b"\n"))
            if record is not None and not is_segment_record(record):
                events[record["hash"]] = str(record.get("event_id"))
    return events


def verify_table(store: Store, primary: Mapping[str, str]) -> TableReport:
    """Check every row of ``audit_events`` against its own hash and against ``primary`` (hash -> event id)."""
    columns = audit_events.c
    statement = select(columns.event_id, columns.event, columns.hash, columns.prev_hash).order_by(columns.id)
    rows = 0
    try:
        with store.engine.connect() as connection:
            for event_id, text, stored_hash, stored_prev in connection.execute(statement):
                problem = _problem(text, event_id, stored_hash, stored_prev, primary)
                if problem is not None:
                    return TableReport(ok=False, rows=rows, event_id=event_id, problem=problem)
                rows += 1
    except SQLAlchemyError as exc:
        raise table_unreadable(exc) from exc
    return TableReport(ok=True, rows=rows, not_in_table=max(len(primary) - rows, 0))


def _problem(text: str, event_id: str, stored_hash: str, stored_prev: str, primary: Mapping[str, str]) -> str | None:
    try:
        record = json.loads(text)
    except ValueError:
        return "the row's event is not valid JSON"
    if not isinstance(record, dict) or event_hash(record) != stored_hash or record.get("hash") != stored_hash:
        return "the row was altered: its event does not hash to the hash it was stored with"
    if record.get("event_id") != event_id or record.get("prev_hash") != stored_prev:
        return "the row's columns disagree with its event"
    if primary.get(stored_hash) != event_id:
        return "the audit log has no such event: the row was added to the table or comes from another log"
    return None
