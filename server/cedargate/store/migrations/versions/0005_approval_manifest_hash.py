"""approvals: the content hash of the tool's manifest the request was made under

A grant is bound to the manifest it was asked for: once the tool's manifest changes (a hot
reload), the grant no longer applies. Rows from before this column have none and are never
usable as grants (fail closed); they expire within the approval TTL.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("approvals") as batch:
        batch.add_column(sa.Column("manifest_hash", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("approvals") as batch:
        batch.drop_column("manifest_hash")
