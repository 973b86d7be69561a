"""Identity: tokens, the owner of services, leases and graph nodes, and the actor of events and alerts.

Revision ID: 0005
Revises: 0004

Rows written before this migration were written with auth off: their owner
and actor are ``anonymous`` (alerts: ``muster``, the monitor that raised them).
"""

import sqlalchemy as sa
from alembic import op

from muster.store.schema import JSONType, UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_OWNED = ("services", "leases", "graph_services")


def upgrade() -> None:
    op.create_table(
        "tokens",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("digest", sa.Text(), nullable=False),
        sa.Column("scopes", JSONType, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=True),
        sa.Column("revoked_at", UTCDateTime, nullable=True),
        sa.Column("last_used_at", UTCDateTime, nullable=True),
        sa.PrimaryKeyConstraint("name", name="pk_tokens"),
        sa.UniqueConstraint("digest", name="uq_tokens_digest"),
    )
    for table in _OWNED:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("owner", sa.Text(), nullable=False, server_default="anonymous"))
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("actor", sa.Text(), nullable=False, server_default="anonymous"))
    with op.batch_alter_table("catalog_alerts") as batch:
        batch.add_column(sa.Column("actor", sa.Text(), nullable=False, server_default="muster"))


def downgrade() -> None:
    with op.batch_alter_table("catalog_alerts") as batch:
        batch.drop_column("actor")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("actor")
    for table in reversed(_OWNED):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("owner")
    op.drop_table("tokens")
