"""Flush marks: how far each process that takes heartbeats has written them to the store.

Revision ID: 0008
Revises: 0007

A beat is acknowledged when a process has it in memory and is written by that process's next flush.
The monitor leader judges silence only up to the lowest mark of the processes still flushing, so a
replica whose flushes lag behind (a starved machine, a stalled transaction) produces no false down.
"""

import sqlalchemy as sa
from alembic import op

from muster.store.schema import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "beat_flushes",
        sa.Column("writer", sa.Text(), nullable=False),
        sa.Column("flushed_through", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("writer", name="pk_beat_flushes"),
    )


def downgrade() -> None:
    op.drop_table("beat_flushes")
