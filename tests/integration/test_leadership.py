"""The monitor's leadership is a lease with an epoch, on real SQLite and PostgreSQL: it expires, exactly
one contender takes it over, and a stale leader's writes are refused by the database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from muster.catalog.model import RegisterInput
from muster.catalog.monitor import HeartbeatMonitor
from muster.clock import FakeClock
from muster.store.engine import Store
from muster.store.leader import Leadership, LeadershipLost
from muster.validation import parse


@pytest.fixture
async def stores(db_url: str) -> AsyncIterator[tuple[FakeClock, list[Store]]]:
    """Eight stores on one database, each with its own connections, all reading one fake clock."""
    clock = FakeClock()
    opened = [Store(db_url, clock=clock) for _ in range(8)]
    try:
        yield clock, opened
    finally:
        for store in opened:
            await store.close()


async def test_the_lease_is_held_by_one_and_taken_over_only_after_it_expires(
    stores: tuple[FakeClock, list[Store]],
) -> None:
    """A holds; B cannot take it before the lease expires; after, B takes it at epoch 2 and A is fenced."""
    clock, (one, two, *_) = stores
    a, b = Leadership(one, lease_s=4), Leadership(two, lease_s=4)
    assert await a.try_acquire() and a.epoch == 1
    assert not await b.try_acquire()
    clock.advance(3.9)
    assert not await b.try_acquire()
    assert await a.try_acquire()  # renewed: four more seconds from now
    clock.advance(3.9)
    assert not await b.try_acquire()
    clock.advance(0.2)  # A stopped renewing (paused, cut off, dead)
    assert await b.try_acquire() and b.epoch == 2
    with pytest.raises(LeadershipLost):
        await one.write(a.fence)
    assert not a.held and not await a.try_acquire()


async def test_contenders_for_an_expired_lease_elect_exactly_one(stores: tuple[FakeClock, list[Store]]) -> None:
    """Ten rounds: the leader dies, the seven others race for its expired lease, exactly one wins, epoch + 1."""
    clock, opened = stores
    contenders = [Leadership(store, lease_s=2) for store in opened]
    leader: Leadership | None = None
    epochs: list[int] = []
    for _ in range(10):
        clock.advance(5)  # the leader stopped renewing
        racing = [c for c in contenders if c is not leader]
        won = await asyncio.gather(*(c.try_acquire() for c in racing))
        assert won.count(True) == 1, won
        leader = racing[won.index(True)]
        assert leader.epoch is not None
        epochs.append(leader.epoch)
    assert epochs == list(range(epochs[0], epochs[0] + 10))


async def test_a_stale_leader_cannot_mark_down_or_alert(runtime: Any, db_url: str) -> None:
    """A leader paused past its lease wakes to find another leader: its sweep is refused, nothing is written."""
    clock = FakeClock()
    mine, theirs = Store(db_url, clock=clock), Store(db_url, clock=clock)
    try:
        stale = Leadership(mine, lease_s=4)
        assert await stale.try_acquire()
        runtime.catalog.store.clock = clock
        runtime.catalog.clock = clock
        await runtime.catalog.register(
            parse(RegisterInput, {"name": "silent", "type": "tool", "url": "http://s:1", "heartbeat_interval_s": 1,
                                  "ttl_s": 2})
        )
        clock.advance(10)
        assert await Leadership(theirs, lease_s=4).try_acquire()  # the stale one's lease had expired
        stale._valid_until = float("inf")  # it still believes it leads, as a process waking from SIGSTOP does
        monitor = HeartbeatMonitor(runtime.catalog, stale, interval=3600)
        with pytest.raises(LeadershipLost):
            await monitor.sweep()
        assert await runtime.catalog.alerts(limit=10) == []
        assert [r.status for r in runtime.catalog.index.by_id.values()] == ["ok"]
    finally:
        await mine.close()
        await theirs.close()


async def test_a_released_lease_is_taken_at_once(stores: tuple[FakeClock, list[Store]]) -> None:
    """A graceful stop expires the lease: another process takes it on its next try, with no wait."""
    _clock, (one, two, *_) = stores
    a, b = Leadership(one), Leadership(two)
    assert await a.try_acquire()
    await a.release()
    assert not a.held
    assert await b.try_acquire() and b.epoch == 2


async def test_holding_again_after_a_lapse_starts_a_new_watch(stores: tuple[FakeClock, list[Store]]) -> None:
    """A leader that could not renew for a whole lease (the store was away) and renews afterwards, nobody
    else having taken over, keeps its epoch but begins a new watch (its acquired_at moves on)."""
    clock, (one, *_) = stores
    leader = Leadership(one, lease_s=4)
    assert await leader.try_acquire()
    first = leader.acquired_at
    clock.advance(1)
    assert await leader.try_acquire() and leader.acquired_at == first  # an ordinary renewal
    leader._valid_until = 0.0  # a whole lease without a renewal, as with the store frozen
    clock.advance(5)
    assert await leader.try_acquire()
    assert leader.epoch == 1 and leader.acquired_at is not None and first is not None and leader.acquired_at > first
