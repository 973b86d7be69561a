"""The store: one async engine per database, transactional writes that carry their events.

Writes go through :meth:`Store.write`, which runs an operation inside a
transaction, appends the events the operation emitted to the event log in the
same transaction, commits, and only then returns. Two engines are supported:

* **SQLite** (embedded default): WAL mode, ``synchronous=FULL`` so an
  acknowledged write survives a crash, and every write transaction starts with
  ``BEGIN IMMEDIATE`` on one writer connection per process, so writers queue
  instead of failing with "database is locked" (other processes wait on the
  busy timeout). Concurrent writes are *group-committed*: the writer takes
  every queued operation, runs each inside its own SAVEPOINT, and commits them
  with one fsync. An operation that fails rolls back its savepoint only.
* **PostgreSQL** (scale-out): a connection pool, one transaction per write.
  Event appends take a transaction-scoped advisory lock just before commit, so
  revisions become visible in revision order and a watcher reading
  ``revision > N`` can never skip one that commits late.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import structlog
from sqlalchemy import event, insert, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from muster.clock import Clock, SystemClock
from muster.errors import MusterError, Unavailable
from muster.store.schema import events

__all__ = ["PendingEvent", "Store", "Tx"]

T = TypeVar("T")
log = structlog.get_logger("muster.store")

# Any constant works; it only has to be the same for every Muster process.
_EVENT_APPEND_LOCK = 0x6D75737465720001
_MAX_GROUP = 256


@dataclass(frozen=True, slots=True)
class PendingEvent:
    kind: str
    subject: str
    payload: dict[str, Any]


@dataclass(slots=True)
class Tx:
    """What a write operation sees: the connection, the transaction's time, an event sink."""

    conn: AsyncConnection
    now: datetime
    dialect: str
    pending: list[PendingEvent] = field(default_factory=list)
    revisions: list[int] = field(default_factory=list)

    def emit(self, kind: str, subject: str, payload: dict[str, Any]) -> None:
        """Record an event; it is appended to the log in this transaction."""
        self.pending.append(PendingEvent(kind, subject, payload))

    def insert(self, table: Any) -> Any:
        """The dialect's INSERT construct (both support ``on_conflict_do_nothing``)."""
        return postgresql.insert(table) if self.dialect == "postgresql" else sqlite.insert(table)


WriteOp = Callable[[Tx], Awaitable[T]]


