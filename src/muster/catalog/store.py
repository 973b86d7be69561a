"""The catalog's queries (SQLAlchemy Core, the same on SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Row, and_, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from muster.catalog.model import AlertRecord, ServiceRecord
from muster.catalog.schema import alerts, beat_flushes, monitor_state, services
from muster.store.engine import Tx, sqlite_timestamp

__all__ = [
    "delete_flush_mark",
    "delete_service",
    "flush_beats",
    "flush_horizon",
    "get_instance",
    "get_service",
    "get_services",
    "get_state",
    "insert_alert",
    "insert_instance",
    "insert_service",
    "list_alerts",
    "load_services",
    "mark_flushed",
    "prune_flush_marks",
    "put_state",
    "set_role",
    "set_status",
    "soft_state_since",
    "update_instance",
]


def _record(row: Row[Any]) -> ServiceRecord:
    return ServiceRecord(
        service_id=row.service_id,
        name=row.name,
        type=row.type,
        role=row.role,
        url=row.url,
        caps=list(row.caps),
        labels=dict(row.labels),
        ctx_limit=row.ctx_limit,
        cost_hint_usd_per_1k=row.cost_hint_usd_per_1k,
        heartbeat_interval_s=row.heartbeat_interval_s,
        ttl_s=row.ttl_s,
        status=row.status,
        registered_at=row.registered_at,
        last_heartbeat_ts=row.last_heartbeat_ts,
        p95_ms=row.p95_ms,
        queue_depth=row.queue_depth,
        load=row.load,
        owner=row.owner,
        instance_id=row.instance_id,
    )


# Built once: a statement with bound parameters compiles once and is reused from the cache.
_INSERT_SERVICE = insert(services)
_INSERT_ALERT = insert(alerts).returning(alerts.c.alert_id)


_SERVICE_COLUMNS = (
    "service_id", "name", "type", "role", "url", "caps", "labels", "ctx_limit", "cost_hint_usd_per_1k",
    "heartbeat_interval_s", "ttl_s", "status", "registered_at", "last_heartbeat_ts", "p95_ms", "queue_depth", "load",
    "owner", "instance_id",
)
_INSERT_SERVICE_SQLITE = (
    f"INSERT INTO services ({', '.join(_SERVICE_COLUMNS)}) VALUES ({', '.join('?' * len(_SERVICE_COLUMNS))})"
)


def _stored(record: ServiceRecord) -> dict[str, Any]:
    values = record.to_dict()
    values["registered_at"] = record.registered_at
    values["last_heartbeat_ts"] = record.last_heartbeat_ts
    return values


async def insert_service(tx: Tx, record: ServiceRecord) -> None:
    if tx.dialect == "sqlite":  # the registration hot path: one driver call, values in stored form
        await tx.sqlite_execute(
            _INSERT_SERVICE_SQLITE,
            (
                record.service_id, record.name, record.type, record.role, record.url,
                orjson.dumps(record.caps).decode(), orjson.dumps(record.labels).decode(),
                record.ctx_limit, record.cost_hint_usd_per_1k, record.heartbeat_interval_s, record.ttl_s,
                record.status, sqlite_timestamp(record.registered_at),
                sqlite_timestamp(record.last_heartbeat_ts) if record.last_heartbeat_ts else None,
                record.p95_ms, record.queue_depth, record.load, record.owner, record.instance_id,
            ),
        )
        return
    await tx.conn.execute(_INSERT_SERVICE, _stored(record))


# ON CONFLICT names the partial unique index (its columns and its WHERE), on both engines.
_INSTANCE_KEY: dict[str, Any] = {
    "index_elements": [services.c.name, services.c.instance_id],
    "index_where": services.c.instance_id.is_not(None),
}


async def get_instance(conn: AsyncConnection, name: str, instance_id: str) -> ServiceRecord | None:
    """The instance registered as ``name`` with ``instance_id``, row-locked until commit (PostgreSQL).

    The lock makes a concurrent re-registration or deregistration of the same
    instance wait for this transaction; SQLite's single writer needs none.
    """
    query = (
        select(services)
        .where(services.c.name == name, services.c.instance_id == instance_id)
        .with_for_update()
    )
    row = (await conn.execute(query)).first()
    return None if row is None else _record(row)


async def insert_instance(tx: Tx, record: ServiceRecord) -> bool:
    """Insert ``record`` unless its (name, instance_id) exists; ``False`` when another writer has it.

    Never an integrity error: a conflicting insert waits for the other
    transaction (PostgreSQL) and then does nothing, so the caller can read and
    update the winner's row instead.
    """
    statement = (
        tx.insert(services)
        .values(_stored(record))
        .on_conflict_do_nothing(**_INSTANCE_KEY)
        .returning(services.c.service_id)
    )
    return (await tx.conn.execute(statement)).first() is not None


_UPDATED_BY_REGISTRATION = (
    "type", "role", "url", "caps", "labels", "ctx_limit", "cost_hint_usd_per_1k", "heartbeat_interval_s", "ttl_s",
    "status", "last_heartbeat_ts", "p95_ms", "queue_depth", "load",
)


async def update_instance(conn: AsyncConnection, record: ServiceRecord) -> bool:
    """Write a re-registered instance over its row (what a registration states, and its liveness)."""
    values = _stored(record)
    statement = (
        update(services)
        .where(services.c.service_id == record.service_id)
        .values({name: values[name] for name in _UPDATED_BY_REGISTRATION})
    )
    return (await conn.execute(statement)).rowcount == 1


async def delete_service(conn: AsyncConnection, service_id: str) -> ServiceRecord | None:
    """Delete and return the service; ``None`` if it was not there (or a concurrent delete won)."""
    statement = delete(services).where(services.c.service_id == service_id).returning(*services.columns)
    row = (await conn.execute(statement)).first()
    return None if row is None else _record(row)


async def get_service(conn: AsyncConnection, service_id: str) -> ServiceRecord | None:
    row = (await conn.execute(select(services).where(services.c.service_id == service_id))).first()
    return None if row is None else _record(row)


async def get_services(conn: AsyncConnection, service_ids: list[str]) -> list[ServiceRecord]:
    """The given services (those that exist), read in chunks that any engine binds."""
    records: list[ServiceRecord] = []
    for start in range(0, len(service_ids), 500):
        chunk = service_ids[start : start + 500]
        rows = await conn.execute(select(services).where(services.c.service_id.in_(chunk)))
        records += [_record(row) for row in rows]
    return records


async def load_services(conn: AsyncConnection) -> list[ServiceRecord]:
    return [_record(row) for row in await conn.execute(select(services))]


async def set_role(conn: AsyncConnection, service_id: str, role: str) -> bool:
    result = await conn.execute(update(services).where(services.c.service_id == service_id).values(role=role))
    return result.rowcount == 1


async def set_status(
    conn: AsyncConnection,
    service_id: str,
    status: str,
    *,
    only_if_status: str | None = None,
    unless_status: str | None = None,
    seen: datetime | None = None,
    check_seen: bool = False,
    beat: dict[str, Any] | None = None,
) -> bool:
    """Change a status under conditions (guards against a concurrent sweep or beat)."""
    conditions = [services.c.service_id == service_id]
    if only_if_status is not None:
        conditions.append(services.c.status == only_if_status)
    if unless_status is not None:
        conditions.append(services.c.status != unless_status)
    if check_seen:
        conditions.append(
            services.c.last_heartbeat_ts.is_(None) if seen is None else services.c.last_heartbeat_ts == seen
        )
    values: dict[str, Any] = {"status": status}
    if beat is not None:
        values.update(beat)
    result = await conn.execute(update(services).where(and_(*conditions)).values(**values))
    return result.rowcount == 1


_FLUSH = (
    update(services)
    .where(
        services.c.service_id == bindparam("sid"),
        or_(services.c.last_heartbeat_ts.is_(None), services.c.last_heartbeat_ts < bindparam("ts")),
    )
    .values(
        last_heartbeat_ts=bindparam("ts"),
        p95_ms=bindparam("p95"),
        queue_depth=bindparam("queue"),
        load=bindparam("ld"),
    )
)


_FLUSH_SQLITE = (
    "UPDATE services SET last_heartbeat_ts = ?1, p95_ms = ?2, queue_depth = ?3, load = ?4"
    " WHERE service_id = ?5 AND (last_heartbeat_ts IS NULL OR last_heartbeat_ts < ?1)"
)


async def flush_beats(conn: AsyncConnection, beats: list[dict[str, Any]]) -> None:
    """Write buffered heartbeat soft state, one row per service (the latest beat).

    A row whose beat time is already as new (a re-registration, a status beat,
    another process's flush) keeps it: soft state never moves back in time.

    On SQLite the rows go straight to the driver's executemany, with the
    timestamp already in the text form ``UTCDateTime`` stores (naive UTC,
    microseconds): at thousands of services a flush would otherwise spend most
    of its time in per-row bind processing.
    """
    if not beats:
        return
    if conn.dialect.name == "sqlite":
        rows = [(sqlite_timestamp(b["ts"]), b["p95"], b["queue"], b["ld"], b["sid"]) for b in beats]
        await conn.exec_driver_sql(_FLUSH_SQLITE, rows)
    else:
        await conn.execute(_FLUSH, beats)


async def mark_flushed(tx: Tx, writer: str, through: datetime) -> None:
    """Record that ``writer`` has written every beat it took before ``through`` (in this transaction)."""
    statement = tx.insert(beat_flushes).values(writer=writer, flushed_through=through, updated_at=tx.now)
    await tx.conn.execute(statement.on_conflict_do_update(
        index_elements=["writer"], set_={"flushed_through": through, "updated_at": tx.now},
    ))


async def flush_horizon(conn: AsyncConnection, *, active_since: datetime) -> datetime | None:
    """The lowest flush mark among writers that flushed after ``active_since``: every beat any of them
    acknowledged before it is in the store. ``None`` when none did. Marks of writers silent for long
    (gone, or paused) are ignored, and those older still are removed by the monitor."""
    query = select(func.min(beat_flushes.c.flushed_through)).where(beat_flushes.c.updated_at > active_since)
    value = (await conn.execute(query)).scalar_one_or_none()
    return value if isinstance(value, datetime) else None


async def delete_flush_mark(conn: AsyncConnection, writer: str) -> None:
    await conn.execute(delete(beat_flushes).where(beat_flushes.c.writer == writer))


async def prune_flush_marks(conn: AsyncConnection, *, before: datetime) -> None:
    await conn.execute(delete(beat_flushes).where(beat_flushes.c.updated_at < before))


async def soft_state_since(conn: AsyncConnection, watermark: datetime) -> list[Row[Any]]:
    query = select(
        services.c.service_id,
        services.c.last_heartbeat_ts,
        services.c.p95_ms,
        services.c.queue_depth,
        services.c.load,
    ).where(services.c.last_heartbeat_ts > watermark)
    return list((await conn.execute(query)).all())  # type: ignore[arg-type]


async def insert_alert(
    conn: AsyncConnection,
    *,
    alert_type: str,
    record: ServiceRecord,
    missed_beats: int,
    action: str,
    ts: datetime,
    details: dict[str, Any],
    actor: str,
) -> AlertRecord:
    values = {
        "alert_type": alert_type,
        "service_id": record.service_id,
        "service_name": record.name,
        "missed_beats": missed_beats,
        "last_seen": record.last_seen,
        "action": action,
        "ts": ts,
        "details": details,
        "actor": actor,
    }
    result = await conn.execute(_INSERT_ALERT, values)
    return AlertRecord(alert_id=int(result.scalar_one()), **values)  # type: ignore[arg-type]


async def list_alerts(conn: AsyncConnection, *, limit: int, since: datetime | None) -> list[AlertRecord]:
    query = select(alerts).order_by(alerts.c.alert_id.desc()).limit(limit)
    if since is not None:
        query = query.where(alerts.c.ts >= since)
    rows = (await conn.execute(query)).all()
    return [
        AlertRecord(
            alert_id=int(r.alert_id),
            alert_type=r.alert_type,
            service_id=r.service_id,
            service_name=r.service_name,
            missed_beats=r.missed_beats,
            last_seen=r.last_seen,
            action=r.action,
            ts=r.ts,
            details=dict(r.details),
            actor=r.actor,
        )
        for r in rows
    ]


async def prune_alerts(conn: AsyncConnection, keep: int) -> None:
    newest = (await conn.execute(select(func.max(alerts.c.alert_id)))).scalar_one_or_none()
    if newest is not None and newest > keep:
        await conn.execute(delete(alerts).where(alerts.c.alert_id <= newest - keep))


async def get_state(conn: AsyncConnection, key: str) -> Any:
    return (await conn.execute(select(monitor_state.c.value).where(monitor_state.c.key == key))).scalar_one_or_none()


async def put_state(conn: AsyncConnection, key: str, value: Any, dialect_insert: Any) -> None:
    statement = dialect_insert(monitor_state).values(key=key, value=value)
    await conn.execute(statement.on_conflict_do_update(index_elements=["key"], set_={"value": value}))
