"""The bus publisher against a real JetStream, on both engines: what retention pruned before a sink published it
is skipped with an alert and counted; a process that lost the lease publishes nothing and moves no cursor."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from muster.catalog import store as q
from muster.events.bus import BUS_DROPPED, BusPublisher, NatsSink, cursor_key
from muster.events.retention import prune_events
from muster.store.engine import Tx
from muster.store.leader import Leadership
from tests.brokers import NatsConsumerThread, PrivateNats, nats_server_binary, require_nats
from tests.conftest import settings_for


@pytest.fixture
def nats() -> Iterator[PrivateNats]:
    if nats_server_binary() is None:
        require_nats()
    server = PrivateNats().start()
    try:
        yield server
    finally:
        server.destroy()


async def _emit(runtime: Any, count: int) -> None:
    async def op(tx: Tx) -> None:
        for i in range(count):
            tx.emit("test.tick", f"t{i}", {"i": i})

    await runtime.store.write(op)


async def _cursor(runtime: Any) -> int | None:
    async with runtime.store.read() as conn:
        value = await q.get_state(conn, cursor_key("nats"))
    return None if value is None else int(value)


async def _until(probe: Any) -> Any:
    """Poll ``probe`` (state another task or process changes) for up to 10 s; its first true answer."""
    async with asyncio.timeout(10):
        for _ in range(400):
            if value := await probe():
                return value
            await asyncio.sleep(0.05)
    raise AssertionError("not within 10 s")


async def test_events_pruned_before_they_were_published_raise_an_alert(
    runtime: Any, nats: PrivateNats, tmp_path: Path, db_url: str
) -> None:
    """A sink whose cursor is behind the oldest kept event skips the gap: one bus_events_dropped alert with the
    count, muster_bus_dropped_total grows by it, and publishing goes on from the oldest kept event."""
    leadership = Leadership(runtime.store, lease_s=5)
    assert await leadership.try_acquire()
    sink = NatsSink(settings_for(db_url, tmp_path, nats_url=nats.url))
    await _emit(runtime, 1)
    cursor = runtime.hub.position

    async def op(tx: Tx) -> None:
        await q.put_state(tx.conn, cursor_key("nats"), cursor, tx.insert)

    await runtime.store.write(op)
    await _emit(runtime, 6)
    await prune_events(runtime.store, timedelta(0))  # all but the newest
    oldest = await runtime.hub.oldest()
    assert oldest == runtime.hub.position
    before = BUS_DROPPED.labels(sink="nats")._value.get()
    publisher = BusPublisher(runtime.hub, leadership, [sink], timeout=3)
    consumer = NatsConsumerThread(nats.url).start()
    publisher.start()
    try:
        alerts = await _until(lambda: _dropped_alerts(runtime))
        await _until(lambda: _published_beyond(runtime, oldest))
        await _until(lambda: _received(consumer, oldest))
    finally:
        await publisher.close()
        await leadership.release()
        await asyncio.to_thread(consumer.stop)
    assert len(alerts) == 1
    alert = alerts[0]
    assert (alert.service_id, alert.action) == ("bus:nats", "skipped")
    assert alert.details == {"sink": "nats", "after_revision": cursor, "oldest_kept": oldest,
                             "dropped": oldest - cursor - 1}
    assert BUS_DROPPED.labels(sink="nats")._value.get() - before == oldest - cursor - 1
    received = consumer.received.revisions()
    assert oldest in received and not received & set(range(cursor + 1, oldest))


async def _received(consumer: NatsConsumerThread, revision: int) -> bool:
    return revision in consumer.received.revisions()


async def _dropped_alerts(runtime: Any) -> list[Any]:
    return [a for a in await runtime.catalog.alerts(limit=10) if a.alert_type == "bus_events_dropped"]


async def _published_beyond(runtime: Any, revision: int) -> bool:
    cursor = await _cursor(runtime)
    return cursor is not None and cursor >= revision


async def test_a_process_without_the_lease_publishes_nothing(runtime: Any, nats: PrivateNats, tmp_path: Path,
                                                             db_url: str) -> None:
    """Only the lease holder publishes: a follower creates no cursor and sends nothing; once it takes the lease
    it starts at the log's head (--bus-start now) and publishes what follows."""
    leadership = Leadership(runtime.store, lease_s=5)  # never acquired yet
    sink = NatsSink(settings_for(db_url, tmp_path, nats_url=nats.url))
    publisher = BusPublisher(runtime.hub, leadership, [sink], timeout=3)
    consumer = NatsConsumerThread(nats.url).start()
    publisher.start()
    try:
        await _emit(runtime, 3)
        await asyncio.sleep(0.5)
        assert await _cursor(runtime) is None
        assert await leadership.try_acquire()
        head = await _until(_cursor_after(runtime))
        await _emit(runtime, 2)
        await _until(lambda: _published_beyond(runtime, head + 2))
    finally:
        await publisher.close()
        await leadership.release()
        await asyncio.to_thread(consumer.stop)
    assert head == runtime.hub.position - 2
    assert consumer.received.revisions() == {head + 1, head + 2}


def _cursor_after(runtime: Any) -> Any:
    async def probe() -> int | None:
        return await _cursor(runtime)

    return probe
