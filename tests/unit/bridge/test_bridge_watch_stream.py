"""Multiplexed watch streams: many watches, one bounded queue, one item per change (no I/O)."""

from __future__ import annotations

import pytest

from muster.bridge.session import SessionStore
from muster.bridge.values import TypedValue
from muster.bridge.watch import StreamItem, WatchStream
from muster.errors import Conflict, Invalid, NotFound, ResourceExhausted


def _drain(stream: WatchStream) -> list[StreamItem]:
    """Everything queued so far (the queue is a deque: read it without awaiting)."""
    items = list(stream._items)
    stream._items.clear()
    stream._queued.clear()
    return items


def _summary(items: list[StreamItem]) -> list[tuple[list[str], str | None, object]]:
    return [(item.watch_ids, item.event.update_source if item.event else None, item.event and item.event.variable.value)
            for item in items]  # fmt: skip


@pytest.fixture
def stream(store: SessionStore) -> WatchStream:
    for session in ("a", "b"):
        store.initialize(session)
        store.set_variable(session, "x", TypedValue("integer", 0))
        store.set_variable(session, "y", TypedValue("integer", 0))
    return WatchStream(store, limit=store.watch_queue_size)


def test_one_change_seen_by_many_watches_is_one_item(store: SessionStore, stream: WatchStream) -> None:
    """A change that three watches of the stream see is queued once, naming all three in start order."""
    for watch_id in ("w1", "w2", "w3"):
        stream.add(watch_id, "a", ["x"])
    _drain(stream)
    store.set_variable("a", "x", TypedValue("integer", 7))
    assert [(["w1", "w2", "w3"], "ELIXIR", 7)] == _summary(_drain(stream))


def test_each_watch_starts_with_its_own_current_values(stream: WatchStream) -> None:
    """Starting a watch queues the current values of its variables for that watch alone."""
    stream.add("w1", "a", ["x", "y"])
    stream.add("w2", "b", ["y"])
    assert [(["w1"], "INITIAL", 0), (["w1"], "INITIAL", 0), (["w2"], "INITIAL", 0)] == _summary(_drain(stream))


def test_watches_see_only_their_session_and_variables(store: SessionStore, stream: WatchStream) -> None:
    """A watch of a.x sees neither a.y nor b.x; a watch of all of b sees every b variable."""
    stream.add("ax", "a", ["x"])
    stream.add("b-all", "b", [])
    _drain(stream)
    store.set_variable("a", "y", TypedValue("integer", 1))
    store.set_variable("b", "x", TypedValue("integer", 2))
    store.set_variable("a", "x", TypedValue("integer", 3))
    assert [(["b-all"], "ELIXIR", 2), (["ax"], "ELIXIR", 3)] == _summary(_drain(stream))


def test_a_watch_that_cannot_start_ends_at_once_and_others_go_on(store: SessionStore, stream: WatchStream) -> None:
    """Unknown session or variable, a duplicate or an empty watch id end that watch with its reason only."""
    stream.add("ok", "a", ["x"])
    _drain(stream)
    stream.add("ghost-session", "nope", ["x"])
    stream.add("ghost-variable", "a", ["nope"])
    stream.add("ok", "b", ["x"])
    stream.add("", "a", ["x"])
    assert [(["ghost-session"], NotFound), (["ghost-variable"], NotFound), (["ok"], Conflict), ([""], Invalid)] == [
        (item.watch_ids, type(item.error)) for item in _drain(stream) if item.ended
    ]
    store.set_variable("a", "x", TypedValue("integer", 5))
    assert [(["ok"], "ELIXIR", 5)] == _summary(_drain(stream))


def test_cancel_ends_the_watch_and_unregisters_it(store: SessionStore, stream: WatchStream) -> None:
    """A cancelled watch gets one cancelled item, then nothing; its session forgets the watcher."""
    stream.add("w1", "a", ["x"])
    stream.add("w2", "a", ["x"])
    _drain(stream)
    stream.cancel("w1")
    stream.cancel("w1")  # a second cancel is ignored
    store.set_variable("a", "x", TypedValue("integer", 9))
    items = _drain(stream)
    assert [(["w1"], True), (["w2"], False)] == [(item.watch_ids, item.cancelled) for item in items]
    assert (1, 1) == (len(store.get("a").watchers), len(stream))


def test_session_cleanup_ends_its_watches_in_one_item(store: SessionStore, stream: WatchStream) -> None:
    """Cleaning up a session ends all its watches of the stream (status OK) in one item; other sessions go on."""
    stream.add("a1", "a", ["x"])
    stream.add("a2", "a", ["y"])
    stream.add("b1", "b", ["x"])
    _drain(stream)
    store.cleanup("a")
    store.set_variable("b", "x", TypedValue("integer", 4))
    items = _drain(stream)
    assert [(["a1", "a2"], True, None), (["b1"], False, None)] == [
        (item.watch_ids, item.ended, item.error) for item in items
    ]
    assert 1 == len(stream)


async def test_a_stream_that_falls_behind_is_ended(store: SessionStore, stream: WatchStream) -> None:
    """A stream more than its limit of messages behind stops queueing and ends with ResourceExhausted."""
    stream.add("w", "a", ["x"])
    _drain(stream)
    for value in range(stream.limit + 3):
        store.set_variable("a", "x", TypedValue("integer", value))
    assert (True, stream.limit) == (stream.overflowed, len(stream._items))
    with pytest.raises(ResourceExhausted, match="fell 4 messages behind"):
        await stream.next_item()
    stream.close()
    assert 0 == len(store.get("a").watchers)


async def test_after_adding_is_done_the_stream_ends_with_its_last_watch(store: SessionStore) -> None:
    """Once the client says no more watches, the stream ends when its last watch has ended and been sent."""
    store.initialize("s")
    stream = WatchStream(store, limit=4)
    stream.add("w", "s", [])
    stream.adding_done()
    store.cleanup("s")
    item = await stream.next_item()
    assert (item is not None and item.ended, await stream.next_item()) == (True, None)


async def test_close_stops_every_watch_after_what_is_queued(store: SessionStore, stream: WatchStream) -> None:
    """Closing the stream unregisters its watchers everywhere; what was queued is still read, then the end."""
    stream.add("a", "a", ["x"])
    stream.add("b", "b", ["x"])
    stream.close()
    store.set_variable("a", "x", TypedValue("integer", 1))  # no longer watched
    queued = [await stream.next_item(), await stream.next_item()]
    assert [["a"], ["b"]] == [item.watch_ids for item in queued if item is not None]
    assert (0, 0, None) == (len(store.get("a").watchers), len(store.get("b").watchers), await stream.next_item())
