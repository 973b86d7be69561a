"""The catalog service on real SQLite and real PostgreSQL: durability, events, monitor, concurrency."""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from muster.catalog.model import DeregisterInput, DiscoverQuery, HeartbeatInput, PromoteInput, RegisterInput
from muster.catalog.monitor import HeartbeatMonitor
from muster.catalog.preservation import SelfPreservation
from muster.catalog.schema import beat_flushes, services
from muster.catalog.service import CatalogService
from muster.clock import FakeClock
from muster.errors import Invalid, NotFound
from muster.events.hub import WatchFilter
from muster.events.sinks import AlertFileSink
from muster.server import build_runtime, close_runtime
from muster.store.engine import Store
from muster.store.schema import events
from muster.validation import parse
from tests.conftest import settings_for
from tests.integration.conftest import leading


def _reg(name: str = "test-service", **kw: Any) -> RegisterInput:
    data = {"name": name, "type": "model", "role": "experimental", "url": "http://127.0.0.1:8888", "caps": ["infer"]}
    data.update(kw)
    return parse(RegisterInput, data)


async def test_register_is_durable_and_emits_one_event(runtime: Any) -> None:
    """A registration is a row and exactly one catalog.registered event, committed together."""
    reply = await runtime.catalog.register(_reg())
    async with runtime.store.read() as conn:
        rows = (await conn.execute(select(func.count()).select_from(services))).scalar_one()
        kinds = [r.kind for r in await conn.execute(select(events.c.kind).where(events.c.subject == reply.service_id))]
    assert (rows, kinds) == (1, ["catalog.registered"])
    assert (await runtime.catalog.get(reply.service_id)).name == "test-service"


async def test_heartbeat_for_unknown_or_deregistered_service_is_not_found(runtime: Any) -> None:
    """The 404 that tells a client to register again: unknown ids and deregistered ones alike."""
    with pytest.raises(NotFound):
        await runtime.catalog.heartbeat(parse(HeartbeatInput, {"service_id": "nope"}))
    reply = await runtime.catalog.register(_reg())
    await runtime.catalog.deregister(parse(DeregisterInput, {"service_id": reply.service_id}))
    with pytest.raises(NotFound):
        await runtime.catalog.heartbeat(parse(HeartbeatInput, {"service_id": reply.service_id}))


async def test_heartbeat_soft_state_is_flushed_in_batches(runtime: Any) -> None:
    """Beats update memory at once and reach the store on flush, the latest per service."""
    reply = await runtime.catalog.register(_reg())
    for load in (0.9, 0.5, 0.25):
        await runtime.catalog.heartbeat(parse(HeartbeatInput, {"service_id": reply.service_id, "load": load}))
    assert runtime.catalog.index.get(reply.service_id).load == 0.25
    assert await runtime.catalog.flush() == 1
    async with runtime.store.read() as conn:
        row = (await conn.execute(select(services).where(services.c.service_id == reply.service_id))).one()
    beat_at = runtime.catalog.index.get(reply.service_id).last_heartbeat_ts
    assert (0.25, beat_at) == (row.load, row.last_heartbeat_ts)  # the exact instant survives the round trip


async def test_degraded_status_is_a_durable_event(runtime: Any) -> None:
    """ok → degraded is written at once, with a catalog.status_changed event."""
    reply = await runtime.catalog.register(_reg())
    await runtime.catalog.heartbeat(parse(HeartbeatInput, {"service_id": reply.service_id, "status": "degraded"}))
    async with runtime.store.read() as conn:
        status = (await conn.execute(select(services.c.status))).scalar_one()
        kinds = [r.kind for r in await conn.execute(select(events.c.kind).order_by(events.c.revision))]
    assert (status, kinds) == ("degraded", ["catalog.registered", "catalog.status_changed"])


