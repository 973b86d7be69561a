"""Re-registration by instance_id on real SQLite and real PostgreSQL: one row, one transaction, races, owners."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import create_async_engine

from muster.catalog.model import (
    DeregisterInput,
    DiscoverQuery,
    HeartbeatInput,
    RegisterInput,
    registered_record,
)
from muster.catalog.monitor import HeartbeatMonitor
from muster.catalog.schema import services
from muster.clock import FakeClock
from muster.errors import PermissionDenied
from muster.events.hub import WatchFilter
from muster.identity.caller import acting_as
from muster.identity.model import Principal
from muster.server import build_runtime, close_runtime
from muster.store.schema import events
from muster.validation import parse
from tests.conftest import settings_for
from tests.integration.conftest import leading

ALICE = Principal("alice", frozenset({"catalog:write"}))
BOB = Principal("bob", frozenset({"catalog:write"}))
ADMIN = Principal("root", frozenset({"admin"}))


def _reg(instance_id: str | None = "10.0.0.5:8000", name: str = "ranker", **kw: Any) -> RegisterInput:
    data: dict[str, Any] = {"name": name, "type": "model", "url": "http://10.0.0.5:8000", "caps": ["rank"], **kw}
    if instance_id is not None:
        data["instance_id"] = instance_id
    return parse(RegisterInput, data)


async def _rows(runtime: Any, name: str = "ranker") -> list[Any]:
    async with runtime.store.read() as conn:
        return list(await conn.execute(select(services).where(services.c.name == name)))


async def _registered_events(runtime: Any) -> list[Any]:
    head = await runtime.hub.head()
    return [e async for e in runtime.hub.history(0, head, WatchFilter(kind_prefix="catalog.registered"))]


async def test_registering_again_updates_the_instance_in_place(runtime: Any) -> None:
    """Same name and instance_id: the same service_id, one row, the new url/caps/labels/role, in store and index."""
    first = await runtime.catalog.register(_reg())
    again = await runtime.catalog.register(
        _reg(url="http://10.0.0.9:9000", caps=["embed"], labels={"zone": "eu"}, role="canary", ttl_s=30)
    )
    assert (first.service_id, first.registered_at) == (again.service_id, again.registered_at)
    rows = await _rows(runtime)
    assert [(first.service_id, "http://10.0.0.9:9000", ["embed"], {"zone": "eu"}, "canary", 30, "10.0.0.5:8000")] == [
        (r.service_id, r.url, r.caps, r.labels, r.role, r.ttl_s, r.instance_id) for r in rows
    ]
    found = runtime.catalog.discover(parse(DiscoverQuery, {"name": "ranker"}))
    assert [(first.service_id, "http://10.0.0.9:9000")] == [(r.service_id, r.url) for r in found]


async def test_without_an_instance_id_each_registration_is_a_new_instance(runtime: Any) -> None:
    """Today's behaviour stands: two registrations of one name and url are two instances, instance_id NULL."""
    one = await runtime.catalog.register(_reg(None))
    two = await runtime.catalog.register(_reg(None))
    assert one.service_id != two.service_id
    assert [None, None] == [r.instance_id for r in await _rows(runtime)]


async def test_an_instance_id_is_unique_per_name_not_globally(runtime: Any) -> None:
    """The same instance_id under two names is two instances; each re-registers on its own."""
    ranker = await runtime.catalog.register(_reg("host-1:8000"))
    embedder = await runtime.catalog.register(_reg("host-1:8000", name="embedder"))
    assert ranker.service_id != embedder.service_id
    assert ranker.service_id == (await runtime.catalog.register(_reg("host-1:8000"))).service_id


async def test_each_registration_is_one_event_marked_new_or_reregistered(runtime: Any) -> None:
    """catalog.registered both times, with the whole service; reregistered is false, then true."""
    sid = (await runtime.catalog.register(_reg())).service_id
    await runtime.catalog.register(_reg(url="http://10.0.0.9:9000"))
    assert [(sid, False, "http://10.0.0.5:8000"), (sid, True, "http://10.0.0.9:9000")] == [
        (e.subject, e.payload["reregistered"], e.payload["service"]["url"]) for e in await _registered_events(runtime)
    ]
    assert "10.0.0.5:8000" == (await _registered_events(runtime))[-1].payload["service"]["instance_id"]


