"""The shared schema pieces: metadata, portable column types, and the event log table.

Each context declares its own tables on :data:`metadata` in its ``schema.py``;
:mod:`muster.store.tables` imports them all so migrations can be checked
against the whole schema. One definition serves SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, DateTime, Dialect, Index, Integer, MetaData, Table, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator

__all__ = ["BigId", "JSONType", "UTCDateTime", "events", "include_object_for", "leadership", "metadata", "only_on"]

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

def only_on(dialect: str, index: Index) -> Index:
    """``index``, created on one engine only (by ``create_all`` and, in their migration, by hand).

    Alembic's comparison does not know SQLAlchemy's ``ddl_if``: the mark in
    ``info`` lets :func:`include_object_for` leave the index out elsewhere.
    """
    index.info["only_on"] = dialect
    return index.ddl_if(dialect=dialect)


def include_object_for(dialect: str) -> Callable[[Any, str | None, str, bool, Any], bool]:
    """Alembic ``include_object`` hook: skip indexes that :func:`only_on` keeps to another engine."""

    def include(obj: Any, _name: str | None, type_: str, reflected: bool, _compare_to: Any) -> bool:
        if type_ != "index" or reflected:
            return True
        only = obj.info.get("only_on")
        return only is None or only == dialect

    return include


# 64-bit ids that SQLite can still autoincrement (it only does so for INTEGER PRIMARY KEY).
BigId = BigInteger().with_variant(Integer(), "sqlite")
JSONType = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on both engines.

    PostgreSQL stores ``timestamptz``; SQLite has no such type, so the value is
    stored as naive UTC text and given its UTC zone back when read.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        moment: datetime = datetime.fromisoformat(value) if isinstance(value, str) else value
        if moment.tzinfo is None:
            return moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC)


# The event log: every mutation appends one row in the same transaction.
# ``revision`` only grows (AUTOINCREMENT on SQLite, so it is never reused even
# after a prune; on PostgreSQL appends are serialised, see muster.events.log).
events = Table(
    "events",
    metadata,
    Column("revision", BigId, primary_key=True, autoincrement=True),
    Column("kind", Text, nullable=False),
    Column("subject", Text, nullable=False),
    Column("payload", JSONType, nullable=False),
    Column("ts", UTCDateTime, nullable=False),
    # The principal whose request made the change ("muster" for the server's own work,
    # "anonymous" where auth is off): the event log is the audit trail.
    Column("actor", Text, nullable=False, server_default="anonymous"),
    Index("ix_events_kind_revision", "kind", "revision"),
    sqlite_autoincrement=True,
)


# Leases on roles one process plays at a time (``monitor``: the heartbeat monitor and the pruner).
# ``epoch`` rises by one at each takeover; the leader's writes are fenced on it (muster.store.leader).
leadership = Table(
    "leadership",
    metadata,
    Column("name", Text, primary_key=True),
    Column("holder", Text, nullable=False),
    Column("epoch", BigInteger, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("acquired_at", UTCDateTime, nullable=False),
)
