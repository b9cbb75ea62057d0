"""What operators did, as the store records it: approvals decided, agents revoked, environments frozen.

Every such change writes a row to ``admin_actions`` in the same transaction as the change
itself (``approvals``, ``holds``); this module reads them back for ``cedargate actions``.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import select

from cedargate.store import Store
from cedargate.store.tables import admin_actions


class AdminAction(BaseModel):
    at: datetime
    actor: str
    action: str
    """``approval_approved``/``_denied``/``_refused`` (an attempt the user may not make), ``revoke_agent``/
    ``reinstate_agent``, ``freeze``/``unfreeze_environment``."""
    subject: str
    reason: str


def recent_actions(store: Store, limit: int, actor: str | None = None) -> list[AdminAction]:
    """The newest ``limit`` actions (of ``actor`` only, when given), newest first."""
    query = select(admin_actions).order_by(admin_actions.c.id.desc()).limit(limit)
    if actor is not None:
        query = query.where(admin_actions.c.actor == actor)
    with store.engine.connect() as connection:
        rows = connection.execute(query).mappings().all()
    return [AdminAction.model_validate(dict(row)) for row in rows]
