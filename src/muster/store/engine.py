"""The store: one async engine per database, transactional writes that carry their events.

Writes go through :meth:`Store.write`, which runs an operation inside a
transaction, appends the events the operation emitted to the event log in the
same transaction, commits, and only then returns. Operations must touch
nothing but the transaction (``tx``): a group may be replayed.

Concurrent writes in one process are *group-committed* by one writer task:
it takes every queued operation, runs them in one transaction and commits
them with one fsync. An operation that fails is undone alone and fails alone.

* **SQLite** (embedded default): WAL mode, ``synchronous=FULL`` so an
  acknowledged write survives a crash, and every write transaction starts with
  ``BEGIN IMMEDIATE``, so writers (also other processes) queue on the busy
  timeout instead of failing with "database is locked". Operations run without
  savepoints; one that fails after writing sends the group back to be replayed
  with a SAVEPOINT per operation.
* **PostgreSQL** (scale-out): a group of one operation runs bare (if it fails,
  the transaction is simply rolled back); a larger group runs a SAVEPOINT per
  operation (a failed statement would abort the whole transaction otherwise).
  A group's events are appended under a transaction-scoped advisory lock
  taken just before commit, so revisions become visible in revision order
  across every process and a watcher reading ``revision > N`` can never skip
  one that commits late; the lock is held for one commit per *group*, not per
  write. The append is one statement that also sends the NOTIFY carrying the
  group's last revision, so a hub that has applied it already skips the read.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import orjson
import structlog
from sqlalchemy import event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DataError, DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from muster._tasks import cancel_and_wait
from muster.clock import Clock, SystemClock
from muster.errors import Invalid, Unavailable
from muster.identity import caller as identity_caller
from muster.store.schema import events

__all__ = ["PendingEvent", "Store", "Tx"]

T = TypeVar("T")
log = structlog.get_logger("muster.store")


class _FailureLog:
    """Failed group commits, logged at most once a second: an outage of the database fails every write
    queued behind it, and one line per second (with the count) says as much as hundreds."""

    def __init__(self, every_s: float = 1.0) -> None:
        self.every_s = every_s
        self._last = float("-inf")
        self._unlogged = 0

    def record(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._last < self.every_s:
            self._unlogged += 1
            return
        log.error("store.commit_failed", error=repr(exc), also_failed_since_last=self._unlogged)
        self._last, self._unlogged = now, 0

# Any constant works; it only has to be the same for every Muster process.
_EVENT_APPEND_LOCK = 0x6D75737465720001
_PG_APPEND_LOCK = "SELECT pg_advisory_xact_lock($1)"
_SQLITE_HEAD = "SELECT coalesce(max(revision), 0) FROM events"
_SQLITE_APPEND = "INSERT INTO events (revision, kind, subject, payload, ts, actor) VALUES (?, ?, ?, ?, ?, ?)"
# One round trip: number the group's events after the head, insert them, and NOTIFY every
# hub with the group's last revision (delivered on commit). Returns the first revision.
_PG_APPEND = (
    "WITH head AS (SELECT coalesce(max(revision), 0) AS revision FROM events),"
    " appended AS ("
    "INSERT INTO events (revision, kind, subject, payload, ts, actor)"
    " SELECT head.revision + e.n, e.kind, e.subject, CAST(e.payload AS jsonb), e.ts, e.actor FROM head,"
    " unnest(CAST($1 AS text[]), CAST($2 AS text[]), CAST($3 AS text[]), CAST($4 AS timestamptz[]),"
    " CAST($5 AS text[]))"
    " WITH ORDINALITY AS e(kind, subject, payload, ts, actor, n)"
    " RETURNING revision)"
    " SELECT min(revision), pg_notify('muster_events', max(revision)::text) FROM appended"
)
_MAX_GROUP = 256


@dataclass(frozen=True, slots=True)
class PendingEvent:
    kind: str
    subject: str
    payload: dict[str, Any]
    actor: str


# PostgreSQL ends a writer session of Muster's idle inside a transaction for longer than this (see Store).
IDLE_IN_TRANSACTION_S = 3.0


@dataclass(slots=True)
class Tx:
    """What a write operation sees: the connection, the transaction's time, an event sink."""

    conn: AsyncConnection
    now: datetime
    dialect: str
    # The principal whose request this operation serves; every event it emits carries it.
    actor: str = "muster"
    pending: list[PendingEvent] = field(default_factory=list)

    def emit(self, kind: str, subject: str, payload: dict[str, Any], *, actor: str | None = None) -> None:
        """Record an event (by ``actor``, default the operation's); it is appended in this transaction."""
        self.pending.append(PendingEvent(kind, subject, payload, actor or self.actor))

    def insert(self, table: Any) -> Any:
        """The dialect's INSERT construct (both support ``on_conflict_do_nothing``)."""
        return postgresql.insert(table) if self.dialect == "postgresql" else sqlite.insert(table)

    async def sqlite_execute(self, sql: str, parameters: tuple[Any, ...]) -> None:
        """SQLite only: one statement straight on the driver connection, in this transaction.

        SQLAlchemy's aiosqlite adapter spends three thread hand-offs per statement
        (cursor, execute, close); this spends one. For hot single-row writes whose
        values are already in their stored form (see ``sqlite_timestamp``).
        """
        raw = (await self.conn.get_raw_connection()).driver_connection
        assert raw is not None and self.dialect == "sqlite"
        await raw.execute(sql, parameters)

    async def sqlite_fetchall(self, sql: str, parameters: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """SQLite only: like ``sqlite_execute``, returning the statement's rows (``RETURNING``)."""
        raw = (await self.conn.get_raw_connection()).driver_connection
        assert raw is not None and self.dialect == "sqlite"
        return list(await raw.execute_fetchall(sql, parameters))


WriteOp = Callable[[Tx], Awaitable[T]]
# A queued write: the operation, its caller's future, and the caller's principal (the events' actor).
_Queued = tuple[WriteOp[Any], asyncio.Future[Any], str]


def _orjson_text(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def _orjson_value(value: Any) -> Any:
    # SQLite gives a JSON column numeric affinity: a stored number comes back already a number.
    return orjson.loads(value) if isinstance(value, (str, bytes)) else value


# JSON columns (event payloads above all) encoded and decoded by orjson, not the stdlib.
_JSON_CODEC: dict[str, Any] = {"json_serializer": _orjson_text, "json_deserializer": _orjson_value}


@functools.cache
def _timestamp_binder(dialect: Any) -> Callable[[datetime], Any]:
    """How the dialect binds a ``UTCDateTime`` (SQLAlchemy's own processors, composed once)."""
    process = events.c.ts.type.dialect_impl(dialect).bind_processor(dialect)
    return process if process is not None else (lambda value: value)


def sqlite_timestamp(moment: datetime) -> str:
    """A UTC timestamp in the text form ``UTCDateTime`` stores on SQLite."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


# What each queued operation ends with: its future, and its value or its error.
_Outcome = tuple[asyncio.Future[Any], Any, BaseException | None]


class _CommitUncertain(Exception):
    """The COMMIT itself failed (a dropped connection): the group may or may not have committed."""


class _Retry(Exception):
    """The group must be replayed: PostgreSQL aborted it (deadlock or serialization failure)."""


_RETRIES = 5
_RETRYABLE_SQLSTATES = {"40P01", "40001"}


def _retryable(exc: DBAPIError) -> bool:
    return _sqlstate(exc) in _RETRYABLE_SQLSTATES


class Store:
    """Engine set-up, transactional writes with events, and reads."""

    def __init__(self, url: str, *, clock: Clock | None = None, timeout: float = 5.0) -> None:
        self.url = url
        self.clock: Clock = clock or SystemClock()
        # How long a connect, a statement, a pool checkout or a whole write may take before the
        # caller is told the store is unavailable (a frozen database must not hang requests).
        self.timeout = timeout
        self.dialect = "postgresql" if url.startswith("postgresql") else "sqlite"
        self._on_commit: list[Callable[[list[dict[str, Any]]], Awaitable[None]]] = []
        # None in the queue only wakes the writer for the urgent lane (``write(..., urgent=True)``).
        self._writer_queue: asyncio.Queue[_Queued | None] | None = None
        self._urgent: list[_Queued] = []
        self._writer_task: asyncio.Task[None] | None = None
        self._closed = False
        self._groups_in_flight = 0
        self._failures = _FailureLog()
        self._in_group: set[asyncio.Future[Any]] = set()  # writes the writer has taken up
        if self.dialect == "sqlite":
            self._prepare_sqlite_path()
            self.read_engine = self._sqlite_engine(writer=False)
            self.write_engine = self._sqlite_engine(writer=True)
        else:
            bounded: dict[str, Any] = {
                "pool_timeout": timeout,
                "connect_args": {"timeout": timeout, "command_timeout": timeout},
            }
            # A process paused in the middle of a write (SIGSTOP, a long GC, a frozen VM) would hold its row
            # locks for as long as it sleeps, stalling every other replica's writes to those rows (heartbeat
            # flushes included, so a new leader would judge stale beats). The writer never leaves a
            # transaction idle: PostgreSQL ends a writer session idle in one for longer than this.
            writer = {**bounded, "connect_args": {**bounded["connect_args"], "server_settings": {
                "idle_in_transaction_session_timeout": str(int(IDLE_IN_TRANSACTION_S * 1000)),
            }}}
            self.read_engine = create_async_engine(
                url, pool_size=5, max_overflow=10, pool_pre_ping=True, pool_recycle=1800, **bounded, **_JSON_CODEC
            )
            # The group-commit writer needs one connection (two while a replay overlaps). No ping
            # per group: a connection the server dropped fails its group, which is replayed once.
            self.write_engine = create_async_engine(url, pool_size=2, max_overflow=0, **writer, **_JSON_CODEC)

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
            pool_timeout=self.timeout,
            **_JSON_CODEC,
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

    def on_commit(self, callback: Callable[[list[dict[str, Any]]], Awaitable[None]]) -> None:
        """After every commit that appended events, call ``callback(rows)`` with those event rows.

        Rows are dicts with ``revision``, ``kind``, ``subject``, ``payload`` and ``ts``, in revision
        order; callers are answered only once every callback has returned.
        """
        self._on_commit.append(callback)

    async def close(self) -> None:
        self._closed = True
        if self._writer_task is not None:
            await cancel_and_wait(self._writer_task)
            self._writer_task = None
        await self.read_engine.dispose()
        if self.write_engine is not self.read_engine:
            await self.write_engine.dispose()

    # -- reads --------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A read-only connection in a transaction (a consistent snapshot)."""
        try:
            async with asyncio.timeout(self.timeout):
                conn = await self.read_engine.connect()
        except TimeoutError as exc:
            raise Unavailable(f"store unavailable: no connection within {self.timeout:g} s") from exc
        except Exception as exc:  # refused, too many clients, DNS, ...: the store is unavailable
            raise Unavailable(f"store unavailable: {exc.__class__.__name__}") from exc
        try:
            yield conn
        except (OperationalError, OSError) as exc:
            raise Unavailable(f"store unavailable: {exc.__class__.__name__}") from exc
        except DBAPIError as exc:
            if exc.connection_invalidated:  # the server went away mid-read (a restart, a crash)
                raise Unavailable(f"store unavailable: {exc.__class__.__name__}") from exc
            refused = _refused_value(exc)
            if refused is exc:
                raise
            raise refused from exc
        finally:
            # A connection the server dropped cannot roll back; the pool discards it, and what was read
            # (or the error above) is the answer, not the failed clean-up.
            with contextlib.suppress(Exception):
                await conn.close()

    async def ping(self) -> None:
        async with self.read() as conn:
            await conn.execute(text("SELECT 1"))

    # -- writes -------------------------------------------------------------

    async def write(self, op: WriteOp[T], *, urgent: bool = False) -> T:
        """Run ``op`` in a write transaction with its events; return once committed.

        ``urgent``: the op joins the next group ahead of every write still queued (small housekeeping
        writes that others wait on, such as the bus cursor, must not queue behind a saturated request load).
        """
        if self._closed:
            raise Unavailable("store is closed")
        if self._writer_queue is None:
            self._writer_queue = asyncio.Queue()
            self._writer_task = asyncio.create_task(self._group_writer(), name="muster-store-writer")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        item: _Queued = (op, future, identity_caller.current().name)
        if urgent:
            self._urgent.append(item)
            self._writer_queue.put_nowait(None)
        else:
            await self._writer_queue.put(item)
        try:
            async with asyncio.timeout(self.timeout):
                return await asyncio.shield(future)
        except asyncio.CancelledError:
            if future not in self._in_group:  # the caller went away before it started: skip it
                future.cancel()
            raise
        except TimeoutError:
            if future in self._in_group:  # running: each of its statements is bounded by the timeout
                return await future
            # Never started (the writer is stuck on a store that does not answer): it never will.
            future.cancel()
            raise Unavailable(f"store did not answer within {self.timeout:g} s; nothing was written") from None

    @property
    def write_in_flight(self) -> bool:
        """A write group is running, committing or handing its events over (``on_commit``)."""
        return self._groups_in_flight > 0

    async def _notify(self, rows: list[dict[str, Any]]) -> None:
        for callback in self._on_commit:
            await callback(rows)

    async def _group_writer(self) -> None:
        assert self._writer_queue is not None
        queue = self._writer_queue
        while True:
            first = await queue.get()
            batch, self._urgent = self._urgent, []
            if first is not None:
                batch.append(first)
            while len(batch) < _MAX_GROUP and not queue.empty():
                if (queued := queue.get_nowait()) is not None:
                    batch.append(queued)
            batch = [item for item in batch if not item[1].cancelled()]
            if batch:
                self._groups_in_flight += 1
                self._in_group.update(future for _, future, _ in batch)
                try:
                    await self._commit_group(batch)
                finally:
                    self._groups_in_flight -= 1
                    self._in_group.difference_update(future for _, future, _ in batch)

    async def _commit_group(self, batch: list[_Queued]) -> None:
        """Commit a group of queued operations with one fsync.

        Optimistic: operations run back to back in one transaction and all their
        events are appended with one ``executemany`` at the end (revisions are
        assigned here, safe because ``BEGIN IMMEDIATE`` holds the only write
        lock). An operation that raises *before writing anything* (a conflict or
        a missing id, the common failures) simply fails alone. If one raises
        after it wrote, the group is rolled back and replayed with a SAVEPOINT
        per operation, so only that operation's writes are undone.
        """
        committed: list[dict[str, Any]] = []
        try:
            try:
                try:
                    outcomes = await self._run_group(batch, savepoints=False, committed=committed)
                except DBAPIError as exc:
                    if not exc.connection_invalidated:
                        raise
                    # The server dropped the connection (a restart, an idle timeout) before the
                    # COMMIT was sent, so nothing committed: run the group once more on a fresh one.
                    log.warning("store.reconnected", error=repr(exc.orig))
                    outcomes = await self._run_group(batch, savepoints=False, committed=committed)
                if outcomes is None:
                    outcomes = await self._run_group(batch, savepoints=True, committed=committed)
            except _Retry:
                # Another process's group holds locks ours needs and vice versa:
                # PostgreSQL broke the cycle by failing us. Replay each op in a
                # transaction of its own, where locks are taken in one op's order.
                outcomes = []
                for item in batch:
                    outcomes.extend(await self._run_alone(item, committed))
        except Exception as exc:
            self._failures.record(exc)
            failure = Unavailable(f"store write failed: {exc.__class__.__name__}")
            for _op, future, _actor in batch:
                if not future.done():
                    future.set_exception(failure)
            return
        assert outcomes is not None
        if committed:
            try:
                await self._notify(committed)
            except Exception as exc:
                log.error("store.notify_failed", error=repr(exc))
        for future, value, error in outcomes:
            if future.done():
                continue
            if error is not None:
                future.set_exception(_refused_value(error))
            else:
                future.set_result(value)

    async def _run_alone(
        self, item: _Queued, committed: list[dict[str, Any]]
    ) -> list[_Outcome]:
        for attempt in range(_RETRIES):
            try:
                outcomes = await self._run_group([item], savepoints=True, committed=committed)
                assert outcomes is not None
                return outcomes
            except _Retry:
                await asyncio.sleep(0.01 * (attempt + 1))
        return [(item[1], None, Unavailable("write kept deadlocking with other writers; retry"))]

    async def _run_group(
        self,
        batch: list[_Queued],
        *,
        savepoints: bool,
        committed: list[dict[str, Any]],
    ) -> list[_Outcome] | None:
        """Run the group in one transaction; ``None`` means "replay with savepoints".

        The event rows it commits are appended to ``committed``.
        """
        # PostgreSQL aborts the whole transaction on a failed statement, so several
        # operations need a savepoint each; a lone one is simply rolled back.
        savepoints = savepoints or (self.dialect == "postgresql" and len(batch) > 1)
        outcomes: list[_Outcome] = []
        emitted: list[tuple[list[PendingEvent], datetime]] = []
        async with self.write_engine.connect() as conn:
            await conn.begin()
            raw = (await conn.get_raw_connection()).driver_connection if self.dialect == "sqlite" else None
            for op, future, actor in batch:
                tx = Tx(conn=conn, now=self.clock.now(), dialect=self.dialect, actor=actor)
                changes = raw.total_changes if raw is not None else 0
                try:
                    if savepoints:
                        async with conn.begin_nested():
                            value = await op(tx)
                    else:
                        value = await op(tx)
                except Exception as exc:  # the op's own failure
                    if isinstance(exc, TimeoutError | OSError):  # the store stopped answering, not the op
                        with contextlib.suppress(Exception):
                            await conn.invalidate()  # never reuse a connection stuck mid-statement
                        raise
                    if isinstance(exc, DBAPIError):
                        if _retryable(exc):
                            raise _Retry from exc
                        if exc.connection_invalidated:
                            raise
                    if not savepoints and raw is not None and raw.total_changes != changes:
                        await conn.rollback()
                        return None
                    if not savepoints and raw is None:  # PostgreSQL, a lone op: undo whatever it did
                        await conn.rollback()
                        return [(future, None, exc)]
                    outcomes.append((future, None, exc))
                    continue
                outcomes.append((future, value, None))
                emitted.append((tx.pending, tx.now))
            rows = await self._append_group_events(conn, emitted)
            try:
                await conn.commit()
            except DBAPIError as exc:  # it may have committed all the same: never replay it
                raise _CommitUncertain(f"commit failed: {exc.__class__.__name__}") from exc
            committed.extend(rows)
        return outcomes

    async def _append_group_events(
        self, conn: AsyncConnection, per_op: list[tuple[list[PendingEvent], datetime]]
    ) -> list[dict[str, Any]]:
        """Append every op's events with one statement, revisions in op order; return the rows."""
        items = [(item, now) for pending, now in per_op for item in pending]
        if not items:
            return []
        if self.dialect == "postgresql":
            # Serialise appends until commit so revisions become visible in order. The append
            # reads the head in its own statement, after the lock, so it sees every earlier group.
            await conn.exec_driver_sql(_PG_APPEND_LOCK, [(_EVENT_APPEND_LOCK,)])
            bind = _timestamp_binder(conn.dialect)
            parameters = (
                [item.kind for item, _ in items],
                [item.subject for item, _ in items],
                [_orjson_text(item.payload) for item, _ in items],
                [bind(now) for _, now in items],
                [item.actor for item, _ in items],
            )
            head = int((await conn.exec_driver_sql(_PG_APPEND, [parameters])).scalar_one()) - 1
        else:  # BEGIN IMMEDIATE holds the only write lock; straight on the driver (one thread hop each)
            raw = (await conn.get_raw_connection()).driver_connection
            assert raw is not None
            head = int((await raw.execute_fetchall(_SQLITE_HEAD))[0][0])
            await raw.executemany(
                _SQLITE_APPEND,
                [
                    (
                        revision, item.kind, item.subject, _orjson_text(item.payload), sqlite_timestamp(now),
                        item.actor,
                    )
                    for revision, (item, now) in enumerate(items, start=head + 1)
                ],
            )
        return [
            {
                "revision": revision, "kind": item.kind, "subject": item.subject, "payload": item.payload, "ts": now,
                "actor": item.actor,
            }
            for revision, (item, now) in enumerate(items, start=head + 1)
        ]


def _refused_value(error: BaseException) -> BaseException:
    """A value the database cannot hold (out of range, a NUL in text) is the request's fault: Invalid.

    Input rules catch these first; this is the net under them, so a missed rule is a 422, not a 500.
    """
    if isinstance(error, DBAPIError) and (isinstance(error, DataError) or _sqlstate(error).startswith("22")):
        detail = str(error.orig).splitlines()[0] if error.orig is not None else error.__class__.__name__
        return Invalid("value", f"the database refused a value: {detail}")
    return error


def _sqlstate(error: DBAPIError) -> str:
    """The SQLSTATE PostgreSQL gave (class 22 is "data exception"); '' elsewhere."""
    return str(getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None) or "")
