"""The leases service on SQLite and PostgreSQL: lifecycle, expiry by the server's clock, plans, watch."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from sqlalchemy import select

from muster.clock import FakeClock
from muster.errors import Conflict, Expired, FailedPrecondition, NotFound
from muster.events.hub import EventHub, WatchFilter
from muster.leases import service as service_module
from muster.leases.model import (
    ClaimInput,
    ExtendInput,
    LookupInput,
    ReleaseInput,
    ReserveInput,
    ReservePlanInput,
)
from muster.leases.schema import leases
from muster.leases.service import LeasesService
from muster.store.engine import Store
from muster.validation import parse

SHA = "9fceb02d0ae598e95dc970b74767f19372d61af8"
Symbol = Callable[..., ReserveInput]


def key(data: ReserveInput) -> LookupInput:
    return parse(LookupInput, {"repo": data.repo, "branch": data.branch, "fq_name": data.fq_name})


async def test_reserve_then_lookup_reports_reserved(srm: LeasesService, symbol: Symbol) -> None:
    """A fresh symbol is granted and Lookup reports the same lease as reserved."""
    lease = await srm.reserve(symbol(ttl_sec=60))
    found = await srm.lookup(key(symbol()))
    assert ("reserved", lease.lease_id, "demo.py") == (found.status, found.lease_id, found.file_path)


async def test_second_reserve_of_a_live_symbol_conflicts(srm: LeasesService, symbol: Symbol) -> None:
    """While a reservation is live, reserving the symbol again is a Conflict naming the holder."""
    lease = await srm.reserve(symbol())
    with pytest.raises(Conflict) as raised:
        await srm.reserve(symbol())
    assert f"lease {lease.lease_id}" in raised.value.message


async def test_expired_reservation_is_free_at_once_with_a_higher_lease_id(
    srm: LeasesService, symbol: Symbol, clock: FakeClock
) -> None:
    """After the deadline the symbol can be reserved again, and the new lease_id is higher."""
    first = await srm.reserve(symbol(ttl_sec=30))
    clock.advance(30)
    assert (await srm.lookup(key(symbol()))).status == "expired"
    second = await srm.reserve(symbol())
    assert second.lease_id > first.lease_id
    async with srm.store.read() as conn:
        statuses = dict((await conn.execute(select(leases.c.lease_id, leases.c.status))).all())
    assert {first.lease_id: "expired", second.lease_id: "reserved"} == statuses


async def test_claim_and_extend_after_expiry_fail_lease_expired(
    srm: LeasesService, symbol: Symbol, clock: FakeClock
) -> None:
    """Claim and Extend of an expired reservation raise Expired ("lease expired")."""
    lease = await srm.reserve(symbol(ttl_sec=10))
    clock.advance(11)
    with pytest.raises(Expired, match=r"^lease expired"):
        await srm.claim(ClaimInput(lease_id=lease.lease_id, commit_sha=SHA))
    with pytest.raises(Expired, match=r"^lease expired"):
        await srm.extend(ExtendInput(lease_id=lease.lease_id, ttl_sec=60))


async def test_claim_makes_the_symbol_active_for_good(srm: LeasesService, symbol: Symbol, clock: FakeClock) -> None:
    """A claimed symbol is active, never expires, and blocks new reservations."""
    lease = await srm.reserve(symbol(ttl_sec=10))
    claimed = await srm.claim(ClaimInput(lease_id=lease.lease_id, commit_sha=SHA))
    again = await srm.claim(ClaimInput(lease_id=lease.lease_id, commit_sha=SHA))
    clock.advance(100_000)
    found = await srm.lookup(key(symbol()))
    assert (claimed.status, again.status, found.status, found.commit_sha) == ("active", "active", "active", SHA)
    with pytest.raises(Conflict):
        await srm.reserve(symbol())
    with pytest.raises(Conflict):
        await srm.claim(ClaimInput(lease_id=lease.lease_id, commit_sha="e83c5163316f89bfbde7d9ab"))


async def test_extend_keeps_a_reservation_alive(srm: LeasesService, symbol: Symbol, clock: FakeClock) -> None:
    """Extend moves the deadline so the lease survives past its first one."""
    lease = await srm.reserve(symbol(ttl_sec=10))
    clock.advance(8)
    await srm.extend(ExtendInput(lease_id=lease.lease_id, ttl_sec=10))
    clock.advance(8)
    assert (await srm.lookup(key(symbol()))).status == "reserved"
    with pytest.raises(Conflict):
        await srm.reserve(symbol())


async def test_release_frees_the_symbol_and_is_idempotent(srm: LeasesService, symbol: Symbol) -> None:
    """Release ends the reservation (twice is fine) and the next reserve gets a higher id."""
    lease = await srm.reserve(symbol())
    first = await srm.release(ReleaseInput(lease_id=lease.lease_id))
    second = await srm.release(ReleaseInput(lease_id=lease.lease_id))
    assert (first.status, second.status) == ("released", "released")
    assert (await srm.lookup(key(symbol()))).status == "released"
    assert (await srm.reserve(symbol())).lease_id > lease.lease_id
    with pytest.raises(FailedPrecondition):
        await srm.claim(ClaimInput(lease_id=lease.lease_id, commit_sha=SHA))


async def test_release_of_an_active_symbol_deprecates_it(srm: LeasesService, symbol: Symbol) -> None:
    """Releasing a claimed symbol marks it deprecated and frees the name."""
    lease = await srm.reserve(symbol())
    await srm.claim(ClaimInput(lease_id=lease.lease_id, commit_sha=SHA))
    assert (await srm.release(ReleaseInput(lease_id=lease.lease_id))).status == "deprecated"
    assert (await srm.reserve(symbol())).status == "reserved"


async def test_unknown_lease_and_symbol_are_not_found(srm: LeasesService, symbol: Symbol) -> None:
    """Operations on a lease id that never existed, and Lookup of a never-reserved symbol, are NotFound."""
    with pytest.raises(NotFound):
        await srm.claim(ClaimInput(lease_id=424242, commit_sha=SHA))
    with pytest.raises(NotFound):
        await srm.lookup(key(symbol("never.reserved")))


async def test_lookup_reads_through_to_the_store_for_symbols_it_has_not_seen(
    srm: LeasesService, symbol: Symbol, db_url: str, clock: FakeClock
) -> None:
    """A lease granted by another process is found even before this process's index hears of it."""
    other_store = Store(db_url, clock=clock)
    other = LeasesService(other_store, EventHub(other_store), clock)
    try:
        lease = await other.reserve(symbol("elsewhere.func"))
    finally:
        await other_store.close()
    assert lease.lease_id == (await srm.lookup(key(symbol("elsewhere.func")))).lease_id


