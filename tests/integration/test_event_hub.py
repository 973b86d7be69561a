"""The event hub while this process is writing: no read-back of its own rows, nothing missed from others."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from muster.events import hub as hub_module
from muster.events.hub import Event, EventHub
from muster.store.engine import Store, Tx


async def test_hub_applies_other_writers_events_that_land_during_a_local_write(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Polls read nothing back while our write is in flight; another writer's event is still applied in order.

    SQLite: no poll reads during our write (the other writer waits for our write lock). PostgreSQL: the
    other process commits while ours is open, its NOTIFY wakes a read, and ours follows it in order.
    """
    # Polls are put off for at most this long; a slow machine must not turn the test into a timing one.
    monkeypatch.setattr(hub_module, "_MAX_POLL_SKIP_S", 3600.0)
    here, there = Store(db_url), Store(db_url)
    hub = EventHub(here, poll_interval=0.01)
    applied: list[Event] = []
    hub.add_applier(applied.append)
    reads = 0
    read_page = hub._read_page

    async def counting_read_page() -> bool:
        nonlocal reads
        reads += 1
        return await read_page()

    hub._read_page = counting_read_page  # type: ignore[method-assign]
    await hub.start()
    release = asyncio.Event()

    async def slow_local(tx: Tx) -> None:
        await release.wait()
        tx.emit("test.local", "here", {})

    async def remote(tx: Tx) -> None:
        tx.emit("test.remote", "there", {})

    try:
        local = asyncio.create_task(here.write(slow_local))
        await asyncio.sleep(0.05)
        if here.dialect == "postgresql":  # SQLite's BEGIN IMMEDIATE makes the other writer wait for ours
            await there.write(remote)
        reads_while_writing = reads
        await asyncio.sleep(0.1)  # ten SQLite poll intervals with our write still in flight
        if here.dialect == "sqlite":  # PostgreSQL's NOTIFY of the other commit rightly wakes a read
            assert reads_while_writing == reads
        release.set()
        await local
        if here.dialect == "sqlite":
            await there.write(remote)
        await hub.advance_to(await hub.head())
        kinds: list[Any] = [e.kind for e in applied]
        expected = ["test.remote", "test.local"] if here.dialect == "postgresql" else ["test.local", "test.remote"]
        assert expected == kinds
        assert [e.revision for e in applied] == sorted(e.revision for e in applied)
    finally:
        release.set()
        await hub.close()
        await here.close()
        await there.close()


async def test_close_stops_the_hub_even_when_a_wake_up_lands_with_the_cancellation(db_url: str) -> None:
    """A wake-up (a NOTIFY, a waiter) in the same loop turn as close() must not keep the hub running.

    Python 3.11's ``asyncio.wait_for`` returns normally when the awaited thing finishes in the same
    turn as the cancellation (CPython gh-86296): the hub then kept polling and close() never returned.
    """
    store = Store(db_url)
    hub = EventHub(store, poll_interval=3600)
    await hub.start()
    try:
        await asyncio.sleep(0.05)  # the hub now waits for a wake-up or its next poll
        hub._wake.set()  # what a NOTIFY or advance_to() does
        async with asyncio.timeout(10) as deadline:
            await hub.close()
        assert not deadline.expired(), "close() waited for a hub that kept running"
    finally:
        await store.close()


async def test_a_watcher_that_fell_behind_takes_what_is_queued_in_one_batch(db_url: str) -> None:
    """Events queued while a watcher was busy come to it as one list, in revision order, none twice; the
    replay after ``since`` comes in pages of at most ``most``."""
    from muster.events.hub import WatchFilter

    store = Store(db_url)
    hub = EventHub(store, poll_interval=0.01)
    await hub.start()

    async def emit(tx: Tx) -> None:
        tx.emit("test.burst", "burst", {})

    try:
        await store.write(emit)
        await hub.advance_to(await hub.head())
        batches = hub.watch_batches(None, WatchFilter.requested("test.", ""), most=256)
        first = asyncio.ensure_future(anext(batches))
        await asyncio.sleep(0.05)  # the subscription is in place
        await store.write(emit)
        assert len(await asyncio.wait_for(first, 10)) == 1
        for _ in range(40):  # the watcher is not reading: these queue up
            await store.write(emit)
        await hub.advance_to(await hub.head())
        burst = await asyncio.wait_for(anext(batches), 10)
        revisions = [event.revision for event in burst]
        assert len(revisions) == 40 and revisions == sorted(set(revisions))
        await batches.aclose()
        replay = hub.watch_batches(0, WatchFilter.requested("test.", ""), most=16)
        pages = [await asyncio.wait_for(anext(replay), 10) for _ in range(3)]
        assert [len(page) for page in pages] == [16, 16, 10]
        await replay.aclose()
    finally:
        await hub.close()
        await store.close()
