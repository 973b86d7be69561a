"""Graph tables: services, their dependencies, circular dependency alerts.

Every rule of the data model is enforced by the database as well as by the
inputs: enumerations and bounds are CHECK constraints, an edge is unique per
(source, target, discovery source), self-loops are refused, and deleting a
service cascades to its edges. The partial indexes (live edges on both ends,
stale edges, discovered services, unresolved alerts) are created on both
engines (SQLite has partial indexes too), except the live-edge index on the
source side, which SQLite does without: the unique key's prefix serves it. The ``updated_at`` triggers live in
the migration (PL/pgSQL on PostgreSQL, a plain trigger on SQLite): the service
always sets ``updated_at`` itself, the trigger only covers writes that forget.

The catalog owns the table ``services``; these tables are prefixed ``graph_``.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    false,
    text,
)

from muster.store.schema import JSONType, UTCDateTime, metadata, only_on

__all__ = ["cycle_alerts", "dependencies", "graph_services"]

graph_services = Table(
    "graph_services",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("service_id", Text, nullable=False),
    Column("metadata", JSONType, nullable=False),
    Column("criticality", Text, nullable=False, server_default="medium"),
    Column("team", Text, nullable=True),
    Column("discovered", Boolean, nullable=False, server_default=false()),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # The principal that first declared the node; only it (or an admin) may delete it.
    Column("owner", Text, nullable=False, server_default="anonymous"),
    UniqueConstraint("service_id"),
    CheckConstraint("criticality IN ('critical', 'high', 'medium', 'low')", name="criticality"),
    Index("ix_graph_services_team", "team", postgresql_where=text("team IS NOT NULL"),
          sqlite_where=text("team IS NOT NULL")),
    Index("ix_graph_services_criticality", "criticality"),
    Index("ix_graph_services_discovered", "discovered", postgresql_where=text("discovered"),
          sqlite_where=text("discovered")),
)

dependencies = Table(
    "graph_dependencies",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("source_id", Uuid, ForeignKey("graph_services.id", ondelete="CASCADE"), nullable=False),
    Column("target_id", Uuid, ForeignKey("graph_services.id", ondelete="CASCADE"), nullable=False),
    Column("communication_mode", Text, nullable=False, server_default="sync"),
    Column("criticality", Text, nullable=False, server_default="hard"),
    Column("protocol", Text, nullable=True),
    Column("timeout_ms", Integer, nullable=True),
    Column("retry_config", JSONType, nullable=True),
    Column("discovery_source", Text, nullable=False, server_default="manual"),
    Column("confidence_score", Float, nullable=False, server_default="1.0"),
    Column("last_observed_at", UTCDateTime, nullable=False),
    Column("is_stale", Boolean, nullable=False, server_default=false()),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("source_id", "target_id", "discovery_source"),
    CheckConstraint("source_id <> target_id", name="no_self_loop"),
    CheckConstraint("communication_mode IN ('sync', 'async')", name="communication_mode"),
    CheckConstraint("criticality IN ('hard', 'soft', 'degraded')", name="criticality"),
    CheckConstraint(
        "discovery_source IN ('manual', 'otel_service_graph', 'kubernetes', 'service_mesh')",
        name="discovery_source",
    ),
    CheckConstraint("confidence_score >= 0.0 AND confidence_score <= 1.0", name="confidence_score"),
    CheckConstraint("timeout_ms IS NULL OR timeout_ms > 0", name="timeout_positive"),
    # Live edges from either end. On SQLite the unique key's prefix serves the source side, and an
    # index there would only cost every write one more B-tree (migration 0004); PostgreSQL keeps both.
    only_on("postgresql", Index("ix_graph_dependencies_source_live", "source_id",
                                postgresql_where=text("NOT is_stale"))),
    Index("ix_graph_dependencies_target_live", "target_id", postgresql_where=text("NOT is_stale"),
          sqlite_where=text("NOT is_stale")),
    Index("ix_graph_dependencies_last_observed_at", "last_observed_at"),
    Index("ix_graph_dependencies_stale", "is_stale", postgresql_where=text("is_stale"),
          sqlite_where=text("is_stale")),
)

# One alert per strongly connected component. ``members_key`` names the member
# set (sorted ids, hashed); at most one unresolved alert per member set.
cycle_alerts = Table(
    "graph_cycle_alerts",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("members_key", Text, nullable=False),
    Column("members", JSONType, nullable=False),
    Column("cycle_path", JSONType, nullable=False),
    Column("status", Text, nullable=False, server_default="open"),
    Column("acknowledged_by", Text, nullable=True),
    Column("resolution_notes", Text, nullable=True),
    Column("detected_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("resolved_at", UTCDateTime, nullable=True),
    CheckConstraint("status IN ('open', 'acknowledged', 'resolved')", name="status"),
    Index("ix_graph_cycle_alerts_unresolved_members", "members_key", unique=True,
          postgresql_where=text("status <> 'resolved'"), sqlite_where=text("status <> 'resolved'")),
    Index("ix_graph_cycle_alerts_status", "status", postgresql_where=text("status IN ('open', 'acknowledged')"),
          sqlite_where=text("status IN ('open', 'acknowledged')")),
    Index("ix_graph_cycle_alerts_detected_at", "detected_at"),
)
