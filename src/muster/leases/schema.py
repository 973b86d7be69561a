"""Leases tables: one row per lease (reservation), kept after it ends as history.

The invariant "at most one live lease per symbol" lives in the database: the
unique partial index ``uq_leases_live_symbol`` covers only the rows whose
status is ``reserved`` or ``active``. A partial index cannot mention "now", so
a reservation whose time is up still occupies the index until some
transaction flips it to ``expired``; the reserve transaction does exactly that
for its own symbol (with the server's clock, before inserting), and a sweeper
does it in the background for everyone else. Concurrent reserves of one
symbol are arbitrated by the index: one insert wins, the others conflict.

``lease_id`` is the fencing token: AUTOINCREMENT on SQLite (never reused, even
after the newest row is deleted) and a sequence on PostgreSQL.
"""

from __future__ import annotations

from sqlalchemy import CheckConstraint, Column, Index, Table, Text, text

from muster.store.schema import BigId, UTCDateTime, metadata

__all__ = ["LIVE_STATUSES", "STATUSES", "leases"]

STATUSES = ("reserved", "active", "deprecated", "released", "expired")
LIVE_STATUSES = ("reserved", "active")
_LIVE = text("status IN ('reserved', 'active')")
_RESERVED = text("status = 'reserved'")

leases = Table(
    "leases",
    metadata,
    Column("lease_id", BigId, primary_key=True, autoincrement=True),
    Column("repo", Text, nullable=False),
    Column("branch", Text, nullable=False),
    Column("fq_name", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("file_path", Text, nullable=False),
    Column("plan_id", Text, nullable=True),
    Column("status", Text, nullable=False),
    Column("commit_sha", Text, nullable=True),
    Column("reserved_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=True),
    Column("updated_at", UTCDateTime, nullable=False),
    # The principal that reserved it; only it (or an admin) may claim, release or extend it.
    Column("owner", Text, nullable=False, server_default="anonymous"),
    CheckConstraint(
        "status IN ('reserved', 'active', 'deprecated', 'released', 'expired')", name="status"
    ),
    CheckConstraint("status <> 'reserved' OR expires_at IS NOT NULL", name="reserved_has_expiry"),
    CheckConstraint("status <> 'active' OR commit_sha IS NOT NULL", name="active_has_commit"),
    # The invariant: at most one live lease per symbol.
    Index(
        "uq_leases_live_symbol",
        "repo",
        "branch",
        "fq_name",
        unique=True,
        sqlite_where=_LIVE,
        postgresql_where=_LIVE,
    ),
    # The newest lease of a symbol (lookup read-through, index load).
    Index("ix_leases_repo_branch_fq_name_lease_id", "repo", "branch", "fq_name", "lease_id"),
    Index("ix_leases_plan_id", "plan_id"),
    # The expiry sweeper's scan: only reservations, by deadline.
    Index("ix_leases_reserved_expires_at", "expires_at", sqlite_where=_RESERVED, postgresql_where=_RESERVED),
    sqlite_autoincrement=True,
)
