"""The leases queries (SQLAlchemy Core, the same on SQLite and PostgreSQL).

Reserving is a multi-row ``INSERT ... ON CONFLICT DO NOTHING`` against the
unique partial index of live leases: the database decides who wins, in every
process. Symbols whose insert was skipped get their overdue reservation (by
the transaction's clock) flipped to ``expired`` and one more insert.

The reserve insert is the hot path (one per group of concurrent reserves), so
it is driver SQL written once here rather than a statement compiled per call:
on SQLite a ``VALUES`` list per row count (cached), on PostgreSQL one
``unnest`` statement for any row count (asyncpg prepares it once). Timestamps
are bound through the column type's own bind processor, so they are stored
exactly as SQLAlchemy stores them everywhere else.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Row, and_, func, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from muster.leases.model import Lease, subject_of
from muster.leases.schema import LIVE_STATUSES, leases
from muster.store.engine import Tx

__all__ = [
    "NewReservation",
    "expire_symbols",
    "get_lease",
    "insert_reservations",
    "latest_for_symbol",
    "live_for_symbols",
    "load_latest",
    "plan_leases",
    "save",
    "sweep_expired",
]

_COLUMNS = [c.name for c in leases.columns]
_SYMBOL_LOCK_SPACE = "muster.leases:"


def lease_of(row: Row[Any]) -> Lease:
    return Lease(**{name: getattr(row, name) for name in _COLUMNS})


def _symbol(repo: str, branch: str, fq_name: str) -> Any:
    return and_(leases.c.repo == repo, leases.c.branch == branch, leases.c.fq_name == fq_name)


def _lock_keys(keys: Sequence[tuple[str, str, str]]) -> list[str]:
    """PostgreSQL advisory-lock names of these symbols, sorted (so no two reserves deadlock).

    The unique index alone already guarantees one live lease per symbol. The
    locks add the fencing guarantee on PostgreSQL: a sequence value is drawn
    before the index is checked, so without them a reserve could draw id N,
    stall, and land after a lease N+1 of the same symbol was granted and
    released. Holding the symbol's lock until commit, ids of one symbol are
    drawn in grant order. (SQLite writers are serialised anyway.)
    """
    return sorted({_SYMBOL_LOCK_SPACE + subject_of(*key) for key in keys})


class NewReservation(NamedTuple):
    """The columns of a reservation about to be inserted (status ``reserved``, no commit)."""

    repo: str
    branch: str
    fq_name: str
    kind: str
    file_path: str
    plan_id: str | None
    reserved_at: datetime
    expires_at: datetime
    owner: str = "anonymous"

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.repo, self.branch, self.fq_name)


_INSERT_HEAD = (
    "INSERT INTO leases (repo, branch, fq_name, kind, file_path, plan_id, status, commit_sha,"
    " reserved_at, expires_at, updated_at, owner) "
)
_INSERT_TAIL = " ON CONFLICT DO NOTHING RETURNING lease_id, repo, branch, fq_name"
_SQLITE_ROW = "(?, ?, ?, ?, ?, ?, 'reserved', NULL, ?, ?, ?, ?)"
# One statement for any number of rows: asyncpg prepares it once per connection. It takes the
# symbols' advisory locks first (``lock_symbols``): the aggregate consumes every lock before
# the join yields a row, so no lease id is drawn before its symbol is locked (see ``_lock_keys``).
_POSTGRES_INSERT = (
    "WITH locked AS (SELECT count(pg_advisory_xact_lock(hashtextextended(l, 0))) AS n"
    " FROM unnest(CAST($9 AS text[])) AS l) "
    + _INSERT_HEAD
    + "SELECT r, b, f, k, p, pl, 'reserved', NULL, $7, e, $7, o FROM locked, unnest("
    "CAST($1 AS text[]), CAST($2 AS text[]), CAST($3 AS text[]), CAST($4 AS text[]), CAST($5 AS text[]),"
    " CAST($6 AS text[]), CAST($8 AS timestamptz[]), CAST($10 AS text[])) AS t(r, b, f, k, p, pl, e, o)"
    + _INSERT_TAIL
)


@functools.lru_cache(maxsize=512)
def _sqlite_insert(rows: int) -> str:
    return _INSERT_HEAD + "VALUES " + ", ".join([_SQLITE_ROW] * rows) + _INSERT_TAIL


@functools.cache
def _timestamp_binder(dialect: Any) -> Callable[[datetime], Any]:
    """How the dialect binds a UTC timestamp column (SQLAlchemy's own processors, composed once)."""
    process = leases.c.reserved_at.type.dialect_impl(dialect).bind_processor(dialect)
    return process if process is not None else (lambda value: value)


async def insert_reservations(tx: Tx, rows: Sequence[NewReservation]) -> dict[tuple[str, str, str], int]:
    """Insert many reservations in one statement; the lease id of each symbol that was free.

    A symbol held by a live lease (or listed twice: the first row wins) is skipped.
    Every row of one call shares ``reserved_at`` (the transaction's time). On
    PostgreSQL the statement locks the symbols first (``_lock_keys``).
    """
    if not rows:
        return {}
    bind = _timestamp_binder(tx.conn.dialect)
    now = bind(rows[0].reserved_at)
    if tx.dialect == "postgresql":
        columns = [list(column) for column in zip(*rows, strict=True)]
        expires = [bind(at) for at in columns[7]]
        params: tuple[Any, ...] = (*columns[:6], now, expires, _lock_keys([row.key for row in rows]), columns[8])
        # A list of one tuple: one execution with positional parameters (not executemany).
        result: Any = await tx.conn.exec_driver_sql(_POSTGRES_INSERT, [params])
    else:
        flat: list[Any] = []
        for row in rows:
            flat += (*row[:6], now, bind(row.expires_at), now, row.owner)
        result = await tx.sqlite_fetchall(_sqlite_insert(len(rows)), tuple(flat))
    return {(row[1], row[2], row[3]): int(row[0]) for row in result}


async def expire_symbols(tx: Tx, keys: Sequence[tuple[str, str, str]]) -> list[Lease]:
    """Flip the overdue reservations (by ``tx.now``) of these symbols to ``expired``."""
    statement = (
        update(leases)
        .where(
            tuple_(leases.c.repo, leases.c.branch, leases.c.fq_name).in_(list(keys)),
            leases.c.status == "reserved",
            leases.c.expires_at <= tx.now,
        )
        .values(status="expired", updated_at=tx.now)
        .returning(*leases.columns)
    )
    return sorted((lease_of(row) for row in await tx.conn.execute(statement)), key=lambda lease: lease.lease_id)


async def live_for_symbols(
    conn: AsyncConnection, keys: Sequence[tuple[str, str, str]]
) -> dict[tuple[str, str, str], Lease]:
    query = select(leases).where(
        tuple_(leases.c.repo, leases.c.branch, leases.c.fq_name).in_(list(keys)),
        leases.c.status.in_(LIVE_STATUSES),
    )
    return {lease.key: lease for lease in map(lease_of, await conn.execute(query))}


async def latest_for_symbol(conn: AsyncConnection, key: tuple[str, str, str]) -> Lease | None:
    query = select(leases).where(_symbol(*key)).order_by(leases.c.lease_id.desc()).limit(1)
    row = (await conn.execute(query)).first()
    return None if row is None else lease_of(row)


async def get_lease(tx: Tx, lease_id: int) -> Lease | None:
    """The lease, locked for this transaction on PostgreSQL (SQLite writers are serial)."""
    query = select(leases).where(leases.c.lease_id == lease_id).with_for_update()
    row = (await tx.conn.execute(query)).first()
    return None if row is None else lease_of(row)


async def save(tx: Tx, lease: Lease) -> None:
    """Write back the mutable fields of ``lease``."""
    await tx.conn.execute(
        update(leases)
        .where(leases.c.lease_id == lease.lease_id)
        .values(
            status=lease.status,
            commit_sha=lease.commit_sha,
            expires_at=lease.expires_at,
            updated_at=lease.updated_at,
        )
    )


async def plan_leases(
    conn: AsyncConnection, plan_id: str, *, limit: int, for_update: bool = False, status: str | None = None
) -> list[Lease]:
    """The plan's leases (only those in ``status`` if given), oldest first, at most ``limit``."""
    query = select(leases).where(leases.c.plan_id == plan_id).order_by(leases.c.lease_id).limit(limit)
    if status is not None:
        query = query.where(leases.c.status == status)
    if for_update:
        query = query.with_for_update()
    return [lease_of(row) for row in await conn.execute(query)]


async def sweep_expired(tx: Tx, *, batch: int) -> list[Lease]:
    """Flip up to ``batch`` reservations whose deadline passed (by ``tx.now``) to ``expired``."""
    due = (
        select(leases.c.lease_id)
        .where(leases.c.status == "reserved", leases.c.expires_at <= tx.now)
        .order_by(leases.c.expires_at)
        .limit(batch)
        .scalar_subquery()
    )
    statement = (
        update(leases)
        # Re-check the status: a concurrent sweeper on PostgreSQL may have flipped it first.
        .where(leases.c.lease_id.in_(due), leases.c.status == "reserved", leases.c.expires_at <= tx.now)
        .values(status="expired", updated_at=tx.now)
        .returning(*leases.columns)
    )
    return sorted((lease_of(row) for row in await tx.conn.execute(statement)), key=lambda lease: lease.lease_id)


async def load_latest(conn: AsyncConnection) -> Sequence[Lease]:
    """The newest lease of every symbol (to fill the in-memory index at start)."""
    newest = (
        select(func.max(leases.c.lease_id).label("lease_id"))
        .group_by(leases.c.repo, leases.c.branch, leases.c.fq_name)
        .subquery()
    )
    query = select(leases).join(newest, leases.c.lease_id == newest.c.lease_id)
    return [lease_of(row) for row in await conn.execute(query)]
