"""The dependency graph: services, dependencies, circular dependency alerts.

Revision ID: 0003
Revises: 0002

The partial indexes are created on both engines (SQLite has them too). The
``updated_at`` triggers differ by engine: a PL/pgSQL function on PostgreSQL,
plain triggers on SQLite. Both only fill ``updated_at`` when an UPDATE left it
unchanged; the service sets it from the server's clock on every write.
"""

import sqlalchemy as sa
from alembic import op

from muster.store.schema import JSONType, UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_TABLES = ("graph_services", "graph_dependencies", "graph_cycle_alerts")


def upgrade() -> None:
    op.create_table(
        "graph_services",
        sa.Column("id", sa.Uuid, nullable=False),
        sa.Column("service_id", sa.Text, nullable=False),
        sa.Column("metadata", JSONType, nullable=False),
        sa.Column("criticality", sa.Text, nullable=False, server_default="medium"),
        sa.Column("team", sa.Text, nullable=True),
        sa.Column("discovered", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_graph_services"),
        sa.UniqueConstraint("service_id", name="uq_graph_services_service_id"),
        sa.CheckConstraint(
            "criticality IN ('critical', 'high', 'medium', 'low')", name="ck_graph_services_criticality"
        ),
    )
    op.create_index(
        "ix_graph_services_team",
        "graph_services",
        ["team"],
        postgresql_where=sa.text("team IS NOT NULL"),
        sqlite_where=sa.text("team IS NOT NULL"),
    )
    op.create_index("ix_graph_services_criticality", "graph_services", ["criticality"])
    op.create_index(
        "ix_graph_services_discovered",
        "graph_services",
        ["discovered"],
        postgresql_where=sa.text("discovered"),
        sqlite_where=sa.text("discovered"),
    )

    op.create_table(
        "graph_dependencies",
        sa.Column("id", sa.Uuid, nullable=False),
        sa.Column("source_id", sa.Uuid, nullable=False),
        sa.Column("target_id", sa.Uuid, nullable=False),
        sa.Column("communication_mode", sa.Text, nullable=False, server_default="sync"),
        sa.Column("criticality", sa.Text, nullable=False, server_default="hard"),
        sa.Column("protocol", sa.Text, nullable=True),
        sa.Column("timeout_ms", sa.Integer, nullable=True),
        sa.Column("retry_config", JSONType, nullable=True),
        sa.Column("discovery_source", sa.Text, nullable=False, server_default="manual"),
        sa.Column("confidence_score", sa.Float, nullable=False, server_default="1.0"),
        sa.Column("last_observed_at", UTCDateTime, nullable=False),
        sa.Column("is_stale", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_graph_dependencies"),
        sa.ForeignKeyConstraint(
            ["source_id"],
            ["graph_services.id"],
            name="fk_graph_dependencies_source_id_graph_services",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["target_id"],
            ["graph_services.id"],
            name="fk_graph_dependencies_target_id_graph_services",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "source_id",
            "target_id",
            "discovery_source",
            name="uq_graph_dependencies_source_id_target_id_discovery_source",
        ),
        sa.CheckConstraint("source_id <> target_id", name="ck_graph_dependencies_no_self_loop"),
        sa.CheckConstraint(
            "communication_mode IN ('sync', 'async')", name="ck_graph_dependencies_communication_mode"
        ),
        sa.CheckConstraint("criticality IN ('hard', 'soft', 'degraded')", name="ck_graph_dependencies_criticality"),
        sa.CheckConstraint(
            "discovery_source IN ('manual', 'otel_service_graph', 'kubernetes', 'service_mesh')",
            name="ck_graph_dependencies_discovery_source",
        ),
        sa.CheckConstraint(
            "confidence_score >= 0.0 AND confidence_score <= 1.0", name="ck_graph_dependencies_confidence_score"
        ),
        sa.CheckConstraint("timeout_ms IS NULL OR timeout_ms > 0", name="ck_graph_dependencies_timeout_positive"),
    )
    op.create_index(
        "ix_graph_dependencies_source_live",
        "graph_dependencies",
        ["source_id"],
        postgresql_where=sa.text("NOT is_stale"),
        sqlite_where=sa.text("NOT is_stale"),
    )
    op.create_index(
        "ix_graph_dependencies_target_live",
        "graph_dependencies",
        ["target_id"],
        postgresql_where=sa.text("NOT is_stale"),
        sqlite_where=sa.text("NOT is_stale"),
    )
    op.create_index("ix_graph_dependencies_source_id_target_id", "graph_dependencies", ["source_id", "target_id"])
    op.create_index("ix_graph_dependencies_discovery_source", "graph_dependencies", ["discovery_source"])
    op.create_index("ix_graph_dependencies_last_observed_at", "graph_dependencies", ["last_observed_at"])
    op.create_index(
        "ix_graph_dependencies_stale",
        "graph_dependencies",
        ["is_stale"],
        postgresql_where=sa.text("is_stale"),
        sqlite_where=sa.text("is_stale"),
    )

    op.create_table(
        "graph_cycle_alerts",
        sa.Column("id", sa.Uuid, nullable=False),
        sa.Column("members_key", sa.Text, nullable=False),
        sa.Column("members", JSONType, nullable=False),
        sa.Column("cycle_path", JSONType, nullable=False),
        sa.Column("status", sa.Text, nullable=False, server_default="open"),
        sa.Column("acknowledged_by", sa.Text, nullable=True),
        sa.Column("resolution_notes", sa.Text, nullable=True),
        sa.Column("detected_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("resolved_at", UTCDateTime, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_graph_cycle_alerts"),
        sa.CheckConstraint("status IN ('open', 'acknowledged', 'resolved')", name="ck_graph_cycle_alerts_status"),
    )
    op.create_index(
        "ix_graph_cycle_alerts_unresolved_members",
        "graph_cycle_alerts",
        ["members_key"],
        unique=True,
        postgresql_where=sa.text("status <> 'resolved'"),
        sqlite_where=sa.text("status <> 'resolved'"),
    )
    op.create_index(
        "ix_graph_cycle_alerts_status",
        "graph_cycle_alerts",
        ["status"],
        postgresql_where=sa.text("status IN ('open', 'acknowledged')"),
        sqlite_where=sa.text("status IN ('open', 'acknowledged')"),
    )
    op.create_index("ix_graph_cycle_alerts_detected_at", "graph_cycle_alerts", ["detected_at"])

    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE OR REPLACE FUNCTION graph_touch_updated_at() RETURNS trigger AS $$
            BEGIN
                IF NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at THEN
                    NEW.updated_at = now();
                END IF;
                RETURN NEW;
            END;
            $$ LANGUAGE plpgsql
            """
        )
        for table in _TABLES:
            op.execute(
                f"CREATE TRIGGER {table}_updated_at BEFORE UPDATE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION graph_touch_updated_at()"
            )
    else:
        # SQLite stores UTCDateTime as naive UTC text "YYYY-MM-DD HH:MM:SS.ffffff".
        for table in _TABLES:
            op.execute(
                f"CREATE TRIGGER {table}_updated_at AFTER UPDATE ON {table} "
                "FOR EACH ROW WHEN NEW.updated_at IS OLD.updated_at BEGIN "
                f"UPDATE {table} SET updated_at = strftime('%Y-%m-%d %H:%M:%f000', 'now') WHERE id = NEW.id; END"
            )


def downgrade() -> None:
    for table in _TABLES:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_updated_at" + (f" ON {table}" if _is_pg() else ""))
    if _is_pg():
        op.execute("DROP FUNCTION IF EXISTS graph_touch_updated_at()")
    for index in ("ix_graph_cycle_alerts_detected_at", "ix_graph_cycle_alerts_status",
                  "ix_graph_cycle_alerts_unresolved_members"):
        op.drop_index(index, table_name="graph_cycle_alerts")
    op.drop_table("graph_cycle_alerts")
    for index in ("ix_graph_dependencies_stale", "ix_graph_dependencies_last_observed_at",
                  "ix_graph_dependencies_discovery_source", "ix_graph_dependencies_source_id_target_id",
                  "ix_graph_dependencies_target_live", "ix_graph_dependencies_source_live"):
        op.drop_index(index, table_name="graph_dependencies")
    op.drop_table("graph_dependencies")
    for index in ("ix_graph_services_discovered", "ix_graph_services_criticality", "ix_graph_services_team"):
        op.drop_index(index, table_name="graph_services")
    op.drop_table("graph_services")


def _is_pg() -> bool:
    return bool(op.get_bind().dialect.name == "postgresql")