async def test_monitor_worked_example_with_fake_clock(clocked: tuple[Any, FakeClock], tmp_path: Path) -> None:
    """Interval 60 / TTL 90: down at 120 s with alert, restored by a beat; 180 s of silence then reports it
    down and deregisters it in one sweep (never deregistered without service_down first)."""
    runtime, clock = clocked
    monitor = HeartbeatMonitor(runtime.catalog, await leading(runtime.store), interval=3600)
    reply = await runtime.catalog.register(_reg(heartbeat_interval_s=60, ttl_s=90))
    sid = reply.service_id

    clock.advance(119)
    assert await monitor.sweep() == []
    clock.advance(1)
    acted = await monitor.sweep()
    assert [(v.action, v.missed_beats) for _, v in acted] == [("marked_down", 2)]
    await runtime.hub.advance_to(await runtime.hub.head())
    assert runtime.catalog.index.get(sid).status == "down"
    assert runtime.catalog.discover(parse(DiscoverQuery, {})) == []

    await runtime.catalog.heartbeat(parse(HeartbeatInput, {"service_id": sid}))
    assert runtime.catalog.index.get(sid).status == "ok"

    clock.advance(180)
    acted = await monitor.sweep()
    assert [(v.action, v.missed_beats) for _, v in acted] == [("marked_down", 3), ("deregistered", 3)]
    with pytest.raises(NotFound):
        await runtime.catalog.heartbeat(parse(HeartbeatInput, {"service_id": sid}))

    alerts = await runtime.catalog.alerts(limit=10)
    assert [a.alert_type for a in alerts] == [
        "service_deregistered", "service_down", "service_recovered", "service_down"
    ]
    assert [a.action for a in alerts] == ["deregistered", "marked_down", "restored", "marked_down"]
    stats = await runtime.catalog.stats()
    assert (0, clock.now()) == (stats.total_services, stats.last_check)

    sink = AlertFileSink(runtime.hub, tmp_path / "events")
    assert await sink.drain() == 4
    assert await sink.drain() == 0
    day = clock.now().strftime("%Y%m%d")
    lines = [json.loads(x) for x in (tmp_path / "events" / f"heartbeat_alerts_{day}.jsonl").read_text().splitlines()]
    assert [x["alert_type"] for x in lines] == [
        "service_down", "service_recovered", "service_down", "service_deregistered"
    ]
    assert {"alert_type", "service_id", "service_name", "missed_beats", "last_seen", "action", "ts"} <= set(lines[0])
    assert [x["alert_id"] for x in lines] == [a.alert_id for a in reversed(alerts)]  # as GET /alerts: repeats are known


async def test_a_service_found_past_both_thresholds_is_reported_down_then_deregistered(
    clocked: tuple[Any, FakeClock],
) -> None:
    """TTL ≥ 3 intervals: one sweep writes service_down then service_deregistered, with their events, in order."""
    runtime, clock = clocked
    monitor = HeartbeatMonitor(runtime.catalog, await leading(runtime.store), interval=3600)
    sid = (await runtime.catalog.register(_reg(heartbeat_interval_s=10, ttl_s=30))).service_id
    head = await runtime.hub.head()
    clock.advance(31)
    acted = await monitor.sweep()
    assert [(v.action, v.missed_beats) for _, v in acted] == [("marked_down", 3), ("deregistered", 3)]
    alerts = await runtime.catalog.alerts(limit=10)
    assert [a.alert_type for a in reversed(alerts)] == ["service_down", "service_deregistered"]
    async with runtime.store.read() as conn:
        kinds = await conn.execute(select(events.c.kind).where(events.c.revision > head).order_by(events.c.revision))
        assert list(kinds.scalars()) == [
            "catalog.status_changed", "catalog.alert", "catalog.deregistered", "catalog.alert"
        ]
    with pytest.raises(NotFound):
        await runtime.catalog.get(sid)


