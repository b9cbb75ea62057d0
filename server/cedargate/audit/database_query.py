"""Reading the `database` sink's copy of the trail with the same filters as the file query.

The filters become ``WHERE`` clauses on the indexed columns, so a large table is not read
whole. The table is a secondary copy: ``audit verify`` checks the JSONL primary, and with
``--database`` the table against it (``verify_table.py``).
"""

from __future__ import annotations

import json
from typing import Any, Final

from sqlalchemy import ColumnElement, select
from sqlalchemy.exc import SQLAlchemyError

from cedargate.audit.database import column_value
from cedargate.audit.query import AuditFilter, query
from cedargate.errors import CedargateError
from cedargate.store import Store
from cedargate.store.tables import audit_events

ROW_BATCH: Final = 2000
"""Rows fetched per round trip."""


def table_unreadable(exc: SQLAlchemyError) -> CedargateError:
    """The error for a table that cannot be read: which, why, and what to do."""
    cause = getattr(exc, "orig", None) or exc
    return CedargateError(
        f"the `audit_events` table could not be read ({type(cause).__name__}: {cause}); "
        "check `[store]` in the config and run `cedargate db upgrade`"
    )


def _conditions(where: AuditFilter) -> list[ColumnElement[bool]]:
    c = audit_events.c
    pairs = (
        (c.agent, where.agent),
        (c.on_behalf_of, where.user),
        (c.team, where.team),
        (c.tool, where.tool),
        (c.effect, where.decision),
        (c.outcome, where.outcome),
        (c.environment, where.environment),
        (c.task, where.task),
        (c.session_id, where.session),
    )
    conditions = [column == column_value(wanted) for column, wanted in pairs if wanted is not None]
    if where.since is not None:
        conditions.append(c.time >= where.since)
    if where.until is not None:
        conditions.append(c.time < where.until)
    return conditions


def _cut(where: AuditFilter) -> bool:
    """Whether SQL alone cannot tell matches apart: a filter on changes, or a value that may match others.

    A column holds a value cut to its length and with NUL stored as U+FFFD: a longer value, or
    one holding U+FFFD (a stored NUL or a real U+FFFD look the same), matches several events'
    columns, and the whole event decides.
    """
    if where.changed_path is not None or where.path_class is not None:
        return True  # no column holds a call's changes
    values = (where.agent, where.user, where.team, where.tool, where.environment, where.task, where.session)
    return any(v is not None and (column_value(v) != v or "\ufffd" in v) for v in values)


def query_table(store: Store, where: AuditFilter, limit: int | None = None) -> list[dict[str, Any]]:
    """The matching events in the order they were stored; with ``limit``, only the last ``limit``."""
    statement = select(audit_events.c.event).where(*_conditions(where))
    exact_in_sql = not _cut(where)
    if limit is not None and exact_in_sql:
        statement = statement.order_by(audit_events.c.id.desc()).limit(limit)
    else:
        statement = statement.order_by(audit_events.c.id)
    try:
        with store.engine.connect() as connection:
            # In batches: on PostgreSQL each batch is a statement of its own, so reading a large
            # table is not cut off by the store's per-statement timeout.
            stored = list(connection.execution_options(yield_per=ROW_BATCH).execute(statement).scalars())
    except SQLAlchemyError as exc:
        raise table_unreadable(exc) from exc
    if limit is not None and exact_in_sql:
        stored.reverse()
    events = [json.loads(event) for event in stored]
    if exact_in_sql:
        return events
    return query(events, where, limit)  # the columns were cut: the whole event decides
