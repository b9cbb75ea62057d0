"""Governance state shared by every replica: approvals, spend counters, revocations.

SQLite (one file) by default, PostgreSQL when ``[store] url`` names one; the same SQLAlchemy
Core statements run on both. The schema is owned by the Alembic migrations in
``migrations/``: ``open_store`` upgrades the database to the newest revision before use.
"""

from cedargate.store.engine import Store, open_store

__all__ = ["Store", "open_store"]
