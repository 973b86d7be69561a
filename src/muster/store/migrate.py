"""Apply the Alembic migrations programmatically (``muster migrate``; ``serve`` does it on start).

The whole upgrade runs in one transaction that first takes a lock (``BEGIN
IMMEDIATE`` on SQLite, an advisory lock on PostgreSQL), so two processes
starting together migrate once and never race.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection

from muster.store.engine import Store

__all__ = ["current_revision", "head_revision", "upgrade"]

_MIGRATIONS = Path(__file__).parent / "migrations"
_MIGRATION_LOCK = 0x6D75737465720002


logging.getLogger("alembic").setLevel(logging.WARNING)


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.attributes["configure_logger"] = False
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def current_revision(store: Store) -> str | None:
    async with store.read() as conn:
        return await conn.run_sync(_current)


def _run_upgrade(connection: Connection, target: str) -> None:
    command.upgrade(_config(connection), target)


async def upgrade(store: Store, target: str = "head") -> tuple[str | None, str | None]:
    """Bring the schema to ``target``; return (revision before, revision after)."""
    async with store.write_engine.connect() as conn:
        await conn.begin()  # BEGIN IMMEDIATE on SQLite: one migrator at a time
        if store.dialect == "postgresql":
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        before = await conn.run_sync(_current)
        await conn.run_sync(_run_upgrade, target)
        after = await conn.run_sync(_current)
        await conn.commit()
    return before, after


def _run_downgrade(connection: Connection, target: str) -> None:
    command.downgrade(_config(connection), target)


async def downgrade(store: Store, target: str) -> None:
    """Step the schema back to ``target`` (tests prove every migration is reversible)."""
    async with store.write_engine.connect() as conn:
        await conn.begin()
        await conn.run_sync(_run_downgrade, target)
        await conn.commit()


