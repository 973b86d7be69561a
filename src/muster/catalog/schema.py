"""Catalog tables: registered service instances, heartbeat alerts, monitor state, flush marks."""

from __future__ import annotations

from sqlalchemy import CheckConstraint, Column, Float, Index, Integer, Table, Text, text

from muster.store.schema import BigId, JSONType, UTCDateTime, metadata

__all__ = ["alerts", "beat_flushes", "monitor_state", "services"]

services = Table(
    "services",
    metadata,
    Column("service_id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("type", Text, nullable=False),
    Column("role", Text, nullable=False),
    Column("url", Text, nullable=False),
    Column("caps", JSONType, nullable=False),
    Column("labels", JSONType, nullable=False),
    Column("ctx_limit", Integer, nullable=True),
    Column("cost_hint_usd_per_1k", Float, nullable=True),
    Column("heartbeat_interval_s", Integer, nullable=False),
    Column("ttl_s", Integer, nullable=False),
    Column("status", Text, nullable=False),
    Column("registered_at", UTCDateTime, nullable=False),
    Column("last_heartbeat_ts", UTCDateTime, nullable=True),
    Column("p95_ms", Float, nullable=True),
    Column("queue_depth", Integer, nullable=True),
    Column("load", Float, nullable=True),
    # The principal that registered it; only it (or an admin) may beat, deregister or promote it.
    Column("owner", Text, nullable=False, server_default="anonymous"),
    # The client-chosen instance id (unique per name); NULL for instances registered without one.
    Column("instance_id", Text, nullable=True),
    CheckConstraint("type IN ('model', 'tool', 'agent', 'service')", name="type"),
    CheckConstraint("role IN ('production', 'staging', 'canary', 'experimental')", name="role"),
    CheckConstraint("status IN ('ok', 'degraded', 'down')", name="status"),
    CheckConstraint("heartbeat_interval_s > 0", name="heartbeat_interval_positive"),
    CheckConstraint("ttl_s > 0", name="ttl_positive"),
    Index("ix_services_name_role", "name", "role"),
    Index("ix_services_type_role", "type", "role"),
    Index("ix_services_status", "status"),
    Index("ix_services_last_heartbeat_ts", "last_heartbeat_ts"),
    # One instance per (name, instance_id), whatever the number of concurrent writers. Partial: the
    # registrations without an instance_id (the hot path) write no entry into it.
    Index(
        "uq_services_name_instance_id",
        "name",
        "instance_id",
        unique=True,
        sqlite_where=text("instance_id IS NOT NULL"),
        postgresql_where=text("instance_id IS NOT NULL"),
    ),
)

alerts = Table(
    "catalog_alerts",
    metadata,
    Column("alert_id", BigId, primary_key=True, autoincrement=True),
    Column("alert_type", Text, nullable=False),
    Column("service_id", Text, nullable=False),
    Column("service_name", Text, nullable=False),
    Column("missed_beats", Integer, nullable=False),
    Column("last_seen", UTCDateTime, nullable=True),
    Column("action", Text, nullable=False),
    Column("ts", UTCDateTime, nullable=False),
    Column("details", JSONType, nullable=False),
    Column("actor", Text, nullable=False, server_default="muster"),
    CheckConstraint(
        "alert_type IN ('service_down', 'service_deregistered', 'service_recovered', 'bus_events_dropped')",
        name="alert_type",
    ),
    CheckConstraint("action IN ('marked_down', 'deregistered', 'restored', 'skipped')", name="action"),
    Index("ix_catalog_alerts_ts", "ts"),
    sqlite_autoincrement=True,
)

# One row per key: ``last_check`` of the sweeper, sink cursors.
monitor_state = Table(
    "monitor_state",
    metadata,
    Column("key", Text, primary_key=True),
    Column("value", JSONType, nullable=False),
)

# How far each process that takes heartbeats has flushed them: every beat it acknowledged before
# ``flushed_through`` is in ``services``. The monitor judges silence only up to the lowest mark of the
# processes still flushing (muster.catalog.monitor), so a process whose flushes lag causes no false down.
beat_flushes = Table(
    "beat_flushes",
    metadata,
    Column("writer", Text, primary_key=True),
    Column("flushed_through", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)