async def test_a_reregistration_resets_liveness_of_a_down_instance(clocked: tuple[Any, FakeClock]) -> None:
    """Marked down by the monitor, registered again: ok at once, beaten now, metrics gone, not judged again."""
    runtime, clock = clocked
    monitor = HeartbeatMonitor(runtime.catalog, await leading(runtime.store), interval=3600)
    sid = (await runtime.catalog.register(_reg(heartbeat_interval_s=60, ttl_s=90))).service_id
    await runtime.catalog.heartbeat(parse(HeartbeatInput, {"service_id": sid, "load": 0.7}))
    clock.advance(125)
    assert ["marked_down"] == [v.action for _, v in await monitor.sweep()]
    await runtime.hub.advance_to(await runtime.hub.head())
    assert runtime.catalog.discover(parse(DiscoverQuery, {"name": "ranker"})) == []
    await runtime.catalog.register(_reg(heartbeat_interval_s=60, ttl_s=90))
    record = await runtime.catalog.get(sid)
    assert ("ok", clock.now(), None) == (record.status, record.last_heartbeat_ts, record.load)
    assert [sid] == [r.service_id for r in runtime.catalog.discover(parse(DiscoverQuery, {"name": "ranker"}))]
    assert await monitor.sweep() == []
    (row,) = await _rows(runtime)
    assert ("ok", clock.now(), None) == (row.status, row.last_heartbeat_ts, row.load)


async def test_buffered_beats_of_the_previous_life_do_not_survive_it(runtime: Any) -> None:
    """A beat still waiting for its flush is dropped by the re-registration: the row keeps the fresh liveness."""
    sid = (await runtime.catalog.register(_reg())).service_id
    beat = await runtime.catalog.heartbeat(parse(HeartbeatInput, {"service_id": sid, "load": 0.9}))
    await runtime.catalog.register(_reg())
    assert 0 == await runtime.catalog.flush()
    (row,) = await _rows(runtime)
    assert row.load is None and row.last_heartbeat_ts > beat.received_at
    assert (await runtime.catalog.get(sid)).load is None


async def test_a_deregistered_instance_registers_anew(runtime: Any) -> None:
    """After a deregistration the instance_id is free: a new service_id, one row."""
    first = (await runtime.catalog.register(_reg())).service_id
    await runtime.catalog.deregister(DeregisterInput(service_id=first))
    second = (await runtime.catalog.register(_reg())).service_id
    assert first != second
    assert [second] == [r.service_id for r in await _rows(runtime)]


async def test_many_concurrent_registrations_of_one_instance_make_one_row(runtime: Any) -> None:
    """200 tasks registering one instance at once: all succeed, all get one service_id, one row, 200 events."""
    replies = await asyncio.gather(
        *(runtime.catalog.register(_reg(url=f"http://10.0.0.5:{8000 + i}")) for i in range(200))
    )
    assert 1 == len({r.service_id for r in replies})
    assert 1 == len(await _rows(runtime))
    flags = [e.payload["reregistered"] for e in await _registered_events(runtime)]
    assert [False] + [True] * 199 == flags


async def test_two_processes_racing_on_one_instance_make_one_row(db_url: str, tmp_path: Path) -> None:
    """Two runtimes on one database (two doors, two replicas) registering one instance at once: one row,
    one service_id, and both indexes list exactly that instance with the last registration's url."""
    first = await build_runtime(settings_for(db_url, tmp_path))
    second = await build_runtime(settings_for(db_url, tmp_path / "second"))
    try:
        for round_ in range(5):
            iid = f"race-{round_}"
            replies = await asyncio.gather(*(
                runtime.catalog.register(_reg(iid, url=f"http://10.0.0.{n}:{i + 1}"))
                for i in range(40) for n, runtime in enumerate((first, second), 1)
            ))
            assert 1 == len({r.service_id for r in replies}), round_
        rows = await _rows(first)
        assert 5 == len(rows) == len({r.instance_id for r in rows})
        head = max(await first.hub.head(), await second.hub.head())
        await asyncio.wait_for(asyncio.gather(first.hub.advance_to(head), second.hub.advance_to(head)), 10)
        stored = {r.service_id: r.url for r in rows}
        for runtime in (first, second):
            found = runtime.catalog.discover(parse(DiscoverQuery, {"name": "ranker"}))
            assert stored == {r.service_id: r.url for r in found}
    finally:
        await close_runtime(first)
        await close_runtime(second)


async def test_the_other_process_shows_one_instance_after_a_reregistration(db_url: str, tmp_path: Path) -> None:
    """Registered through one process, registered again through the other: each index holds one, updated."""
    first = await build_runtime(settings_for(db_url, tmp_path))
    second = await build_runtime(settings_for(db_url, tmp_path / "second"))
    try:
        sid = (await first.catalog.register(_reg())).service_id
        await asyncio.wait_for(second.hub.advance_to(await first.hub.head()), 10)
        assert sid == (await second.catalog.register(_reg(url="http://10.0.0.9:9000"))).service_id
        await asyncio.wait_for(first.hub.advance_to(await second.hub.head()), 10)
        for runtime in (first, second):
            found = runtime.catalog.discover(parse(DiscoverQuery, {"name": "ranker"}))
            assert [(sid, "http://10.0.0.9:9000")] == [(r.service_id, r.url) for r in found]
    finally:
        await close_runtime(first)
        await close_runtime(second)


