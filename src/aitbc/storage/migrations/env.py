"""Alembic environment: runs on the connection that `storage.sql.database.migrate` hands over."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from aitbc.storage.sql.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only the programmatic entry point is supported
    raise RuntimeError("run migrations through aitbc.storage.sql.database.migrate()")

if connection.dialect.name == "postgresql":
    # Two replicas starting together must not both create the schema.
    connection.execute(text("SELECT pg_advisory_xact_lock(727274)"))

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
context.run_migrations()
