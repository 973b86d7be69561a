"""Event log and the catalog: services, heartbeat alerts, monitor state.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from muster.store.schema import BigId, JSONType, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("revision", BigId, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("payload", JSONType, nullable=False),
        sa.Column("ts", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("revision", name="pk_events"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_events_kind_revision", "events", ["kind", "revision"])

    op.create_table(
        "services",
        sa.Column("service_id", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("caps", JSONType, nullable=False),
        sa.Column("labels", JSONType, nullable=False),
        sa.Column("ctx_limit", sa.Integer, nullable=True),
        sa.Column("cost_hint_usd_per_1k", sa.Float, nullable=True),
        sa.Column("heartbeat_interval_s", sa.Integer, nullable=False),
        sa.Column("ttl_s", sa.Integer, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("registered_at", UTCDateTime, nullable=False),
        sa.Column("last_heartbeat_ts", UTCDateTime, nullable=True),
        sa.Column("p95_ms", sa.Float, nullable=True),
        sa.Column("queue_depth", sa.Integer, nullable=True),
        sa.Column("load", sa.Float, nullable=True),
        sa.PrimaryKeyConstraint("service_id", name="pk_services"),
        sa.CheckConstraint("type IN ('model', 'tool', 'agent', 'service')", name="ck_services_type"),
        sa.CheckConstraint(
            "role IN ('production', 'staging', 'canary', 'experimental')", name="ck_services_role"
        ),
        sa.CheckConstraint("status IN ('ok', 'degraded', 'down')", name="ck_services_status"),
        sa.CheckConstraint("heartbeat_interval_s > 0", name="ck_services_heartbeat_interval_positive"),
        sa.CheckConstraint("ttl_s > 0", name="ck_services_ttl_positive"),
    )
    op.create_index("ix_services_name_role", "services", ["name", "role"])
    op.create_index("ix_services_type_role", "services", ["type", "role"])
    op.create_index("ix_services_status", "services", ["status"])
    op.create_index("ix_services_last_heartbeat_ts", "services", ["last_heartbeat_ts"])

    op.create_table(
        "catalog_alerts",
        sa.Column("alert_id", BigId, primary_key=True, autoincrement=True),
        sa.Column("alert_type", sa.Text, nullable=False),
        sa.Column("service_id", sa.Text, nullable=False),
        sa.Column("service_name", sa.Text, nullable=False),
        sa.Column("missed_beats", sa.Integer, nullable=False),
        sa.Column("last_seen", UTCDateTime, nullable=True),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("ts", UTCDateTime, nullable=False),
        sa.Column("details", JSONType, nullable=False),
        sa.PrimaryKeyConstraint("alert_id", name="pk_catalog_alerts"),
        sa.CheckConstraint(
            "alert_type IN ('service_down', 'service_deregistered', 'service_recovered')",
            name="ck_catalog_alerts_alert_type",
        ),
        sa.CheckConstraint(
            "action IN ('marked_down', 'deregistered', 'restored')", name="ck_catalog_alerts_action"
        ),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_catalog_alerts_ts", "catalog_alerts", ["ts"])

    op.create_table(
        "monitor_state",
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("value", JSONType, nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_monitor_state"),
    )


def downgrade() -> None:
    op.drop_table("monitor_state")
    op.drop_index("ix_catalog_alerts_ts", table_name="catalog_alerts")
    op.drop_table("catalog_alerts")
    for index in ("ix_services_last_heartbeat_ts", "ix_services_status", "ix_services_type_role",
                  "ix_services_name_role"):
        op.drop_index(index, table_name="services")
    op.drop_table("services")
    op.drop_index("ix_events_kind_revision", table_name="events")
    op.drop_table("events")
