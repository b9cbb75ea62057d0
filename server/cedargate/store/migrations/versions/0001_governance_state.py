"""governance state: approvals, budget counters, spend ledger, revocations

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "approvals",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("tool", sa.String(128), nullable=False),
        sa.Column("agent", sa.String(128), nullable=False),
        sa.Column("team", sa.String(128), nullable=False),
        sa.Column("on_behalf_of", sa.String(128), nullable=False),
        sa.Column("task", sa.String(128), nullable=False),
        sa.Column("args_digest", sa.String(64), nullable=False),
        sa.Column("arguments", sa.Text, nullable=False),
        sa.Column("resource", sa.String(256), nullable=False),
        sa.Column("environment", sa.String(128), nullable=False),
        sa.Column("policies", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("approver_group", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("request_event_id", sa.String(64), nullable=False),
        sa.Column("decided_by", sa.String(128)),
        sa.Column("decided_at", sa.DateTime()),
        sa.Column("note", sa.Text),
        sa.Column("consumed_event_id", sa.String(64)),
        sa.Column("consumed_at", sa.DateTime()),
    )
    op.create_index("ix_approvals_agent", "approvals", ["agent"])
    op.create_index("ix_approvals_status", "approvals", ["status"])
    op.create_table(
        "budget_counters",
        sa.Column("scope", sa.String(16), primary_key=True),
        sa.Column("subject", sa.String(128), primary_key=True),
        sa.Column("window", sa.String(16), primary_key=True),
        sa.Column("period", sa.String(32), primary_key=True),
        sa.Column("amount", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "spend_ledger",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("agent", sa.String(128), nullable=False),
        sa.Column("team", sa.String(128), nullable=False),
        sa.Column("tool", sa.String(128), nullable=False),
        sa.Column("cents", sa.BigInteger, nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_spend_ledger_agent", "spend_ledger", ["agent"])
    op.create_index("ix_spend_ledger_team", "spend_ledger", ["team"])
    op.create_table(
        "revocations",
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("subject", sa.String(128), primary_key=True),
        sa.Column("by_user", sa.String(128), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("revocations")
    op.drop_index("ix_spend_ledger_team", "spend_ledger")
    op.drop_index("ix_spend_ledger_agent", "spend_ledger")
    op.drop_table("spend_ledger")
    op.drop_table("budget_counters")
    op.drop_index("ix_approvals_status", "approvals")
    op.drop_index("ix_approvals_agent", "approvals")
    op.drop_table("approvals")
