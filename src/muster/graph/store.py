"""The graph's queries (SQLAlchemy Core, the same on SQLite and PostgreSQL).

Bulk writes are one ``executemany`` of the dialect's ``INSERT ... ON CONFLICT``;
``IN`` lists are chunked to stay far below SQLite's bound-parameter limit.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, and_, delete, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import Select

from muster.graph.model import CycleAlertRecord, DependencyInput, DependencyRecord, GraphServiceRecord, ServiceInput
from muster.graph.schema import cycle_alerts, dependencies, graph_services

__all__ = [
    "delete_service",
    "ensure_services",
    "get_alert",
    "get_service",
    "insert_alert",
    "list_alerts",
    "list_edges",
    "list_services",
    "load_graph",
    "mark_stale",
    "resolve_alert",
    "service_exists",
    "unresolved_alerts",
    "update_alert",
    "upsert_edges",
    "upsert_services",
]

InsertFn = Callable[[Any], Any]
_CHUNK = 5000

src = graph_services.alias("src")
dst = graph_services.alias("dst")


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _service(row: Row[Any]) -> GraphServiceRecord:
    return GraphServiceRecord(
        id=str(row.id),
        service_id=row.service_id,
        metadata=dict(row.metadata),
        criticality=row.criticality,
        team=row.team,
        discovered=bool(row.discovered),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _edge(row: Row[Any]) -> DependencyRecord:
    return DependencyRecord(
        id=str(row.id),
        source_service_id=row.source_service_id,
        target_service_id=row.target_service_id,
        communication_mode=row.communication_mode,
        criticality=row.criticality,
        protocol=row.protocol,
        timeout_ms=row.timeout_ms,
        retry_config=row.retry_config,
        discovery_source=row.discovery_source,
        confidence_score=float(row.confidence_score),
        last_observed_at=row.last_observed_at,
        is_stale=bool(row.is_stale),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _alert(row: Row[Any]) -> CycleAlertRecord:
    return CycleAlertRecord(
        id=str(row.id),
        members=list(row.members),
        cycle_path=list(row.cycle_path),
        status=row.status,
        acknowledged_by=row.acknowledged_by,
        resolution_notes=row.resolution_notes,
        detected_at=row.detected_at,
        updated_at=row.updated_at,
        resolved_at=row.resolved_at,
    )


# -- loading the index ----------------------------------------------------------------


async def load_graph(
    conn: AsyncConnection,
) -> tuple[list[tuple[str, str]], list[tuple[str, str, str, str, bool]]]:
    """Every service (id, criticality) and every edge (source, target, discovery source, criticality, stale)."""
    services = [(r.service_id, r.criticality) for r in await conn.execute(
        select(graph_services.c.service_id, graph_services.c.criticality)
    )]
    query = select(
        src.c.service_id.label("source"),
        dst.c.service_id.label("target"),
        dependencies.c.discovery_source,
        dependencies.c.criticality,
        dependencies.c.is_stale,
    ).select_from(
        dependencies.join(src, src.c.id == dependencies.c.source_id).join(dst, dst.c.id == dependencies.c.target_id)
    )
    result = await conn.stream(query.execution_options(yield_per=20_000))
    edges = [(r[0], r[1], r[2], r[3], bool(r[4])) async for r in result]
    return services, edges


# -- services ------------------------------------------------------------------------------


async def upsert_services(
    conn: AsyncConnection, insert: InsertFn, items: Sequence[ServiceInput], now: datetime
) -> None:
    stmt = insert(graph_services)
    stmt = stmt.on_conflict_do_update(
        index_elements=["service_id"],
        set_={
            "metadata": stmt.excluded.metadata,
            "criticality": stmt.excluded.criticality,
            "team": stmt.excluded.team,
            "discovered": False,
            "updated_at": stmt.excluded.updated_at,
        },
    )
    rows = [
        {
            "id": uuid.uuid4(),
            "service_id": item.service_id,
            "metadata": item.metadata,
            "criticality": item.criticality,
            "team": item.team,
            "discovered": False,
            "created_at": now,
            "updated_at": now,
        }
        for item in items
    ]
    for chunk in _chunks(rows):
        await conn.execute(stmt, list(chunk))


async def _ids_of(conn: AsyncConnection, names: Sequence[str]) -> dict[str, uuid.UUID]:
    found: dict[str, uuid.UUID] = {}
    for chunk in _chunks(names):
        query = select(graph_services.c.service_id, graph_services.c.id).where(
            graph_services.c.service_id.in_(list(chunk))
        )
        found.update({r.service_id: r.id for r in await conn.execute(query)})
    return found


async def ensure_services(
    conn: AsyncConnection, insert: InsertFn, names: Iterable[str], now: datetime
) -> tuple[dict[str, uuid.UUID], list[str]]:
    """Ids of ``names``, creating the unknown ones with ``discovered=true``; returns (ids, created)."""
    wanted = sorted(set(names))
    ids = await _ids_of(conn, wanted)
    missing = [name for name in wanted if name not in ids]
    if not missing:
        return ids, []
    stmt = insert(graph_services).on_conflict_do_nothing(index_elements=["service_id"])
    rows: list[dict[str, Any]] = [
        {
            "id": uuid.uuid4(),
            "service_id": name,
            "metadata": {},
            "criticality": "medium",
            "team": None,
            "discovered": True,
            "created_at": now,
            "updated_at": now,
        }
        for name in missing
    ]
    for chunk in _chunks(rows):
        await conn.execute(stmt, list(chunk))
    ids.update(await _ids_of(conn, missing))
    return ids, missing


async def upsert_edges(
    conn: AsyncConnection, insert: InsertFn, items: Sequence[DependencyInput], ids: dict[str, uuid.UUID], now: datetime
) -> None:
    stmt = insert(dependencies)
    excluded = stmt.excluded
    stmt = stmt.on_conflict_do_update(
        index_elements=["source_id", "target_id", "discovery_source"],
        set_={
            "communication_mode": excluded.communication_mode,
            "criticality": excluded.criticality,
            "protocol": excluded.protocol,
            "timeout_ms": excluded.timeout_ms,
            "retry_config": excluded.retry_config,
            "confidence_score": excluded.confidence_score,
            "last_observed_at": excluded.last_observed_at,
            "is_stale": False,
            "updated_at": excluded.updated_at,
        },
    )
    rows: list[dict[str, Any]] = [
        {
            "id": uuid.uuid4(),
            "source_id": ids[item.source_service_id],
            "target_id": ids[item.target_service_id],
            "communication_mode": item.communication_mode,
            "criticality": item.criticality,
            "protocol": item.protocol,
            "timeout_ms": item.timeout_ms,
            "retry_config": item.retry_config,
            "discovery_source": item.discovery_source,
            "confidence_score": item.confidence_score,
            "last_observed_at": now,
            "is_stale": False,
            "created_at": now,
            "updated_at": now,
        }
        for item in items
    ]
    # Ordered by the unique key, a batch walks the B-trees once instead of jumping around them.
    rows.sort(key=lambda row: (row["source_id"], row["target_id"]))
    for chunk in _chunks(rows):
        await conn.execute(stmt, list(chunk))


async def get_service(conn: AsyncConnection, service_id: str) -> GraphServiceRecord | None:
    row = (await conn.execute(select(graph_services).where(graph_services.c.service_id == service_id))).first()
    return None if row is None else _service(row)


async def service_exists(conn: AsyncConnection, service_id: str) -> bool:
    query = select(graph_services.c.id).where(graph_services.c.service_id == service_id)
    return (await conn.execute(query)).first() is not None


async def list_services(
    conn: AsyncConnection, *, team: str | None, criticality: str | None, limit: int, offset: int
) -> tuple[list[GraphServiceRecord], int]:
    conditions = []
    if team is not None:
        conditions.append(graph_services.c.team == team)
    if criticality is not None:
        conditions.append(graph_services.c.criticality == criticality)
    where = and_(True, *conditions)
    total = int((await conn.execute(select(func.count()).select_from(graph_services).where(where))).scalar_one())
    query = select(graph_services).where(where).order_by(graph_services.c.service_id).limit(limit).offset(offset)
    return [_service(r) for r in await conn.execute(query)], total


async def delete_service(conn: AsyncConnection, service_id: str) -> bool:
    result = await conn.execute(delete(graph_services).where(graph_services.c.service_id == service_id))
    return bool(result.rowcount == 1)


def _edges_query() -> Select[Any]:
    return select(
        dependencies,
        src.c.service_id.label("source_service_id"),
        dst.c.service_id.label("target_service_id"),
    ).select_from(
        dependencies.join(src, src.c.id == dependencies.c.source_id).join(dst, dst.c.id == dependencies.c.target_id)
    )


async def list_edges(
    conn: AsyncConnection, service_id: str, *, outgoing: bool, include_stale: bool
) -> list[DependencyRecord]:
    """A service's dependencies (``outgoing``) or dependents, ordered by the other end."""
    this, other = (src, dst) if outgoing else (dst, src)
    query = _edges_query().where(this.c.service_id == service_id)
    if not include_stale:
        query = query.where(dependencies.c.is_stale == False)  # noqa: E712 (SQL, not Python)
    query = query.order_by(other.c.service_id, dependencies.c.discovery_source)
    return [_edge(r) for r in await conn.execute(query)]


