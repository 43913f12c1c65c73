"""Alembic environment: migrations run on the connection :meth:`signery.service.storage.Database.migrate` passes."""

from __future__ import annotations

from alembic import context

from signery.service.storage import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reachable from a hand-written alembic.ini
    raise RuntimeError("run migrations through 'signery server migrate'")
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
