"""The graph's cycle-alert queries (SQLAlchemy Core, the same on SQLite and PostgreSQL).

One unresolved alert per member set is the database's rule (a partial unique index on
``members_key``); these functions open, read, update and resolve alerts under it.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Row, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from muster.graph.model import CycleAlertRecord
from muster.graph.schema import cycle_alerts
from muster.graph.store import InsertFn

__all__ = ["get_alert", "insert_alert", "list_alerts", "resolve_alert", "unresolved_alerts", "update_alert"]


def _alert(row: Row[Any], members: list[str] | None = None) -> CycleAlertRecord:
    return CycleAlertRecord(
        id=str(row.id),
        members=list(row.members) if members is None else members,
        cycle_path=list(row.cycle_path),
        status=row.status,
        acknowledged_by=row.acknowledged_by,
        resolution_notes=row.resolution_notes,
        detected_at=row.detected_at,
        updated_at=row.updated_at,
        resolved_at=row.resolved_at,
    )


async def unresolved_alerts(conn: AsyncConnection) -> dict[str, CycleAlertRecord]:
    """Unresolved alerts by ``members_key``, their member lists left out (``[]``).

    A component's member list can hold 100,000 names; the key says all that
    matching needs, and the caller already holds the members of a match.
    """
    columns = [c for c in cycle_alerts.c if c.name != "members"]
    query = select(*columns).where(cycle_alerts.c.status != "resolved").order_by(cycle_alerts.c.detected_at)
    return {r.members_key: _alert(r, []) for r in await conn.execute(query)}


async def insert_alert(
    conn: AsyncConnection, insert: InsertFn, *, key: str, members: list[str], cycle_path: list[str], now: datetime
) -> CycleAlertRecord | None:
    """Open an alert unless an unresolved one has the same member set (then ``None``)."""
    alert_id = uuid.uuid4()
    stmt = insert(cycle_alerts).on_conflict_do_nothing(
        index_elements=["members_key"], index_where=text("status <> 'resolved'")
    )
    values = {
        "id": alert_id,
        "members_key": key,
        "members": members,
        "cycle_path": cycle_path,
        "status": "open",
        "detected_at": now,
        "updated_at": now,
    }
    result = await conn.execute(stmt.values(**values))
    if result.rowcount != 1:
        return None
    return CycleAlertRecord(str(alert_id), members, cycle_path, "open", None, None, now, now, None)


async def get_alert(conn: AsyncConnection, alert_id: uuid.UUID, *, for_update: bool = False) -> CycleAlertRecord | None:
    query = select(cycle_alerts).where(cycle_alerts.c.id == alert_id)
    if for_update and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    return None if row is None else _alert(row)


async def update_alert(conn: AsyncConnection, alert_id: uuid.UUID, values: dict[str, Any]) -> CycleAlertRecord:
    await conn.execute(update(cycle_alerts).where(cycle_alerts.c.id == alert_id).values(**values))
    alert = await get_alert(conn, alert_id)
    assert alert is not None
    return alert


async def resolve_alert(conn: AsyncConnection, alert_id: uuid.UUID, note: str, now: datetime) -> bool:
    result = await conn.execute(
        update(cycle_alerts)
        .where(cycle_alerts.c.id == alert_id, cycle_alerts.c.status != "resolved")
        .values(status="resolved", resolution_notes=note, resolved_at=now, updated_at=now)
    )
    return bool(result.rowcount == 1)


async def list_alerts(
    conn: AsyncConnection, *, status: str | None, limit: int, offset: int
) -> list[CycleAlertRecord]:
    query = select(cycle_alerts).order_by(cycle_alerts.c.detected_at.desc(), cycle_alerts.c.id)
    if status is not None:
        query = query.where(cycle_alerts.c.status == status)
    return [_alert(r) for r in await conn.execute(query.limit(limit).offset(offset))]
