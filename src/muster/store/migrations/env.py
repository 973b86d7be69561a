"""Alembic environment: migrations run on a connection handed in by muster.store.migrate."""

from __future__ import annotations

from alembic import context

from muster.store.schema import include_object_for
from muster.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `muster migrate` (muster.store.migrate), not the alembic CLI")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
    include_object=include_object_for(connection.dialect.name),
)
with context.begin_transaction():
    context.run_migrations()
