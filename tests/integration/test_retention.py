"""Event log retention on real SQLite and real PostgreSQL: what is pruned, what is kept, what a late watcher hears."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from muster.clock import FakeClock
from muster.errors import Pruned
from muster.events.hub import WatchFilter
from muster.events.retention import prune_events
from muster.store.engine import Tx
from muster.store.schema import events


async def _emit(runtime: Any, count: int) -> None:
    async def op(tx: Tx) -> None:
        for i in range(count):
            tx.emit("test.tick", f"t{i}", {"i": i})

    await runtime.store.write(op)


async def _revisions(runtime: Any) -> list[int]:
    async with runtime.store.read() as conn:
        return list((await conn.execute(select(events.c.revision).order_by(events.c.revision))).scalars())


async def test_prune_deletes_only_events_older_than_retention(clocked: tuple[Any, FakeClock]) -> None:
    """Events older than the retention go, in batches, oldest first; younger ones stay in order."""
    runtime, clock = clocked
    await _emit(runtime, 25)
    old = await _revisions(runtime)
    clock.advance(7200)
    await _emit(runtime, 5)
    young = (await _revisions(runtime))[len(old) :]

    assert 25 == await prune_events(runtime.store, timedelta(hours=1), batch=10)

    assert young == await _revisions(runtime)


async def test_prune_never_deletes_the_newest_event_so_revisions_keep_growing(
    clocked: tuple[Any, FakeClock],
) -> None:
    """With every event past retention, the newest stays, and the next event gets a higher revision."""
    runtime, clock = clocked
    await _emit(runtime, 3)
    head = (await _revisions(runtime))[-1]
    clock.advance(7200)

    await prune_events(runtime.store, timedelta(hours=1))

    assert [head] == await _revisions(runtime)
    await _emit(runtime, 1)
    assert [head, head + 1] == await _revisions(runtime)


async def test_watch_from_a_pruned_revision_fails_with_pruned(clocked: tuple[Any, FakeClock]) -> None:
    """Resuming after a pruned revision is refused with ``pruned`` naming the oldest kept; a kept one replays."""
    runtime, clock = clocked
    await _emit(runtime, 4)
    first = (await _revisions(runtime))[0]
    clock.advance(7200)
    await _emit(runtime, 2)
    await prune_events(runtime.store, timedelta(hours=1))
    kept = await _revisions(runtime)

    with pytest.raises(Pruned) as caught:
        await anext(runtime.hub.watch(first, WatchFilter()))
    assert caught.value.field == "since" and f"oldest kept is {kept[0]}" in caught.value.message

    watch = runtime.hub.watch(kept[0] - 1, WatchFilter())
    try:
        assert kept[0] == (await anext(watch)).revision
    finally:
        await watch.aclose()