async def mark_stale(conn: AsyncConnection, cutoff: datetime, now: datetime) -> list[tuple[str, str, str]]:
    """Mark live edges last observed before ``cutoff`` stale; return them (source, target, discovery source)."""
    query = (
        select(dependencies.c.id, src.c.service_id, dst.c.service_id, dependencies.c.discovery_source)
        .select_from(
            dependencies.join(src, src.c.id == dependencies.c.source_id).join(
                dst, dst.c.id == dependencies.c.target_id
            )
        )
        .where(dependencies.c.is_stale == False, dependencies.c.last_observed_at < cutoff)  # noqa: E712
    )
    rows: list[tuple[Any, ...]] = [tuple(r) for r in (await conn.execute(query)).all()]
    ids = [r[0] for r in rows]
    for chunk in _chunks(ids):
        await conn.execute(
            update(dependencies).where(dependencies.c.id.in_(list(chunk))).values(is_stale=True, updated_at=now)
        )
    return [(r[1], r[2], r[3]) for r in rows]


# -- alerts -------------------------------------------------------------------------------------


async def unresolved_alerts(conn: AsyncConnection) -> list[CycleAlertRecord]:
    query = select(cycle_alerts).where(cycle_alerts.c.status != "resolved").order_by(cycle_alerts.c.detected_at)
    return [_alert(r) for r in await conn.execute(query)]


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