class Store:
    """Engine set-up, transactional writes with events, and reads."""

    def __init__(self, url: str, *, clock: Clock | None = None) -> None:
        self.url = url
        self.clock: Clock = clock or SystemClock()
        self.dialect = "postgresql" if url.startswith("postgresql") else "sqlite"
        self._on_commit: list[Callable[[int], Awaitable[None]]] = []
        self._writer_queue: asyncio.Queue[tuple[WriteOp[Any], asyncio.Future[Any]]] | None = None
        self._writer_task: asyncio.Task[None] | None = None
        self._closed = False
        if self.dialect == "sqlite":
            self._prepare_sqlite_path()
            self.read_engine = self._sqlite_engine(writer=False)
            self.write_engine = self._sqlite_engine(writer=True)
        else:
            self.read_engine = create_async_engine(
                url, pool_size=10, max_overflow=20, pool_pre_ping=True, pool_recycle=1800
            )
            self.write_engine = self.read_engine

    # -- set-up -------------------------------------------------------------

    def _prepare_sqlite_path(self) -> None:
        path = self.sqlite_path
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

    @property
    def sqlite_path(self) -> Path | None:
        if self.dialect != "sqlite":
            return None
        raw = self.url.split(":///", 1)[1] if ":///" in self.url else ""
        return None if raw in ("", ":memory:") else Path(raw)

    def _sqlite_engine(self, *, writer: bool) -> AsyncEngine:
        engine = create_async_engine(
            self.url,
            # One writer connection per process; reads get a small pool of their own.
            pool_size=1 if writer else 4,
            max_overflow=0 if writer else 4,
        )

        @event.listens_for(engine.sync_engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # Let us issue BEGIN ourselves (the driver's implicit BEGIN is DEFERRED).
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            if writer:
                # Bulk writes touch many index pages; SQLite's default cache is only 2 MiB.
                cursor.execute("PRAGMA cache_size=-65536")
            cursor.close()

        begin_sql = "BEGIN IMMEDIATE" if writer else "BEGIN"

        @event.listens_for(engine.sync_engine, "begin")
        def _on_begin(conn: Any) -> None:
            conn.exec_driver_sql(begin_sql)

        return engine

    def on_commit(self, callback: Callable[[int], Awaitable[None]]) -> None:
        """Call ``callback(last_revision)`` after every commit that appended events."""
        self._on_commit.append(callback)

    async def close(self) -> None:
        self._closed = True
        if self._writer_task is not None:
            self._writer_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer_task
            self._writer_task = None
        await self.read_engine.dispose()
        if self.write_engine is not self.read_engine:
            await self.write_engine.dispose()

    # -- reads --------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A read-only connection in a transaction (a consistent snapshot)."""
        try:
            async with self.read_engine.connect() as conn:
                yield conn
        except (OperationalError, OSError) as exc:
            raise Unavailable(f"store unavailable: {exc.__class__.__name__}") from exc

    async def ping(self) -> None:
        async with self.read() as conn:
            await conn.execute(text("SELECT 1"))

    # -- writes -------------------------------------------------------------

    async def write(self, op: WriteOp[T]) -> T:
        """Run ``op`` in a write transaction with its events; return once committed."""
        if self._closed:
            raise Unavailable("store is closed")
        if self.dialect == "sqlite":
            return await self._write_sqlite(op)
        return await self._write_postgres(op)

    async def _append_events(self, tx: Tx) -> None:
        if not tx.pending:
            return
        if self.dialect == "postgresql":
            # Serialise appends until commit so revisions become visible in order;
            # the NOTIFY is delivered on commit and only wakes other processes' hubs.
            await tx.conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _EVENT_APPEND_LOCK})
            await tx.conn.execute(text("SELECT pg_notify('muster_events', '')"))
        rows = [{"kind": e.kind, "subject": e.subject, "payload": e.payload, "ts": tx.now} for e in tx.pending]
        if len(rows) == 1:
            result = await tx.conn.execute(insert(events).returning(events.c.revision), rows[0])
            tx.revisions.append(int(result.scalar_one()))
        else:
            # RETURNING with executemany is not portable; one statement per event keeps order.
            for row in rows:
                result = await tx.conn.execute(insert(events).returning(events.c.revision), row)
                tx.revisions.append(int(result.scalar_one()))
        tx.pending.clear()

    async def _notify(self, revision: int) -> None:
        for callback in self._on_commit:
            await callback(revision)

    async def _write_postgres(self, op: WriteOp[T]) -> T:
        try:
            async with self.write_engine.begin() as conn:
                tx = Tx(conn=conn, now=self.clock.now(), dialect=self.dialect)
                value = await op(tx)
                await self._append_events(tx)
        except MusterError:
            raise
        except OperationalError as exc:
            raise Unavailable(f"store unavailable: {exc.orig!r}") from exc
        if tx.revisions:
            await self._notify(tx.revisions[-1])
        return value

    async def _write_sqlite(self, op: WriteOp[T]) -> T:
        if self._writer_queue is None:
            self._writer_queue = asyncio.Queue()
            self._writer_task = asyncio.create_task(self._sqlite_writer(), name="muster-sqlite-writer")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        await self._writer_queue.put((op, future))
        return await future

    async def _sqlite_writer(self) -> None:
        assert self._writer_queue is not None
        queue = self._writer_queue
        while True:
            batch = [await queue.get()]
            while len(batch) < _MAX_GROUP and not queue.empty():
                batch.append(queue.get_nowait())
            batch = [(op, fut) for op, fut in batch if not fut.cancelled()]
            if batch:
                await self._commit_group(batch)

    async def _commit_group(self, batch: list[tuple[WriteOp[Any], asyncio.Future[Any]]]) -> None:
        """Commit a group of queued operations with one fsync.

        Optimistic: operations run back to back in one transaction and all their
        events are appended with one ``executemany`` at the end (revisions are
        assigned here, safe because ``BEGIN IMMEDIATE`` holds the only write
        lock). An operation that raises *before writing anything* (a conflict or
        a missing id, the common failures) simply fails alone. If one raises
        after it wrote, the group is rolled back and replayed with a SAVEPOINT
        per operation, so only that operation's writes are undone.
        """
        try:
            outcomes = await self._run_group(batch, savepoints=False)
            if outcomes is None:
                outcomes = await self._run_group(batch, savepoints=True)
        except Exception as exc:
            log.error("store.commit_failed", error=repr(exc))
            failure = Unavailable(f"store write failed: {exc.__class__.__name__}")
            for _op, future in batch:
                if not future.done():
                    future.set_exception(failure)
            return
        assert outcomes is not None
        last_revision = max((rev for _, _, _, rev in outcomes), default=0)
        if last_revision:
            try:
                await self._notify(last_revision)
            except Exception as exc:
                log.error("store.notify_failed", error=repr(exc))
        for future, value, error, _ in outcomes:
            if future.done():
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(value)

    async def _run_group(
        self, batch: list[tuple[WriteOp[Any], asyncio.Future[Any]]], *, savepoints: bool
    ) -> list[tuple[asyncio.Future[Any], Any, BaseException | None, int]] | None:
        """Run the group in one transaction; ``None`` means "replay with savepoints"."""
        outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None, int]] = []
        pending: list[dict[str, Any]] = []
        async with self.write_engine.connect() as conn:
            await conn.begin()
            raw = (await conn.get_raw_connection()).driver_connection
            assert raw is not None  # aiosqlite's connection: total_changes tells whether an op wrote
            head = int((await conn.execute(text("SELECT coalesce(max(revision), 0) FROM events"))).scalar_one())
            for op, future in batch:
                tx = Tx(conn=conn, now=self.clock.now(), dialect=self.dialect)
                changes = raw.total_changes
                try:
                    if savepoints:
                        async with conn.begin_nested():
                            value = await op(tx)
                    else:
                        value = await op(tx)
                except Exception as exc:  # the op's own failure
                    if not savepoints and raw.total_changes != changes:
                        await conn.rollback()
                        return None
                    outcomes.append((future, None, exc, 0))
                    continue
                for event in tx.pending:
                    head += 1
                    pending.append(
                        {"revision": head, "kind": event.kind, "subject": event.subject,
                         "payload": event.payload, "ts": tx.now}
                    )
                outcomes.append((future, value, None, head if tx.pending else 0))
            if pending:
                await conn.execute(insert(events), pending)
            await conn.commit()
        return outcomes


def null_pool_engine(url: str) -> AsyncEngine:
    """A short-lived engine (migrations, one-off tools) that keeps no connections."""
    return create_async_engine(url, poolclass=NullPool)