async def test_a_new_leader_grants_one_ttl_before_counting_misses(clocked: tuple[Any, FakeClock]) -> None:
    """Silence from before the monitor began watching is not judged: a service gets a full TTL from then."""
    runtime, clock = clocked
    monitor = HeartbeatMonitor(runtime.catalog, await leading(runtime.store), interval=3600)
    await runtime.catalog.register(_reg(heartbeat_interval_s=1, ttl_s=2))
    clock.advance(600)  # nobody watched: a restart, or a leader change
    monitor.watched_since = clock.now()
    assert await monitor.sweep() == []
    clock.advance(2)
    assert [v.action for _, v in await monitor.sweep()] == ["marked_down"]


async def test_self_preservation_evicts_nobody_while_most_of_the_fleet_is_silent(
    clocked: tuple[Any, FakeClock],
) -> None:
    """20 services, all silent at once: no service_down, catalog.self_preservation 'entered', /stats says so and
    discovery still lists them; 15 beat again: 'left', and only the 5 still silent are marked down."""
    runtime, clock = clocked
    monitor = HeartbeatMonitor(runtime.catalog, await leading(runtime.store), interval=3600,
                               preservation=SelfPreservation(0.5, 10))
    ids = [(await runtime.catalog.register(_reg(f"fleet-{i}", heartbeat_interval_s=1, ttl_s=2))).service_id
           for i in range(20)]
    clock.advance(2.5)
    assert await monitor.sweep() == []
    await runtime.hub.advance_to(await runtime.hub.head())
    assert (await runtime.catalog.stats()).self_preservation
    assert len(runtime.catalog.discover(parse(DiscoverQuery, {"limit": 100}))) == 20
    for sid in ids[:15]:
        await runtime.catalog.heartbeat(parse(HeartbeatInput, {"service_id": sid}))
    acted = await monitor.sweep()
    assert sorted(r.service_id for r, v in acted if v.action == "marked_down") == sorted(ids[15:])
    await runtime.hub.advance_to(await runtime.hub.head())
    assert not (await runtime.catalog.stats()).self_preservation
    async with runtime.store.read() as conn:
        rows = await conn.execute(select(events.c.payload).where(events.c.kind == "catalog.self_preservation"))
        assert [p["state"] for p in rows.scalars()] == ["entered", "left"]


async def test_monitor_leaves_a_service_that_beat_meanwhile(clocked: tuple[Any, FakeClock]) -> None:
    """A beat flushed after the sweep read the catalog wins: the service is not marked down."""
    runtime, clock = clocked
    monitor = HeartbeatMonitor(runtime.catalog, await leading(runtime.store), interval=3600)
    sid = (await runtime.catalog.register(_reg(heartbeat_interval_s=60, ttl_s=90))).service_id
    clock.advance(125)
    await runtime.catalog.heartbeat(parse(HeartbeatInput, {"service_id": sid}))
    assert await monitor.sweep() == []  # the sweep flushes first, so it sees the beat


async def test_a_process_whose_flushes_lag_delays_the_verdict_instead_of_a_false_down(
    clocked: tuple[Any, FakeClock],
) -> None:
    """A beat another process acknowledged but has not flushed yet holds the monitor back (its flush mark),
    until that process has been silent for a leader lease; a graceful close removes its mark."""
    runtime, clock = clocked
    monitor = HeartbeatMonitor(runtime.catalog, await leading(runtime.store), interval=3600)
    sid = (await runtime.catalog.register(_reg(heartbeat_interval_s=1, ttl_s=2))).service_id
    other = CatalogService(runtime.store, runtime.hub, clock)  # a second door process, flushing by hand
    await other.load()
    await other.flush()
    clock.advance(1.5)
    await other.heartbeat(parse(HeartbeatInput, {"service_id": sid}))  # acknowledged, still in memory
    clock.advance(1.5)
    assert await monitor.horizon(clock.now()) < clock.now()
    assert await monitor.sweep() == []  # 3 s since the store last heard of it, but a flush is owed
    await other.flush()
    assert await monitor.sweep() == []  # the beat landed: 1.5 s old
    clock.advance(monitor.leadership.lease_s + 1)  # the other process falls silent, as a paused one does
    assert [v.action for _, v in await monitor.sweep()] == ["marked_down", "deregistered"]  # past the TTL too
    await other.close()
    async with runtime.store.read() as conn:
        writers = set((await conn.execute(select(beat_flushes.c.writer))).scalars())
    assert other.writer_id not in writers and runtime.catalog.writer_id in writers


