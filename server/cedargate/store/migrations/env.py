"""Alembic environment: migrations run on the engine cedargate hands over (online mode only)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine

from cedargate.store.tables import metadata

engine = context.config.attributes.get("engine")
if not isinstance(engine, Engine):
    raise RuntimeError("cedargate migrations run through `cedargate db upgrade`, which supplies the engine")

with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
