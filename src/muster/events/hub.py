"""Follow the event log and fan it out: in-memory indexes, watch streams, sinks.

Each process runs one hub. It reads committed events in revision order from
the ``events`` table (the truth) whenever it is woken up: at once after a local
commit, by PostgreSQL NOTIFY after another process's commit (the payload is the
group's last revision, so a notification of what this hub applied already is
dropped), and by a short poll otherwise (SQLite has no NOTIFY). Every event is applied to the
registered appliers (the contexts' in-memory indexes) before watchers see it.

A watcher asks for everything after revision ``since``: it is registered for
live events at the hub's current position ``H`` first, then the range
``(since, H]`` is replayed from the table, then live events follow. Nothing is
missed and nothing is seen twice. A watcher that falls more than its queue
behind is ended with ``ResourceExhausted`` naming the revision to resume from.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import structlog
from sqlalchemy import func, select

from muster._tasks import cancel_and_wait
from muster.errors import Pruned, ResourceExhausted
from muster.store.engine import Store
from muster.store.schema import events

__all__ = ["Event", "EventHub", "WatchFilter"]

log = structlog.get_logger("muster.events")
_PAGE = 2000
_MAX_POLL_SKIP_S = 1.0
NOTIFY_CHANNEL = "muster_events"
_PG_PAGE = (
    "SELECT revision, kind, subject, payload::text, ts, actor FROM events"
    " WHERE revision > $1 ORDER BY revision LIMIT $2"
)
# How long a NOTIFY waits for this process's own writer to apply the commit it announces.
_NOTIFY_SETTLE = 0.002


@dataclass(frozen=True, slots=True)
class Event:
    revision: int
    kind: str
    subject: str
    payload: dict[str, Any]
    ts: datetime
    # Who made the change: a token's name, "anonymous" (auth off) or "muster" (the server's own work).
    actor: str = "anonymous"

    def to_dict(self) -> dict[str, Any]:
        from muster.clock import isoformat

        return {
            "revision": self.revision,
            "kind": self.kind,
            "subject": self.subject,
            "payload": self.payload,
            "ts": isoformat(self.ts),
            "actor": self.actor,
        }


MAX_KIND_PREFIX = 200
MAX_SUBJECT_PREFIX = 500


@dataclass(frozen=True, slots=True)
class WatchFilter:
    """Which events a watcher wants: kind and subject prefixes (empty = all).

    A watch request takes at most ``MAX_KIND_PREFIX`` and ``MAX_SUBJECT_PREFIX``
    characters on either door (see :meth:`requested`).
    """

    kind_prefix: str = ""
    subject_prefix: str = ""

    @classmethod
    def requested(cls, kind_prefix: str, subject_prefix: str) -> WatchFilter:
        """A filter as a watcher asked for it, within the limits (``Invalid`` names the field)."""
        from muster.errors import Invalid

        if len(kind_prefix) > MAX_KIND_PREFIX:
            raise Invalid("kind_prefix", f"at most {MAX_KIND_PREFIX} characters")
        if len(subject_prefix) > MAX_SUBJECT_PREFIX:
            raise Invalid("subject_prefix", f"at most {MAX_SUBJECT_PREFIX} characters")
        return cls(kind_prefix, subject_prefix)

    def __call__(self, event: Event) -> bool:
        return event.kind.startswith(self.kind_prefix) and event.subject.startswith(self.subject_prefix)


class _Subscription:
    __slots__ = ("filter", "overflowed_at", "queue")

    def __init__(self, watch_filter: WatchFilter, size: int) -> None:
        self.filter = watch_filter
        self.queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=size)
        self.overflowed_at: int | None = None


Applier = Callable[[Event], None]


class EventHub:
    def __init__(self, store: Store, *, poll_interval: float = 0.05, watch_queue_size: int = 10_000) -> None:
        self.store = store
        self.position = 0
        self._poll_interval = poll_interval
        self._watch_queue_size = watch_queue_size
        self._appliers: list[Applier] = []
        self._subscriptions: set[_Subscription] = set()
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._listener: Any = None
        self._notified_revision = 0
        self._listen_tried_at = 0.0
        self._notify_check: asyncio.TimerHandle | None = None
        # Bounds on open watch streams (muster.limits.WatchSlots), set by the composition root.
        self.slots: Any = None

    # -- life cycle -----------------------------------------------------------

    async def head(self) -> int:
        async with self.store.read() as conn:
            return int((await conn.execute(select(func.coalesce(func.max(events.c.revision), 0)))).scalar_one())

    async def start(self, position: int | None = None) -> None:
        """Start following after ``position`` (default: the current head)."""
        self.position = await self.head() if position is None else position
        self.store.on_commit(self.committed)
        if self.store.dialect == "postgresql":
            await self._listen()
        self._task = asyncio.create_task(self._run(), name="muster-event-hub")

    async def _listen(self) -> None:
        import asyncpg

        dsn = self.store.url.replace("postgresql+asyncpg://", "postgresql://", 1)
        self._listen_tried_at = time.monotonic()
        try:
            self._listener = await asyncpg.connect(
                dsn, timeout=self.store.timeout, command_timeout=self.store.timeout
            )
            await self._listener.add_listener(NOTIFY_CHANNEL, self._notified)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("events.listen_failed", error=repr(exc))  # polling still works without it
            await self._drop_listener()

    async def _drop_listener(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(Exception):
                await listener.close(timeout=1)

    def _listener_lost(self) -> bool:
        """PostgreSQL: no working listening connection (never made, or the server dropped it)."""
        return self.store.dialect == "postgresql" and (self._listener is None or self._listener.is_closed())

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        """A commit somewhere: read the log, unless it is a commit this hub applies itself.

        The payload is the committing group's last revision. This process's own
        commits are applied from memory (``committed``) as soon as the writer
        sees its COMMIT answered, which may be a moment after the NOTIFY arrives
        on the listening connection: the check waits that moment out.
        """
        try:
            revision = int(payload)
        except ValueError:  # not ours to parse: read anyway
            self._wake.set()
            return
        if revision <= self.position:
            return
        self._notified_revision = max(self._notified_revision, revision)
        if self._notify_check is None:
            self._notify_check = asyncio.get_running_loop().call_later(_NOTIFY_SETTLE, self._check_notified)

    def _check_notified(self) -> None:
        self._notify_check = None
        if self._notified_revision > self.position:
            self._wake.set()

    async def close(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
        if self._notify_check is not None:
            self._notify_check.cancel()
        await self._drop_listener()
        for _, future in self._waiters:
            if not future.done():
                future.cancel()

    def add_applier(self, applier: Applier) -> None:
        self._appliers.append(applier)

    # -- following the log ------------------------------------------------------

    async def advance_to(self, revision: int) -> None:
        """Return once every event up to ``revision`` has been applied here."""
        if self.position >= revision:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((revision, future))
        self._wake.set()
        await future

    async def committed(self, rows: list[dict[str, Any]]) -> None:
        """Events this process just committed: applied from memory when they follow on.

        If they continue exactly from this hub's position without a gap, nothing
        needs reading back from the table; if another process's events come
        first or in between, the table is read as usual. Either way, return once
        all of them are applied.
        """
        first = self.position + 1
        if rows and all(row["revision"] == first + i for i, row in enumerate(rows)):
            for row in rows:
                self._dispatch(
                    Event(row["revision"], row["kind"], row["subject"], row["payload"], row["ts"], row["actor"])
                )
            self._release_waiters()
            return
        if rows:
            await self.advance_to(rows[-1]["revision"])

    async def _run(self) -> None:
        poll = self._poll_interval if self.store.dialect == "sqlite" else max(self._poll_interval, 1.0)
        loop = asyncio.get_running_loop()
        last_read = loop.time()
        while True:
            woken = False
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for returns normally when the wake-up
            # lands in the same loop turn as a cancellation (CPython gh-86296), and close() then hung.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(poll):
                    await self._wake.wait()
                woken = True
            self._wake.clear()
            if not woken and self.store.write_in_flight and loop.time() - last_read < _MAX_POLL_SKIP_S:
                # This process is committing: its events come from memory (``committed``), which
                # reads the table itself if another process's events come first. A poll now would
                # mostly read back the rows being committed (a bulk upsert's are large). Writes
                # without events never call ``committed``, so polls are put off for a while only.
                continue
            last_read = loop.time()
            if self._listener_lost() and time.monotonic() - self._listen_tried_at >= poll:
                await self._drop_listener()
                await self._listen()  # after a restart: NOTIFY wake-ups again, not just the poll
            try:
                while await self._read_page():
                    pass
            except Exception as exc:  # the store may be briefly unreachable: keep following
                log.warning("events.read_failed", error=repr(exc))
                await asyncio.sleep(poll)

    async def _read_page(self) -> bool:
        """Apply the next page of events after ``position``; whether a full page was read."""
        listener = self._listener
        if listener is not None and not listener.is_closed():
            # PostgreSQL: one prepared statement on the listening connection, one round trip
            # (a pooled read would add a ping, BEGIN and ROLLBACK for this one statement).
            try:
                records = await listener.fetch(_PG_PAGE, self.position, _PAGE)
            except Exception as exc:
                log.warning("events.listener_lost", error=repr(exc))
                await self._drop_listener()
                return True  # read the page again, through the pool
            page = [Event(r[0], r[1], r[2], orjson.loads(r[3]), r[4], r[5]) for r in records]
        else:
            async with self.store.read() as conn:
                rows = (
                    await conn.execute(
                        select(events).where(events.c.revision > self.position).order_by(events.c.revision).limit(_PAGE)
                    )
                ).all()
            page = [Event(int(row.revision), row.kind, row.subject, row.payload, row.ts, row.actor) for row in rows]
        for event in page:
            self._dispatch(event)
        self._release_waiters()
        return len(page) == _PAGE

    def _dispatch(self, event: Event) -> None:
        if event.revision <= self.position:  # already applied (from memory, or an overlapping read)
            return
        for applier in self._appliers:
            try:
                applier(event)
            except Exception as exc:  # one bad applier must not stop the log
                log.error("events.apply_failed", revision=event.revision, kind=event.kind, error=repr(exc))
        self.position = event.revision
        for sub in list(self._subscriptions):
            if sub.overflowed_at is not None or not sub.filter(event):
                continue
            try:
                sub.queue.put_nowait(event)
            except asyncio.QueueFull:
                sub.overflowed_at = event.revision

    def _release_waiters(self) -> None:
        if not self._waiters:
            return
        still: list[tuple[int, asyncio.Future[None]]] = []
        for revision, future in self._waiters:
            if revision <= self.position:
                if not future.done():
                    future.set_result(None)
            else:
                still.append((revision, future))
        self._waiters = still

    # -- watching ---------------------------------------------------------------

    async def oldest(self) -> int | None:
        """The oldest revision the log still keeps (``None``: the log is empty)."""
        async with self.store.read() as conn:
            value = (await conn.execute(select(func.min(events.c.revision)))).scalar()
        return None if value is None else int(value)

    async def _check_kept(self, after: int) -> None:
        """``Pruned`` unless every event after revision ``after`` is still in the log."""
        oldest = await self.oldest()
        if oldest is not None and oldest > after + 1:
            raise Pruned(
                f"events after revision {after} are no longer kept (the log keeps the retention period;"
                f" the oldest kept is {oldest}): read the current state and watch from now",
                field="since",
            )

    async def history(self, since: int, until: int, watch_filter: WatchFilter) -> AsyncIterator[Event]:
        """Events in ``(since, until]`` matching the filter, read from the table.

        ``Pruned`` if part of that range is no longer kept: checked after each
        page, so a page is known complete (pruning only ever moves the oldest
        kept revision forward).
        """
        cursor = since
        while cursor < until:
            query = (
                select(events)
                .where(events.c.revision > cursor, events.c.revision <= until)
                .order_by(events.c.revision)
                .limit(_PAGE)
            )
            if watch_filter.kind_prefix:
                query = query.where(events.c.kind.startswith(watch_filter.kind_prefix, autoescape=True))
            if watch_filter.subject_prefix:
                query = query.where(events.c.subject.startswith(watch_filter.subject_prefix, autoescape=True))
            async with self.store.read() as conn:
                rows = (await conn.execute(query)).all()
            await self._check_kept(cursor)
            if not rows:
                return
            for row in rows:
                event = Event(int(row.revision), row.kind, row.subject, row.payload, row.ts, row.actor)
                if watch_filter(event):  # again in Python: SQLite's LIKE ignores case, the live filter does not
                    yield event
            cursor = int(rows[-1].revision)

    async def watch(self, since: int | None, watch_filter: WatchFilter) -> AsyncIterator[Event]:
        """Replay after ``since`` (``None``: from now), then follow live events."""
        async with contextlib.aclosing(self.watch_batches(since, watch_filter)) as batches:
            async for batch in batches:
                for event in batch:
                    yield event

    async def watch_batches(
        self, since: int | None, watch_filter: WatchFilter, *, most: int = 256
    ) -> AsyncGenerator[list[Event], None]:
        """As ``watch``, in lists of at most ``most``: whatever is already queued for this watcher is
        taken at once, so a burst of writes costs a watcher one write to its connection, not one each."""
        sub = _Subscription(watch_filter, self._watch_queue_size)
        self._subscriptions.add(sub)
        try:
            registered_at = self.position
            if since is not None and since < registered_at:
                page: list[Event] = []
                async for event in self.history(since, registered_at, watch_filter):
                    page.append(event)
                    if len(page) >= most:
                        yield page
                        page = []
                if page:
                    yield page
            while True:
                if sub.overflowed_at is not None and sub.queue.empty():
                    raise ResourceExhausted(
                        f"watcher fell more than {self._watch_queue_size} events behind; "
                        f"resume with since={sub.overflowed_at - 1}"
                    )
                batch = [await sub.queue.get()]
                while len(batch) < most and not sub.queue.empty():
                    batch.append(sub.queue.get_nowait())
                if since is not None:  # a resume point ahead of this replica's log
                    batch = [event for event in batch if event.revision > since]
                if batch:
                    yield batch
        finally:
            self._subscriptions.discard(sub)