async def test_two_processes_flushing_the_same_services_never_deadlock(runtime: Any, db_url: str) -> None:
    """Two processes whose buffered beats cover the same services, taken in opposite orders, flush at the
    same time again and again: the rows are locked in one order, so PostgreSQL reports no deadlock."""
    from sqlalchemy import text

    ids = [(await runtime.catalog.register(_reg(f"flush-{i}"))).service_id for i in range(120)]
    other_store = Store(db_url)  # another process's own connections and writer
    other = CatalogService(other_store, runtime.hub, runtime.catalog.clock)
    await other.load()

    async def deadlocks() -> int:
        if runtime.store.dialect != "postgresql":
            return 0
        async with runtime.store.read() as conn:
            query = text("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
            return int((await conn.execute(query)).scalar_one())

    before = await deadlocks()
    for _ in range(15):
        for sid in ids:
            await runtime.catalog.heartbeat(parse(HeartbeatInput, {"service_id": sid}))
        for sid in reversed(ids):
            await other.heartbeat(parse(HeartbeatInput, {"service_id": sid}))
        await asyncio.gather(runtime.catalog.flush(), other.flush())
    await other_store.close()  # a backend that ends reports its counters
    await asyncio.sleep(1.5)  # and the others within a second
    assert await deadlocks() == before


async def test_concurrent_registrations_never_fail(runtime: Any) -> None:
    """300 concurrent registrations all commit (no 'database is locked'), each with its event."""
    replies = await asyncio.gather(*(runtime.catalog.register(_reg(f"svc-{i}")) for i in range(300)))
    assert len({r.service_id for r in replies}) == 300
    async with runtime.store.read() as conn:
        count = (await conn.execute(select(func.count()).select_from(services))).scalar_one()
        revisions = [r.revision for r in await conn.execute(select(events.c.revision).order_by(events.c.revision))]
    assert count == 300
    assert revisions == sorted(set(revisions)) and len(revisions) == 300


async def test_two_processes_share_one_store_through_the_event_log(db_url: str, tmp_path: Path) -> None:
    """Two runtimes on one database (as two door processes): writes in one appear in the other's index."""
    first = await build_runtime(settings_for(db_url, tmp_path))
    second = await build_runtime(settings_for(db_url, tmp_path))
    try:
        a, b = await asyncio.gather(
            asyncio.gather(*(first.catalog.register(_reg(f"a-{i}")) for i in range(50))),
            asyncio.gather(*(second.catalog.register(_reg(f"b-{i}")) for i in range(50))),
        )
        head = await first.hub.head()
        await asyncio.wait_for(asyncio.gather(first.hub.advance_to(head), second.hub.advance_to(head)), 10)
        assert 100 == len(first.catalog.index) == len(second.catalog.index)
        await second.catalog.promote(parse(PromoteInput, {"service_id": a[0].service_id, "role": "production"}))
        await asyncio.wait_for(first.hub.advance_to(await second.hub.head()), 10)
        assert first.catalog.index.get(a[0].service_id).role == "production"
        # A heartbeat reaching the other process right after registration is not a false 404.
        fresh = await first.catalog.register(_reg("fresh"))
        ack = await second.catalog.heartbeat(parse(HeartbeatInput, {"service_id": fresh.service_id}))
        assert fresh.service_id == ack.service_id and b[0].service_id in second.catalog.index.by_id
    finally:
        await close_runtime(first)
        await close_runtime(second)


async def test_watch_replays_then_follows_without_gaps(runtime: Any) -> None:
    """A watcher from revision 0 sees history then live events; resuming from the last revision repeats nothing."""
    first = await runtime.catalog.register(_reg("one"))
    await runtime.catalog.register(_reg("two"))
    seen: list[int] = []

    async def consume(since: int, count: int) -> None:
        async for event in runtime.hub.watch(since, WatchFilter(kind_prefix="catalog.")):
            seen.append(event.revision)
            if len(seen) >= count:
                return

    task = asyncio.create_task(consume(0, 4))
    await asyncio.sleep(0.05)
    await runtime.catalog.promote(parse(PromoteInput, {"service_id": first.service_id, "role": "canary"}))
    await runtime.catalog.deregister(parse(DeregisterInput, {"service_id": first.service_id}))
    await asyncio.wait_for(task, 10)
    assert seen == [1, 2, 3, 4]
    resumed: list[str] = []
    async for event in runtime.hub.watch(2, WatchFilter()):
        resumed.append(event.kind)
        if len(resumed) == 2:
            break
    assert resumed == ["catalog.promoted", "catalog.deregistered"]


async def test_restart_reloads_the_index(db_url: str, tmp_path: Path) -> None:
    """A new process sees everything the previous one committed."""
    first = await build_runtime(settings_for(db_url, tmp_path))
    sid = (await first.catalog.register(_reg(labels={"zone": "eu"}))).service_id
    await close_runtime(first)
    second = await build_runtime(settings_for(db_url, tmp_path))
    try:
        assert (await second.catalog.get(sid)).labels == {"zone": "eu"}
    finally:
        await close_runtime(second)


async def test_two_processes_deregistering_one_service_succeed_once(runtime: Any, db_url: str, tmp_path: Path) -> None:
    """Concurrent deregisters from two processes: one succeeds, the other is NotFound, one event."""
    other = await build_runtime(settings_for(db_url, tmp_path / "other"))
    try:
        for i in range(10):
            sid = (await runtime.catalog.register(_reg(f"dereg-{i}"))).service_id
            await other.hub.advance_to(await other.hub.head())
            outcomes = await asyncio.gather(
                runtime.catalog.deregister(DeregisterInput(service_id=sid)),
                other.catalog.deregister(DeregisterInput(service_id=sid)),
                return_exceptions=True,
            )
            assert sorted(type(o).__name__ for o in outcomes) == ["NotFound", "ServiceRecord"], outcomes
        async with runtime.store.read() as conn:
            query = select(func.count()).select_from(events).where(events.c.kind == "catalog.deregistered")
            assert (await conn.execute(query)).scalar_one() == 10
    finally:
        await close_runtime(other)


async def test_values_the_database_cannot_hold_are_invalid_not_a_server_error(runtime: Any) -> None:
    """A NUL in an id that reaches the store, or a number past int32 in a beat, is Invalid (422)."""
    with pytest.raises((Invalid, NotFound)):
        await runtime.catalog.get("a\x00b")
    with pytest.raises(Invalid):
        parse(HeartbeatInput, {"service_id": "s", "queue_depth": 3_000_000_000})
    with pytest.raises(Invalid):
        parse(RegisterInput, {"name": "n", "type": "tool", "url": "http://a\x00b", "labels": {"k": "v\x00"}})


async def test_replay_matches_kind_prefixes_case_sensitively_and_live_events_respect_since(runtime: Any) -> None:
    """Replay and live watch agree on case; a resume point ahead of this process's log skips what it has seen."""
    await runtime.catalog.register(_reg("case-a"))
    head = await runtime.hub.head()
    assert [e async for e in runtime.hub.history(0, head, WatchFilter(kind_prefix="CATALOG."))] == []
    ahead = await runtime.hub.head() + 1  # the revision the next event will take
    seen: list[int] = []

    async def follow() -> None:
        async for event in runtime.hub.watch(ahead, WatchFilter(kind_prefix="catalog.")):
            seen.append(event.revision)
            return

    follower = asyncio.create_task(follow())
    await asyncio.sleep(0.05)
    await runtime.catalog.register(_reg("case-b"))  # revision == ahead: not after it
    await runtime.catalog.register(_reg("case-c"))
    await asyncio.wait_for(follower, 10)
    assert seen == [ahead + 1]


async def test_every_data_dir_gets_the_whole_alert_log_once(runtime: Any, tmp_path: Path) -> None:
    """Two replicas' sinks (two data dirs) each write every alert once, whoever raised it; two servers
    sharing one data dir write its file from one process only; a restarted sink resumes without repeats."""
    for _ in range(3):
        await runtime.store.write(_alert_event)
    await runtime.hub.advance_to(await runtime.hub.head())
    one, two = tmp_path / "one" / "events", tmp_path / "two" / "events"
    sinks = [AlertFileSink(runtime.hub, one, interval=0.02), AlertFileSink(runtime.hub, one, interval=0.02),
             AlertFileSink(runtime.hub, two, interval=0.02)]
    for sink in sinks:
        sink.start()
    try:
        for _ in range(200):
            if all(len(_lines(d)) == 3 for d in (one, two)):
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)  # a second writer of "one" would have repeated its lines by now
        assert [len(_lines(d)) for d in (one, two)] == [3, 3]
        assert [sink.writing for sink in sinks] == [True, False, True]
    finally:
        for sink in sinks:
            await sink.close()
    await runtime.store.write(_alert_event)
    await runtime.hub.advance_to(await runtime.hub.head())
    again = AlertFileSink(runtime.hub, one)
    assert await again.drain() == 1 and await again.drain() == 0
    assert len(_lines(one)) == 4 and len({line["alert_id"] for line in _lines(one)}) == 4