async def test_an_insert_that_loses_the_race_updates_the_winners_row(runtime: Any, db_url: str) -> None:
    """Another writer inserts the instance while this registration is under way: no error, its row is updated."""
    winner = registered_record(_reg(url="http://winner:1"), service_id=str(uuid.uuid4()), owner="anonymous",
                               now=runtime.catalog.clock.now())
    values = {**winner.to_dict(), "registered_at": winner.registered_at, "last_heartbeat_ts": None}
    other = create_async_engine(db_url)
    try:
        async with other.connect() as conn:
            await conn.execute(insert(services).values(values))  # holds the row (PostgreSQL) or the write lock
            registering = asyncio.create_task(runtime.catalog.register(_reg(url="http://loser:2")))
            await asyncio.sleep(0.3)
            assert not registering.done()  # it waits for the other transaction
            await conn.commit()
        reply = await asyncio.wait_for(registering, 10)
    finally:
        await other.dispose()
    assert winner.service_id == reply.service_id
    assert [(winner.service_id, "http://loser:2")] == [(r.service_id, r.url) for r in await _rows(runtime)]
    assert [True] == [e.payload["reregistered"] for e in await _registered_events(runtime)]


async def test_the_unique_index_refuses_a_second_row_whatever_the_writer(runtime: Any) -> None:
    """The rule lives in the database: a plain second insert of one (name, instance_id) fails there."""
    from sqlalchemy.exc import IntegrityError

    now = runtime.catalog.clock.now()

    def row(sid: str) -> dict[str, Any]:
        record = registered_record(_reg(), service_id=sid, owner="anonymous", now=now)
        return {**record.to_dict(), "registered_at": now, "last_heartbeat_ts": None}

    async def op(tx: Any) -> None:
        await tx.conn.execute(insert(services).values(row("one")))
        await tx.conn.execute(insert(services).values(row("two")))

    with pytest.raises(IntegrityError):
        await runtime.store.write(op)
    async with runtime.store.read() as conn:
        assert 0 == (await conn.execute(select(func.count()).select_from(services))).scalar_one()


async def test_only_the_owner_or_an_admin_may_register_an_instance_again(runtime: Any) -> None:
    """Bob re-registering Alice's instance is PermissionDenied and changes nothing; an admin may, Alice stays owner."""
    with acting_as(ALICE):
        sid = (await runtime.catalog.register(_reg())).service_id
    with acting_as(BOB), pytest.raises(PermissionDenied) as caught:
        await runtime.catalog.register(_reg(url="http://evil:1"))
    assert "alice" in caught.value.message
    assert [("http://10.0.0.5:8000", "alice")] == [(r.url, r.owner) for r in await _rows(runtime)]
    with acting_as(ADMIN):
        assert sid == (await runtime.catalog.register(_reg(url="http://10.0.0.9:9000"))).service_id
    assert [("http://10.0.0.9:9000", "alice")] == [(r.url, r.owner) for r in await _rows(runtime)]
    with acting_as(ALICE):
        assert sid == (await runtime.catalog.register(_reg())).service_id
    actors = [e.actor for e in await _registered_events(runtime)]
    assert ["alice", "root", "alice"] == actors


async def test_an_instance_registered_while_auth_was_off_may_be_taken_over(runtime: Any) -> None:
    """An anonymous instance belongs to nobody in particular: any writer may re-register it."""
    sid = (await runtime.catalog.register(_reg())).service_id
    with acting_as(BOB):
        assert sid == (await runtime.catalog.register(_reg())).service_id


async def test_reregistration_keeps_time_from_the_store_clock(clocked: tuple[Any, FakeClock]) -> None:
    """registered_at stays the first registration's; the re-registration is the last beat, on the server's clock."""
    runtime, clock = clocked
    first = await runtime.catalog.register(_reg())
    clock.advance(30)
    again = await runtime.catalog.register(_reg())
    record = await runtime.catalog.get(first.service_id)
    assert (first.registered_at, first.registered_at + timedelta(seconds=30)) == (
        again.registered_at, record.last_heartbeat_ts
    )


async def test_events_and_rows_commit_together(runtime: Any) -> None:
    """Two registrations of one instance are one row and two events for its id, nothing else."""
    sid = (await runtime.catalog.register(_reg())).service_id
    await runtime.catalog.register(_reg())
    async with runtime.store.read() as conn:
        kinds = [r.kind for r in await conn.execute(select(events.c.kind).where(events.c.subject == sid))]
    assert (["catalog.registered"] * 2, 1) == (kinds, len(await _rows(runtime)))
