"""Checking the `database` sink's copy of the trail against itself and against the file.

The table is a secondary copy: rows arrive after the file has the event, at least once, and
never the file's segment records, so it is not a chain of its own. What can be checked is
that every row still hashes to the hash it was stored with, that the file (verified first)
holds an event with that hash, and that every column holds what the sink writes for that
event (``database.record_row``): a row edited in the table (its event or any filter column
``audit query --source database`` reads), or added to it, is named. Events of the file not in
the table are counted, not failed: delivery to a secondary sink is asynchronous and
at-least-once, so a row may not be there yet, or may have been lost while the store was down;
a row deleted from the table looks the same, and the count says so.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from cedargate.audit.database import record_row
from cedargate.audit.database_query import ROW_BATCH, table_unreadable
from cedargate.audit.event import event_hash
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


def verify_table(store: Store, primary: Mapping[str, str]) -> TableReport:
    """Check every row of ``audit_events`` against its own hash and against ``primary`` (hash -> event id)."""
    statement = select(audit_events).order_by(audit_events.c.id)
    rows = 0
    try:
        # In batches, as `audit query` reads it: each batch is a statement within the store's timeout
        # (the result is closed on the way out, so an early return leaves no server cursor open).
        with (
            store.engine.connect() as connection,
            connection.execution_options(yield_per=ROW_BATCH).execute(statement) as result,
        ):
            for row in result:
                stored = dict(row._mapping)
                problem = _problem(stored, primary)
                if problem is not None:
                    return TableReport(ok=False, rows=rows, event_id=stored["event_id"], problem=problem)
                rows += 1
    except SQLAlchemyError as exc:
        raise table_unreadable(exc) from exc
    except ValueError as exc:  # a column edited to what its type cannot read back (a `time` that is no time)
        problem = f"the row after the {rows} checked cannot be read ({exc}): a column was edited in the table"
        return TableReport(ok=False, rows=rows, problem=problem)
    return TableReport(ok=True, rows=rows, not_in_table=max(len(primary) - rows, 0))


def _problem(stored: dict[str, Any], primary: Mapping[str, str]) -> str | None:
    """Why the row ``stored`` is not the sink's row for an event of the log, or ``None``."""
    stored_hash = stored["hash"]
    try:
        record = json.loads(stored["event"])
    except ValueError:
        return "the row's event is not valid JSON"
    if not isinstance(record, dict) or event_hash(record) != stored_hash or record.get("hash") != stored_hash:
        return "the row was altered: its event does not hash to the hash it was stored with"
    try:
        expected = record_row(record)
    except (KeyError, TypeError, ValueError) as exc:
        return f"the row's event lacks what its columns are built from ({type(exc).__name__}: {exc})"
    # Every column, not only the event: `audit query --source database` filters on the columns.
    edited = [name for name, value in expected.items() if name != "event" and stored.get(name) != value]
    if edited:
        columns = "; ".join(f"`{n}` reads `{stored.get(n)}`, its event says `{expected[n]}`" for n in edited)
        return f"the row's columns were edited in the table: {columns}"
    if primary.get(stored_hash) != record["event_id"]:
        return "the audit log has no such event: the row was added to the table or comes from another log"
    return None
