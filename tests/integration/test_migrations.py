"""Migrations and the schema definition agree, on both engines, and every migration reverses."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection

from muster.store.engine import Store
from muster.store.migrate import current_revision, downgrade, head_revision, upgrade
from muster.store.schema import include_object_for
from muster.store.tables import metadata


def _diff(connection: Connection) -> list[Any]:
    include = include_object_for(connection.dialect.name)
    context = MigrationContext.configure(connection, opts={"compare_type": False, "include_object": include})
    return [d for d in compare_metadata(context, metadata) if not _ignorable(d)]


def _ignorable(diff: Any) -> bool:
    # Alembic reports the sqlite_sequence bookkeeping table that AUTOINCREMENT creates.
    return isinstance(diff, tuple) and diff[0] == "remove_table" and diff[1].name == "sqlite_sequence"


async def test_migrated_schema_matches_the_metadata(store: Store) -> None:
    """After `muster migrate`, autogenerate finds nothing the migrations forgot."""
    async with store.read() as conn:
        diff = await conn.run_sync(_diff)
    assert diff == []
    assert head_revision() == await current_revision(store)


async def test_migrations_downgrade_to_empty_and_upgrade_again(store: Store) -> None:
    """Every migration has a working downgrade; upgrading twice is a no-op."""
    await downgrade(store, "base")
    assert await current_revision(store) is None
    assert (None, head_revision()) == await upgrade(store)
    assert (head_revision(), head_revision()) == await upgrade(store)
