"""The event hub while this process is writing: no read-back of its own rows, nothing missed from others."""

from __future__ import annotations

import asyncio
from typing import Any

from muster.events.hub import Event, EventHub
from muster.store.engine import Store, Tx


async def test_hub_applies_other_writers_events_that_land_during_a_local_write(db_url: str) -> None:
    """Polls read nothing back while our write is in flight; another writer's event is still applied in order.

    On PostgreSQL the other process commits while ours is open (the gap is read when ours commits);
    SQLite makes it wait for our write lock.
    """
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
        await asyncio.sleep(0.1)  # ten poll intervals with our write still in flight
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
