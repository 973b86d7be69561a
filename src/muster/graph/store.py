"""The graph's service and dependency queries (SQLAlchemy Core, the same on SQLite and PostgreSQL).

Bulk writes are one ``executemany`` of the dialect's ``INSERT ... ON CONFLICT``
per chunk, rows sorted by their unique key, with time-ordered ids (see
:func:`time_ordered_ids`) so new rows append to the primary key's B-tree
instead of landing all over it. On SQLite, where a whole graph is loaded
through one writer, the rows are handed to the driver as plain tuples already
in the stored form (hex ids, ``YYYY-MM-DD HH:MM:SS.ffffff`` UTC text, JSON
text): per-row type processing in Python cost more than SQLite's own work.
PostgreSQL takes the same statements through SQLAlchemy Core. Every rule stays
with the database (CHECK, UNIQUE, foreign keys) on both paths.
``IN`` lists are chunked to stay far below SQLite's bound-parameter limit. Cycle alerts have
their own module, :mod:`muster.graph.alert_store`.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Row, and_, delete, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import Select

from muster.graph.model import DependencyInput, DependencyRecord, GraphServiceRecord, ServiceInput
from muster.graph.schema import dependencies, graph_services

__all__ = [
    "delete_service",
    "ensure_services",
    "get_service",
    "list_edges",
    "list_services",
    "load_graph",
    "mark_stale",
    "service_exists",
    "time_ordered_hex",
    "time_ordered_ids",
    "upsert_edges",
    "upsert_services",
]

InsertFn = Callable[[Any], Any]
_CHUNK = 5000

_LIVE = text("NOT graph_dependencies.is_stale")

src = graph_services.alias("src")
dst = graph_services.alias("dst")


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# -- ids and stored forms -------------------------------------------------------------

_last_id = 0  # the 122 significant bits of the last id handed out in this process


def time_ordered_ids(count: int) -> list[uuid.UUID]:
    """``count`` new UUIDv7-layout ids, strictly increasing within the process.

    48 bits of Unix milliseconds, then a counter that continues from the last
    id while the clock has not moved past it, with 40 random low bits. Rows
    inserted in id order append to the primary key's B-tree.
    """
    return [uuid.UUID(int=value) for value in _time_ordered(count)]


def time_ordered_hex(count: int) -> list[str]:
    """:func:`time_ordered_ids` as SQLite stores them (32 hex digits), without building UUID objects."""
    return [format(value, "032x") for value in _time_ordered(count)]


_LOW_40 = (1 << 40) - 1
_LOW_62 = (1 << 62) - 1
_VERSION_AND_VARIANT = 0x7 << 76 | 0b10 << 62


def _time_ordered(count: int) -> list[int]:
    global _last_id
    start = max((time.time_ns() // 1_000_000) << 74, _last_id + (1 << 40)) & ~_LOW_40
    randoms = secrets.token_bytes(5 * count)
    from_bytes = int.from_bytes
    values = []
    for n in range(count):
        value = start + (n << 40)
        # Insert the version (7) and variant (0b10) bits: 48 | 4 | 12 | 2 | 62.
        values.append(
            (value >> 74) << 80
            | ((value >> 62) & 0xFFF) << 64
            | (value & _LOW_62)
            | from_bytes(randoms[5 * n : 5 * n + 5])
            | _VERSION_AND_VARIANT
        )
    if count:
        _last_id = start + ((count - 1) << 40)
    return values


def _sqlite_time(moment: datetime) -> str:
    """How ``UTCDateTime`` stores a moment on SQLite."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def _json_text(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


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
        owner=row.owner,
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


_SERVICE_COLUMNS = (
    "id", "service_id", "metadata", "criticality", "team", "discovered", "created_at", "updated_at", "owner",
)
_EDGE_COLUMNS = (
    "id", "source_id", "target_id", "communication_mode", "criticality", "protocol", "timeout_ms", "retry_config",
    "discovery_source", "confidence_score", "last_observed_at", "is_stale", "created_at", "updated_at",
)
_EDGE_UPDATED = (
    "communication_mode", "criticality", "protocol", "timeout_ms", "retry_config", "confidence_score",
    "last_observed_at", "updated_at",
)


