"""A secondary sink that copies audit events into the store's ``audit_events`` table.

Auditors query the table with SQL (indexed by agent, user, team, tool, decision, outcome,
environment, task, session and time) while the JSONL file stays the fail-closed primary.
Inserts are idempotent on ``event_id``: a batch the fan-out retries after a failure that
happened after the commit (a lost connection, a timeout) lands once. Segment records never
reach a secondary sink (the primary writes them itself when it recovers a torn tail), so
every row is an event.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Insert
from sqlalchemy.dialects import postgresql, sqlite

from cedargate.audit.canonical import canonical_json
from cedargate.audit.event import AuditEvent
from cedargate.errors import ConfigError
from cedargate.store import Store
from cedargate.store.tables import audit_events

COLUMN_LIMIT: Final = 256
"""Characters a filter column holds (``audit_events`` declares them ``String(256)``)."""


def column_value(value: str) -> str:
    """``value`` as a filter column stores it: cut to the column, without NUL (PostgreSQL refuses it).

    An agent chooses some of these values (an unknown tool's name); one the database refused
    would be retried forever and hold back every event after it.
    """
    return value.replace("\x00", "\ufffd")[:COLUMN_LIMIT]


def event_row(event: AuditEvent) -> dict[str, Any]:
    """The row for one event: the columns auditors filter on, and the event as hashed."""
    return record_row(event.model_dump(mode="json"))


def record_row(record: dict[str, Any]) -> dict[str, Any]:
    """The row for an event's JSON record (``AuditEvent.model_dump(mode="json")``, or its line as read back).

    ``audit verify --database`` rebuilds each row from its event with this, so a filter column
    edited in the table is found.
    """
    principal = record["principal"]
    decision = record.get("decision")
    environment = record.get("environment")
    return {
        "event_id": record["event_id"],
        "time": datetime.fromisoformat(record["time"]),
        "agent": column_value(principal["agent"]),
        "on_behalf_of": column_value(principal["on_behalf_of"]),
        "team": column_value(principal["team"]),
        "tool": column_value(record["tool"]),
        "effect": decision["effect"] if decision is not None else None,
        "outcome": record["outcome"],
        "environment": column_value(environment) if environment is not None else None,
        "task": column_value(record["task"]),
        "session_id": column_value(record["session_id"]),
        "event": canonical_json(record),
        "hash": record["hash"],
        "prev_hash": record["prev_hash"],
    }


def _insert_ignoring_duplicates(backend: str) -> Insert:
    """``INSERT`` that skips rows whose ``event_id`` is already stored (both backends support it)."""
    if backend == "postgresql":
        return postgresql.insert(audit_events).on_conflict_do_nothing(index_elements=["event_id"])
    if backend == "sqlite":
        return sqlite.insert(audit_events).on_conflict_do_nothing(index_elements=["event_id"])
    raise ConfigError(
        f'`[[audit.sinks]] kind = "database"` supports SQLite and PostgreSQL stores, not `{backend}`; '
        "change `[store] url` or remove the sink"
    )


class DatabaseSink:
    """Writes each batch in one transaction on the runtime's store; the store owns the engine."""

    name = "database"

    def __init__(self, store: Store) -> None:
        self._store = store
        self._insert = _insert_ignoring_duplicates(store.backend)

    def emit(self, events: Sequence[AuditEvent]) -> None:
        if not events:
            return
        with self._store.engine.begin() as connection:
            connection.execute(self._insert, [event_row(e) for e in events])

    def close(self) -> None:
        """Nothing to release: the runtime closes the store after the audit fan-out."""
