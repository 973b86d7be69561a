"""Leadership as a lease with an epoch, instead of a lock tied to a connection or a file.

Revision ID: 0007
Revises: 0006

A leader that hangs keeps a connection-bound lock for as long as its TCP connection lives; a lease
row expires by itself, and the epoch it carries fences a stale leader's writes in the database.
"""

import sqlalchemy as sa
from alembic import op

from muster.store.schema import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "leadership",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("holder", sa.Text(), nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("acquired_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_leadership"),
    )


def downgrade() -> None:
    op.drop_table("leadership")
