"""Leases: the symbol registry's lease rows and the live-symbol unique partial index.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from muster.store.schema import BigId, UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_LIVE = sa.text("status IN ('reserved', 'active')")
_RESERVED = sa.text("status = 'reserved'")


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("lease_id", BigId, primary_key=True, autoincrement=True),
        sa.Column("repo", sa.Text, nullable=False),
        sa.Column("branch", sa.Text, nullable=False),
        sa.Column("fq_name", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("file_path", sa.Text, nullable=False),
        sa.Column("plan_id", sa.Text, nullable=True),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("commit_sha", sa.Text, nullable=True),
        sa.Column("reserved_at", UTCDateTime, nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=True),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("lease_id", name="pk_leases"),
        sa.CheckConstraint(
            "status IN ('reserved', 'active', 'deprecated', 'released', 'expired')", name="ck_leases_status"
        ),
        sa.CheckConstraint(
            "status <> 'reserved' OR expires_at IS NOT NULL", name="ck_leases_reserved_has_expiry"
        ),
        sa.CheckConstraint("status <> 'active' OR commit_sha IS NOT NULL", name="ck_leases_active_has_commit"),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "uq_leases_live_symbol",
        "leases",
        ["repo", "branch", "fq_name"],
        unique=True,
        sqlite_where=_LIVE,
        postgresql_where=_LIVE,
    )
    op.create_index(
        "ix_leases_repo_branch_fq_name_lease_id", "leases", ["repo", "branch", "fq_name", "lease_id"]
    )
    op.create_index("ix_leases_plan_id", "leases", ["plan_id"])
    op.create_index(
        "ix_leases_reserved_expires_at",
        "leases",
        ["expires_at"],
        sqlite_where=_RESERVED,
        postgresql_where=_RESERVED,
    )


def downgrade() -> None:
    for index in (
        "ix_leases_reserved_expires_at",
        "ix_leases_plan_id",
        "ix_leases_repo_branch_fq_name_lease_id",
        "uq_leases_live_symbol",
    ):
        op.drop_index(index, table_name="leases")
    op.drop_table("leases")