def _lines(directory: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for path in sorted(directory.glob("*.jsonl")) for line in path.read_text().splitlines()]


_ALERT_IDS = itertools.count(1)


async def _alert_event(tx: Any) -> None:
    tx.emit(
        "catalog.alert",
        "s",
        {"alert_id": next(_ALERT_IDS), "alert_type": "service_down", "service_id": "s", "service_name": "n",
         "missed_beats": 2, "last_seen": None, "action": "marked_down", "ts": "2026-11-29T00:00:00.000Z"},
    )


async def test_a_status_beat_right_behind_another_is_judged_on_the_status_being_written(runtime: Any) -> None:
    """"degraded" then "ok" at once: the service ends ok (the second beat is not taken for a plain one)."""
    sid = (await runtime.catalog.register(_reg("flapper"))).service_id
    for _ in range(10):
        await asyncio.gather(
            runtime.catalog.heartbeat(parse(HeartbeatInput, {"service_id": sid, "status": "degraded"})),
            runtime.catalog.heartbeat(parse(HeartbeatInput, {"service_id": sid, "status": "ok"})),
        )
        await runtime.hub.advance_to(await runtime.hub.head())
        async with runtime.store.read() as conn:
            stored = (await conn.execute(select(services.c.status).where(services.c.service_id == sid))).scalar_one()
        assert (stored, (await runtime.catalog.get(sid)).status) == ("ok", "ok")


async def test_an_unknown_service_read_says_no_such_service(runtime: Any) -> None:
    """GET /services/<unknown> says "no such service"; the "register again" advice is for heartbeats only."""
    from muster.errors import NotFound

    with pytest.raises(NotFound) as read:
        await runtime.catalog.get("no-such-id")
    assert read.value.message == "no such service: no-such-id" and read.value.field == "service_id"
    with pytest.raises(NotFound) as beat:
        await runtime.catalog.heartbeat(parse(HeartbeatInput, {"service_id": "no-such-id"}))
    assert "register again" in beat.value.message