def _sqlite_upsert(table: str, columns: Sequence[str], conflict: str, updates: str) -> str:
    marks = ", ".join("?" * len(columns))
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks}) "
        f"ON CONFLICT ({conflict}) DO {updates}"
    )


_SQLITE_UPSERT_SERVICES = _sqlite_upsert(
    "graph_services", _SERVICE_COLUMNS, "service_id",
    "UPDATE SET metadata = excluded.metadata, criticality = excluded.criticality, team = excluded.team, "
    "discovered = 0, updated_at = excluded.updated_at",
)
_SQLITE_ENSURE_SERVICES = _sqlite_upsert("graph_services", _SERVICE_COLUMNS, "service_id", "NOTHING")
_SQLITE_UPSERT_EDGES = _sqlite_upsert(
    "graph_dependencies", _EDGE_COLUMNS, "source_id, target_id, discovery_source",
    "UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in _EDGE_UPDATED) + ", is_stale = 0",
)


async def upsert_services(
    conn: AsyncConnection, insert: InsertFn, items: Sequence[ServiceInput], now: datetime, owner: str
) -> None:
    """Create or replace ``items``; a node keeps the owner that first declared it."""
    ordered = sorted(items, key=lambda item: item.service_id)
    if conn.dialect.name == "sqlite":
        at = _sqlite_time(now)
        rows: list[Any] = [
            (i, s.service_id, _json_text(s.metadata), s.criticality, s.team, 0, at, at, owner)
            for i, s in zip(time_ordered_hex(len(ordered)), ordered, strict=True)
        ]
        for chunk in _chunks(rows):
            await conn.exec_driver_sql(_SQLITE_UPSERT_SERVICES, list(chunk))
        return
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
        dict(
            zip(
                _SERVICE_COLUMNS, (i, s.service_id, s.metadata, s.criticality, s.team, False, now, now, owner),
                strict=True,
            )
        )
        for i, s in zip(time_ordered_ids(len(ordered)), ordered, strict=True)
    ]
    for chunk in _chunks(rows):
        await conn.execute(stmt, list(chunk))


async def _ids_of(conn: AsyncConnection, names: Sequence[str]) -> dict[str, Any]:
    """Ids of the services named, as the driver returns them (hex text on SQLite, UUIDs on PostgreSQL)."""
    found: dict[str, Any] = {}
    sqlite = conn.dialect.name == "sqlite"
    for chunk in _chunks(names):
        if sqlite:
            sql = f"SELECT service_id, id FROM graph_services WHERE service_id IN ({', '.join('?' * len(chunk))})"
            result: Any = await conn.exec_driver_sql(sql, tuple(chunk))
            found.update(result.fetchall())  # one fetch, not one adapter call per row
        else:
            # FOR KEY SHARE: a concurrent delete of these services waits for this transaction, so the
            # edges about to reference them cannot meet a foreign-key violation (SQLite writers are serial).
            query = (
                select(graph_services.c.service_id, graph_services.c.id)
                .where(graph_services.c.service_id.in_(list(chunk)))
                .with_for_update(read=True, key_share=True)
            )
            found.update({r.service_id: r.id for r in await conn.execute(query)})
    return found


