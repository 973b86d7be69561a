"""Graph: fewer secondary indexes on dependencies, so bulk upserts write fewer B-trees.

Revision ID: 0004
Revises: 0003

Every edge written updates each index of ``graph_dependencies``. Three of them
answered no query the unique key or another index does not:

* ``ix_graph_dependencies_source_id_target_id``: its columns are the prefix of
  the unique key ``(source_id, target_id, discovery_source)``, which serves
  the same lookups. Dropped on both engines.
* ``ix_graph_dependencies_discovery_source``: four possible values, and no
  query filters on the discovery source alone. Dropped on both engines.
* ``ix_graph_dependencies_source_live``: on SQLite the unique key's prefix
  serves "live edges leaving a service" as well (the stale flag is read from
  the row). Dropped on SQLite only; PostgreSQL keeps the seed's partial
  indexes on both ends, which its recursive CTEs use.

The target side keeps its partial index (the unique key cannot serve it),
and ``last_observed_at`` keeps its index for ``mark-stale``.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_TABLE = "graph_dependencies"


def upgrade() -> None:
    op.drop_index("ix_graph_dependencies_source_id_target_id", table_name=_TABLE)
    op.drop_index("ix_graph_dependencies_discovery_source", table_name=_TABLE)
    if op.get_bind().dialect.name == "sqlite":
        op.drop_index("ix_graph_dependencies_source_live", table_name=_TABLE)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.create_index(
            "ix_graph_dependencies_source_live",
            _TABLE,
            ["source_id"],
            postgresql_where=sa.text("NOT is_stale"),
            sqlite_where=sa.text("NOT is_stale"),
        )
    op.create_index("ix_graph_dependencies_discovery_source", _TABLE, ["discovery_source"])
    op.create_index("ix_graph_dependencies_source_id_target_id", _TABLE, ["source_id", "target_id"])
