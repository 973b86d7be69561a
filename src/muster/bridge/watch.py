"""Multiplexed watching: many watches over one stream, one message per change.

``WatchVariables`` gives every watch a gRPC stream of its own, and grpc.aio
pays for every stream message (a write syscall, a completion, an event-loop
wake-up: ~40 µs of worker CPU here), so one change seen by 100 watches costs
100 messages. A ``WatchStream`` carries all the watches a host opened over one
stream: a change is queued once, with the ids of the watches that see it, so
it costs one message per stream however many watches see it.

Each watch is a ``Watcher`` in its session like any other, so it sees exactly
what ``WatchVariables`` would show it. The stream's queue is bounded like a
watcher's: a stream that falls ``limit`` messages behind is marked overflowed
and ended with ``ResourceExhausted``, never buffered without limit. The
current values at the start of a watch are queued whatever the limit (a
session holds a bounded number of variables).
"""

from __future__ import annotations

import asyncio
import functools
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import cast

from muster.bridge.session import SessionStore, VariableEvent, Watcher
from muster.errors import Conflict, Invalid, MusterError, ResourceExhausted

__all__ = ["StreamItem", "WatchStream"]


@dataclass(slots=True)
class StreamItem:
    """One message of a multiplexed stream: a change for some watches, or their end.

    An ended item says why: ``error`` when the watch could not start, ``cancelled``
    when the client cancelled it, neither when its session ended.
    """

    watch_ids: list[str]
    event: VariableEvent | None = None
    ended: bool = False
    cancelled: bool = False
    error: MusterError | None = field(default=None)


class _StreamWatcher(Watcher):
    """A session's watcher that forwards to its stream instead of queueing for itself."""

    def __init__(
        self, stream: WatchStream, watch_id: str, session_id: str, variable_ids: frozenset[str] | None, limit: int
    ) -> None:
        super().__init__(session_id, variable_ids, limit)
        self.stream = stream
        self.watch_id = watch_id

    def offer(self, event: VariableEvent) -> None:
        self.stream._offer(self.watch_id, event)

    def deliver_initial(self, event: VariableEvent) -> None:
        self.stream._push(StreamItem([self.watch_id], event))

    def end(self) -> None:
        self.stream._session_ended(self.watch_id)


class WatchStream:
    """The watches of one multiplexed stream and its bounded queue of messages."""

    def __init__(self, store: SessionStore, *, limit: int) -> None:
        self.limit = limit
        self.overflowed = False
        self._store = store
        self._watches: dict[str, _StreamWatcher] = {}
        self._items: deque[StreamItem] = deque()
        self._queued: dict[int, StreamItem] = {}  # by id(event), while that event's item waits in the queue
        self._wakeup = asyncio.Event()
        self._adding_done = False
        self._closed = False

    def __len__(self) -> int:
        """Watches open on this stream."""
        return len(self._watches)

    def add(self, watch_id: str, session_id: str, refs: Iterable[str]) -> None:
        """Start a watch (current values first); one that cannot start ends at once, saying why."""
        try:
            if not watch_id:
                raise Invalid("watch_id", "must not be empty")
            if watch_id in self._watches:
                raise Conflict(f"watch {watch_id!r} is already open on this stream", field="watch_id")
            make = functools.partial(_StreamWatcher, self, watch_id)
            self._watches[watch_id] = cast(_StreamWatcher, self._store.watch(session_id, refs, make))
        except MusterError as exc:
            self._push(StreamItem([watch_id], ended=True, error=exc))

    def cancel(self, watch_id: str) -> None:
        """Stop a watch; it ends as cancelled. An unknown (or already ended) watch is ignored."""
        watcher = self._watches.pop(watch_id, None)
        if watcher is not None:
            self._store.unwatch(watcher)
            self._push(StreamItem([watch_id], ended=True, cancelled=True))

    def adding_done(self) -> None:
        """No more watches will be added: the stream ends once its last watch has."""
        self._adding_done = True
        self._wakeup.set()

    def close(self) -> None:
        """Stop every watch; ``next_item`` answers what is already queued, then ``None``."""
        for watcher in self._watches.values():
            self._store.unwatch(watcher)
        self._watches.clear()
        self._closed = True
        self._wakeup.set()

    async def next_item(self) -> StreamItem | None:
        """The next message to send; ``None`` once the stream is over, ``ResourceExhausted`` if it fell behind."""
        while True:
            if self.overflowed:
                raise ResourceExhausted(
                    f"watch stream fell {self.limit} messages behind; read faster or watch less, then watch again"
                )
            if self._items:
                item = self._items.popleft()
                if item.event is not None and self._queued.get(id(item.event)) is item:
                    del self._queued[id(item.event)]
                return item
            if self._closed or (self._adding_done and not self._watches):
                return None
            self._wakeup.clear()
            await self._wakeup.wait()

    # --- called by the stream's watchers -----------------------------------------------------

    def _offer(self, watch_id: str, event: VariableEvent) -> None:
        if self.overflowed:
            return
        item = self._queued.get(id(event))
        if item is not None and item.event is event:  # another watch of this stream sees the same change
            item.watch_ids.append(watch_id)
            return
        if len(self._items) >= self.limit:
            self.overflowed = True
            self._wakeup.set()
            return
        item = StreamItem([watch_id], event)
        self._queued[id(event)] = item  # the item holds the event, so its id is not reused meanwhile
        self._push(item)

    def _session_ended(self, watch_id: str) -> None:
        if self._watches.pop(watch_id, None) is None:
            return
        last = self._items[-1] if self._items else None
        if last is not None and last.ended and not last.cancelled and last.error is None:
            last.watch_ids.append(watch_id)  # a cleanup ends all its watches: one message
        else:
            self._push(StreamItem([watch_id], ended=True))

    def _push(self, item: StreamItem) -> None:
        self._items.append(item)
        self._wakeup.set()
