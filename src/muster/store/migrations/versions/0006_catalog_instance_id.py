"""Catalog: a client-chosen ``instance_id`` per service, unique per name.

Revision ID: 0006
Revises: 0005

Registering again with the same name and ``instance_id`` updates that
instance instead of adding a second one. The unique index is what holds the
rule when many writers (tasks, door processes, replicas) register the same
instance at once; it is partial, so registrations without an ``instance_id``
(every row written before this migration, and the hot path) add no entry.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_WHERE = sa.text("instance_id IS NOT NULL")


def upgrade() -> None:
    op.add_column("services", sa.Column("instance_id", sa.Text(), nullable=True))
    op.create_index(
        "uq_services_name_instance_id",
        "services",
        ["name", "instance_id"],
        unique=True,
        sqlite_where=_WHERE,
        postgresql_where=_WHERE,
    )


def downgrade() -> None:
    op.drop_index("uq_services_name_instance_id", table_name="services")
    with op.batch_alter_table("services") as batch:
        batch.drop_column("instance_id")