async def test_plan_is_all_or_nothing(srm: LeasesService, symbol: Symbol) -> None:
    """A plan with one held symbol reserves nothing and names the held one; a free plan reserves all."""
    held = await srm.reserve(symbol("b"))
    names = ["a", "b", "c"]
    plan = parse(
        ReservePlanInput,
        {"plan_id": "P1", "symbols": [symbol(n).model_dump(exclude={"plan_id", "ttl_sec"}) for n in names]},
    )
    with pytest.raises(Conflict) as raised:
        await srm.reserve_plan(plan)
    assert "demo/main/b" in raised.value.message
    for name in ("a", "c"):
        with pytest.raises(NotFound):
            await srm.lookup(key(symbol(name)))
    await srm.release(ReleaseInput(lease_id=held.lease_id))
    granted = await srm.reserve_plan(plan)
    assert (names, {"reserved"}) == ([x.fq_name for x in granted], {x.status for x in granted})
    assert [x.lease_id for x in granted] == [x.lease_id for x in await srm.get_plan("P1")]


async def test_release_plan_frees_reservations_and_keeps_claimed_symbols(srm: LeasesService, symbol: Symbol) -> None:
    """ReleasePlan releases the plan's reservations; a claimed symbol of the plan stays active."""
    one = await srm.reserve(symbol("one", plan_id="P2"))
    two = await srm.reserve(symbol("two", plan_id="P2"))
    await srm.claim(ClaimInput(lease_id=two.lease_id, commit_sha=SHA))
    outcome = await srm.release_plan("P2")
    assert (1, {one.lease_id: "released", two.lease_id: "active"}) == (
        outcome.released,
        {x.lease_id: x.status for x in outcome.leases},
    )
    assert (await srm.release_plan("P2")).released == 0
    with pytest.raises(NotFound):
        await srm.get_plan("nope")


