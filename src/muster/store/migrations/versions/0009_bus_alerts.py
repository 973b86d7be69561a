"""Alerts about the fleet's bus: events the log's retention pruned before a sink published them.

Revision ID: 0009
Revises: 0008

The bus publisher (muster.events.bus) raises a ``bus_events_dropped`` alert, action ``skipped``,
when a sink was away longer than the event log keeps events.
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_TYPES = ("service_down", "service_deregistered", "service_recovered")
_ACTIONS = ("marked_down", "deregistered", "restored")
_COLUMNS = "alert_id, alert_type, service_id, service_name, missed_beats, last_seen, action, ts, details, actor"


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _set(types: tuple[str, ...], actions: tuple[str, ...]) -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name, check in (("alert_type", _in("alert_type", types)), ("action", _in("action", actions))):
            # 0001 named them twice over on PostgreSQL (ck_catalog_alerts_ck_catalog_alerts_...): either goes.
            for old in (f"ck_catalog_alerts_ck_catalog_alerts_{name}", f"ck_catalog_alerts_{name}"):
                op.execute(f"ALTER TABLE catalog_alerts DROP CONSTRAINT IF EXISTS {old}")
            op.execute(f"ALTER TABLE catalog_alerts ADD CONSTRAINT ck_catalog_alerts_{name} CHECK ({check})")
        return
    # SQLite cannot alter a CHECK: the table is rebuilt as 0001 made it (AUTOINCREMENT: ids never reused).
    op.execute(f"""CREATE TABLE catalog_alerts_new (
        alert_id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
        alert_type TEXT NOT NULL,
        service_id TEXT NOT NULL,
        service_name TEXT NOT NULL,
        missed_beats INTEGER NOT NULL,
        last_seen DATETIME,
        action TEXT NOT NULL,
        ts DATETIME NOT NULL,
        details JSON NOT NULL,
        actor TEXT DEFAULT 'muster' NOT NULL,
        CONSTRAINT ck_catalog_alerts_alert_type CHECK ({_in("alert_type", types)}),
        CONSTRAINT ck_catalog_alerts_action CHECK ({_in("action", actions)})
    )""")
    op.execute(f"INSERT INTO catalog_alerts_new ({_COLUMNS}) SELECT {_COLUMNS} FROM catalog_alerts")
    op.execute("DROP TABLE catalog_alerts")
    op.execute("ALTER TABLE catalog_alerts_new RENAME TO catalog_alerts")
    op.create_index("ix_catalog_alerts_ts", "catalog_alerts", ["ts"])


def upgrade() -> None:
    _set((*_TYPES, "bus_events_dropped"), (*_ACTIONS, "skipped"))


def downgrade() -> None:
    op.execute("DELETE FROM catalog_alerts WHERE alert_type = 'bus_events_dropped' OR action = 'skipped'")
    _set(_TYPES, _ACTIONS)
