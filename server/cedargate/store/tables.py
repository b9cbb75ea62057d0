"""The tables of the governance store, as SQLAlchemy Core metadata.

The migrations create exactly these; a test compares the migrated database with this
metadata so the two cannot drift apart.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    false,
)
from sqlalchemy.engine import Dialect

metadata = MetaData()


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, stored naive in UTC on every backend."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; pass an aware UTC datetime")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if not isinstance(value, datetime):
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


approvals = Table(
    "approvals",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("tool", String(128), nullable=False),
    Column("agent", String(128), nullable=False, index=True),
    Column("team", String(128), nullable=False),
    Column("on_behalf_of", String(128), nullable=False),
    Column("task", String(128), nullable=False),
    Column("args_digest", String(64), nullable=False),
    Column("arguments", Text, nullable=False),
    Column("resource", String(256), nullable=False),
    Column("environment", String(128), nullable=False),
    Column("policies", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("approver_group", String(128), nullable=False),
    Column("status", String(16), nullable=False, index=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False),
    Column("request_event_id", String(64), nullable=False),
    Column("decided_by", String(128)),
    Column("decided_at", UtcDateTime()),
    Column("note", Text),
    Column("consumed_event_id", String(64)),
    Column("consumed_at", UtcDateTime()),
    Column("self_approvable", Boolean, nullable=False, server_default=false()),
    Column("manifest_hash", String(64)),
)

budget_counters = Table(
    "budget_counters",
    metadata,
    Column("scope", String(16), primary_key=True),
    Column("subject", String(128), primary_key=True),
    Column("window", String(16), primary_key=True),
    Column("period", String(32), primary_key=True),
    Column("amount", BigInteger, nullable=False),
)

spend_ledger = Table(
    "spend_ledger",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False),
    Column("agent", String(128), nullable=False, index=True),
    Column("team", String(128), nullable=False, index=True),
    Column("tool", String(128), nullable=False),
    Column("cents", BigInteger, nullable=False),
    Column("at", UtcDateTime(), nullable=False),
)

revocations = Table(
    "revocations",
    metadata,
    Column("kind", String(16), primary_key=True),
    Column("subject", String(128), primary_key=True),
    Column("by_user", String(128), nullable=False),
    Column("at", UtcDateTime(), nullable=False),
    Column("reason", Text, nullable=False),
)

admin_actions = Table(
    "admin_actions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime(), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("action", String(32), nullable=False),
    Column("subject", String(256), nullable=False),
    Column("reason", Text, nullable=False),
)

audit_events = Table(
    "audit_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False, unique=True, index=True),
    Column("time", UtcDateTime(), nullable=False, index=True),
    Column("agent", String(256), nullable=False, index=True),
    Column("on_behalf_of", String(256), nullable=False, index=True),
    Column("team", String(256), nullable=False, index=True),
    Column("tool", String(256), nullable=False, index=True),
    Column("effect", String(32), index=True),
    Column("outcome", String(32), nullable=False, index=True),
    Column("environment", String(256), index=True),
    Column("task", String(256), nullable=False, index=True),
    Column("session_id", String(256), nullable=False, index=True),
    Column("event", Text, nullable=False),
    Column("hash", String(64), nullable=False),
    Column("prev_hash", String(64), nullable=False),
)
"""One row per audit event (never a segment record); ``event`` is the event's canonical JSON, as hashed.

The filter columns hold at most 256 characters (longer values, which an agent can send as a
tool name, are cut there; ``event`` keeps them whole), so no event can fail its insert.
"""