async def ensure_services(
    conn: AsyncConnection, insert: InsertFn, names: Iterable[str], now: datetime, owner: str
) -> tuple[dict[str, Any], list[str]]:
    """Ids of ``names``, creating the unknown ones with ``discovered=true``; returns (ids, created).

    The ids are in the driver's form (see :func:`_ids_of`), ready for :func:`upsert_edges`.
    """
    wanted = sorted(set(names))
    ids = await _ids_of(conn, wanted)
    missing = [name for name in wanted if name not in ids]
    if not missing:
        return ids, []
    if conn.dialect.name == "sqlite":
        at = _sqlite_time(now)
        rows: list[Any] = [
            (i, name, "{}", "medium", None, 1, at, at, owner)
            for i, name in zip(time_ordered_hex(len(missing)), missing, strict=True)
        ]
        for chunk in _chunks(rows):
            await conn.exec_driver_sql(_SQLITE_ENSURE_SERVICES, list(chunk))
    else:
        # RETURNING: another transaction may have created some of them since the read above; only
        # the ones this insert created are reported as discovered by this call.
        stmt = (
            insert(graph_services)
            .on_conflict_do_nothing(index_elements=["service_id"])
            .returning(graph_services.c.service_id)
        )
        rows = [
            dict(zip(_SERVICE_COLUMNS, (i, name, {}, "medium", None, True, now, now, owner), strict=True))
            for i, name in zip(time_ordered_ids(len(missing)), missing, strict=True)
        ]
        created: set[str] = set()
        for chunk in _chunks(rows):
            created.update((await conn.execute(stmt, list(chunk))).scalars())
        ids.update(await _ids_of(conn, missing))  # theirs too, locked like the others
        return ids, [name for name in missing if name in created]
    ids.update(await _ids_of(conn, missing))
    return ids, missing


async def upsert_edges(
    conn: AsyncConnection, insert: InsertFn, items: Sequence[DependencyInput], ids: dict[str, Any], now: datetime
) -> None:
    """Insert or update edges; ``ids`` maps service ids to stored ids as :func:`ensure_services` returns them."""
    # Ordered by the unique key, a batch walks the B-trees once instead of jumping around them.
    keyed = sorted(
        ((ids[i.source_service_id], ids[i.target_service_id], i.discovery_source, i) for i in items),
        key=lambda row: row[:3],
    )
    if conn.dialect.name == "sqlite":
        at = _sqlite_time(now)
        rows: list[Any] = [
            (
                edge_id, source, target, i.communication_mode, i.criticality, i.protocol, i.timeout_ms,
                _json_text(i.retry_config), discovery_source, i.confidence_score, at, 0, at, at,
            )
            for edge_id, (source, target, discovery_source, i) in zip(
                time_ordered_hex(len(keyed)), keyed, strict=True
            )
        ]
        for chunk in _chunks(rows):
            await conn.exec_driver_sql(_SQLITE_UPSERT_EDGES, list(chunk))
        return
    stmt = insert(dependencies)
    excluded = stmt.excluded
    stmt = stmt.on_conflict_do_update(
        index_elements=["source_id", "target_id", "discovery_source"],
        set_={**{c: excluded[c] for c in _EDGE_UPDATED}, "is_stale": False},
    )
    rows = [
        dict(
            zip(
                _EDGE_COLUMNS,
                (
                    edge_id, source, target, i.communication_mode, i.criticality, i.protocol, i.timeout_ms,
                    i.retry_config, discovery_source, i.confidence_score, now, False, now, now,
                ),
                strict=True,
            )
        )
        for edge_id, (source, target, discovery_source, i) in zip(time_ordered_ids(len(keyed)), keyed, strict=True)
    ]
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
        # Spelled as the partial indexes' own condition: SQLite only uses a partial index when the
        # query states its WHERE term, and SQLAlchemy writes ``~is_stale`` as ``is_stale = 0`` there.
        query = query.where(_LIVE)
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
    marked: set[Any] = set()
    for chunk in _chunks([r[0] for r in rows]):
        # The condition again: an upsert that observed an edge since the read above keeps it live.
        statement = (
            update(dependencies)
            .where(
                dependencies.c.id.in_(list(chunk)),
                dependencies.c.is_stale == False,  # noqa: E712
                dependencies.c.last_observed_at < cutoff,
            )
            .values(is_stale=True, updated_at=now)
            .returning(dependencies.c.id)
        )
        marked.update(await conn.scalars(statement))
    return [(r[1], r[2], r[3]) for r in rows if r[0] in marked]