async def test_watch_follows_one_repo_branch(srm: LeasesService, symbol: Symbol) -> None:
    """Watch on demo/main replays and follows that branch's transitions only, in order."""
    other = await srm.reserve(symbol("x", branch="dev"))
    lease = await srm.reserve(symbol("x"))
    await srm.claim(ClaimInput(lease_id=lease.lease_id, commit_sha=SHA))
    stream = srm.watch(repo="demo", branch="main", since=0)
    seen = [await anext(stream), await anext(stream)]
    await srm.release(ReleaseInput(lease_id=lease.lease_id))
    seen.append(await asyncio.wait_for(anext(stream), 10))
    await stream.aclose()  # type: ignore[attr-defined]
    assert [e.kind for e in seen] == ["leases.reserved", "leases.claimed", "leases.deprecated"]
    assert {lease.lease_id} == {e.payload["lease"]["lease_id"] for e in seen}
    assert other.lease_id not in {e.payload["lease"]["lease_id"] for e in seen}


async def test_sweep_records_expiries_as_events(srm: LeasesService, symbol: Symbol, clock: FakeClock) -> None:
    """The sweeper flips overdue reservations to expired and emits leases.expired for each."""
    leases_ = [await srm.reserve(symbol(f"s{i}", ttl_sec=5)) for i in range(3)]
    keep = await srm.reserve(symbol("keep", ttl_sec=500))
    clock.advance(6)
    assert await srm.sweep_expired() == 3
    assert await srm.sweep_expired() == 0
    expired = WatchFilter(kind_prefix="leases.expired")
    history = [e async for e in srm.hub.history(0, srm.hub.position, expired)]
    assert [x.lease_id for x in leases_] == [e.payload["lease"]["lease_id"] for e in history]
    assert (await srm.lookup(key(symbol("keep")))).status == "reserved" and keep.lease_id


async def test_two_reserves_of_an_overdue_symbol_in_one_group_store_what_the_winner_was_told(
    srm: LeasesService, symbol: Symbol, clock: FakeClock
) -> None:
    """Racing for a symbol whose reservation is overdue: the winner's reply, the row and lookup agree."""
    await srm.reserve(symbol(ttl_sec=1))
    clock.advance(5)  # overdue, and no sweep has flipped the row yet
    first = symbol(kind="function", file_path="a.py", plan_id="PA", ttl_sec=60)
    second = symbol(kind="class", file_path="b.py", plan_id="PB", ttl_sec=86_400)
    outcomes = await asyncio.gather(srm.reserve(first), srm.reserve(second), return_exceptions=True)
    won = [o for o in outcomes if not isinstance(o, BaseException)]
    assert len(won) == 1 and sum(isinstance(o, Conflict) for o in outcomes) == 1
    async with srm.store.read() as conn:
        row = (await conn.execute(select(leases).where(leases.c.status == "reserved"))).one()
    seen = await srm.lookup(key(first))
    assert (row.lease_id, row.kind, row.file_path, row.plan_id) == (
        won[0].lease_id, won[0].kind, won[0].file_path, won[0].plan_id
    ) == (seen.lease_id, seen.kind, seen.file_path, seen.plan_id)


async def test_release_plan_releases_every_reservation_past_the_listing_cap(
    srm: LeasesService, symbol: Symbol, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plan holding more reservations than a listing shows is released whole; the reply counts all."""
    monkeypatch.setattr(service_module, "MAX_PLAN_LEASES", 3)
    held = [await srm.reserve(symbol(f"s{i}", plan_id="BIG")) for i in range(8)]
    outcome = await srm.release_plan("BIG")
    assert (outcome.released, len(outcome.leases)) == (8, 3)
    statuses = {(await srm.lookup(key(symbol(f"s{i}")))).status for i in range(8)}
    assert statuses == {"released"}
    async with srm.store.read() as conn:
        live = (await conn.execute(select(leases).where(leases.c.status == "reserved"))).all()
    assert (live, len(held)) == ([], 8)
