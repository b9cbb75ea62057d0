"""audit events: a queryable copy of the audit trail, written by the `database` audit sink

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_INDEXED = ("time", "agent", "on_behalf_of", "team", "tool", "effect", "outcome", "environment", "task", "session_id")


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("time", sa.DateTime(), nullable=False),
        sa.Column("agent", sa.String(256), nullable=False),
        sa.Column("on_behalf_of", sa.String(256), nullable=False),
        sa.Column("team", sa.String(256), nullable=False),
        sa.Column("tool", sa.String(256), nullable=False),
        sa.Column("effect", sa.String(32)),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("environment", sa.String(256)),
        sa.Column("task", sa.String(256), nullable=False),
        sa.Column("session_id", sa.String(256), nullable=False),
        sa.Column("event", sa.Text, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
    )
    op.create_index("ix_audit_events_event_id", "audit_events", ["event_id"], unique=True)
    for column in _INDEXED:
        op.create_index(f"ix_audit_events_{column}", "audit_events", [column])


def downgrade() -> None:
    op.drop_table("audit_events")
